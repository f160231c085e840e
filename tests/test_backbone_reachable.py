"""Every registered backbone part is reachable by name from at least one estimator slot.

The walk is over the registry, so a part registered later fails here until an estimator slot
takes it, or until it is listed below as a named exclusion with its reason.
"""

from __future__ import annotations

import pytest

from tsformers.backbone import available
from tsformers.backbone.registry import estimator_slots, home_stack
from tsformers.estimators.registry import ESTIMATORS
from tsformers.models.atlas import LAYERS as ATLAS_LAYERS

#: (kind, name) -> why no estimator slot takes the part yet (issue 26 items 1-2 still open for these).
NOT_YET_REACHABLE = {
    **{("block", n): "blocks come with their stack; no estimator has a block slot" for n in
       ("metaformer", "tnt")},
    **{("fusion", n): "two-branch fusions need a two-stream estimator, none yet"
       for n in ("cross_gating", "crossvit_fusion", "crossvit_two_branch")},
    ("memory", "lmu"): "the bare Legendre system (d coefficients per channel, not tokens to tokens): it is "
                       "reached inside 'lmu_cell' (ATLAS's memory) and LMUFormer's cell",
    ("memory", "segment"): "Transformer-XL's cache with no read-out of its own: GTrXL's stack builds it",
    ("neuron", "lif"): "LMUFormer's spiking=True builds it; no slot by name",
    ("position_bias", "dpb"): "no estimator has a position-bias slot",
    **{("reducer", n): "no estimator has a token-reducer slot" for n in ("kmeans_xattn", "ltm", "pem_xattn")},
    **{("stage", n): "no estimator has a stage slot" for n in ("qpool_stage", "resnas_stage")},
    **{("stack", n): "it reads token order, and the estimators' stack slots also run over variate tokens "
                     "(Gateformer, PV-Client) or carry a segment memory (GTrXL)"
       for n in ("fit", "hybrid", "mixed", "sret", "three_phase")},
}


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
