"""The CAB harness of benchmarks/backbone.py: undeclared patterns are not run, leaks are caught."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from torch import nn

from tsformers.backbone.mixers import CAUSAL_CROSS, CAUSAL_SELF, CROSS, SELF

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(script: str, name: str):
    """A script of benchmarks/ as a module (its own imports of the folder's helpers resolved)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


def load_harness():
    return load_benchmark("backbone.py", "backbone_benchmark")


def load_protocol():
    """``benchmarks/_protocol.py`` as the module the scripts import (its dataclasses need it under its own name)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module("_protocol")
    finally:
        sys.path.remove(str(BENCHMARKS))


class LeakyMixer(nn.Module):
    """Claims a causal form but mixes every token with the mean of all of them."""

    complexity, patterns, requires_order, mixes_tokens, paper = "O(N·D)", frozenset({SELF, CAUSAL_SELF}), False, True, "-"
    runs = 0

    def __init__(self, d_model, *, n_heads=1, dropout=0.0, causal=False):
        super().__init__()
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x, kv=None, mask=None):
        type(self).runs += 1
        return self.proj(x + x.mean(dim=1, keepdim=True))


def test_an_undeclared_pattern_is_marked_unsupported_and_never_run():
    harness = load_harness()
    LeakyMixer.runs = 0
    assert harness.check_pattern(LeakyMixer, CROSS) == "unsupported"
    assert harness.check_pattern(LeakyMixer, CAUSAL_CROSS) == "unsupported"
    assert LeakyMixer.runs == 0


def test_a_leaky_mixer_fails_the_causal_check_and_full_attention_passes():
    harness = load_harness()
    assert harness.check_pattern(LeakyMixer, SELF) == "ok"
    assert harness.check_pattern(LeakyMixer, CAUSAL_SELF).startswith("FAIL: the output at t depends")
    from tsformers.backbone import FullAttention

    assert {p: harness.check_pattern(FullAttention, p) for p in harness.PATTERNS} == dict.fromkeys(harness.PATTERNS,
                                                                                                   "ok")


def test_the_efficiency_length_is_where_a_mixer_starts_and_stays_ahead():
    harness = load_harness()
    rows = [{"name": "full", "tokens": n, "forward_ms": float(n * n), "peak_mib": float(n)} for n in (256, 512, 1024)]
    rows += [{"name": "lin", "tokens": n, "forward_ms": float(300 * n), "peak_mib": float(2 * n)}
             for n in (256, 512, 1024)]
    harness.efficiency_lengths(rows)
    lin = [r for r in rows if r["name"] == "lin"]
    assert lin[0]["faster_from"] == 512 and lin[0]["smaller_from"] == ""


def test_protocol_coverage_and_mase_equal_the_estimators_own_backtest():
    """evaluate_windows' interval coverage is the share of backtest actuals inside predict(level=)'s bands on the
    same windows, and its MASE the MAE over the training rows' mean one-step change."""
    import numpy as np

    from tsformers import LinearForecaster
    from tsformers.datasets import make_demo

    protocol = load_protocol()
    evaluate_windows, mase_scale, scaled_values = protocol.evaluate_windows, protocol.mase_scale, protocol.scaled_values
    df = make_demo(n_series=1, n_steps=700)
    fit, test = df.iloc[:600], df.iloc[600 - 48:]
    model = LinearForecaster(horizon=12, lookback=48).fit(fit)
    scale = mase_scale(scaled_values(model, fit))
    scores = evaluate_windows(model, test, scale=scale)
    n_windows = len(test) - 48 - 12 + 1
    bt = model.backtest(test, n_windows=n_windows, step=1, level=[80, 95])
    assert scores["n_windows"] == n_windows
    for level in (80, 95):
        inside = ((bt.actual >= bt[f"lo{level}"]) & (bt.actual <= bt[f"hi{level}"])).mean()
        assert abs(scores[f"coverage_{level}"] - inside) < 1e-3, level
    assert 0.5 < scores["coverage_80"] < scores["coverage_95"] <= 1.0
    mae_scaled = np.abs((bt.forecast - bt.actual) / model.scaler_.scale.ravel()[0]).mean()
    assert abs(scores["mase"] - mae_scaled / scale[0]) < 1e-4 * scores["mase"]

    # the CRPS of the conformal distribution: its quantiles 0.05..0.95 are the band ends at 10%..90% and the point
    CRPS_LEVELS = protocol.CRPS_LEVELS

    from tsformers.metrics import crps
    bands = model.backtest(test, n_windows=n_windows, step=1, level=list(CRPS_LEVELS))
    quantiles = np.column_stack([bands[f"lo{level}"] for level in reversed(CRPS_LEVELS)] + [bands.forecast]
                                + [bands[f"hi{level}"] for level in CRPS_LEVELS])
    unit = model.scaler_.scale.ravel()[0]
    expected = crps(bands.actual.to_numpy() / unit, quantiles / unit, np.linspace(0.05, 0.95, 19))
    assert abs(scores["crps"] - expected) < 1e-4 * expected
    assert scores["crps"] < scores["mae"], "a calibrated spread scores better than the point forecast alone"


@pytest.mark.parametrize("cycle", [None, "auto"])
def test_protocol_errors_equal_the_estimators_own_backtest_with_and_without_the_cycle(cycle):
    """The protocol scores the network on the values less the seasonal cycle (what it reads and forecasts): its MSE
    is the backtest's on the scaled data all the same, and the last value's is that of the data itself."""
    from tsformers import LinearForecaster
    from tsformers.datasets import make_demo

    evaluate_windows = load_protocol().evaluate_windows
    df = make_demo(n_series=1, n_steps=700)
    fit, test = df.iloc[:600], df.iloc[600 - 48:]
    model = LinearForecaster(horizon=12, lookback=48, cycle=cycle).fit(fit)
    assert (model.cycle_ is None) == (cycle is None)
    scores = evaluate_windows(model, test)
    n_windows = len(test) - 48 - 12 + 1
    bt = model.backtest(test, n_windows=n_windows, step=1)
    unit = model.scaler_.scale.ravel()[0]
    assert scores["mse"] == pytest.approx(float((((bt.forecast - bt.actual) / unit) ** 2).mean()), rel=1e-6)
    last = test.set_index("date").iloc[:, 0].reindex(bt.cutoff).to_numpy()
    assert scores["naive_mse"] == pytest.approx(float((((last - bt.actual) / unit) ** 2).mean()), rel=1e-9)


def test_recalibrated_intervals_are_the_estimators_own_calibrate_run_on_a_schedule():
    """recalibrated_intervals' coverage is what calling calibrate(rows so far, last_steps=) every `every` steps and
    then forecasting gives; without a recalibration after the first it is the fit-time intervals' evaluation."""
    import numpy as np

    from tsformers import LinearForecaster
    from tsformers.datasets import make_demo

    protocol = load_protocol()
    evaluate_windows, recalibrated_intervals = protocol.evaluate_windows, protocol.recalibrated_intervals
    lookback, horizon, cal, every = 48, 12, 100, 25
    df = make_demo(n_series=1, n_steps=760)
    df.loc[df.index[560:], "series_0"] *= 1.8  # a stormier test period than the calibration rows: recalibrating matters
    model = LinearForecaster(horizon=horizon, lookback=lookback, val_size=cal).fit(df.iloc[:500])
    stream = df.iloc[500 - cal - lookback:].reset_index(drop=True)
    scores = recalibrated_intervals(model, stream, cal, every=every)
    n_test = len(stream) - lookback - horizon + 1 - cal

    inside, width = {80: 0, 95: 0}, []
    for block in range(cal, cal + n_test, every):  # window j forecasts the stream's rows [j + L, j + L + H)
        model.calibrate(stream.iloc[:block + lookback], last_steps=cal)
        n = min(every, cal + n_test - block)
        bt = model.backtest(stream.iloc[block:block + lookback + horizon + n - 1], n_windows=n, step=1, level=[80, 95])
        for level in inside:
            inside[level] += int(((bt.actual >= bt[f"lo{level}"]) & (bt.actual <= bt[f"hi{level}"])).sum())
        width += list((bt.hi80 - bt.lo80) / model.scaler_.scale.ravel()[0])
    assert scores["recal_every"] == every
    for level in inside:
        assert abs(scores[f"recal_coverage_{level}"] - inside[level] / (n_test * horizon)) < 1e-9, level
    assert abs(scores["recal_width_80"] - np.mean(width)) < 1e-6 * np.mean(width)

    model.fit(df.iloc[:500])  # fit's calibration again: its windows are the stream's first `cal` rows, stride 1
    fixed = evaluate_windows(model, stream.iloc[cal:])
    once = recalibrated_intervals(model, stream, cal, every=len(stream))
    for name in ("coverage_80", "coverage_95", "width_80", "crps"):
        assert abs(once[f"recal_{name}"] - fixed[name]) < 1e-6, name
    assert scores["recal_coverage_80"] > fixed["coverage_80"] + 0.05, "the stormier rows widen the recalibrated bands"


REAL_PV = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "pv_golden_co_2020.csv"


def test_the_pv_benchmarks_forecast_weather_is_yesterdays_atmosphere_and_todays_astronomy():
    import numpy as np
    import pytest

    if not REAL_PV.is_file():
        pytest.skip(f"the PV file is not in {REAL_PV.parent}")
    pv = load_benchmark("pv.py", "pv_benchmark")
    actual, n_train, n_val, capacity, weather = pv.load("golden", str(REAL_PV.parent), "actual")
    proxy, proxy_train, proxy_val, _, same = pv.load("golden", str(REAL_PV.parent), "yesterday")
    assert same == weather and not set(pv.NOT_WEATHER) & set(actual.columns) and capacity == 6.0
    assert len(proxy) == len(actual) - 24 and proxy_train == n_train - 24 and proxy_val == n_val
    assert (proxy["timestamp"].to_numpy() == actual["timestamp"].to_numpy()[24:]).all()
    np.testing.assert_array_equal(proxy["power"], actual["power"].to_numpy()[24:])  # the truth is untouched
    for column in weather:
        expected = actual[column].to_numpy()[24:] if column in pv.KNOWN_IN_ADVANCE else actual[column].to_numpy()[:-24]
        np.testing.assert_array_equal(proxy[column].to_numpy(), expected, err_msg=column)
    # every model's forecast is clipped to [0, capacity] and zero where the sun is below the horizon
    origins = np.array([100, 5000])
    clipped = pv.night_and_clip(np.full((2, pv.HORIZON), 9.0), actual, origins, capacity)
    night = np.stack([actual["Solar Zenith Angle"].to_numpy()[o:o + pv.HORIZON] >= 90 for o in origins])
    assert night.any() and (~night).any()
    np.testing.assert_array_equal(clipped, np.where(night, 0.0, capacity))


def test_the_slot_walk_lists_every_accepted_part_once_with_the_defaults_first():
    from tsformers.backbone import available

    harness = load_harness()
    gateformer = harness.MODELS["gateformer"](harness.DATASET, harness.HORIZON)
    cases = harness.slot_cases("gateformer")
    assert cases[0] == (harness.DEFAULT, harness.DEFAULT) and len(set(cases)) == len(cases)
    assert ("temporal_block", "tnt") in cases                  # listed only with TNT's words: run with them
    assert harness.NEEDS["gateformer", "temporal_block", "tnt"] == {"embedding": "tnt_words"}
    assert not any(slot in ("temporal_mixer", "stack") for slot, _ in cases)   # the accuracy part's rows
    for slot in ("variate_mixer", "temporal_reducer", "embedding"):
        listed = {name for s, name in cases if s == slot}
        assert listed == set(available(slot, gateformer)) - {gateformer.get_params()[slot]}
    assert harness.part_kind("gateformer", "temporal_reducer", "ltm") == "reducer"
    assert harness.part_kind("gateformer", "temporal_reducer", "qpool_stage") == "stage"


def test_the_long_context_case_needs_the_steps_one_period_back():
    import numpy as np

    harness = load_harness()
    cases = harness.long_cases(["gtrxl", "gateformer"])
    assert cases[:3] == [("last_value", "", "last_value"), ("seasonal_naive", "", "seasonal_naive"),
                         ("linear", "", "linear")]
    assert ("gtrxl", "gating", "highway") in cases and ("gtrxl", "gating", "gru") not in cases   # gru: the default
    assert {slot for model, slot, _ in cases if model == "gateformer"} == {"temporal_mixer"}
    frame = harness.long_context_frame(0)
    fit, test = harness.long_context_split(frame)
    assert len(fit) + len(test) - harness.LONG_LOOKBACK == len(frame) == harness.LONG_STEPS
    y, period, horizon = frame["y"].to_numpy(), harness.LONG_PERIOD, harness.LONG_HORIZON
    # a forecast from one period back beats the last value by far, and needs more than a 96-step window
    seasonal = np.mean([(y[t:t + horizon] - y[t - period:t - period + horizon]) ** 2 for t in range(480, 5000, 7)])
    last = np.mean([(y[t:t + horizon] - y[t - 1]) ** 2 for t in range(480, 5000, 7)])
    assert seasonal < 0.5 * last and period > 96 and harness.LONG_LOOKBACK >= 2 * period


def test_a_part_the_network_lacks_is_reported_not_built_and_gtrxls_own_stacks_are_not():
    """PV-Client's step fusion without known-future inputs is not built (its row would repeat the defaults);
    GTrXL's looped stack shares one layer's weights itself, holding no registry LoopedTransformer, and is built."""
    from tsformers.models.gtrxl import GTrXL
    from tsformers.models.pvclient import PVClient

    bb = load_harness()
    plain = PVClient(lookback=24, horizon=6, n_vars=2, n_heads=2, d_ff=8, e_layers=1, n_targets=1,
                     step_fusion="cross_gating")
    assert bb.not_built("pvclient", "step_fusion", "fusion", "cross_gating", plain).startswith("not built")
    fused = PVClient(lookback=24, horizon=6, n_vars=3, n_heads=2, d_ff=8, e_layers=1, n_targets=1, n_known_future=1,
                     step_fusion="cross_gating")
    assert bb.not_built("pvclient", "step_fusion", "fusion", "cross_gating", fused) is None
    looped = GTrXL(lookback=16, horizon=4, n_vars=2, d_model=8, n_heads=2, d_ff=8, n_layers=2, segment_len=8,
                   mem_len=8, stack="looped")
    assert bb.not_built("gtrxl", "stack", "stack", "looped", looped) is None
    assert looped.layers[0] is looped.layers[1]                              # one layer's weights at each layer


def test_results_are_appended_and_an_older_layout_keeps_its_rows(tmp_path):
    """Every benchmark's rows go through ``_protocol.append_rows``: new rows are appended under the header; a file
    with other columns (written before a column was added) keeps its rows and extra columns, the new columns
    empty; a file holding only a header gains rows under the current columns; nothing temporary is left."""
    import csv

    protocol = load_protocol()

    def read(path):
        with open(path, newline="") as fh:
            header = next(csv.reader(fh))
            fh.seek(0)
            return header, list(csv.DictReader(fh))

    path = tmp_path / "results.csv"
    protocol.append_rows(path, [{"a": 1, "b": 0.123456789}], ["a", "b"])
    protocol.append_rows(path, [{"a": 2, "b": 2.0}], ["a", "b"])
    assert read(path) == (["a", "b"], [{"a": "1", "b": "0.123457"}, {"a": "2", "b": "2"}])

    protocol.append_rows(path, [{"a": 3, "b": 3.0, "c": "new"}], ["a", "c", "b"])
    header, rows = read(path)
    assert header == ["a", "c", "b"]
    assert rows == [{"a": "1", "c": "", "b": "0.123457"}, {"a": "2", "c": "", "b": "2"},
                    {"a": "3", "c": "new", "b": "3"}]

    older = tmp_path / "older.csv"
    older.write_text("a,gone\n1,kept\n")
    protocol.append_rows(older, [{"a": 2, "b": 5.0}], ["a", "b"])
    assert read(older) == (["a", "b", "gone"], [{"a": "1", "b": "", "gone": "kept"}, {"a": "2", "b": "5", "gone": ""}])

    header_only = tmp_path / "header_only.csv"
    header_only.write_text("a\n")
    protocol.append_rows(header_only, [{"a": 1, "b": 1.0}], ["a", "b"])
    assert read(header_only) == (["a", "b"], [{"a": "1", "b": "1"}])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["header_only.csv", "older.csv", "results.csv"]


def test_the_speed_workers_flop_count_is_one_training_step_forward_and_backward(tmp_path):
    import numpy as np
    import pandas as pd
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    worker = load_benchmark("_speed_worker.py", "speed_worker_under_test")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.standard_normal((400, 7)), columns=[f"v{i}" for i in range(7)])
    frame.insert(0, "date", pd.date_range("2020-01-01", periods=400, freq="h").astype(str))
    frame.to_csv(tmp_path / "ett.csv", index=False)
    spec = {"csv": str(tmp_path / "ett.csv"), "train_end": 400, "library": "tsformers", "batch": 32,
            "steps_short": 2, "steps_long": 3, "hp": {"d_model": 8, "d_ff": 8, "e_layers": 1, "n_heads": 1}}
    result = worker.task_train(spec)

    # the reference: the same network, in training mode, forward and backward on one batch of 32 windows
    wide, _ = worker.ett_train(spec)
    net = worker.ours(spec, 1, 32, time_col="t").set_params(max_epochs=0).fit(wide).network_.train()
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.mse_loss(net(torch.randn(32, 96, 7)), torch.randn(32, 96, 7)).backward()
    assert result["mflop_per_window"] * 1e6 * 32 == counter.get_total_flops() > 0
    assert result["gflop_per_s"] == pytest.approx(result["mflop_per_window"] * result["windows_per_s"] / 1e3)


