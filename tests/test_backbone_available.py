"""``tsformers.backbone.available(slot, estimator)`` lists exactly what each estimator's ``fit`` accepts in a slot.

Every listed name is fitted (no training epochs: the network is built and validated) and every
registered part of the slot's kinds that is not listed, and a name nobody registered, is refused
with a ValueError, with the estimator's other parameters as they are.
"""

from __future__ import annotations

import re
import warnings

import pytest

from tsformers import (AtlasForecaster, GateformerForecaster, GTrXLForecaster, LinearForecaster, LMUFormerForecaster,
                       NaiveForecaster, PVClientForecaster)
from tsformers.backbone import available
from tsformers.backbone.registry import estimator_slots
from tsformers.datasets import make_demo

FRAME = make_demo(n_steps=100)

#: (estimator, its other parameters): the defaults, and settings that narrow a slot's choices
CASES = [
    pytest.param(AtlasForecaster, {}, id="atlas"),
    pytest.param(AtlasForecaster, {"frozen_memory": True}, id="atlas-frozen_memory"),
    pytest.param(GateformerForecaster, {}, id="gateformer"),
    pytest.param(GateformerForecaster, {"ffn": "conv"}, id="gateformer-ffn-conv"),
    pytest.param(GateformerForecaster, {"stack": "deep"}, id="gateformer-stack-deep"),
    pytest.param(GateformerForecaster, {"temporal_mixer": "fca"}, id="gateformer-temporal_mixer-fca"),
    pytest.param(GateformerForecaster, {"temporal_stack": "sret"}, id="gateformer-temporal_stack-sret"),
    pytest.param(GateformerForecaster, {"temporal_mixer": "fca", "temporal_stack": "fca_stage"},
                 id="gateformer-temporal_stack-fca_stage"),
    pytest.param(GateformerForecaster, {"embedding": "tnt_words"}, id="gateformer-embedding-tnt_words"),
    pytest.param(GTrXLForecaster, {}, id="gtrxl"),
    pytest.param(LMUFormerForecaster, {}, id="lmuformer"),
    pytest.param(LMUFormerForecaster, {"spiking": True}, id="lmuformer-spiking"),
    pytest.param(PVClientForecaster, {}, id="pvclient"),
    pytest.param(PVClientForecaster, {"stack": "wide", "norm": "layernorm"}, id="pvclient-stack-wide"),
]


def _estimator(cls, params, **slot):
    return cls(horizon=4, lookback=16, max_epochs=0, **{**cls.get_test_params(), **params, **slot})


def _fit(estimator):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # untrained networks: warnings about the (absent) training are beside the point
        return estimator.fit(FRAME)


@pytest.mark.parametrize("cls, params", CASES)
def test_every_listed_part_is_accepted_and_every_other_refused(cls, params):
    slots = estimator_slots(_estimator(cls, params))
    assert slots, f"{cls.__name__} declares no slot"
    for slot, (kinds, names) in slots.items():
        # an optional part (None: none) may have no registered part that fits the other parameters
        assert names or getattr(_estimator(cls, params), slot) is None, (
            f"{cls.__name__}({params}) accepts nothing in {slot}")
        for name in names:
            _fit(_estimator(cls, params, **{slot: name}))          # raises if fit refuses a listed part
        others = sorted({n for kind in kinds for n in available(kind)} - set(names)) + ["not_a_part"]
        for name in others:
            # the same settings with a listed name fit (above): the refusal is this name's
            with pytest.raises(ValueError):
                _fit(_estimator(cls, params, **{slot: name}))


def test_an_estimator_is_named_by_its_class_its_name_or_an_instance():
    expected = ["identity", "mamba", "sla", "sliding_window", "xl_relative"]
    assert available("mixer", GTrXLForecaster) == expected
    assert available("mixer", "GTrXLForecaster") == available("mixer", "gtrxl") == expected
    assert available("memory", AtlasForecaster(frozen_memory=True)) == ["omega"]
    assert available(None, "AtlasForecaster") == {
        "memory": ["identity", "lmu_cell", "mamba", "omega", "sla", "sliding_window"], "optimizer": ["momentum", "muon"]}


