"""Fitted models shared by the compress tests: each is trained once per session, not once per module.

Compression methods return a new estimator and leave the one they compress untouched, so tests pass
these fixtures straight in; a test that changes a model itself takes ``copy.deepcopy`` of it first.
"""
from __future__ import annotations

import pytest

from tsformers import GateformerForecaster
from tsformers.datasets import make_demo

#: the Gateformer most compress tests start from: small, trained for two epochs, the network alone (behind the
#: default linear base a network whose share of the correction is 0 would not reach the forecast at all), one
#: network (compression edits one; the default seed ensemble is refused, tests/test_ensemble.py)
TINY = dict(horizon=8, lookback=32, d_model=16, d_ff=32, n_heads=4, batch_size=32, learning_rate=1e-3,
            max_epochs=2, random_state=0, linear_base=False, ensemble_size=1)


@pytest.fixture(scope="session")
def df():
    """Three hourly demo series, 300 steps."""
    return make_demo(n_series=3, n_steps=300, seed=0)


@pytest.fixture(scope="session")
def fitted(df):
    """A GateformerForecaster with the ``TINY`` settings, fitted on ``df``."""
    return GateformerForecaster(**TINY).fit(df)


@pytest.fixture(scope="session")
def fitted_as(df):
    """``fitted_as(cls)``: a ``cls`` with its ``get_test_params()`` (horizon 8, lookback 32, one epoch), fitted on
    ``df`` the first time it is asked for and shared after that."""
    models = {}

    def fitted_model(cls):
        if cls not in models:
            one = {"ensemble_size": 1} if "ensemble_size" in cls().get_params() else {}   # compression edits one
            models[cls] = cls(horizon=8, lookback=32, **{**cls.get_test_params(), "max_epochs": 1, **one}).fit(df)
        return models[cls]

    return fitted_model