def test_a_validation_only_run_records_the_best_validation_loss_and_never_reads_the_test_rows():
    import math

    from tsformers.datasets import make_demo

    long_horizon = load_benchmark("long_horizon.py", "long_horizon_under_test")
    ProtocolData = load_protocol().ProtocolData

    class Unreadable:
        def __getattr__(self, name):
            raise AssertionError(f"a validation-only run read the test rows ({name})")

        def __len__(self):
            raise AssertionError("a validation-only run read the test rows (len)")

    fit_frame = make_demo(n_steps=500)
    data = ProtocolData(name="illness", fit_frame=fit_frame, test_frame=Unreadable(), val_steps=150, bounds={},
                        n_rows=len(fit_frame))
    settings = dict(d_model=16, d_ff=16, batch_size=64)
    row = long_horizon.run_one("gateformer", data, 24, 0, 2, settings, validation_only=True)
    assert "mse" not in row and "coverage_80" not in row
    reference = long_horizon.gateformer("illness", 24).set_params(**settings, random_state=0, val_size=150,
                                                                     max_epochs=2, verbose=False).fit(fit_frame)
    best = min(r["val_loss"] for r in reference.training_log_)
    assert math.isfinite(row["val_loss"]) and row["val_loss"] == best and row["epochs_run"] == 2
    # the protocol's validation MSE of a fitted forecaster is the validation loss the training loop measured
    assert long_horizon.validation_mse(reference, data) == pytest.approx(best, rel=1e-5)

    # A fit that keeps its linear map alone records the map's validation loss, not the dropped network's:
    # on the demo data no epoch of the correction beats the map (the row's best epoch is 0)
    based = dict(settings, linear_base=True)
    row = long_horizon.run_one("gateformer", data, 24, 0, 2, based, validation_only=True)
    kept = long_horizon.gateformer("illness", 24).set_params(**based, random_state=0, val_size=150, max_epochs=2,
                                                            verbose=False).fit(fit_frame)
    assert not kept.network_used_ and row["best_epoch"] == 0
    assert row["val_loss"] == long_horizon.validation_mse(kept, data)
    assert row["val_loss"] < min(r["val_loss"] for r in kept.training_log_)


