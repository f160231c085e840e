"""The baselines (NaiveForecaster, SeasonalNaiveForecaster, LinearForecaster) against numpy references.

The shared estimator contract (tests/test_estimators_contract.py) covers what they share with every
forecaster; here: their forecasts to the digit, the ridge solve and the choice of its penalty,
intervals, backtests, saving, the command line and their refusals.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import tsformers.estimators.ridge as ridge
from tsformers import BaseForecaster, LinearForecaster, NaiveForecaster, SeasonalNaiveForecaster
from tsformers.cli import main
from tsformers.data.windows import validation_steps
from tsformers.estimators.baselines import ALPHA_GRID

COLUMNS = ["load", "temp"]
# the networks run in float32; the references in float64
RTOL, ATOL = 1e-5, 1e-5


def wide(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """Two hourly series, a daily cycle around different levels, with noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return pd.DataFrame({
        "date": pd.date_range("2024-01-01", periods=n, freq="h"),
        "load": 50 + 5 * np.sin(2 * np.pi * t / 24) + rng.standard_normal(n),
        "temp": 3 + np.cos(2 * np.pi * t / 24) + 0.3 * rng.standard_normal(n) + 0.01 * t,
    })


def forecast_values(forecast: pd.DataFrame) -> np.ndarray:
    return forecast[COLUMNS].to_numpy(dtype=float)


# -- the naive forecasts -----------------------------------------------------------------------

