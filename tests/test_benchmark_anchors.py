"""benchmarks/anchors.py and its worker: the strided windows are the baselines' windows, the forecasts come back
in the right (window, step, variable) places, and the scoring is the baselines'. None of it needs the anchors venv."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from test_benchmark_harness import load_benchmark  # the one loader of benchmark scripts


@pytest.fixture(scope="module")
def anchors():
    return load_benchmark("anchors.py", "anchors_benchmark")


@pytest.fixture(scope="module")
def worker():
    return load_benchmark("_anchors_worker.py", "anchors_worker")


def test_strided_cutoffs_read_the_baselines_test_windows(anchors):
    rng = np.random.default_rng(0)
    values = rng.normal(size=(120, 3))
    test_start, lookback, horizon = 70, 12, 5
    x, y = anchors.windows(values[test_start - lookback:], lookback, horizon)     # baselines.windows
    assert len(y) == 120 - test_start - horizon + 1
    for stride in (1, 7, 13):
        index = anchors.strided(len(y), stride)
        assert index[0] == 0 and np.all(np.diff(index) == stride) and index[-1] > len(y) - 1 - stride
        for i, cutoff in zip(index, anchors.cutoffs(test_start, index)):
            np.testing.assert_array_equal(y[i], values[cutoff:cutoff + horizon])
            np.testing.assert_array_equal(x[i], values[cutoff - lookback:cutoff])
    with pytest.raises(ValueError):
        anchors.strided(10, 0)


def test_score_is_the_baselines_scoring_and_the_setting_states_the_stride(anchors):
    rng = np.random.default_rng(1)
    truth = rng.normal(size=(6, 4, 2))
    pred = truth + np.array([1.0, -2.0])                                          # per-variable constant errors
    mse, mae, mase = anchors.score(pred, truth, scale=np.array([1.0, 4.0]))
    assert mse == pytest.approx((1 + 4) / 2) and mae == pytest.approx(1.5) and mase == pytest.approx((1 + 0.5) / 2)
    assert anchors.score(truth, truth, np.ones(2))[:2] == (0.0, 0.0)
    assert anchors.window_setting(1, 2785) == ""
    assert anchors.window_setting(7, 2785, 0.3812) == "stride 7 (398 of 2785 windows; linear on them MSE 0.3812)"
    assert anchors.parse_strides(["autotheta=13"])["autotheta"] == 13
    assert anchors.parse_strides([])["autoets"] == 1
    with pytest.raises(SystemExit):
        anchors.parse_strides(["arima=3"])


def test_the_stride_is_raised_until_it_shares_no_factor_with_the_season_so_every_phase_is_read(anchors):
    assert anchors.season_stride(7, 24) == 7 and anchors.season_stride(1, 7) == 1
    assert anchors.season_stride(7, 7) == 8 and anchors.season_stride(12, 24) == 13
    assert anchors.season_stride(96, 96) == 97 and anchors.season_stride(97, 144) == 97
    for stride, season in [(7, 7), (6, 24), (10, 144)]:
        raised = anchors.season_stride(stride, season)
        n = raised * season                                              # enough windows for a full turn
        assert set(anchors.strided(n, raised) % season) == set(range(season))     # every phase among the cutoffs
        assert len(set(anchors.strided(n, stride) % season)) < season             # the unraised stride misses some
    with pytest.raises(ValueError):
        anchors.season_stride(0, 24)


def test_the_worker_frames_one_series_per_window_and_variable(worker):
    values = np.arange(40, dtype=np.float64).reshape(20, 2) * np.array([1.0, 100.0])   # variable 1 = 100 x variable 0
    times = (np.datetime64("2020-01-01T00:00") + np.arange(20) * np.timedelta64(1, "h")).astype("datetime64[ns]")
    frame = worker._long_frame(values, times.astype(np.int64), np.arange(4), [3, 10], 5)
    assert list(frame["unique_id"].unique()) == [0, 1, 2, 3] and len(frame) == 20
    one = frame[frame["unique_id"] == 3]                                          # window 1, variable 1
    np.testing.assert_array_equal(one["y"], values[10:15, 1])
    assert one["ds"].iloc[0] == pd.Timestamp("2020-01-01 10:00")


def test_the_worker_puts_each_recursive_forecast_back_in_its_window_step_and_variable(worker):
    values = np.random.default_rng(2).normal(size=(50, 3))
    times = (np.datetime64("2020-01-01") + np.arange(50) * np.timedelta64(1, "h")).astype("datetime64[ns]").astype(np.int64)

    class Fake:  # forecasts "last value + 10 * step", in a shuffled order, as a pandas frame
        def predict(self, h, new_df):
            last = new_df.groupby("unique_id").tail(1)
            rows = [{"unique_id": uid, "ds": ds + pd.Timedelta(hours=k + 1), "lgbm": y + 10 * (k + 1)}
                    for uid, ds, y in zip(last["unique_id"], last["ds"], last["y"]) for k in range(h)]
            return pd.DataFrame(rows).sample(frac=1.0, random_state=0)

    cuts, lookback, horizon = [20, 27, 41], 8, 4
    pred = worker._mlf_forecast(Fake(), values, times, cuts, lookback, horizon)
    assert pred.shape == (3, 4, 3)
    for w, cutoff in enumerate(cuts):
        expected = values[cutoff - 1][None, :] + 10 * np.arange(1, horizon + 1)[:, None]
        np.testing.assert_allclose(pred[w], expected)


def test_rows_that_repeat_a_timestamp_become_integer_steps_without_a_calendar(anchors, worker):
    hours = np.datetime64("2020-01-01T00:00") + np.arange(6) * np.timedelta64(10, "m")
    times, freq, calendar = anchors.time_axis(hours, "10min")
    assert calendar and freq == "10min" and times[1] - times[0] == 600 * 10**9
    repeated = hours.copy()
    repeated[3] = repeated[2]                                                      # weather.csv repeats one
    times, freq, calendar = anchors.time_axis(repeated, "10min")
    assert not calendar and freq == 1 and list(times) == [0, 1, 2, 3, 4, 5]
    values = np.arange(12, dtype=np.float64).reshape(6, 2)
    frame = worker._long_frame(values, times, np.arange(2), [1], 4, calendar=False)
    assert frame["ds"].dtype == np.int64 and list(frame["ds"].iloc[:4]) == [1, 2, 3, 4]
    np.testing.assert_array_equal(frame[frame["unique_id"] == 1]["y"], values[1:5, 1])