def test_the_side_by_side_runs_each_neuralforecast_model_with_its_reference_scripts_settings():
    side = load_benchmark("side_by_side.py", "side_by_side_benchmark")
    # Time-Series-Library's PatchTST scripts: ETTh2 3 layers and 4 heads at every horizon in batches of 32
    # (run.py's default); weather trains 3 epochs; an unlisted cell is refused, never guessed
    etth2 = side.nf_hparams("patchtst", "ETTh2", 336)
    assert (etth2["e_layers"], etth2["n_heads"], etth2["batch_size"], etth2["max_epochs"]) == (3, 4, 32, 10)
    assert side.nf_hparams("patchtst", "weather", 192)["n_heads"] == 16
    assert {side.nf_hparams("patchtst", "weather", h)["max_epochs"] for h in (96, 192, 336, 720)} == {3}
    assert side.nf_hparams("patchtst", "ETTm2", 96)["n_heads"] == 16
    # the iTransformer weather script: 3 layers of width 512 and its usual 10 epochs
    weather = side.nf_hparams("itransformer", "weather", 96)
    assert (weather["e_layers"], weather["d_model"], weather["d_ff"], weather["max_epochs"]) == (3, 512, 512, 10)
    with pytest.raises(SystemExit, match="no reference-script hyperparameters for electricity"):
        side.nf_hparams("patchtst", "electricity", 96)
    # PatchTST at its authors' sizes (yuqinie98/PatchTST scripts): tiny on ETTh, d_model 128 on ETTm and weather,
    # batches of 128, their type3 schedule; no Exchange script
    etth1 = side.nf_hparams("patchtst-authors", "ETTh1", 96)
    assert (etth1["e_layers"], etth1["n_heads"], etth1["d_model"], etth1["d_ff"], etth1["dropout"]) == (3, 4, 16, 128, 0.3)
    assert (etth1["batch_size"], etth1["schedule"], etth1["max_epochs"], etth1["patience"]) == (128, "type3", 10, 3)
    weather = side.nf_hparams("patchtst-authors", "weather", 720)
    assert (weather["n_heads"], weather["d_model"], weather["d_ff"], weather["dropout"]) == (16, 128, 256, 0.2)
    with pytest.raises(SystemExit, match="patchtst-authors: no reference-script hyperparameters for exchange"):
        side.nf_hparams("patchtst-authors", "exchange", 96)


