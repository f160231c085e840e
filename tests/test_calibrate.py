"""``calibrate``: the conformal intervals follow the recent errors of a deployed model, the network unchanged.

A series whose noise grows five-fold after the fit data: the intervals calibrated at fit cover far less than
their level on the noisier period; after ``calibrate`` on its first part they cover about their level on the
rest, while the point forecasts, the stored history and the saved model's intervals behave as documented.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tsformers import GateformerForecaster, LinearForecaster, LMUFormerForecaster
from tsformers.estimators.base import BaseForecaster

HORIZON, LOOKBACK = 12, 48


def noisy_sine(n_calm=900, n_stormy=1200, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.arange(n_calm + n_stormy)
    noise = np.where(t < n_calm, 0.1, 0.5) * rng.standard_normal(len(t))
    return pd.DataFrame({"date": pd.date_range("2024-01-01", periods=len(t), freq="h"),
                         "y": np.sin(2 * np.pi * t / 24) + noise})


def coverage(model, frame: pd.DataFrame, n_windows: int = 40) -> float:
    done = model.backtest(frame, n_windows=n_windows, step=HORIZON, level=80)
    return float(((done["actual"] >= done["lo80"]) & (done["actual"] <= done["hi80"])).mean())


ESTIMATORS = {
    "linear": lambda: LinearForecaster(horizon=HORIZON, lookback=LOOKBACK),
    "gateformer": lambda: GateformerForecaster(**{**GateformerForecaster.get_test_params(), "horizon": HORIZON,
                                                  "lookback": LOOKBACK, "max_epochs": 2, "random_state": 0}),
    "lmuformer (streaming)": lambda: LMUFormerForecaster(**{**LMUFormerForecaster.get_test_params(),
                                                            "horizon": HORIZON, "lookback": LOOKBACK,
                                                            "max_epochs": 1, "random_state": 0}),
}


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_calibrating_on_recent_rows_restores_the_level_and_changes_nothing_else(name, tmp_path):
    df = noisy_sine()
    calm, recent, later = df.iloc[:900], df.iloc[:1400], df  # fit on the calm part; calibrate on 500 stormy rows
    model = ESTIMATORS[name]().fit(calm)
    before = coverage(model, later)
    point, history = model.predict(), model.history_.copy()
    width = float(np.diff(model.predict(level=80)[["y_lo80", "y_hi80"]].to_numpy()).mean())

    assert model.calibrate(recent, last_steps=450) is model
    after = coverage(model, later.iloc[-(40 * HORIZON + LOOKBACK):])  # windows after the calibration rows
    assert before < 0.6, f"calibrated on the calm rows, the intervals are too narrow for the storm ({before:.2f})"
    assert 0.7 <= after <= 0.9, f"after calibrate, about 80% ({after:.2f})"
    widened = float(np.diff(model.predict(level=80)[["y_lo80", "y_hi80"]].to_numpy()).mean())
    assert 2 < widened / width < 8, "wider: the noise grew five-fold (less where model error dominated the calm rows)"
    pd.testing.assert_frame_equal(model.predict(), point)
    np.testing.assert_array_equal(model.history_, history)

    loaded = BaseForecaster.load(model.save(tmp_path / "model"))
    pd.testing.assert_frame_equal(loaded.predict(level=80), model.predict(level=80))


def test_calibrate_defaults_to_the_validation_length_and_refuses_what_cannot_work():
    df = noisy_sine(n_calm=600, n_stormy=0)
    model = LinearForecaster(horizon=HORIZON, lookback=LOOKBACK).fit(df)
    fitted = model.conformal_.copy()
    np.testing.assert_array_equal(model.calibrate(df).conformal_, fitted)  # the fit's own windows again
    with pytest.raises(ValueError, match="last_steps must be an integer of at least horizon=12"):
        model.calibrate(df, last_steps=5)
    with pytest.raises(ValueError, match="too short to calibrate"):
        model.calibrate(df.iloc[:30])
    with pytest.raises(Exception, match="not fitted"):
        LinearForecaster(horizon=HORIZON, lookback=LOOKBACK).calibrate(df)
