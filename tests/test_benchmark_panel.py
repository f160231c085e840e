"""benchmarks/panel.py and its report section: the global univariate panel, its splits, the shared test windows, and
the rendered table's bold and loss marks. Synthetic data only (no shared data sets)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from test_benchmark_harness import load_benchmark
from test_benchmark_report import load_report


def _tables(seed: int = 0):
    """Two small data sets of different lengths, splits, seasons and variable counts."""
    rng = np.random.default_rng(seed)
    t_a, t_b = np.arange(80), np.arange(120)
    a = pd.DataFrame({"date": pd.date_range("2020", periods=80, freq="h"),
                      "x": 10 + 3 * np.sin(2 * np.pi * t_a / 4) + rng.normal(0, 0.3, 80),
                      "z": 100 + 0.1 * t_a + rng.normal(0, 1, 80)})
    b = pd.DataFrame({f"v{i}": (i + 1) * np.sin(2 * np.pi * t_b / 6) + rng.normal(0, 0.2, 120) for i in range(3)})
    return {"A": (a, {"train": (0, 40), "val": (40, 52), "test": (52, 80)}, 4),
            "B": (b, {"train": (0, 60), "val": (60, 84), "test": (84, 120)}, 6)}


def _panel():
    return load_benchmark("panel.py", "panel_benchmark")


def test_each_variable_is_a_series_with_its_own_split_all_training_splits_ending_at_one_step():
    panel_mod = _panel()
    tables = _tables()
    panel = panel_mod.build_panel(tables, time_col="date")
    ids = list(panel.series["unique_id"])
    assert ids == ["A/x", "A/z", "B/v0", "B/v1", "B/v2"], "one series per variable, the date column left out"
    assert panel.val_steps == 24, "the longest validation split"
    t0 = 60
    assert (panel.series["train_end"] == t0).all(), "every training split ends at the same (aligned) step"
    for r in panel.series.itertuples():
        wide, bounds, season = tables[r.dataset]
        assert r.season == season
        train = panel.train[panel.train["unique_id"] == r.unique_id]
        fit = panel.fit[panel.fit["unique_id"] == r.unique_id]
        full = panel.full[panel.full["unique_id"] == r.unique_id]
        assert len(train) == bounds["train"][1] and len(fit) == bounds["val"][1] and len(full) == bounds["test"][1]
        assert (r.val_end - r.train_end, r.test_end - r.test_start) == (bounds["val"][1] - bounds["val"][0],
                                                                         bounds["test"][1] - bounds["test"][0])
        assert fit["time"].max() == r.val_end - 1 and full["time"].max() == r.test_end - 1
        # standardised by the training rows only
        assert abs(train["y"].mean()) < 1e-9 and abs(train["y"].std(ddof=0) - 1) < 1e-9
        raw = wide[r.variable].to_numpy(float)
        expected = (raw[: bounds["test"][1]] - raw[:40 if r.dataset == "A" else 60].mean()) \
            / raw[:40 if r.dataset == "A" else 60].std()
        assert np.allclose(full["y"].to_numpy(), expected)
    # the estimators cut their validation part at the end of the fit frame: at step T0 for every series
    span = panel.fit["time"].max() + 1 - panel.fit["time"].min()
    assert span - panel.val_steps == t0
    assert (panel.fit["time"] < panel.fit["unique_id"].map(panel.series.set_index("unique_id")["val_end"])).all()


def test_every_model_is_scored_on_the_same_test_windows():
    from tsformers import LinearForecaster, NaiveForecaster, SeasonalNaiveForecaster

    panel_mod = _panel()
    panel = panel_mod.build_panel(_tables(), time_col="date")
    horizon, lookback, stride = 4, 8, 3
    counts = panel_mod.test_windows(panel, horizon, stride)
    assert counts == {"A": (28 - 4) // 3 + 1, "B": (36 - 4) // 3 + 1}
    common = dict(horizon=horizon, time_col="time", id_col="unique_id", target="y", val_size=panel.val_steps,
                  scaler=None)
    naive = NaiveForecaster(lookback=lookback, **common).fit(panel.fit)
    linear = LinearForecaster(lookback=lookback, **common).fit(panel.fit)
    reference = panel_mod.backtests(naive, panel, horizon=horizon, stride=stride)
    other = panel_mod.backtests(linear, panel, horizon=horizon, stride=stride)
    for name, frame in reference.items():
        panel_mod.check_same_windows(frame, other[name], name)
        series = panel.series[panel.series["dataset"] == name].set_index("unique_id")
        windows = frame.drop_duplicates(["unique_id", "cutoff"])
        assert (windows.groupby("unique_id").size() == counts[name]).all()
        # every window inside the test split, the last one ending with it, origins `stride` apart
        origins = windows["cutoff"] + 1
        assert (origins >= windows["unique_id"].map(series["test_start"])).all()
        last = windows.groupby("unique_id")["cutoff"].max() + 1 + horizon
        assert (last == series["test_end"]).all()
        assert set(np.diff(np.sort(windows.loc[windows["unique_id"] == series.index[0], "cutoff"]))) == {stride}
        assert np.allclose(frame.loc[frame["h"] == 1, "forecast"].to_numpy(), _previous(panel, frame))
    # a data set's own panel keeps its own validation split
    assert panel_mod._subset(panel, "A").val_steps == 12 and panel_mod._subset(panel, "B").val_steps == 24
    # a seasonal naive with a window longer than the others' forecasts the same targets from the same origins
    seasonal = SeasonalNaiveForecaster(lookback=12, season_length=6, **common)
    seasonal.fit(panel_mod._subset(panel, "B").fit)
    part = panel_mod.backtests(seasonal, panel_mod._subset(panel, "B"), horizon=horizon, stride=stride)
    panel_mod.check_same_windows(reference["B"], part["B"], "seasonal naive")
    with pytest.raises(AssertionError):
        panel_mod.check_same_windows(reference["B"], part["B"].iloc[1:], "short")

    scores = panel_mod.scores(reference, panel)
    assert scores["all series"]["n_series"] == 5 and scores["all series"]["n_windows"] == 2 * 9 + 3 * 11
    per_series = []
    for name, frame in reference.items():
        season = 4 if name == "A" else 6
        for sid, part in frame.groupby("unique_id"):
            train = panel.train.loc[panel.train["unique_id"] == sid, "y"].to_numpy()
            scale = np.abs(train[season:] - train[:-season]).mean()
            per_series.append(np.abs(part["actual"] - part["forecast"]).mean() / scale)
        assert np.isclose(scores[name]["mase"], np.mean(per_series[-frame["unique_id"].nunique():]))
    assert np.isclose(scores["all series"]["mase"], np.mean(per_series)), "every series counts once"


def _previous(panel, frame):
    """The last value before each row's origin: the naive forecast at h = 1."""
    full = panel.full.set_index(["unique_id", "time"])["y"]
    rows = frame[frame["h"] == 1]
    return full.loc[list(zip(rows["unique_id"], rows["cutoff"]))].to_numpy()