def test_the_patchtst_scripts_type3_schedule_keeps_the_rate_four_epochs_then_takes_a_tenth_off_per_epoch():
    """PatchTST's ``adjust_learning_rate(type3)`` after 1-based epoch e sets lr * 0.9 ** (e - 3) for e >= 3
    (lr otherwise) as the rate of epoch e + 1: epochs 1 to 4 at lr, epoch 5 at 0.9 lr, epoch 6 at 0.81 lr."""
    worker = load_benchmark("_nf_worker.py", "nf_worker_schedule")
    factor = worker.Type3(steps_per_epoch=10)
    by_epoch = [factor(10 * e) for e in range(6)]   # 0-based epochs' first steps
    assert by_epoch == pytest.approx([1.0, 1.0, 1.0, 1.0, 0.9, 0.81])
    assert factor(39) == 1.0 and factor(40) == pytest.approx(0.9)   # the rate changes at the epoch's boundary
    assert worker.schedule({}, 10, 7) == {"num_lr_decays": 7}        # TSLib's halving, the default
    with pytest.raises(ValueError, match="unknown schedule 'cosine'"):
        worker.schedule({"schedule": "cosine"}, 10, 7)


def test_gateformers_one_default_network_differs_from_the_paper_network_on_ettm_at_h96_only_in_its_patches():
    """On ETTm1 and ETTm2 at H = 96 the defaults' network is the paper's but for its patches (16 steps, not 8); the
    paper rows run it alone with the paper's recipe (batches of 8 at 5e-4, patience 3), the defaults behind the
    linear base with their own, take the daily cycle out (cycle="auto"; the paper rows do not) and fit a seed
    ensemble of two (the paper rows one network). Both drop the attention weights at dropout (attention_dropout=None)."""
    long_horizon = load_benchmark("long_horizon.py", "long_horizon_defaults")
    recipe = {"batch_size", "learning_rate", "patience", "patch_len", "stride"}
    for dataset in ("ETTm1", "ETTm2"):
        paper, defaults = long_horizon.gateformer(dataset, 96), long_horizon.gateformer_defaults(dataset, 96)
        assert (paper.linear_base, defaults.linear_base) == (False, True)
        paper_params, default_params = paper.get_params(), defaults.set_params(linear_base=False).get_params()
        assert {k for k in paper_params if paper_params[k] != default_params[k]} == recipe | {"cycle", "ensemble_size"}
        assert (paper_params["cycle"], default_params["cycle"]) == (None, "auto")
        assert (paper_params["ensemble_size"], default_params["ensemble_size"]) == (1, 2)
        assert [paper_params[k] for k in sorted(recipe)] == [8, 5e-4, 8, 3, 8]
        assert [default_params[k] for k in sorted(recipe)] == [32, 1e-3, 16, 2, 16]
        assert paper_params["attention_dropout"] is default_params["attention_dropout"] is None
    assert long_horizon.gateformer("ETTh2", 96).get_params()["d_model"] == 128
    assert long_horizon.gateformer_defaults("ETTh2", 96).get_params()["d_model"] == 64
    assert long_horizon.gateformer("illness", 24).linear_base is False   # the paper's network where it has no table


