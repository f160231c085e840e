"""Every registered backbone part is reachable by name from at least one estimator slot.

The walk is over the registry, so a part registered later fails here until an estimator slot
takes it, or until it is listed below as a named exclusion with its reason.
"""

from __future__ import annotations

import pytest

from tsformers.backbone import available, build_class
from tsformers.backbone.registry import estimator_slots, home_stack
from tsformers.estimators.registry import ESTIMATORS
from tsformers.models import GTrXL, Atlas, Gateformer, LMUFormer
from tsformers.models.atlas import LAYERS as ATLAS_LAYERS

#: (kind, name) -> why no estimator slot takes the part: none now (issue 26); a part registered later that no
#: slot takes must be listed here with its reason, or the walk below fails
NOT_YET_REACHABLE: dict[tuple[str, str], str] = {}


#: (kind, name) -> a network that a documented estimator setting builds, with the part inside it: reached
#: without a slot of its own (the test below checks that the network really holds the registered class)
BUILT_BY_SETTING = {
    # the bare Legendre system (d coefficients per channel, not tokens to tokens) is the memory of the LMU cell:
    # LMUFormer's default memory="lmu" and ATLAS's memory="lmu_cell"
    ("memory", "lmu"): lambda: LMUFormer(lookback=24, horizon=4, n_vars=2, d_model=8),
    # Transformer-XL's cache, with no read-out of its own: every GTrXL keeps its layers' inputs in it
    ("memory", "segment"): lambda: GTrXL(lookback=24, horizon=4, n_vars=2, d_model=8, n_heads=2, d_ff=16,
                                         n_layers=1, segment_len=8, mem_len=8),
    # LMUFormer's spiking=True: LIF neurons in the tokenizer, the LMU cell and the conv FFN
    ("neuron", "lif"): lambda: LMUFormer(lookback=24, horizon=4, n_vars=2, d_model=8, spiking=True),
    # CrossFormer's dynamic position bias is part of its LSDA attention (position_bias=True, the paper's),
    # which Gateformer's temporal_mixer="lsda" builds
    ("position_bias", "dpb"): lambda: Gateformer(lookback=24, horizon=4, n_vars=2, d_model=8, n_heads=2, d_ff=16,
                                                 temporal_mixer="lsda"),
    # TNT's blocks over the words of the tnt_words embedding: Gateformer's temporal_block="tnt", listed in its slot
    # only once embedding="tnt_words" is set
    ("block", "tnt"): lambda: Gateformer(lookback=24, horizon=4, n_vars=2, d_model=8, n_heads=2, d_ff=16,
                                         embedding="tnt_words", temporal_block="tnt"),
    # CrossViT's CLS fusion, built inside the two-branch encoder of Gateformer's temporal_fusion="crossvit_two_branch"
    ("fusion", "crossvit_fusion"): lambda: Gateformer(lookback=24, horizon=4, n_vars=2, d_model=8, n_heads=2,
                                                      d_ff=16, temporal_fusion="crossvit_two_branch"),
}


@pytest.mark.parametrize("kind, name", sorted(BUILT_BY_SETTING), ids=[f"{k}-{n}" for k, n in sorted(BUILT_BY_SETTING)])
def test_a_part_counted_as_built_by_a_setting_is_in_the_network_that_setting_builds(kind, name):
    network = BUILT_BY_SETTING[kind, name]()
    assert any(isinstance(module, build_class(kind, name)) for module in network.modules())


def test_atlas_lmu_cell_memory_holds_the_legendre_system():
    network = Atlas(lookback=24, horizon=4, n_vars=2, d_model=8, n_heads=2, d_ff=16, window=8, conv_kernel=4,
                    memory="lmu_cell")
    assert any(isinstance(module, build_class("memory", "lmu")) for module in network.modules())


def _reachable() -> set[tuple[str, str]]:
    """(kind, name) of every part some estimator slot accepts (``available(slot, estimator)``), or always builds."""
    parts = set()
    for estimator in ESTIMATORS:
        for kinds, names in estimator_slots(estimator).values():
            parts |= {(kind, name) for name in names for kind in kinds if name in available(kind)}
    # a temporal mixer with a stage of its own (fca) makes that stage Gateformer's temporal encoder
    parts |= {("stack", home_stack(n)) for n in available("temporal_mixer", "GateformerForecaster") if home_stack(n)}
    parts |= {("gate", "sigmoid")}                                  # Gateformer's two gates, always built
    parts |= {("block", "prenorm"), ("block", "postnorm")}          # the standard stack's blocks
    parts |= {("block", f"atlas_{layer}") for layer in ATLAS_LAYERS}    # ATLAS's layer= builds block atlas_<layer>
    parts |= {("feature_map", "polynomial")}                        # ATLAS's poly_degree >= 1 builds it
    parts |= set(BUILT_BY_SETTING)                                  # checked above: the setting builds it
    return parts


REGISTERED = [(kind, name) for kind, names in available().items() for name in names]


@pytest.mark.parametrize("kind, name", REGISTERED, ids=[f"{k}-{n}" for k, n in REGISTERED])
def test_every_registered_part_is_reachable_from_an_estimator_or_a_named_exclusion(kind, name):
    reachable = (kind, name) in _reachable()
    excluded = (kind, name) in NOT_YET_REACHABLE
    assert reachable or excluded, (f"{kind} {name!r} is registered but no estimator slot takes it: expose it, "
                                   f"or add it to NOT_YET_REACHABLE with the reason")
    assert not (reachable and excluded), f"{kind} {name!r} is reachable now: drop it from NOT_YET_REACHABLE"


def test_the_exclusions_name_registered_parts():
    assert set(NOT_YET_REACHABLE) <= set(REGISTERED)