def _panel_row(dataset, model, mase, mse, mae, rev="abc1234", stamp="2026-01-01T00:00:00+00:00"):
    return dict(timestamp=stamp, dataset=dataset, model=model, n_series=7, mase=mase, mse=mse, mae=mae,
                n_windows=784, stride=25, horizon=96, lookback=96, cpu_s=12.0, load_start=1.5, git_rev=rev,
                setting="")


def test_the_panel_section_bolds_the_best_of_each_data_set_and_marks_our_losses(tmp_path):
    rows = [_panel_row("ETTh1", "naive", 1.80, 1.50, 0.77), _panel_row("ETTh1", "seasonal_naive", 1.05, 0.51, 0.43),
            _panel_row("ETTh1", "linear", 1.10, 0.50, 0.45), _panel_row("ETTh1", "gateformer", 1.20, 0.48, 0.47),
            _panel_row("ETTh1", "gbm", 1.00, 0.60, 0.44),
            _panel_row("weather", "linear", 0.56, 0.19, 0.24), _panel_row("weather", "gateformer", 0.55, 0.20, 0.23),
            _panel_row("weather", "naive", 0.62, 0.26, 0.26),
            _panel_row("weather", "linear_per_dataset", 0.57, 0.195, 0.225),   # a baseline too
            _panel_row("all series", "naive", 0.9, 0.5, 0.4), _panel_row("all series", "gateformer", 0.8, 0.4, 0.5),
            # an earlier run of a cell is superseded by the later one
            _panel_row("ETTh1", "gateformer", 9.0, 9.0, 9.0, stamp="2025-01-01T00:00:00+00:00", rev="zzz9999")]
    pd.DataFrame(rows).to_csv(tmp_path / "panel.csv", index=False)
    lines = load_report(tmp_path).panel_section()
    assert lines[0] == "## A many-series case: ETT and weather as one univariate panel"
    body = [line for line in lines if line.startswith("| ") and not line.startswith("| data")]

    def cells(dataset, label):
        line = next(line for line in body if line.startswith(f"| {dataset} | {label} |"))
        return [c.strip() for c in line.strip("|").split("|")][2:5]

    # data sets in the grid's order, the aggregate last; models in a fixed order within each
    assert [line.split(" | ")[0:2] for line in body][:5] == [["| ETTh1", m] for m in
                                                             ["last value", "seasonal naive", "linear", "GBM (ours)",
                                                              "Gateformer (ours)"]]
    assert body[-1].startswith("| all series | Gateformer (ours) |")
    assert cells("ETTh1", "Gateformer (ours)") == ["1.200 ▼", "**0.480**", "0.470 ▼"]
    assert cells("ETTh1", "GBM (ours)") == ["**1.000**", "0.600 ▼", "0.440 ▼"]
    assert cells("ETTh1", "seasonal naive") == ["1.050", "0.510", "**0.430**"]
    assert cells("weather", "Gateformer (ours)") == ["**0.550**", "0.200 ▼", "0.230 ▼"]
    assert cells("weather", "linear") == ["0.560", "**0.190**", "0.240"]
    assert cells("weather", "linear per data set") == ["0.570", "0.195", "**0.225**"]
    assert cells("all series", "Gateformer (ours)") == ["**0.800**", "**0.400**", "0.500 ▼"]
    assert all("9.000" not in line for line in body)
    text = "\n".join(lines)
    assert "Code revision of the table: abc1234" in text and "zzz9999" not in text
    assert "112 per ETTh1 series" in text
