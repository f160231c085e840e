"""Conformal intervals scaled by the forecast window: wider after a volatile stretch, narrower after a calm one.

A series whose noise switches between calm and stormy stretches: intervals scaled by the series alone have one
width everywhere, too wide after calm windows and too narrow after stormy ones; scaled by each window's spread
(``conformal_scale_ == "window"``, every model fitted since) they follow it, by the documented rule, and cover
nearer their level in both kinds of stretch. Models saved before keep the series' scale.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tsformers import LinearForecaster
from tsformers.data.prepare import Prepared
from tsformers.estimators.base import BaseForecaster
from tsformers.estimators.evaluation import SPREAD_FLOOR, conformal_radius, window_scale_factor
from tsformers.estimators.modelfile import ModelFileError

HORIZON, LOOKBACK, STRETCH = 12, 48, 240
FIXTURES = Path(__file__).parent / "fixtures" / "models"


def switching_noise(n=4800, seed=0) -> pd.DataFrame:
    """A daily sine plus noise whose standard deviation alternates 0.1, 0.8 every STRETCH steps."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    sd = np.where((t // STRETCH) % 2 == 0, 0.1, 0.8)
    return pd.DataFrame({"date": pd.date_range("2024-01-01", periods=n, freq="h"),
                         "y": np.sin(2 * np.pi * t / 24) + sd * rng.standard_normal(n)})