def tiny_protocol_data():
    """The protocol's cut of 700 demo rows: 350 to train, 150 to validate, 200 to test (lookback 96)."""
    from tsformers.datasets import make_demo

    ProtocolData = load_protocol().ProtocolData
    frame = make_demo(n_steps=700)
    return ProtocolData(name="illness", fit_frame=frame.iloc[:500].reset_index(drop=True),
                        test_frame=frame.iloc[500 - 96:].reset_index(drop=True), val_steps=150,
                        bounds={"train": (0, 350), "val": (350, 500), "test": (500, 700)}, n_rows=700)


def test_side_by_side_settings_reach_our_estimator_and_label_its_rows():
    """``side_by_side.py --set linear_base=false``: the row is Gateformer's defaults without the linear base,
    labelled ``gateformer-defaults``; the defaults themselves (with it) are labelled ``gateformer-defaults+base``
    whatever the default was when they ran, so the two never stand in for each other; the row records the
    validation MSE of the forecast the fit kept."""
    side = load_benchmark("side_by_side.py", "side_by_side_settings")
    data = tiny_protocol_data()
    tiny = {"d_model": 16, "d_ff": 16, "batch_size": 64}
    plain = side.ours("gateformer-defaults", data, 24, 0, 1, None, dict(tiny, linear_base=False))
    based = side.ours("gateformer-defaults", data, 24, 0, 1, None, tiny)
    assert (plain["model"], based["model"]) == ("gateformer-defaults", "gateformer-defaults+base")
    # the processor of the run: our fits are the same to the bit on one processor only
    assert based["cpu"] == side.cpu_name() != "" and set(side.FIELDS) >= {"cpu", "val_loss"}
    assert json.loads(based["params"])["linear_base"] is True and json.loads(plain["params"])["d_model"] == 16
    kept = side.MODELS["gateformer-defaults"]("illness", 24).set_params(
        **tiny, random_state=0, val_size=150, max_epochs=1, verbose=False).fit(data.fit_frame)
    long_horizon = sys.modules["long_horizon"]
    assert based["val_loss"] == pytest.approx(long_horizon.validation_mse(kept, data), rel=1e-6)
    assert based["mse"] == pytest.approx(
        long_horizon.evaluate_windows(kept, data.test_frame)["mse"], rel=1e-6)


