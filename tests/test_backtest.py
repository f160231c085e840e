"""Backtests: the windows and cutoffs, one batch per backtest, refitting, and the metrics against hand computations."""
import numpy as np
import pandas as pd
import polars as pl
import pytest

import tsformers.training
from tsformers import GateformerForecaster, LMUFormerForecaster
from tsformers.datasets import make_demo
from tsformers.metrics import coverage, evaluate, interval_width, mae, mase, mse, nmae, nrmse, pinball_loss, rmse, smape

TINY = dict(d_model=16, d_ff=16, n_heads=2, batch_size=64, random_state=0)


def hourly(n=40, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return pd.DataFrame({"date": pd.date_range("2024-01-01", periods=n, freq="h"),
                         "a": np.sin(t / 3) + 0.1 * rng.standard_normal(n), "b": np.cos(t / 5) + 10.0})


@pytest.fixture()
def count_fits(monkeypatch):
    """Count the trainings (calls of the one training routine)."""
    calls = []
    real = tsformers.training.fit_network

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(tsformers.training, "fit_network", counted)
    return calls


def test_windows_and_cutoffs_of_a_hand_checked_case():
    df = hourly(40)
    f = GateformerForecaster(horizon=4, lookback=8, max_epochs=0, patch_len=4, stride=4, **TINY).fit(df)
    out = f.backtest(df, n_windows=3, step=2)
    # 40 rows, horizon 4, 3 windows 2 steps apart: origins (first forecast rows) 32, 34 and 36
    assert list(out.columns) == ["window", "target", "cutoff", "date", "h", "actual", "forecast"]
    assert len(out) == 3 * 2 * 4
    for window, origin in enumerate([32, 34, 36]):
        rows = out[out.window == window]
        assert (rows.cutoff == df.date[origin - 1]).all()
        for target in ["a", "b"]:
            part = rows[rows.target == target]
            assert part.date.tolist() == df.date[origin: origin + 4].tolist()
            assert part.h.tolist() == [1, 2, 3, 4]
            np.testing.assert_array_equal(part.actual, df[target][origin: origin + 4])
            # the forecast from the data up to the cutoff
            expected = f.predict(df.iloc[:origin])[target].to_numpy()
            np.testing.assert_allclose(part.forecast, expected, rtol=1e-6)
    last = out[out.window == 2]                           # score: the last window (batched alone: float32 rounding)
    assert f.score(df) == pytest.approx(-mse(last.actual, last.forecast), rel=1e-6)


def test_long_and_ragged_panels_cut_each_series_from_its_own_end():
    df = make_demo(n_series=3, n_steps=120, layout="long")
    df = df[~((df.unique_id == "series_1") & (df.ds > df.ds.max() - pd.Timedelta(hours=5)))]   # ends 5 h early
    f = GateformerForecaster(horizon=6, lookback=24, max_epochs=0, **TINY).fit(df)
    out = f.backtest(df, n_windows=2, step=3)
    assert list(out.columns)[:5] == ["window", "unique_id", "target", "cutoff", "ds"]
    ends = df.groupby("unique_id").ds.max()
    for (key, window), rows in out.groupby(["unique_id", "window"]):
        offset = 6 + (1 - window) * 3
        assert (rows.cutoff == ends[key] - pd.Timedelta(hours=offset)).all()
        assert rows.ds.max() == ends[key] - pd.Timedelta(hours=offset - 6)
        truth = df[(df.unique_id == key) & df.ds.isin(rows.ds)].y.to_numpy()
        np.testing.assert_array_equal(rows.actual, truth)


def test_a_streaming_backtest_equals_predict_on_the_history_before_each_origin():
    df = make_demo(n_series=2, n_steps=200, layout="long")
    f = LMUFormerForecaster(horizon=6, lookback=24, d_model=8, memory_size=8, max_epochs=1, random_state=0).fit(df)
    out = f.backtest(df, n_windows=3, step=5)
    for cutoff, rows in out.groupby("cutoff"):
        expected = f.predict(df[df.ds <= cutoff])
        np.testing.assert_allclose(rows.forecast, expected.y, rtol=1e-4, atol=1e-5)


def test_refit_false_trains_once_and_refit_true_once_per_window(count_fits):
    df = hourly(120)
    # one network: count_fits counts trainings, and a seed ensemble trains each member
    params = dict(horizon=4, lookback=16, max_epochs=1, patch_len=4, stride=4, val_size=0, ensemble_size=1, **TINY)
    f = GateformerForecaster(**params)
    out = f.backtest(df, n_windows=3, step=4)             # unfitted: fitted once, on the data before window 0
    assert len(count_fits) == 1 and out.window.nunique() == 3
    assert f.last_time_ == df.date.iloc[120 - 4 - 2 * 4 - 1]
    f.backtest(df, n_windows=5, step=2)                   # fitted: no training at all
    assert len(count_fits) == 1
    refitted = GateformerForecaster(**params).backtest(df, n_windows=3, step=4, refit=True)
    assert len(count_fits) == 1 + 3
    last = refitted[refitted.window == 2]                  # the last window: a model fitted on all but 4 rows
    expected = GateformerForecaster(**params).fit(df.iloc[:-4]).predict()
    np.testing.assert_allclose(last[last.target == "a"].forecast, expected["a"], rtol=1e-6)
    assert refitted.cutoff.drop_duplicates().tolist() == df.date.iloc[[107, 111, 115]].tolist()


def test_intervals_quantiles_and_polars_in_the_backtest_frame():
    df = pl.from_pandas(hourly(150))
    f = GateformerForecaster(horizon=4, lookback=16, max_epochs=1, patch_len=4, stride=4, quantiles=[0.1, 0.5, 0.9],
                             val_size=0.2, **TINY).fit(df)       # 27 calibration windows: enough for 95%
    out = f.backtest(df, n_windows=2, level=[80, 95])
    assert isinstance(out, pl.DataFrame)
    assert out.columns == ["window", "target", "cutoff", "date", "h", "actual", "forecast", "q0.1", "q0.5", "q0.9",
                           "lo80", "hi80", "lo95", "hi95"]
    frame = out.to_pandas()
    assert ((frame.lo95 <= frame.lo80) & (frame.lo80 < frame.hi80) & (frame.hi80 <= frame.hi95)).all()
    assert ((frame["q0.1"] <= frame["q0.5"]) & (frame["q0.5"] <= frame["q0.9"])).all()
    summary = evaluate(out, by="target")
    assert list(summary.columns) == ["target", "n", "mse", "mae", "rmse", "smape", "pinball", "coverage_80",
                                     "width_80", "coverage_95", "width_95"]
    part = frame[frame.target == "b"]
    row = summary[summary.target == "b"].iloc[0]
    assert row.pinball == pytest.approx(pinball_loss(part.actual, part[["q0.1", "q0.5", "q0.9"]], [0.1, 0.5, 0.9]))
    assert row.coverage_80 == pytest.approx(coverage(part.actual, part.lo80, part.hi80))


def test_too_short_data_and_bad_arguments_are_refused():
    df = hourly(40)
    f = GateformerForecaster(horizon=4, lookback=8, max_epochs=0, patch_len=4, stride=4, **TINY).fit(df)
    with pytest.raises(ValueError, match="Lower n_windows or step"):
        f.backtest(df, n_windows=10, step=4)              # the first origin would have 40 - 4 - 36 = 0 rows before it
    with pytest.raises(ValueError, match="n_windows"):
        f.backtest(df, n_windows=0)
    with pytest.raises(ValueError, match="step"):
        f.backtest(df, step=0)


# -- metrics, each against a hand computation --------------------------------------------------------

def test_point_metrics_against_hand_computations():
    y, p = np.array([1.0, 2.0, 4.0]), np.array([2.0, 2.0, 1.0])   # errors 1, 0, -3
    assert mse(y, p) == pytest.approx((1 + 0 + 9) / 3)
    assert mae(y, p) == pytest.approx((1 + 0 + 3) / 3)
    assert rmse(y, p) == pytest.approx(np.sqrt(10 / 3))
    assert nmae(y, p, capacity=2.0) == pytest.approx(4 / 3 / 2)
    assert nrmse(y, p, capacity=2.0) == pytest.approx(np.sqrt(10 / 3) / 2)
    # sMAPE: 200 * mean(|e| / (|y| + |p|)) = 200/3 * (1/3 + 0 + 3/5)
    assert smape(y, p) == pytest.approx(200 / 3 * (1 / 3 + 3 / 5))
    assert smape([0.0, 1.0], [0.0, 1.0]) == 0.0            # 0/0 counts as no error
    # MASE: MAE / mean |y_t - y_{t-s}| of the history; history 1, 3, 2, 6 -> naive errors 2, 1, 4 (s=1), 1, 3 (s=2)
    history = np.array([1.0, 3.0, 2.0, 6.0])
    assert mase(y, p, history) == pytest.approx((4 / 3) / (7 / 3))
    assert mase(y, p, history, season=2) == pytest.approx((4 / 3) / 2)
    with pytest.raises(ValueError, match="season"):
        mase(y, p, history, season=4)


def test_interval_metrics_against_hand_computations():
    y = np.array([0.0, 1.0, 2.0, 3.0])
    lower, upper = np.array([-1.0, 1.5, 1.0, 3.0]), np.array([1.0, 2.0, 2.0, 5.0])
    assert coverage(y, lower, upper) == pytest.approx(3 / 4)    # 1.0 lies outside [1.5, 2]; the ends count as inside
    assert interval_width(lower, upper) == pytest.approx((2 + 0.5 + 1 + 2) / 4)
    frame = pd.DataFrame({"target": "y", "actual": [1.0, 2.0, np.nan], "forecast": [1.5, 1.0, 0.0],
                          "lo80": [0.0, 1.5, 0.0], "hi80": [2.0, 2.5, 1.0]})
    row = evaluate(frame).iloc[0]                          # the missing actual is left out
    assert row.n == 2 and row.mse == pytest.approx((0.25 + 1) / 2) and row.mae == pytest.approx(0.75)
    assert row.coverage_80 == pytest.approx(1.0) and row.width_80 == pytest.approx(1.5)


@pytest.mark.parametrize("model", [GateformerForecaster, LMUFormerForecaster])
def test_an_interpolated_gap_running_up_to_an_origin_never_reads_past_it(model):
    # 60 rows, horizon 4, 3 windows 4 apart: origins 48, 52 and 56. A gap over rows 45-49 runs up to the first
    # origin; interpolating it from both ends would read row 50, after that origin.
    df = hourly(60)
    df.loc[45:49, "a"] = np.nan
    kw = dict(horizon=4, lookback=12, max_epochs=0, missing="interpolate", max_gap=5, random_state=0)
    kw.update(dict(d_model=16, d_ff=16, n_heads=2, patch_len=4, stride=4) if model is GateformerForecaster
              else dict(d_model=8, memory_size=8))
    f = model(**kw).fit(df.iloc[:40])
    later = df.copy()
    later.loc[50:, "a"] += 5.0                             # change only what comes after the first origin
    before, after = f.backtest(df, n_windows=3, step=4), f.backtest(later, n_windows=3, step=4)
    first = before.window == 0
    np.testing.assert_array_equal(before[first].forecast, after[first].forecast)
    # the gap's steps before the origin are held at the last value observed before it (row 44)
    held = df.copy()
    held.loc[45:47, "a"] = df.loc[44, "a"]
    expected = f.predict(held.iloc[:48])
    for target in ["a", "b"]:
        np.testing.assert_allclose(before[first & (before.target == target)].forecast, expected[target],
                                   rtol=1e-5, atol=1e-6)
    # a window whose history holds the whole gap interpolates it, as predict on that history does
    second = before.window == 1
    expected = f.predict(df.iloc[:52])
    for target in ["a", "b"]:
        np.testing.assert_allclose(before[second & (before.target == target)].forecast, expected[target],
                                   rtol=1e-5, atol=1e-6)
