"""Every part an estimator slot lists trains: one epoch on a tiny series, a finite forecast of the right shape.

The walk is over ``available(slot, estimator)`` for every estimator with slots, so a part that a
slot starts listing is trained here without a test of its own. (``test_backbone_available`` builds
each listed part without training and checks that the unlisted ones are refused; this file runs the
listed ones through a training step and a forecast.)
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from tsformers.backbone import available
from tsformers.backbone.registry import estimator_slots
from tsformers.datasets import make_demo
from tsformers.estimators.registry import ESTIMATORS

FRAME = make_demo(n_steps=80)
HORIZON = 4

#: the smallest settings each estimator trains with in a second or so (its contract settings, shrunk)
SMALL = {"max_epochs": 1, "batch_size": 64, "patience": 1}


def _walk() -> list:
    cases = []
    for cls in ESTIMATORS:
        if not estimator_slots(cls):
            continue
        for slot, names in available(None, cls(horizon=HORIZON, lookback=16, **cls.get_test_params())).items():
            cases += [pytest.param(cls, slot, part, id=f"{cls.__name__}-{slot}-{part}") for part in names]
    return cases


@pytest.mark.parametrize("cls, slot, part", _walk())
def test_every_listed_part_trains_and_forecasts(cls, slot, part):
    estimator = cls(horizon=HORIZON, lookback=16, **{**cls.get_test_params(), **SMALL, slot: part})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one epoch on 80 rows: warnings about so little training are beside the point
        estimator.fit(FRAME)
    forecast = estimator.predict()                                # the time column, then one per target
    values = forecast[list(estimator.schema_.targets)].to_numpy(dtype=float)
    assert forecast.shape == (HORIZON, 1 + len(estimator.schema_.targets))
    assert np.isfinite(values).all()


def test_a_width_too_small_for_three_phase_is_a_clear_error():
    from tsformers import GateformerForecaster

    estimator = GateformerForecaster(horizon=HORIZON, lookback=16, **{**GateformerForecaster.get_test_params(),
                                     **SMALL, "d_model": 4, "n_heads": 1, "temporal_stack": "three_phase"})
    with pytest.raises(ValueError, match="d_model=4 is too small for the three_phase stack.*raise d_model"):
        estimator.fit(FRAME)