def test_side_by_sides_cpu_seconds_are_the_fit_and_the_test_windows_only(monkeypatch):
    """neuralforecast's CPU seconds are those of its one ``cross_validation`` call (fit and test windows): ours cover
    the same spans, without the grid's intervals recalibrated over the test rows, which the side by side does not
    report (they once took half of our CPU seconds on ETTm1)."""
    import time

    side = load_benchmark("side_by_side.py", "side_by_side_cpu")
    long_horizon = sys.modules["long_horizon"]
    data = tiny_protocol_data()
    tiny = {"d_model": 16, "d_ff": 16, "batch_size": 64}
    recalibrations = []
    real = long_horizon.recalibrated_intervals
    monkeypatch.setattr(long_horizon, "recalibrated_intervals",
                        lambda *a, **k: recalibrations.append(1) or real(*a, **k))
    grid_row = long_horizon.run_one("gateformer-defaults", data, 24, 0, 1, tiny)
    assert recalibrations == [1] and grid_row["recal_s"] > 0, "the grid's rows recalibrate"
    assert 0 < grid_row["fit_cpu_s"] and 0 < grid_row["eval_cpu_s"]
    c0 = time.process_time()
    row = side.ours("gateformer-defaults", data, 24, 0, 1, None, tiny)
    whole = time.process_time() - c0
    assert recalibrations == [1], "the side by side does not recalibrate"
    assert 0 < row["fit_test_cpu_s"] < whole   # building the model and scoring the validation windows are outside
    assert row["mse"] == grid_row["mse"]