def coverage_by_stretch(model, frame: pd.DataFrame, start: int) -> dict:
    """80% coverage of every origin whose window and horizon lie in one stretch, by the stretch's noise."""
    n_windows = (len(frame) - start - HORIZON) // 4
    done = model.backtest(frame, n_windows=n_windows, step=4, level=80)
    inside = (done["actual"] >= done["lo80"]) & (done["actual"] <= done["hi80"])
    origin = (pd.to_datetime(done["cutoff"]) - frame["date"].iloc[0]) // pd.Timedelta(hours=1) + 1
    first, last = origin - LOOKBACK, origin + HORIZON - 1
    whole = first // STRETCH == last // STRETCH
    calm = (first // STRETCH) % 2 == 0
    return {"calm": float(inside[whole & calm].mean()), "stormy": float(inside[whole & ~calm].mean())}


@pytest.fixture(scope="module")
def fitted():
    df = switching_noise()
    fit = df.iloc[:3600]
    # the daily cycle taken out, a window's spread is its noise
    model = LinearForecaster(horizon=HORIZON, lookback=LOOKBACK, val_size=0.3, cycle="auto").fit(fit)
    return df, fit, model


def test_a_fitted_model_scales_its_intervals_by_the_window_by_the_documented_rule(fitted):
    df, fit, model = fitted
    assert model.conformal_scale_ == "window"
    stormy_end = 3600 + STRETCH     # 3600 starts the 16th stretch, a stormy one (the odd ones are)
    calm_end = 3600 + 2 * STRETCH
    calm = model.predict(df.iloc[:calm_end], level=[80])
    stormy = model.predict(df.iloc[:stormy_end], level=[80])
    radius = conformal_radius(model.conformal_, 80)[:, 0]                    # (H,)
    sigma = model.scaler_.scale.ravel()[0]
    for frame, end in ((calm, calm_end), (stormy, stormy_end)):
        window = (df["y"].iloc[end - LOOKBACK:end].to_numpy() - model.scaler_.mean.ravel()[0]) / sigma
        window = window - model.cycle_.at(end - LOOKBACK, LOOKBACK)[0, :, 0] if model.cycle_ is not None else window
        expected = sigma * window_scale_factor(window.std()) * radius
        np.testing.assert_allclose((frame["y_hi80"] - frame["y"]).to_numpy(), expected, rtol=1e-5)
        np.testing.assert_allclose((frame["y"] - frame["y_lo80"]).to_numpy(), expected, rtol=1e-5)
    ratio = float(((stormy["y_hi80"] - stormy["y_lo80"]) / (calm["y_hi80"] - calm["y_lo80"])).mean())
    assert ratio > 2, f"an interval after a stormy window is wider than after a calm one ({ratio:.2f} times)"


def test_window_scaled_intervals_cover_nearer_their_level_in_calm_and_stormy_stretches(fitted):
    df, fit, model = fitted
    window = coverage_by_stretch(model, df, 3600)
    series = BaseForecaster.load(_saved(model))         # the same model, its errors rescaled by the series alone
    series.conformal_scale_ = "series"
    series.refresh(series.prepare(fit, min_rows=LOOKBACK + HORIZON, action="calibrate"))
    by_series = coverage_by_stretch(series, df, 3600)
    assert by_series["calm"] > 0.95 and by_series["stormy"] < 0.75, by_series   # one width for every stretch
    for stretch in ("calm", "stormy"):
        assert abs(window[stretch] - 0.8) < abs(by_series[stretch] - 0.8), (stretch, window, by_series)
    # half-way in logs between the series' scale and the window's spread: nearer, not all the way
    assert window["stormy"] > by_series["stormy"] + 0.03 and window["calm"] < by_series["calm"] - 0.02, \
        (window, by_series)


def test_a_flat_window_still_gets_an_interval_of_the_floors_width():
    df = switching_noise(n=1200)
    model = LinearForecaster(horizon=HORIZON, lookback=LOOKBACK, val_size=0.2, cycle=None).fit(df)
    flat = pd.concat([df, pd.DataFrame({"date": pd.date_range(df["date"].iloc[-1] + pd.Timedelta(hours=1),
                                                              periods=LOOKBACK, freq="h"), "y": 0.5})],
                     ignore_index=True)
    forecast = model.predict(flat, level=[80])
    width = (forecast["y_hi80"] - forecast["y_lo80"]).to_numpy() / 2
    radius = conformal_radius(model.conformal_, 80)[:, 0] * model.scaler_.scale.ravel()[0]
    np.testing.assert_allclose(width, np.sqrt(SPREAD_FLOOR) * radius, rtol=1e-5)   # the floor, not zero
    assert (width > 0).all()


def test_the_scale_is_saved_with_the_model_and_a_format_2_model_keeps_the_series_scale(fitted, tmp_path):
    df, fit, model = fitted
    path = model.save(tmp_path / "window")
    config = json.loads((path / "config.json").read_text())
    assert config["format_version"] == 3 and config["conformal_scale"] == "window"
    loaded = BaseForecaster.load(path)
    assert loaded.conformal_scale_ == "window"
    pd.testing.assert_frame_equal(loaded.predict(df.iloc[:3700], level=[80, 95]),
                                  model.predict(df.iloc[:3700], level=[80, 95]))

    old = BaseForecaster.load(FIXTURES / "before_normalize_lmuformer")   # format 2: before the window's scale
    assert old.conformal_scale_ == "series" and old.conformal_ is not None
    got = old.predict(level=[80])
    radius = conformal_radius(old.conformal_, 80) * old.scaler_.scale[0, : len(old.schema_.targets)]   # (H, T)
    for t, target in enumerate(old.schema_.targets):
        np.testing.assert_allclose((got[f"{target}_hi80"] - got[target]).to_numpy(), radius[:, t], rtol=1e-5)

    damaged = Path(shutil.copytree(path, tmp_path / "damaged"))
    config["conformal_scale"] = "per-step"
    (damaged / "config.json").write_text(json.dumps(config, indent=2))
    (damaged / "manifest.json").unlink()     # rewritten below so that only the value is wrong
    _manifest(damaged)
    with pytest.raises(ModelFileError, match="conformal_scale is 'per-step'"):
        BaseForecaster.load(damaged)


def test_calibrate_moves_a_series_scaled_model_to_the_window_scale(fitted):
    df, fit, model = fitted
    old = BaseForecaster.load(_saved(model))
    old.conformal_scale_ = "series"
    old.calibrate(df.iloc[:3600])
    assert old.conformal_scale_ == "window"
    pd.testing.assert_frame_equal(old.predict(df.iloc[:3700], level=[80]), model.predict(df.iloc[:3700], level=[80]))


def _saved(model) -> Path:
    import tempfile
    return model.save(Path(tempfile.mkdtemp()) / "model")


def _manifest(directory: Path) -> None:
    import hashlib

    files = {p.name: {"sha256": hashlib.sha256(p.read_bytes()).hexdigest(), "size": p.stat().st_size}
             for p in sorted(directory.iterdir()) if p.name != "manifest.json"}
    (directory / "manifest.json").write_text(
        json.dumps({"files": files, "format": "tsformers-model-manifest"}, indent=2, sort_keys=True) + "\n")


def test_only_forecasts_with_intervals_read_the_windows_spread(fitted, monkeypatch):
    """A backtest or score without level= reads no window's spread (a second pass over every lookback window);
    with level= the intervals need it."""
    df, _, model = fitted
    expected = model.backtest(df, n_windows=3, step=HORIZON)
    with_level = model.backtest(df, n_windows=3, step=HORIZON, level=80)
    calls = []
    original = Prepared.target_spread
    monkeypatch.setattr(Prepared, "target_spread", lambda self, *a: calls.append(1) or original(self, *a))
    pd.testing.assert_frame_equal(model.backtest(df, n_windows=3, step=HORIZON), expected)
    model.score(df, metric="mse")
    assert calls == []
    pd.testing.assert_frame_equal(model.backtest(df, n_windows=3, step=HORIZON, level=80), with_level)
    assert calls