def test_the_choices_follow_the_other_parameters():
    assert available("ffn", GateformerForecaster()) == ["cofrnet", "conv", "mlp"]
    assert available("ffn", GateformerForecaster(stack="deep")) == ["mlp"]        # deep builds its own blocks
    assert available("stack", PVClientForecaster(norm="prepbn")) == ["adaptive_depth", "looped", "standard"]
    assert "fca" not in available("temporal_mixer", GateformerForecaster(stack="looped"))
    # the temporal encoder reads ordered patches: it takes the stacks that read order, the variate encoder not
    assert {"fit", "hybrid", "mixed", "sret", "three_phase"} <= set(available("temporal_stack", GateformerForecaster))
    assert not {"fit", "hybrid", "mixed", "sret", "three_phase"} & set(available("stack", GateformerForecaster))
    assert available("temporal_stack", GateformerForecaster(temporal_mixer="fca")) == ["fca_stage"]
    assert available("temporal_mixer", GateformerForecaster(temporal_stack="fca_stage")) == ["fca"]
    assert available("ffn", GateformerForecaster(temporal_stack="fit")) == ["mlp"]    # fit builds its own blocks
    # cswin reads each sample's variates x patches grid: only stacks that hand it every variate's row whole
    assert "cswin" in available("temporal_mixer", GateformerForecaster)
    assert "cswin" not in available("temporal_mixer", GateformerForecaster(temporal_stack="sret"))
    assert "sret" not in available("temporal_stack", GateformerForecaster(temporal_mixer="cswin"))
    assert "adaptive_depth" not in available("stack", GateformerForecaster(temporal_mixer="cswin"))
    # TNT's blocks read the words that only the tnt_words embedding makes
    assert available("temporal_block", GateformerForecaster) == []
    assert available("temporal_block", GateformerForecaster(embedding="tnt_words")) == ["tnt"]
    assert available("embedding", GateformerForecaster(temporal_block="tnt")) == ["tnt_words"]
    # CrossViT's coarse branch needs a lookback of two patches; its branches are its own blocks
    assert available("temporal_fusion", GateformerForecaster) == ["crossvit_two_branch"]
    assert available("temporal_fusion", GateformerForecaster(lookback=12)) == []
    assert available("temporal_mixer", GateformerForecaster(temporal_fusion="crossvit_two_branch")) == ["full"]
    assert available("memory", LMUFormerForecaster(spiking=True)) == ["lmu"]


def test_without_an_estimator_a_slot_is_a_registry_kind():
    assert available("memory") == ["lmu", "lmu_cell", "omega", "segment"]
    assert set(available()) >= {"mixer", "stack", "ffn", "norm", "memory", "memory_optimizer"}


def test_a_slot_the_estimator_lacks_and_an_unknown_estimator_are_refused():
    with pytest.raises(ValueError, match="LMUFormerForecaster has no slot 'mixer'; its slots: memory"):
        available("mixer", "LMUFormerForecaster")
    with pytest.raises(ValueError, match="unknown estimator 'Prophet'"):
        available("mixer", "Prophet")
    assert available(None, NaiveForecaster) == {} and available(None, LinearForecaster()) == {}
    with pytest.raises(ValueError, match="NaiveForecaster has no slot 'mixer'; its slots: none"):
        available("mixer", NaiveForecaster)
    with pytest.raises(ValueError, match="is not a tsformers estimator"):
        available("mixer", dict)


def test_the_backbone_page_lists_each_estimators_slots():
    from pathlib import Path

    from tsformers.estimators.registry import ESTIMATORS

    page = (Path(__file__).parents[1] / "docs" / "backbone.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+Forecaster)` \| (.+) \|$", page, flags=re.M))
    documented = {name: re.findall(r"`(\w+)`", slots) for name, slots in rows.items()}
    declared = {cls.__name__: list(estimator_slots(cls)) for cls in ESTIMATORS if estimator_slots(cls)}
    assert documented == declared