def test_set_refuses_trainer_kwargs_which_the_harness_replaces_and_does_not_record():
    # a run with --set trainer_kwargs={"limit_train_batches": ...} once ran the plain defaults, recorded as them
    import argparse

    long_horizon = load_benchmark("long_horizon.py", "long_horizon_set")
    assert long_horizon.parse_setting("val_every_windows=10000") == ("val_every_windows", 10000)
    with pytest.raises(argparse.ArgumentTypeError, match="trainer_kwargs.*estimator parameter instead"):
        long_horizon.parse_setting('trainer_kwargs={"limit_train_batches": 1057}')


def test_the_gpu_check_scores_its_fit_and_finds_a_saved_model_that_forecasts_otherwise(monkeypatch):
    from tsformers import GateformerForecaster
    from tsformers.datasets import make_demo

    gpu_check = load_benchmark("gpu_check.py", "gpu_check_under_test")
    protocol = load_protocol()
    frame = make_demo(n_steps=700)
    data = protocol.ProtocolData(name="illness", fit_frame=frame.iloc[:500], test_frame=frame.iloc[500 - 96:],
                                 val_steps=150, bounds={}, n_rows=len(frame))
    settings = dict(accelerator="cpu", seed=0, max_epochs=1, limit_batches=2)
    rows = {precision: gpu_check.check_precision(data, 24, precision, **settings)
            for precision in ("32-true", "bf16-mixed")}
    for row in rows.values():
        assert row["on_cpu"] and row["identical"] and row["max_abs_diff"] == 0.0
        assert row["n_windows"] == 200 + 96 - 96 - 24 + 1   # every stride-1 window of the 200 test rows

    # the row scores what the script fitted: the same fit, scored by the protocol itself
    reference = gpu_check.fit_defaults(data, 24, "32-true", **settings)
    assert rows["32-true"]["mse"] == protocol.evaluate_windows(reference, data.test_frame)["mse"]

    # a saved model whose forecasts are not the fitted one's is caught (one fitted on fewer rows: after two batches
    # the linear base keeps the map alone, which another seed would not change)
    other = gpu_check.fit_defaults(protocol.ProtocolData(**{**vars(data), "fit_frame": frame.iloc[:450]}), 24,
                                   "32-true", **settings)
    monkeypatch.setattr(GateformerForecaster, "load", classmethod(lambda cls, path, engine="torch": other))
    row = gpu_check.check_precision(data, 24, "32-true", **settings)
    assert not row["identical"] and row["max_abs_diff"] > 0