def test_naive_repeats_the_last_value():
    df = wide()
    est = NaiveForecaster(horizon=10).fit(df)
    expected = np.repeat(df[COLUMNS].to_numpy()[-1:], 10, axis=0)
    np.testing.assert_allclose(forecast_values(est.predict()), expected, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(forecast_values(est.predict(df.iloc[:200])),
                               np.repeat(df[COLUMNS].to_numpy()[199:200], 10, axis=0), rtol=RTOL, atol=ATOL)
    assert est.lookback == 1 and est.training_log_ == [] and not NaiveForecaster._tags["trainable"]


def test_seasonal_naive_tiles_the_last_season_over_a_longer_horizon():
    df = wide()
    season, horizon = 24, 60
    est = SeasonalNaiveForecaster(horizon=horizon, lookback=48, season_length=season).fit(df)
    last_season = df[COLUMNS].to_numpy()[-season:]
    expected = np.tile(last_season, (3, 1))[:horizon]                       # step h: h mod 24 into the last season
    np.testing.assert_allclose(forecast_values(est.predict()), expected, rtol=RTOL, atol=ATOL)
    # a season that does not divide the horizon, and a window longer than a season
    est = SeasonalNaiveForecaster(horizon=11, lookback=20, season_length=7).fit(df)
    expected = np.tile(df[COLUMNS].to_numpy()[-7:], (2, 1))[:11]
    np.testing.assert_allclose(forecast_values(est.predict()), expected, rtol=RTOL, atol=ATOL)


def test_naive_update_forecasts_from_the_new_rows():
    df = wide()
    est = NaiveForecaster(horizon=5).fit(df.iloc[:250])
    est.update(df.iloc[250:260])
    np.testing.assert_allclose(forecast_values(est.predict()), np.repeat(df[COLUMNS].to_numpy()[259:260], 5, axis=0),
                               rtol=RTOL, atol=ATOL)
    assert est.predict()["date"].iloc[0] == df["date"].iloc[259] + pd.Timedelta(hours=1)


def test_backtest_of_the_naive_forecast_is_the_last_value_before_each_origin():
    df = wide()
    est = NaiveForecaster(horizon=6).fit(df)
    frame = est.backtest(df, n_windows=3, step=6, level=80)
    assert len(frame) == 3 * 6 * len(COLUMNS)
    for (target, cutoff), rows in frame.groupby(["target", "cutoff"]):
        position = int(np.flatnonzero(df["date"] == cutoff)[0])
        np.testing.assert_allclose(rows["forecast"], df[target].iloc[position], rtol=RTOL)
        np.testing.assert_array_equal(rows["actual"], df[target].iloc[position + 1: position + 7])
        assert (rows["lo80"] <= rows["forecast"]).all() and (rows["forecast"] <= rows["hi80"]).all()


@pytest.mark.parametrize("make", [lambda: NaiveForecaster(horizon=8),
                                  lambda: SeasonalNaiveForecaster(horizon=8, lookback=24, season_length=24),
                                  lambda: LinearForecaster(horizon=8, lookback=48)],
                         ids=["naive", "seasonal", "linear"])
def test_intervals_widen_with_the_level_and_save_load_gives_identical_forecasts(make, tmp_path):
    df = wide()
    est = make().fit(df)
    forecast = est.predict(level=[80, 95])
    for name in COLUMNS:
        assert (forecast[f"{name}_lo95"] <= forecast[f"{name}_lo80"]).all()
        assert (forecast[f"{name}_lo80"] < forecast[name]).all() and (forecast[name] < forecast[f"{name}_hi80"]).all()
        assert (forecast[f"{name}_hi80"] <= forecast[f"{name}_hi95"]).all()
    loaded = BaseForecaster.load(est.save(tmp_path / "model"))
    assert type(loaded) is type(est) and loaded.get_params() == est.get_params()
    pd.testing.assert_frame_equal(loaded.predict(level=[80, 95]), forecast)
    pd.testing.assert_frame_equal(loaded.predict(df.iloc[:200]), est.predict(df.iloc[:200]))
    assert est.score(df) == loaded.score(df) < 0


def test_onnx_export_forecasts_what_the_torch_network_does(tmp_path):
    pytest.importorskip("onnxruntime", reason="ONNX export needs tsformers[onnx]")
    df = wide()
    for est in (LinearForecaster(horizon=8, lookback=48).fit(df),
                SeasonalNaiveForecaster(horizon=30, lookback=24, season_length=24).fit(df)):
        path = est.save(tmp_path / type(est).__name__)
        est.export_onnx(path)
        np.testing.assert_allclose(forecast_values(BaseForecaster.load(path, engine="onnx").predict(df)),
                                   forecast_values(est.predict(df)), rtol=1e-5, atol=1e-4)


# -- the linear map ----------------------------------------------------------------------------------

def _reference_windows(scaled: np.ndarray, lookback: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Every window of ``scaled`` ``(n_series, T, n_vars)`` as last-value-normalised rows: design ``(n, L + 1)``
    with a column of ones, targets ``(n, H)``; one row per series, window and variable."""
    rows, outs = [], []
    for series in scaled:
        for start in range(series.shape[0] - lookback - horizon + 1):
            x, y = series[start:start + lookback], series[start + lookback:start + lookback + horizon]
            if np.isnan(x).any() or np.isnan(y).any():                     # before a ragged series starts
                continue
            for v in range(series.shape[1]):
                rows.append(np.append(x[:, v] - x[-1, v], 1.0))
                outs.append(y[:, v] - x[-1, v])
    return np.array(rows), np.array(outs)


def _reference_ridge(design: np.ndarray, out: np.ndarray, alpha: float) -> np.ndarray:
    penalty = alpha * np.eye(design.shape[1])
    penalty[-1, -1] = 0.0                                                  # the intercept is not penalised
    return np.linalg.solve(design.T @ design + penalty, design.T @ out)


def _long(n: int = 300, late_start: int = 0) -> pd.DataFrame:
    """Two series at very different levels, so the per-series scaling matters; ``b`` starts ``late_start`` rows
    after ``a`` (a ragged panel) and both end together."""
    a, b = wide(n, seed=1), wide(n, seed=2).iloc[late_start:]
    return pd.concat([pd.DataFrame({"unique_id": "a", "ds": a["date"], "y": a["load"]}),
                      pd.DataFrame({"unique_id": "b", "ds": b["date"], "y": 1000 + 40 * b["temp"]})],
                     ignore_index=True)


def _scaled(est, df: pd.DataFrame) -> np.ndarray:
    """The panel ``(2, n, 1)`` scaled with the fitted statistics, NaN before a series starts."""
    n = df.groupby("unique_id").size().max()
    values = np.stack([np.concatenate([np.full(n - len(group), np.nan), group["y"].to_numpy()])
                       for _, group in df.groupby("unique_id")])[..., None]
    return est.scaler_.transform(values)


@pytest.mark.parametrize("late_start", [0, 70], ids=["aligned", "ragged"])
def test_the_ridge_map_is_the_numpy_solve_of_the_same_problem(monkeypatch, late_start):
    monkeypatch.setattr(ridge, "_WINDOW_CHUNK", 7)                        # many chunks of the Gram matrix
    df, lookback, horizon, alpha = _long(late_start=late_start), 36, 12, 3.0
    est = LinearForecaster(horizon=horizon, lookback=lookback, alpha=alpha).fit(df)
    n = 300
    cut = n - validation_steps(n, lookback, horizon, 0.1)
    scaled = _scaled(est, df)
    # the scaler: each series' training part standardised
    np.testing.assert_allclose(np.nanmean(scaled[:, :cut], axis=1), 0, atol=1e-9)
    design, out = _reference_windows(scaled[:, :cut], lookback, horizon)
    weights = _reference_ridge(design, out, alpha)
    np.testing.assert_allclose(est.network_.map.weight.detach().double().numpy(), weights[:-1].T, rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(est.network_.map.bias.detach().double().numpy(), weights[-1], rtol=1e-4, atol=1e-5)
    assert est.alpha_ == alpha and est.training_log_ == []
    # the forecast: the map on the last scaled window, back in each series' units
    last = scaled[:, -lookback:, 0]                                       # (2, L)
    pred = last[:, -1:] + np.hstack([last - last[:, -1:], np.ones((2, 1))]) @ weights
    expected = pred * est.scaler_.scale[:, :1] + est.scaler_.mean[:, :1]
    forecast = est.predict()
    got = np.stack([forecast.loc[forecast["unique_id"] == key, "y"].to_numpy() for key in ("a", "b")])
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_alpha_none_takes_the_grid_penalty_with_the_least_validation_error():
    df, lookback, horizon = _long(), 24, 6
    est = LinearForecaster(horizon=horizon, lookback=lookback).fit(df)
    n = 300
    cut = n - validation_steps(n, lookback, horizon, 0.1)
    scaled = _scaled(est, df)
    design, out = _reference_windows(scaled[:, :cut], lookback, horizon)
    val_design, val_out = _reference_windows(scaled[:, cut - lookback:], lookback, horizon)  # with their context
    scores = [float(np.mean((val_design @ _reference_ridge(design, out, a) - val_out) ** 2)) for a in ALPHA_GRID]
    assert ALPHA_GRID == tuple(10.0 ** k for k in range(-2, 8))
    best, runner_up = np.sort(scores)[:2]
    assert runner_up > best * (1 + 1e-4), scores       # a clear minimum: float32 inputs cannot move it
    assert est.alpha_ == ALPHA_GRID[int(np.argmin(scores))] and est.training_log_ == []
    refit = LinearForecaster(horizon=horizon, lookback=lookback, alpha=est.alpha_).fit(df)
    pd.testing.assert_frame_equal(refit.predict(), est.predict())       # then solved on the training windows


def test_the_linear_map_learns_a_season_the_last_value_misses():
    df = wide(1200)
    train, test = df.iloc[:-24], df.iloc[-24:]
    est = LinearForecaster(horizon=24, lookback=72).fit(train)
    truth = test[COLUMNS].to_numpy()
    naive = np.repeat(train[COLUMNS].to_numpy()[-1:], 24, axis=0)
    linear_mse = np.mean((forecast_values(est.predict()) - truth) ** 2)
    naive_mse = np.mean((naive - truth) ** 2)
    assert linear_mse < 0.3 * naive_mse, (linear_mse, naive_mse)
    # and over many held-out windows, not one
    scores = est.backtest(df.iloc[-300:], n_windows=8, step=24)
    naive_scores = NaiveForecaster(horizon=24).fit(train).backtest(df.iloc[-300:], n_windows=8, step=24)
    assert np.mean((scores["forecast"] - scores["actual"]) ** 2) < \
        0.3 * np.mean((naive_scores["forecast"] - naive_scores["actual"]) ** 2)


def test_gaps_in_the_training_targets_are_interpolated_or_refused():
    df = wide()
    df.loc[100:102, "load"] = np.nan
    with pytest.raises(ValueError, match="load"):
        LinearForecaster(horizon=6, lookback=24).fit(df)
    est = LinearForecaster(horizon=6, lookback=24, missing="interpolate", max_gap=5).fit(df)
    assert np.isfinite(forecast_values(est.predict())).all()


# -- refusals ----------------------------------------------------------------------------------------

def test_a_season_longer_than_the_window_is_refused():
    with pytest.raises(ValueError, match=r"season_length=48 is longer than lookback=24.*lookback >= 48"):
        SeasonalNaiveForecaster(horizon=6, lookback=24, season_length=48).fit(wide())
    with pytest.raises(TypeError, match="season_length"):
        SeasonalNaiveForecaster(horizon=6)                                 # the season is the data's: no default


@pytest.mark.parametrize("alpha", [0, -1.0, "large"])
def test_a_bad_alpha_is_refused(alpha):
    with pytest.raises(ValueError, match="'alpha' parameter of LinearForecaster must be"):
        LinearForecaster(horizon=6, lookback=24, alpha=alpha).fit(wide())


def test_alpha_none_without_validation_windows_is_scikit_learns_leave_one_out_choice():
    """With no validation part the penalty is the one of the lowest leave-one-out error over the training
    windows: scikit-learn's RidgeCV (its efficient leave-one-out, intercept unpenalised) on the same rows,
    built here by hand from the standardised series, chooses the same penalty and scores it alike."""
    from sklearn.linear_model import RidgeCV

    horizon, lookback = 6, 24
    df = wide(160)
    est = LinearForecaster(horizon=horizon, lookback=lookback, val_size=0).fit(df)
    z = df[COLUMNS].to_numpy(float)
    z = (z - z.mean(axis=0)) / z.std(axis=0)
    rows, outs = [], []
    for start in range(len(z) - lookback - horizon + 1):
        window, future = z[start:start + lookback], z[start + lookback:start + lookback + horizon]
        rows += list((window - window[-1]).T)
        outs += list((future - window[-1]).T)
    reference = RidgeCV(alphas=ALPHA_GRID, fit_intercept=True).fit(np.array(rows), np.array(outs))
    assert est.alpha_ == reference.alpha_ and ALPHA_GRID[0] < est.alpha_ < ALPHA_GRID[-1]
    window = z[-lookback:]                          # the forecast is the reference's map of the last window
    scaled = window[-1] + reference.predict((window - window[-1]).T).T
    raw = df[COLUMNS].to_numpy(float)
    np.testing.assert_allclose(forecast_values(est.predict()), scaled * raw.std(axis=0) + raw.mean(axis=0),
                               rtol=1e-6)
    fixed = LinearForecaster(horizon=horizon, lookback=lookback, val_size=0, alpha=1.0).fit(df)
    assert fixed.alpha_ == 1.0


def test_alpha_none_says_what_to_pass_where_no_window_can_be_left_out():
    """One series of exactly lookback + horizon rows: one training window, which the unpenalised intercept fits
    exactly, so leaving it out says nothing; a second window is enough."""
    one_series = wide(30)[["date", "load"]]
    with pytest.raises(ValueError, match=r"alpha=None chooses the ridge penalty.*leaving out one training window.*"
                                         r"alpha= \(e.g. alpha=1.0\)"):
        LinearForecaster(horizon=6, lookback=24, val_size=0).fit(one_series)
    assert LinearForecaster(horizon=6, lookback=24, val_size=0).fit(wide(31)[["date", "load"]]).alpha_ in ALPHA_GRID


@pytest.mark.parametrize("cls", [NaiveForecaster, SeasonalNaiveForecaster, LinearForecaster])
def test_the_baselines_read_targets_only(cls):
    with pytest.raises(TypeError, match="covariates"):
        cls(horizon=6, covariates=["temp"])
    with pytest.raises(ValueError, match="'missing' parameter"):                 # masks would feed zeros in
        cls(horizon=6, lookback=24, missing="mask", **cls.get_test_params()).fit(wide())


# -- the command line ------------------------------------------------------------------------------------

def test_train_and_forecast_with_the_naive_estimator_from_the_command_line(tmp_path, capsys):
    df = wide()
    df.iloc[:250].to_csv(tmp_path / "train.csv", index=False)
    df.to_csv(tmp_path / "new.csv", index=False)
    assert main(["train", "--data", str(tmp_path / "train.csv"), "--estimator", "Naive", "--param", "horizon=12",
                 "--model-dir", str(tmp_path / "model")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["estimator"] == "NaiveForecaster"
    assert main(["forecast", "--model", str(tmp_path / "model"), "--input", str(tmp_path / "new.csv"),
                 "--output", str(tmp_path / "f.csv")]) == 0
    written = pd.read_csv(tmp_path / "f.csv", parse_dates=["date"])
    np.testing.assert_allclose(forecast_values(written), np.repeat(df[COLUMNS].to_numpy()[-1:], 12, axis=0),
                               rtol=RTOL, atol=ATOL)
    pd.testing.assert_frame_equal(written, NaiveForecaster.load(tmp_path / "model").predict(df), check_dtype=False)


# -- the benchmark's reference ----------------------------------------------------------------------------

def test_etth1_reproduces_the_benchmark_ridge():
    """benchmarks/baselines.py's ChannelIndependentRidge on ETTh1, H = 96: MSE 0.3831, MAE 0.3920 (penalty 1000)."""
    data_dir = Path(os.environ.get("TSFORMERS_DATA") or Path(__file__).resolve().parents[2] / "shared" / "datasets")
    if not (data_dir / "ETTh1.csv").exists():
        pytest.skip(f"the ETTh1 benchmark file is not in {data_dir}")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from _protocol import evaluate_windows, load_protocol_data

    data = load_protocol_data("ETTh1", data_dir, 96)
    est = LinearForecaster(horizon=96, lookback=96, val_size=data.val_steps).fit(data.fit_frame)
    scores = evaluate_windows(est, data.test_frame)
    assert est.alpha_ == 1000.0
    assert round(scores["mse"], 4) == 0.3831 and round(scores["mae"], 4) == 0.3920, scores