def test_a_neuralforecast_runs_digest_changes_with_its_code_and_inputs_and_not_with_where_the_data_lies(tmp_path):
    nfenv = load_benchmark("_nfenv.py", "nfenv_benchmark")
    # a worker folder of its own: the worker, a helper it imports, and a module of the folder it does not import
    folder = tmp_path / "bench"
    folder.mkdir()
    worker = folder / "_nf_worker.py"
    worker.write_text("import json\nfrom _worker_io import emit\n")
    (folder / "_worker_io.py").write_text("import json\nimport _helpers\n")
    (folder / "_helpers.py").write_text("X = 1\n")
    (folder / "unrelated.py").write_text("Y = 1\n")
    assert [p.name for p in nfenv.local_modules(worker)] == ["_helpers.py", "_nf_worker.py", "_worker_io.py"]
    data = tmp_path / "ETTh1.csv"
    data.write_text("date,OT\n0,1.0\n")
    spec = dict(task="accuracy", csv=str(data), hp={"d_model": 128}, seed=0, threads=1)
    digest = nfenv.run_digest(spec, worker)
    assert digest == nfenv.run_digest(dict(spec), worker)
    # the same file elsewhere, and a module the worker does not import, leave it
    moved = tmp_path / "elsewhere.csv"
    moved.write_bytes(data.read_bytes())
    assert nfenv.run_digest({**spec, "csv": str(moved)}, worker) == digest
    (folder / "unrelated.py").write_text("Y = 2\n")
    assert nfenv.run_digest(spec, worker) == digest
    # a setting, the seed, the data's content, a module imported through another, or a pinned version moves it
    changed = [nfenv.run_digest({**spec, "hp": {"d_model": 256}}, worker),
               nfenv.run_digest({**spec, "seed": 1}, worker), nfenv.run_digest(spec, worker, nf_version="9.9.9")]
    data.write_text("date,OT\n0,1.5\n")
    changed.append(nfenv.run_digest(spec, worker))
    data.write_text("date,OT\n0,1.0\n")
    (folder / "_helpers.py").write_text("X = 2\n")
    changed.append(nfenv.run_digest(spec, worker))
    assert digest not in changed and len(set(changed)) == len(changed)
    # the real worker's modules: what runs in the neuralforecast environment, nothing of ours
    assert [p.name for p in nfenv.local_modules(BENCHMARKS / "_nf_worker.py")] == ["_nf_worker.py", "_worker_io.py"]


def test_a_neuralforecast_row_records_the_digest_of_the_spec_its_worker_got(monkeypatch, tmp_path):
    side = load_benchmark("side_by_side.py", "side_by_side_digest")
    data = tiny_protocol_data()
    csv_path = tmp_path / "demo.csv"
    data.fit_frame.to_csv(csv_path, index=False)
    handed = []
    result = dict(mse=0.5, mae=0.5, n_windows=1, epochs_run=1, fit_test_s=1.0, fit_test_cpu_s=1.0, n_params=1,
                  peak_rss_mib=1.0, load_start=0.0, load_end=0.0, n_threads=1, torch_version="2.13.0",
                  nf_version="3.3.0")
    monkeypatch.setattr(side, "run_worker", lambda python, worker, spec, log=None: handed.append(spec) or result)
    monkeypatch.setattr(side, "nf_hparams", lambda model, dataset, horizon: {"d_model": 8})
    columns = [c for c in data.fit_frame.columns if c != "t"]
    stats = (columns, [0.0] * len(columns), [1.0] * len(columns))
    row = side.nf("itransformer", data, 24, 0, None, stats, str(csv_path), None)
    assert row["run_digest"] == side.run_digest(handed[0]) and "run_digest" in side.FIELDS
    other = side.nf("itransformer", data, 24, 1, None, stats, str(csv_path), None)
    assert other["run_digest"] != row["run_digest"]  # another seed, another run


def test_interval_scale_scores_coverage_width_and_the_winkler_score_of_each_rule():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        interval_scale = importlib.import_module("interval_scale")
    finally:
        sys.path.remove(str(BENCHMARKS))
    import numpy as np

    rng = np.random.default_rng(0)
    spread = np.where(np.arange(400) % 2 == 0, 0.2, 2.0)[:, None]          # calm and stormy windows, one target
    err = rng.standard_normal((400, 3, 1)) * spread[:, None, :]             # errors in proportion to the spread
    ones = np.ones_like(spread)
    by_series = interval_scale.scores(err[:200], ones[:200], err[200:], ones[200:], 80)
    by_window = interval_scale.scores(err[:200], spread[:200], err[200:], spread[200:], 80)
    # errors proportional to the spread: scaled by it they are exchangeable, so each kind of window is covered
    calm = interval_scale.scores(err[:200], spread[:200], err[200::2], spread[200::2], 80)
    stormy = interval_scale.scores(err[:200], spread[:200], err[201::2], spread[201::2], 80)
    assert abs(calm["coverage"] - 0.8) < 0.08 and abs(stormy["coverage"] - 0.8) < 0.08, (calm, stormy)
    assert by_window["interval_score"] < by_series["interval_score"]
    # all inside: the score is the width; the radius is the calibration errors' conformal quantile
    inside = interval_scale.scores(np.full((9, 1, 1), 1.0), np.ones((9, 1)), np.zeros((4, 1, 1)), np.ones((4, 1)), 80)
    assert inside == {"coverage": 1.0, "width": 2.0, "interval_score": 2.0}
    assert interval_scale.RULES["half-way"](np.array([[4.0, 0.0]])).tolist() == [[2.0, np.sqrt(0.05)]]
