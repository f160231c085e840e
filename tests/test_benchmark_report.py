"""benchmarks/report.py: the seed spread and the other-estimator rows come out of the results CSV correctly."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_report(results: Path):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location("benchmark_report", BENCHMARKS / "report.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    module.RESULTS = results
    return module


def _row(model, dataset, horizon, seed, mse, mae, stamp="2026-01-01T00:00:00+00:00", naive=(1.0, 1.0)):
    return dict(timestamp=stamp, dataset=dataset, horizon=horizon, lookback=96, model=model, seed=seed, mse=mse,
                mae=mae, naive_mse=naive[0], naive_mae=naive[1],
                epochs_run=5, best_epoch=2, total_s=100.0 + seed, load_start=1.0, n_params=1000,
                git_rev="abc")


def test_seed_spread_is_the_sample_std_and_the_average_row_needs_every_horizon(tmp_path):
    rng = np.random.default_rng(0)
    mse = rng.uniform(0.3, 0.5, size=(4, 3))  # horizon x seed
    rows = [_row("gateformer", "ETTh1", h, s, mse[i, s], mse[i, s] + 0.05)
            for i, h in enumerate([96, 192, 336, 720]) for s in range(3)]
    # ETTh2 has three seeds at 96 only: its cells show, but no average
    rows += [_row("gateformer", "ETTh2", 96, s, 0.3 + 0.01 * s, 0.35) for s in range(3)]
    # an earlier run of the same cell and seed is superseded by the later one
    rows.append(_row("gateformer", "ETTh1", 96, 0, 9.9, 9.9, stamp="2025-01-01T00:00:00+00:00"))
    # one seed only: not a spread
    rows.append(_row("gateformer", "ETTm1", 96, 0, 0.33, 0.36))
    pd.DataFrame(rows).to_csv(tmp_path / "long_horizon.csv", index=False)
    report = load_report(tmp_path)

    text = "\n".join(report.seeds_section())
    line96 = next(line for line in text.splitlines() if line.startswith("| ETTh1 | 96 |"))
    expected = f"{mse[0].mean():.3f} ± {mse[0].std(ddof=1):.3f}"
    assert expected in line96
    assert "9.9" not in text
    per_seed_avg = mse.mean(axis=0)
    avg_line = next(line for line in text.splitlines() if line.startswith("| ETTh1 | avg |"))
    assert f"| {per_seed_avg.mean():.3f} ± {per_seed_avg.std(ddof=1):.3f} |" in avg_line
    assert "| ETTh2 | 96 |" in text and "| ETTh2 | avg |" not in text
    assert "ETTm1" not in text


def test_other_estimators_are_listed_next_to_the_gateformer_cell(tmp_path):
    rows = [_row("gateformer", "ETTh1", 96, 0, 0.389, 0.402), _row("lmuformer", "ETTh1", 96, 0, 0.407, 0.430),
            _row("atlas", "ETTh1", 96, 0, 0.395, 0.410), _row("gtrxl", "ETTh1", 96, 1, 0.1, 0.1)]
    pd.DataFrame(rows).to_csv(tmp_path / "long_horizon.csv", index=False)
    lines = load_report(tmp_path).other_models_section()
    body = [line for line in lines if line.startswith("| ETTh1 |")]
    # seed 0 only, sorted by MSE, each with the Gateformer cell for reference
    assert [line.split(" | ")[2] for line in body] == ["ATLAS (values)", "LMUFormer (values)"]
    assert all(line.strip("|").split("|")[-2].strip() == "**0.389** / **0.402**" for line in body)


def _grid_line(lines, dataset, horizon):
    return next(line for line in lines if line.startswith(f"| {dataset} | {horizon} |"))


def test_the_grid_shows_the_last_value_bolds_the_best_of_the_row_and_marks_our_losses(tmp_path):
    rows = [_row("gateformer", "exchange", 192, 0, 0.172, 0.298, naive=(0.167, 0.289)),   # loses on both
            _row("gateformer", "exchange", 96, 0, 0.0801, 0.1984, naive=(0.0811, 0.1964)),  # loses on MAE only
            _row("gateformer", "ETTh2", 96, 0, 0.312, 0.356, naive=(0.432, 0.422))]        # a published peer wins
    pd.DataFrame(rows).to_csv(tmp_path / "long_horizon.csv", index=False)
    lines = load_report(tmp_path).grid_section()
    cells = [c.strip() for c in _grid_line(lines, "exchange", 192).strip("|").split("|")]
    assert cells[2] == "0.172 ▼ / 0.298 ▼", "our loss to the last value is marked, never bold"
    assert cells[3] == "-3.0%", "skill over the last value, negative when it is better"
    assert cells[7] == "**0.167** / **0.289**", "the last value owns the best cell"
    cells = [c.strip() for c in _grid_line(lines, "exchange", 96).strip("|").split("|")]
    assert cells[2] == "**0.080** / 0.198 ▼" and cells[7] == "0.081 / **0.196**"
    cells = [c.strip() for c in _grid_line(lines, "ETTh2", 96).strip("|").split("|")]
    assert cells[2] == "0.312 / 0.356", "ours is not bold when a published peer is better (iTransformer 0.297)"
    assert "**0.297**" in cells[11] and "▼" not in cells[2]


def test_the_other_estimators_show_their_skill_and_losses_to_the_last_value(tmp_path):
    rows = [_row("gateformer", "ETTh2", 96, 0, 0.312, 0.356, naive=(0.432, 0.422)),
            {**_row("lmuformer", "ETTh2", 96, 0, 0.447, 0.440, naive=(0.432, 0.422)),
             "params": '{"normalize": "last_value"}'}]
    pd.DataFrame(rows).to_csv(tmp_path / "long_horizon.csv", index=False)
    line = _grid_line(load_report(tmp_path).other_models_section(), "ETTh2", 96)
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[2] == "LMUFormer (changes)" and cells[3] == "1" and cells[5] == "0.447 ▼" and cells[6] == "0.440 ▼"
    assert cells[7] == f"{1 - 0.447 / 0.432:+.1%}" and cells[-1] == "0.432 / 0.422"


def test_the_pv_table_shows_the_regression_and_marks_networks_that_lose_to_a_baseline(tmp_path):
    def pv_row(model, seed, nmae, lead="all", variant="actual weather"):
        return dict(dataset="pv_golden", variant=variant, model=model, seed=seed, lead_hours=lead, mse=nmae / 10,
                    mae=nmae / 20, nmae_pct=nmae, nrmse_pct=2 * nmae, n_windows=10, epochs=None, cpu_seconds=1.0)

    rows = [pv_row("pvclient", s, v) for s, v in enumerate([6.9, 7.0, 7.1])]
    rows += [pv_row("gbm", None, 4.25), pv_row("persistence", None, 8.5), pv_row("persistence", None, 1.0, lead=1)]
    rows += [pv_row("pvclient", s, v, variant="yesterday weather") for s, v in enumerate([6.0, 6.2, 6.4])]
    rows += [pv_row("gbm", None, 6.9, variant="yesterday weather")]
    pd.DataFrame(rows).to_csv(tmp_path / "pv.csv", index=False)
    lines = load_report(tmp_path).pv_section()
    split = lines.index("### pv_golden, yesterday weather")
    actual, yesterday = lines[:split], lines[split:]
    assert "### pv_golden, actual weather" in actual and any("upper bound" in line for line in actual)
    ours = next(line for line in actual if line.startswith("| PV-Client (ours)"))
    gbm = next(line for line in actual if line.startswith("| gradient-boosted regression"))
    persistence = next(line for line in actual if line.startswith("| persistence"))
    assert "| 3 | 7.00 ± 0.10 ▼ |" in ours, "the mean of the seeds and their spread, marked as a loss"
    assert "| 1 | **4.25** |" in gbm
    assert "| 1 | 8.50 |" in persistence, "only the all-lead-times rows count"
    ours = next(line for line in yesterday if line.startswith("| PV-Client (ours)"))
    assert "| 3 | **6.20** ± 0.20 |" in ours, "a win over the regression of its own setting is not marked"


def test_the_grid_marks_a_loss_to_the_linear_baseline_and_bolds_it(tmp_path):
    pd.DataFrame([_row("gateformer", "ETTh1", 96, 0, 0.3896, 0.4017, naive=(1.294, 0.713))]).to_csv(
        tmp_path / "long_horizon.csv", index=False)
    base = [dict(timestamp="2026-01-01T00:00:00+00:00", dataset="ETTh1", horizon=96, lookback=96, model=m, mse=v[0],
                 mae=v[1], n_windows=2785, setting="", cpu_s=0.1, git_rev="abc")
            for m, v in [("last_value", (1.294, 0.713)), ("seasonal_naive", (0.512, 0.433)), ("linear", (0.383, 0.392))]]
    pd.DataFrame(base).to_csv(tmp_path / "baselines.csv", index=False)
    report = load_report(tmp_path)
    cells = [c.strip() for c in _grid_line(report.grid_section(), "ETTh1", 96).strip("|").split("|")]
    assert cells[2] == "0.390 ▼ / 0.402 ▼", "beaten by the closed-form linear map"
    assert cells[3] == f"{1 - 0.3896 / 1.294:+.1%}"
    assert cells[7:10] == ["1.294 / 0.713", "0.512 / 0.433", "**0.383** / **0.392**"], "the linear map owns the row"
    assert cells[10] == "–", "no linear + cycle row recorded"
    assert cells[14].startswith("0.384 / "), "published TimesNet (0.384) is not bold next to 0.383"
    sbs = [dict(timestamp="2026-01-01T00:00:00+00:00", dataset="ETTh1", horizon=96, library="tsformers",
                model="gateformer", seed=0, mse=0.3896, mae=0.4017, n_windows=2785, epochs_run=6, fit_test_s=95.0,
                fit_test_cpu_s=67.0, n_params=133344, peak_rss_mib=500.0, load_start=1.0, load_end=1.0)]
    pd.DataFrame(sbs).to_csv(tmp_path / "side_by_side.csv", index=False)
    lines = report.side_by_side_section()
    ours = next(line for line in lines if "| tsformers |" in line)
    linear = next(line for line in lines if "| baseline | linear |" in line)
    assert "| 0.3896 ▼ | 0.4017 ▼ |" in ours and "| **0.3830** | **0.3920** |" in linear


def test_the_ili_table_shows_seed_means_mase_and_marks_losses_to_the_seasonal_naive(tmp_path):
    runs = [dict(_row("gateformer", "illness", 24, seed, mse, mae), lookback=36, mase=mase, coverage_80=cover,
                 coverage_95=0.9)
            for seed, (mse, mae, mase, cover) in enumerate([(2.7, 1.02, 7.7, 0.70), (2.9, 1.04, 7.9, 0.80)])]
    pd.DataFrame(runs).to_csv(tmp_path / "long_horizon.csv", index=False)
    base = [dict(timestamp="2026-01-01T00:00:00+00:00", dataset="illness", horizon=24, lookback=36, model=m, mse=v[0],
                 mae=v[1], mase=v[2], n_windows=170, setting="", cpu_s=0.1, git_rev="abc")
            for m, v in [("last_value", (6.2, 1.62, 12.1)), ("seasonal_naive", (2.56, 1.00, 7.9)),
                         ("linear", (2.57, 1.03, 7.76))]]
    pd.DataFrame(base).to_csv(tmp_path / "baselines.csv", index=False)
    lines = load_report(tmp_path).small_data_section()
    ours = next(line for line in lines if "| Gateformer |" in line)
    cells = [c.strip() for c in ours.strip("|").split("|")]
    assert cells[2] == "2", "two seeds"
    assert cells[3] == f"2.800 ± {np.std([2.7, 2.9], ddof=1):.3f} ▼", "the seed mean loses to the seasonal naive"
    assert cells[5] == f"7.800 ± {np.std([7.7, 7.9], ddof=1):.3f} ▼", "beats the seasonal naive's MASE, not linear's"
    assert cells[6] == "75.0% / 90.0%", "the seeds' mean coverage of the 80% and 95% intervals"
    seasonal = next(line for line in lines if "| seasonal naive |" in line)
    assert "| **2.560** | **1.000** |" in seasonal
    assert "| **7.760** |" in next(line for line in lines if "| linear |" in line)


def _ili_baselines(tmp_path):
    """The seasonal naive (2.56) and the linear baseline (2.57) at ILI's H = 24, MAE 1.0 and MASE 7.9 both."""
    base = [dict(timestamp="2026-01-01T00:00:00+00:00", dataset="illness", horizon=24, lookback=36, model=m, mse=v,
                 mae=1.0, mase=7.9, n_windows=170, setting="", cpu_s=0.1, git_rev="abc")
            for m, v in [("seasonal_naive", 2.56), ("linear", 2.57)]]
    pd.DataFrame(base).to_csv(tmp_path / "baselines.csv", index=False)


def test_the_ili_table_says_in_how_many_seeds_the_linear_base_kept_the_network(tmp_path):
    runs = [dict(_row("lmuformer", "illness", 24, seed, 2.5, 1.0), lookback=36, mase=7.5, best_epoch=best,
                 params='{"linear_base": true, "normalize": "last_value"}')
            for seed, best in enumerate([4, 0, 9])]
    pd.DataFrame(runs).to_csv(tmp_path / "long_horizon.csv", index=False)
    _ili_baselines(tmp_path)
    lines = load_report(tmp_path).small_data_section()
    assert any("| LMUFormer (linear base: network kept in 2 of 3) | 3 | **2.500 ± 0.000** |" in line for line in lines)


def test_the_ili_table_shows_gateformers_defaults_with_their_linear_base_and_leaves_out_their_network_alone(tmp_path):
    with_base, alone = '{"linear_base": true, "cycle": "auto"}', '{"linear_base": false, "cycle": "auto"}'
    runs = [dict(_row("gateformer-defaults+base", "illness", 24, seed, mse, 1.0), lookback=36, mase=7.5,
                 best_epoch=best, params=with_base) for seed, (mse, best) in enumerate([(2.4, 3), (2.6, 0)])]
    runs += [dict(_row("gateformer-defaults", "illness", 24, 0, 9.0, 2.0), lookback=36, mase=9.0, params=alone),
             dict(_row("gateformer", "illness", 24, 0, 2.7, 1.0), lookback=36, mase=7.6,
                  params='{"linear_base": false}')]
    pd.DataFrame(runs).to_csv(tmp_path / "long_horizon.csv", index=False)
    _ili_baselines(tmp_path)
    lines = load_report(tmp_path).small_data_section()
    defaults = [line for line in lines if "| Gateformer (defaults" in line]
    assert len(defaults) == 1, "the network alone of Gateformer's defaults is an ablation, not its defaults"
    assert defaults[0].startswith("| 24 | Gateformer (defaults; linear base: network kept in 1 of 2) | 2 | "
                                  f"**2.500 ± {np.std([2.4, 2.6], ddof=1):.3f}** |")
    assert any(line.startswith("| 24 | Gateformer | 1 | 2.700 ▼ |") for line in lines), "the paper's network alone"


def _cold_row(stamp, case, min_s, median_s, torch=(2.0, 2.5), load=(3.0, 4.0)):
    return dict(timestamp=stamp, case=case, command={"import torch": 'python -c "import torch"',
                                                     "forecast onnx": "tsformers forecast --engine onnx"}[case],
                repeats=7, min_s=min_s, median_s=median_s, ratio_min=round(min_s / torch[0], 3),
                ratio_median=round(median_s / torch[1], 3), over_torch_min_s=round(min_s - torch[0], 3),
                load_start=load[0], load_end=load[1], cpus=2, machine="x86_64", python="3.12.0",
                torch_version="2.13.0+cpu", git_rev="abc1234")


def test_the_cold_start_table_shows_the_latest_run_with_its_ratios_and_load(tmp_path):
    rows = [_cold_row("2026-01-01T00:00:00+00:00", "import torch", 9.0, 9.5, torch=(9.0, 9.5)),
            _cold_row("2026-01-01T00:00:00+00:00", "forecast onnx", 4.5, 5.0, torch=(9.0, 9.5)),
            _cold_row("2026-02-01T00:00:00+00:00", "import torch", 2.0, 2.5, load=(1.5, 2.5)),
            _cold_row("2026-02-01T00:00:00+00:00", "forecast onnx", 0.8, 1.0, load=(1.5, 2.5))]
    pd.DataFrame(rows).to_csv(tmp_path / "cold_start.csv", index=False)
    report = load_report(tmp_path)
    text = "\n".join(report.cold_start_section())
    assert "| `tsformers forecast --engine onnx` | 0.80 | 1.00 | 0.40 | 0.40 | -1.20 | -1.50 | under 1 s" in text
    assert '| `python -c "import torch"` | 2.00 | 2.50 | 1.00 | 1.00 | +0.00 | +0.00 |' in text
    assert "4.50" not in text and "9.00" not in text                      # the earlier run is not shown
    assert "load of 1.5 at the start and 2.5 at the end" in text and "each 7 times" in text
    assert "## Cold start of the batch path" in report.render()
    (tmp_path / "cold_start.csv").unlink()
    assert report.cold_start_section() == []


def test_the_coverage_table_averages_the_seeds_and_leaves_out_runs_without_it(tmp_path):
    rows = [dict(_row("gateformer", "ETTh1", 96, seed, 0.39, 0.40), lookback=96, coverage_80=c80, coverage_95=c95,
                 width_80=w, crps=c) for seed, (c80, c95, w, c) in enumerate([(0.78, 0.94, 1.0, 0.30),
                                                                             (0.82, 0.96, 1.2, 0.32)])]
    rows.append(dict(_row("lmuformer", "ETTh1", 96, 0, 0.40, 0.41), lookback=96))   # recorded before coverage
    # a run since the window's scale is a row of its own, not averaged with the series-scaled ones
    rows.append(dict(_row("gateformer", "ETTh1", 96, 0, 0.39, 0.40, stamp="2026-12-08T00:00:00+00:00"), lookback=96,
                     coverage_80=0.81, coverage_95=0.95, width_80=0.9, crps=0.29))
    pd.DataFrame(rows).to_csv(tmp_path / "long_horizon.csv", index=False)
    lines = load_report(tmp_path).coverage_section()
    assert "| ETTh1 | 96 | 96 | Gateformer | series | 2 | 80.0% | 95.0% | 1.100 | 0.310 | 0.400 |" in lines
    assert "| ETTh1 | 96 | 96 | Gateformer | window | 1 | 81.0% | 95.0% | 0.900 | 0.290 | 0.400 |" in lines
    assert not any(line.startswith("| ETTh1") and "LMUFormer" in line for line in lines)


def test_the_interval_scale_table_compares_each_rule_with_the_series_scale_and_counts_where_each_is_lowest(
        tmp_path):
    scores = {("validation", "series"): (0.83, 2.90, 0.945, 4.88),
              ("validation", "window spread"): (0.79, 2.78, 0.935, 5.16),
              ("validation", "half-way"): (0.82, 2.75, 0.942, 4.81), ("test", "series"): (0.89, 2.28, 0.970, 4.10),
              ("test", "window spread"): (0.85, 2.14, 0.973, 4.06), ("test", "half-way"): (0.87, 2.15, 0.972, 3.94)}
    rows = [dict(timestamp="2026-12-07T21:00:00+00:00", dataset="ETTh1", horizon=96, lookback=96, seed=0, split=split,
                 rule=rule, level=level, coverage=v[0 if level == 80 else 2], width=1.0,
                 interval_score=v[1 if level == 80 else 3], n_calibration=10, n_scored=10, fit_cpu_s=1.0,
                 git_rev="abc", cpu="x") for (split, rule), v in scores.items() for level in (80, 95)]
    pd.DataFrame(rows).to_csv(tmp_path / "interval_scale.csv", index=False)
    lines = load_report(tmp_path).interval_scale_section()
    assert "| ETTh1 | validation | half-way | 82.0% | **2.750** | 0.948 | 94.2% | **4.810** | 0.986 |" in lines
    assert "| ETTh1 | test | window spread | 85.0% | **2.140** | 0.939 | 97.3% | 4.060 | 0.990 |" in lines
    assert lines.index("| ETTh1 | validation | series | 83.0% | 2.900 | 1.000 | 94.5% | 4.880 | 1.000 |") < \
        lines.index("| ETTh1 | test | series | 89.0% | 2.280 | 1.000 | 97.0% | 4.100 | 1.000 |"), "the choice first"
    summary = next(line for line in lines if line.startswith("Of the 2 data set and level pairs"))
    assert ("validation: series lowest in 0, window spread lowest in 0, half-way lowest in 2; test: series lowest "
            "in 0, window spread lowest in 1, half-way lowest in 1.") in summary


def test_the_recalibration_table_puts_each_runs_fit_time_and_recalibrated_intervals_side_by_side(tmp_path):
    def run(model, dataset, seed, fixed, recal, stamp="2026-01-01T00:00:00+00:00", rev="abc"):
        return dict(_row(model, dataset, 96, seed, 0.39, 0.40, stamp=stamp), lookback=96, git_rev=rev,
                    params=json.dumps({"linear_base": True}), recal_every=96,
                    **{f"{prefix}{name}": value for prefix, values in (("", fixed), ("recal_", recal))
                       for name, value in zip(("coverage_80", "coverage_95", "width_80", "crps"), values)})
    rows = [run("gateformer", "ETTh1", 0, (0.80, 0.95, 1.6, 0.33), (0.70, 0.90, 1.2, 0.34), rev="old"),  # replaced
            run("gateformer", "ETTh1", 0, (0.89, 0.97, 1.7, 0.32), (0.84, 0.96, 1.4, 0.31),
                stamp="2026-02-01T00:00:00+00:00"),
            run("lmuformer", "ETTh2", 0, (0.78, 0.92, 1.0, 0.27), (0.81, 0.94, 1.1, 0.28)),
            run("gateformer", "illness", 0, (0.50, 0.70, 1.1, 0.9), (0.60, 0.80, 1.5, 0.8))]
    pd.DataFrame(rows).to_csv(tmp_path / "recalibration.csv", index=False)
    lines = load_report(tmp_path).recalibration_section()
    assert "| ETTh1 | 96 | 96 | Gateformer | 0 | 89.0% | 84.0% | 97.0% | 96.0% | 1.700 | 1.400 | 0.320 | 0.310 |" in lines
    assert "| ETTh2 | 96 | 96 | LMUFormer | 0 | 78.0% | 81.0% | 92.0% | 94.0% | 1.000 | 1.100 | 0.270 | 0.280 |" in lines
    assert sum(line.startswith("| ETTh1") for line in lines) == 1, "the latest run of a cell only"
    summary = next(line for line in lines if line.startswith("On the ETT data"))
    assert "cover 78.0%–89.0% as calibrated at fit and 81.0%–84.0% recalibrated" in summary, "illness left out"
    assert "lower in 1 of 2 runs" in summary
    assert "Every cell of this table comes from code revision abc." in lines
    assert load_report(tmp_path / "none").recalibration_section() == []


def test_the_other_estimators_show_the_network_alone_next_to_the_linear_base_with_what_it_kept(tmp_path):
    """The ablation: the latest run with and without ``linear_base`` each get a row, the base's say whether the
    fit kept the network (best epoch > 0) or the map alone (best epoch 0), the older run of a form is dropped."""
    rows = [_row("gateformer", "ETTh2", 96, 0, 0.312, 0.356),
            {**_row("gtrxl", "ETTh2", 96, 0, 0.60, 0.50), "params": '{"normalize": "last_value"}'},
            {**_row("gtrxl", "ETTh2", 96, 0, 0.49, 0.45, stamp="2026-02-01T00:00:00+00:00"),
             "params": '{"normalize": "last_value"}'},
            {**_row("gtrxl", "ETTh2", 96, 0, 0.29, 0.34), "best_epoch": 0,
             "params": '{"normalize": "last_value", "linear_base": true}'},
            {**_row("lmuformer", "ETTh2", 96, 0, 0.28, 0.33), "best_epoch": 3,
             "params": '{"normalize": "last_value", "linear_base": true}'}]
    pd.DataFrame(rows).to_csv(tmp_path / "long_horizon.csv", index=False)
    body = [line for line in load_report(tmp_path).other_models_section() if line.startswith("| ETTh2 | 96 |")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in body]
    assert [(c[2], c[5]) for c in cells] == [("LMUFormer (changes, linear base: network kept)", "**0.280**"),
                                             ("GTrXL (changes, linear base: map alone)", "**0.290**"),
                                             ("GTrXL (changes)", "0.490")]


def test_an_other_estimator_cell_averages_its_seeds_at_the_seed_0_revision_and_marks_gpu_runs(tmp_path):
    base = {"params": '{"normalize": "last_value", "linear_base": true}', "accelerator": "gpu: NVIDIA H200"}
    rows = [{**_row("lmuformer", "ETTh1", 96, s, mse, 0.39), **base, "best_epoch": epoch, "epochs_run": 4 + s,
             "git_rev": "new", "stamp": None}
            for s, (mse, epoch) in enumerate([(0.386, 2), (0.383, 0), (0.376, 1)])]
    rows += [{**_row("lmuformer", "ETTh1", 96, 3, 0.9, 0.9), **base, "git_rev": "old"},  # another revision: left out
             {**_row("gtrxl", "ETTh1", 96, 0, 0.40, 0.41), "accelerator": "cpu"},
             _row("atlas", "ETTh1", 96, 0, 0.41, 0.42)]  # written before the accelerator column: the CPU
    pd.DataFrame(rows).drop(columns="stamp").to_csv(tmp_path / "long_horizon.csv", index=False)
    lines = load_report(tmp_path).other_models_section()
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines if line.startswith("| ETTh1 | 96 |")]
    mse = [0.386, 0.383, 0.376]
    assert cells[0][2:7] == ["LMUFormer (changes, linear base: network kept in 2 of 3)", "3", "1,000",
                             f"**{np.mean(mse):.3f}** ± {np.std(mse, ddof=1):.3f}", "**0.390**"]
    assert cells[0][8] == "4–6 (0–2)" and cells[0][9] == "101 s (GPU)", "epochs and best epochs as ranges"
    assert [c[2] for c in cells[1:]] == ["GTrXL (values)", "ATLAS (values)"]
    assert cells[1][9] == cells[2][9] == "100 s" and cells[1][3] == "1"
    assert "Code revisions of the cells (2, not yet one): abc, new." in lines, "not the old run left out"


def test_gateformer_with_the_linear_base_has_its_own_rows_next_to_gateformer_alone(tmp_path):
    """Runs labelled ``gateformer+base`` (``--set linear_base=true``) never replace the grid's paper-settings cell;
    their section shows the seed mean and spread, how many seeds kept the network, and Gateformer alone."""
    rows = [_row("gateformer", "ETTh1", 96, s, mse, 0.40) for s, mse in enumerate([0.389, 0.387, 0.390])]
    rows += [{**_row("gateformer+base", "ETTh1", 96, s, mse, 0.39), "best_epoch": epoch}
             for s, (mse, epoch) in enumerate([(0.381, 3), (0.383, 0)])]
    pd.DataFrame(rows).to_csv(tmp_path / "long_horizon.csv", index=False)
    report = load_report(tmp_path)
    assert "0.389" in _grid_line(report.grid_section(), "ETTh1", 96), "the grid keeps the paper settings' cell"
    cells = [c.strip() for c in _grid_line(report.linear_base_section(), "ETTh1", 96).strip("|").split("|")]
    assert cells[2:6] == ["2", f"**0.382** ± {np.std([0.381, 0.383], ddof=1):.3f}", "**0.390**", "1 of 2"]
    assert cells[6] == "0.388 / 0.400 (2)", "Gateformer alone on the same two seeds"
    assert not [line for line in report.other_models_section() if "+base" in line or "linear base" in line]


def test_a_column_repeating_another_tables_cells_names_their_revision_apart_from_the_tables_own(tmp_path):
    """The linear-base table's *alone* column and the other estimators' Gateformer column repeat the grid's runs;
    when those were rerun at another revision, the revisions line says so instead of claiming one revision."""
    rows = [{**_row("gateformer", "ETTh1", 96, s, 0.389, 0.40), "git_rev": "new"} for s in range(2)]
    rows += [_row("gateformer+base", "ETTh1", 96, s, 0.381, 0.39) for s in range(2)]
    rows += [_row("lmuformer", "ETTh1", 96, 0, 0.407, 0.430)]
    pd.DataFrame(rows).to_csv(tmp_path / "long_horizon.csv", index=False)
    report = load_report(tmp_path)
    base = next(line for line in report.linear_base_section() if "code revision" in line)
    assert base == ("Every cell of this table comes from code revision abc. "
                    "The *alone* column repeats the seeds table's cells: code revision new.")
    others = next(line for line in report.other_models_section() if "code revision" in line)
    assert others.endswith("code revision abc. The Gateformer column repeats the grid's cells: code revision new.")
    rows = [{**row, "git_rev": "new"} for row in rows]                          # all at one revision: no extra line
    pd.DataFrame(rows).to_csv(tmp_path / "long_horizon.csv", index=False)
    report = load_report(tmp_path)
    assert "Every cell of this table comes from code revision new." in report.linear_base_section()
    assert not [line for line in report.other_models_section() + report.linear_base_section() if "repeats" in line
                and "code revision" in line]


def test_a_linear_base_row_that_loses_to_a_baseline_shows_its_spread_then_the_mark(tmp_path):
    rows = [{**_row("gateformer+base", "exchange", 96, s, mse, 0.20), "best_epoch": 3}
            for s, mse in enumerate([0.084, 0.083])]
    pd.DataFrame(rows).to_csv(tmp_path / "long_horizon.csv", index=False)
    pd.DataFrame([dict(timestamp="2026-01-01T00:00:00+00:00", dataset="exchange", horizon=96, lookback=96,
                       model="last_value", mse=0.081, mae=0.196, mase=8.0, n_windows=1422, setting="", cpu_s=0.1,
                       git_rev="abc")]).to_csv(tmp_path / "baselines.csv", index=False)
    cells = [c.strip() for c in _grid_line(load_report(tmp_path).linear_base_section(), "exchange", 96)
             .strip("|").split("|")]
    assert cells[3:5] == [f"0.084 ± {np.std([0.084, 0.083], ddof=1):.3f} ▼", "0.200 ▼"]


def test_the_anchors_table_shows_the_latest_run_its_stride_and_bolds_the_best_of_the_data_set(tmp_path):
    stamp, later = "2026-01-01T00:00:00+00:00", "2026-01-02T00:00:00+00:00"
    anchors = [dict(timestamp=stamp, dataset="ETTh1", horizon=96, lookback=96, model="autoets", mse=9.0, mae=9.0,
                    n_windows=2785, setting="old run", cpu_s=1.0, git_rev="abc", mase=9.0),
               dict(timestamp=later, dataset="ETTh1", horizon=96, lookback=96, model="autoets", mse=1.2103,
                    mae=0.6583, n_windows=2785, setting="season 24", cpu_s=28.4, git_rev="abc", mase=2.8544),
               dict(timestamp=later, dataset="ETTh1", horizon=96, lookback=96, model="autotheta", mse=0.4811,
                    mae=0.4402, n_windows=398, setting="stride 7 (398 of 2785 windows; linear on them MSE 0.3812)",
                    cpu_s=350.0, git_rev="abc", mase=1.9),
               dict(timestamp=later, dataset="ETTh1", horizon=96, lookback=96, model="lgbm", mse=0.3701,
                    mae=0.4100, n_windows=2785, setting="recursive", cpu_s=95.0, git_rev="abc", mase=1.8)]
    pd.DataFrame(anchors).to_csv(tmp_path / "anchors.csv", index=False)
    base = [dict(timestamp=stamp, dataset="ETTh1", horizon=96, lookback=96, model=m, mse=v[0], mae=v[1],
                 n_windows=2785, setting="", cpu_s=0.1, git_rev="abc")
            for m, v in [("last_value", (1.294, 0.713)), ("seasonal_naive", (0.512, 0.433)), ("linear", (0.383, 0.392))]]
    pd.DataFrame(base).to_csv(tmp_path / "baselines.csv", index=False)
    lines = load_report(tmp_path).anchors_section()
    rows = [line for line in lines if line.startswith("| ETTh1 | 96 |")]
    assert [row.split("|")[4].strip() for row in rows] == [
        "AutoETS", "AutoTheta", "LightGBM", "last value", "seasonal naive", "linear"]
    assert rows[0] == "| ETTh1 | 96 | statsforecast | AutoETS | 1.2103 | 0.6583 | 2.854 | 2,785 | 28 | season 24 |"
    assert "| 398 | 350 | stride 7 (398 of 2785 windows; linear on them MSE 0.3812) |" in rows[1]
    assert "| mlforecast | LightGBM | **0.3701** | 0.4100 |" in rows[2], "the lowest MSE of the data set is bold"
    assert "| baseline | linear | 0.3830 | **0.3920** |" in rows[5], "the lowest MAE stays the linear map's"
    assert "Library versions: not recorded by these rows." in lines[-2]
    assert load_report(tmp_path / "none").anchors_section() == []

    versions = json.dumps({"lightgbm": "4.7.0", "mlforecast": "1.1.0", "statsforecast": "2.1.1"})
    pd.DataFrame([dict(a, versions=versions if a["model"] != "lgbm" else None) for a in anchors]).to_csv(
        tmp_path / "anchors.csv", index=False)
    assert lines[-2].split(". Library versions")[0] in load_report(tmp_path).anchors_section()[-2]
    assert load_report(tmp_path).anchors_section()[-2].endswith(
        "Library versions: lightgbm 4.7.0, mlforecast 1.1.0, statsforecast 2.1.1 (one set); not recorded by 1 of 3 "
        "rows, which predate the record."), "the latest row per cell only: the old AutoETS run is not counted"


def test_the_anchors_table_names_the_anchors_not_run_where_its_data_sets_have_rows(tmp_path):
    def anchor(dataset, horizon, model):
        return dict(timestamp="2026-01-01T00:00:00+00:00", dataset=dataset, horizon=horizon, lookback=96,
                    model=model, mse=0.5, mae=0.5, n_windows=100, setting="", cpu_s=1.0, git_rev="abc", mase=1.0)
    rows = [anchor("ETTh1", h, m) for h in (96, 192) for m in ("autoets", "autotheta", "lgbm")]
    pd.DataFrame(rows).to_csv(tmp_path / "anchors.csv", index=False)
    lines = load_report(tmp_path).anchors_section()
    assert "Every anchor ran on every data set and horizon of the table." in lines
    rows += [anchor("ETTm1", h, m) for h in (96, 192) for m in ("autoets", "lgbm")] + [anchor("ETTm1", 96, "autotheta")]
    rows += [anchor("weather", 96, "lgbm")]
    pd.DataFrame(rows).to_csv(tmp_path / "anchors.csv", index=False)
    line = next(line for line in load_report(tmp_path).anchors_section() if line.startswith("Not run: "))
    assert line.startswith("Not run: AutoTheta on ETTm1 at H = 192; AutoETS on weather at H = 96; AutoTheta on "
                           "weather at H = 96. AutoTheta's fit")
    rows = [r for r in rows if r["model"] != "autoets" or r["dataset"] != "ETTm1"]
    rows += [anchor("weather", 96, "autotheta"), anchor("ETTm1", 192, "autotheta")]    # no AutoTheta missing:
    pd.DataFrame(rows).to_csv(tmp_path / "anchors.csv", index=False)                 # no word on its cost
    line = next(line for line in load_report(tmp_path).anchors_section() if line.startswith("Not run: "))
    assert line == "Not run: AutoETS on ETTm1 at H = 96, 192; AutoETS on weather at H = 96."


def test_the_grid_shows_mase_next_to_the_best_baseline_and_the_revisions_of_its_cells(tmp_path):
    runs = [{**_row("gateformer", "ETTh1", h, 0, 0.40, 0.41, naive=(1.3, 0.7)), "mase": m, "git_rev": rev}
            for h, m, rev in [(96, 1.80, "r1"), (192, 1.95, "r1"), (336, 2.00, "r1"), (720, 2.20, "r2")]]
    pd.DataFrame(runs).to_csv(tmp_path / "long_horizon.csv", index=False)
    base = [dict(timestamp="2026-01-01T00:00:00+00:00", dataset="ETTh1", horizon=h, lookback=96, model=m, mse=1.0,
                 mae=1.0, n_windows=10, setting="", cpu_s=0.1, git_rev="r1", mase=v)
            for h in (96, 192, 336, 720) for m, v in [("last_value", 3.0), ("seasonal_naive", 2.1), ("linear", 1.9)]]
    pd.DataFrame(base).to_csv(tmp_path / "baselines.csv", index=False)
    lines = load_report(tmp_path).grid_section()
    cells = [c.strip() for c in _grid_line(lines, "ETTh1", 96).strip("|").split("|")]
    assert cells[4:6] == ["**1.800**", "1.900 (linear)"], "ours below every baseline: bold"
    cells = [c.strip() for c in _grid_line(lines, "ETTh1", 336).strip("|").split("|")]
    assert cells[4:6] == ["2.000 ▼", "**1.900** (linear)"], "the best baseline wins: marked, and it is bold"
    cells = [c.strip() for c in _grid_line(lines, "ETTh1", "avg").strip("|").split("|")]
    assert cells[4:6] == [f"{np.mean([1.8, 1.95, 2.0, 2.2]):.3f} ▼", "**1.900** (linear)"]
    assert "Code revisions of the cells (2, not yet one): r1, r2." in lines
    pd.DataFrame([{**r, "git_rev": "r1"} for r in runs]).to_csv(tmp_path / "long_horizon.csv", index=False)
    assert "Every cell of this table comes from code revision r1." in load_report(tmp_path).grid_section()


def test_the_grid_tables_read_lookback_96_only_so_the_ili_runs_stay_out_of_their_cells_and_revisions(tmp_path):
    later = "2026-02-01T00:00:00+00:00"
    grid = [_row("gateformer", "ETTh1", 96, seed, 0.40 + 0.01 * seed, 0.41) for seed in range(3)]
    # the ILI runs share the file: another revision, and one at lookback 36 with a grid horizon and a later stamp
    ili = [dict(_row("gateformer", "illness", h, seed, 2.5, 1.0), lookback=36, git_rev="ili")
           for h in (24, 36) for seed in range(3)]
    ili += [dict(_row("gateformer", "ETTh1", 96, seed, 9.9, 9.9, stamp=later), lookback=36, git_rev="ili")
            for seed in range(3)]
    pd.DataFrame(grid + ili).to_csv(tmp_path / "long_horizon.csv", index=False)
    report = load_report(tmp_path)
    lines = report.grid_section()
    assert "Every cell of this table comes from code revision abc." in lines
    assert "0.400" in _grid_line(lines, "ETTh1", 96) and "9.900" not in "\n".join(lines)
    lines = report.seeds_section()
    assert "Every cell of this table comes from code revision abc." in lines
    assert not any(line.startswith("| illness") for line in lines)
    seeds_row = next(line for line in lines if line.startswith("| ETTh1 | 96 |"))
    assert "0.410 ± 0.010" in seeds_row, "the three lookback-96 seeds, not the later lookback-36 runs"


def _sparse_kv_rows(stamp, variants, load=(2.0, 3.0)):
    """Rows of one run of benchmarks/sparse_kv.py: (variant, window, global, step_ms, state_bytes, mse)."""
    ref = variants[0]
    return [dict(timestamp=stamp, git_rev="abc1234", variant=name, kv_window=window, kv_global=k_global, mem_len=64,
                 steps=10_000, train_steps=2_000, n_origins=400, step_ms=step, state_bytes=size, mse=mse,
                 step_ratio=step / ref[3], state_ratio=size / ref[4], mse_ratio=mse / ref[5], load_start=load[0],
                 load_end=load[1], torch_version="2.13.0+cpu", n_threads=1)
            for name, window, k_global, step, size, mse in variants]


def test_the_sparse_kv_table_shows_the_latest_run_with_its_ratios_to_the_segment_memory(tmp_path):
    old = _sparse_kv_rows("2026-01-01T00:00:00+00:00", [("segment memory", None, None, 9.0, 1000, 0.5),
                                                        ("sparse 16+16", 16, 16, 9.9, 600, 0.7)])
    new = _sparse_kv_rows("2026-02-01T00:00:00+00:00", [("segment memory", None, None, 2.0, 16524, 0.40),
                                                        ("sparse 16+16", 16, 16, 2.5, 9108, 0.42)], load=(1.5, 2.5))
    pd.DataFrame(old + new).to_csv(tmp_path / "sparse_kv.csv", index=False)
    report = load_report(tmp_path)
    text = "\n".join(report.sparse_kv_section())
    assert "| segment memory | – | – | 2.00 | 1.00 | 16,524 | 1.00 | 0.4000 | 1.000 |" in text
    assert "| sparse 16+16 | 16 | 16 | 2.50 | 1.25 | 9,108 | 0.55 | 0.4200 | 1.050 |" in text
    assert "9.90" not in text and "0.7000" not in text                     # the earlier run is not shown
    assert "10,000 more streamed" in text and "every 25 steps (400 origins" in text
    assert "load of 1.5 at the start and 2.5 at the end" in text
    assert "## GTrXL's sparse KV cache on a long stream" in report.render()
    (tmp_path / "sparse_kv.csv").unlink()
    assert report.sparse_kv_section() == []


def _packed_rows(stamp, model, per_span, packed, load=(2.0, 3.0)):
    """Rows of one model in a run of benchmarks/packed_panel.py: (calls, min_s, median_s, peak MiB, diff) each."""
    ref = per_span
    return [dict(timestamp=stamp, git_rev="abc1234", model=model, variant=name, n_series=500, min_steps=200,
                 max_steps=2000, total_steps=550_000, distinct_spans=500, chunk=1024, calls=calls, repeats=3,
                 min_s=lo, median_s=mid, speedup_min=ref[1] / lo, speedup_median=ref[2] / mid, peak_rss_mib=peak,
                 predict_rss_mib=peak - 300, max_abs_diff=diff, load_start=load[0], load_end=load[1],
                 torch_version="2.13.0+cpu", n_threads=1)
            for name, (calls, lo, mid, peak, diff) in (("per-span", per_span), ("packed", packed))]


def test_the_packed_panel_table_shows_the_latest_run_with_its_speedups(tmp_path):
    old = _packed_rows("2026-01-01T00:00:00+00:00", "GTrXL", (500, 99.0, 99.5, 400, 0.0), (13, 9.0, 9.5, 410, 1e-6))
    new = (_packed_rows("2026-02-01T00:00:00+00:00", "LMUFormer", (500, 8.0, 9.0, 380, 0.0),
                        (12, 2.0, 2.25, 420, 3e-7), load=(1.5, 2.5))
           + _packed_rows("2026-02-01T00:00:00+00:00", "GTrXL", (500, 20.0, 21.0, 400, 0.0),
                          (13, 4.0, 4.2, 450, 2e-6), load=(1.5, 2.5)))
    pd.DataFrame(old + new).to_csv(tmp_path / "packed_panel.csv", index=False)
    report = load_report(tmp_path)
    text = "\n".join(report.packed_panel_section())
    assert "| LMUFormer | per-span | 500 | 8.00 | 9.00 | 1.00 | 1.00 | 380 | 80 | 0.0e+00 |" in text
    assert "| LMUFormer | packed | 12 | 2.00 | 2.25 | 4.00 | 4.00 | 420 | 120 | 3.0e-07 |" in text
    assert "| GTrXL | packed | 13 | 4.00 | 4.20 | 5.00 | 5.00 | 450 | 150 | 2.0e-06 |" in text
    assert "99.00" not in text                                               # the earlier run is not shown
    assert "500 hourly series of distinct lengths from 200 to 2,000 steps (550,000 in all, 500 distinct" in text
    assert "chunks of 1024 steps" in text and "over 3 rounds" in text
    assert "load of 1.5 at the start and 2.5 at the end" in text
    assert "## Ragged panels in the streaming estimators: packed advance" in report.render()
    (tmp_path / "packed_panel.csv").unlink()
    assert report.packed_panel_section() == []


def test_the_coverage_table_shows_each_estimators_own_form_not_its_ablations(tmp_path):
    """A streaming estimator's default (with the linear base) and its network alone are rows of their own; a run
    that switched a mechanism off (an ablation), though later, does not replace either."""
    def run(seed, cover, mae, stamp, **params):
        return dict(_row("lmuformer", "illness", 24, seed, 2.5, mae, stamp=stamp), lookback=36, coverage_80=cover,
                    coverage_95=0.7, width_80=1.0, crps=0.8, params=json.dumps(params))

    rows = [run(s, 0.50, 0.97, "2026-01-01T00:00:00+00:00", linear_base=True) for s in range(3)]
    rows += [run(s, 0.54, 1.28, "2026-01-02T00:00:00+00:00", linear_base=False) for s in range(3)]
    rows += [run(s, 0.60, 1.95, "2026-01-03T00:00:00+00:00", linear_base=False, spiking=True) for s in range(3)]
    pd.DataFrame(rows).to_csv(tmp_path / "long_horizon.csv", index=False)
    lines = load_report(tmp_path).coverage_section()
    assert "| illness | 36 | 24 | LMUFormer | series | 3 | 50.0% | 70.0% | 1.000 | 0.800 | 0.970 |" in lines
    assert ("| illness | 36 | 24 | LMUFormer (network alone) | series | 3 | 54.0% | 70.0% | 1.000 | 0.800 | 1.280 |"
            in lines)
    assert not any("60.0%" in line for line in lines), "the spiking ablation is left out"


def test_the_ablation_table_compares_each_mechanism_with_the_estimators_form_and_the_ili_table_ignores_it(tmp_path):
    def run(seed, horizon, mse, **params):
        return dict(_row("atlas", "illness", horizon, seed, mse, 1.0), lookback=36, mase=9.0, best_epoch=3,
                    params=json.dumps({"linear_base": False, **params}))

    rows = [run(s, 24, 3.0 + s / 100) for s in range(3)]
    rows += [run(s, 24, 3.3, frozen_memory=True) for s in range(3)]
    rows += [run(s, 24, 2.7, linear_path=False) for s in range(3)]
    rows += [run(s, 24, 3.6, memory="identity") for s in range(3)]
    rows += [dict(run(s, 24, 2.5), params='{"linear_base": true}') for s in range(3)]       # the default: ILI table
    pd.DataFrame(rows).to_csv(tmp_path / "long_horizon.csv", index=False)
    pd.DataFrame([dict(timestamp="2026-01-01T00:00:00+00:00", dataset="illness", horizon=24, lookback=36,
                       model="seasonal_naive", mse=2.56, mae=1.0, mase=7.9, n_windows=170, setting="", cpu_s=0.1,
                       git_rev="abc")]).to_csv(tmp_path / "baselines.csv", index=False)
    report = load_report(tmp_path)
    lines = report.ablation_section()
    form = next(line for line in lines if line.startswith("| memory + linear path"))
    frozen = next(line for line in lines if line.startswith("| memory frozen"))
    alone = next(line for line in lines if line.startswith("| memory alone"))
    assert "| 24 | 3 | 3.010 ± 0.010 ▼ |" in form and form.endswith("| – |")
    off = next(line for line in lines if line.startswith("| memory off"))
    assert frozen.endswith(f"| {3.3 / 3.01 - 1:+.1%} |") and alone.endswith(f"| {2.7 / 3.01 - 1:+.1%} |")
    assert "| 24 | 3 | 3.600 ± 0.000 ▼ |" in off and off.endswith(f"| {3.6 / 3.01 - 1:+.1%} |")
    assert f"- ATLAS, *memory frozen: no test-time writes*: MSE {3.3 / 3.01 - 1:+.1%} against the estimator's form, " \
           "averaged over 1 horizons (worse at 1 of 1)." in lines
    ili = report.small_data_section()
    assert any("| ATLAS (linear base: network kept in 3 of 3) | 3 | **2.500 ± 0.000** |" in line for line in ili)
    assert sum("ATLAS" in line for line in ili) == 1, "the ablation runs stay out of the ILI table"


def _slot_row(estimator, slot, name, mse, mae, *, stamp="2026-02-01T00:00:00+00:00", skipped=None):
    return dict(timestamp=stamp, part="slots", estimator=estimator, slot=slot, kind="" if slot == "(default)" else
                "mixer", name=name, dataset="ETTh1", horizon=96, mse=mse, mae=mae, n_params=1000, epochs_run=3,
                max_epochs=3, s_per_epoch=12.0, skipped=skipped, load_avg=1.5, git_rev="abc")


def test_the_slots_table_compares_each_part_with_the_defaults_and_marks_losses_to_the_baselines(tmp_path):
    pd.DataFrame([dict(timestamp="2026-01-01T00:00:00+00:00", dataset="ETTh1", horizon=96, lookback=96, model=m,
                       mse=v[0], mae=v[1]) for m, v in {"linear": (0.383, 0.392), "last_value": (1.29, 0.71)}.items()]
                 ).to_csv(tmp_path / "baselines.csv", index=False)
    pd.DataFrame([
        dict(timestamp="2026-01-01T00:00:00+00:00", part="accuracy", kind="mixer", name="full", mse=0.5, mae=0.5),
        _slot_row("gateformer", "(default)", "(default)", 0.400, 0.410),
        _slot_row("gateformer", "variate_mixer", "mean", 0.900, 0.900, stamp="2026-01-15T00:00:00+00:00"),
        _slot_row("gateformer", "variate_mixer", "mean", 0.380, 0.395),     # the latest run of a part counts
        _slot_row("gateformer", "ffn", "conv", None, None, skipped="ValueError: too short"),
        {**_slot_row("gtrxl", "(default)", "(default)", 0.500, 0.480), "train_batches": 80},
        {**_slot_row("gateformer", "temporal_block", "tnt", 0.390, 0.400), "with": '{"embedding": "tnt_words"}'},
    ]).to_csv(tmp_path / "backbone.csv", index=False)
    report = load_report(tmp_path)
    text = "\n".join(report.slots_section())
    assert "| *(defaults)* |  | 1,000 | 0.4000 ▼ | 0.4100 ▼ | – | 12 | 3 of 3 |" in text
    # 0.380 beats the linear baseline's MSE (no mark, bold) but not its MAE (0.395 > 0.392: marked)
    assert "| `variate_mixer` | `mean` | 1,000 | **0.3800** | **0.3950** ▼ | -5.0% | 12 | 3 of 3 |" in text
    assert "0.9000" not in text
    assert "| `temporal_block` | `tnt` with `embedding='tnt_words'` | 1,000 | 0.3900 ▼ |" in text
    assert "| `ffn` | `conv` | | not run: ValueError: too short | | | | |" in text
    assert text.index("**Gateformer**") < text.index("**GTrXL**")
    assert "| *(defaults)* |  | 1,000 | **0.5000** ▼ | **0.4800** ▼ | – | 12 | 3 of 3 × 80 batches |" in text  # capped
    assert "linear 0.383 / 0.392" in text and "code revision abc" in text
    assert "## The backbone's parts in their slots" in report.render()
    pd.DataFrame([dict(timestamp="2026-01-01T00:00:00+00:00", part="accuracy", kind="mixer", name="full", mse=0.5,
                       mae=0.5)]).to_csv(tmp_path / "backbone.csv", index=False)
    assert report.slots_section() == []


def test_the_long_context_table_puts_the_baselines_first_and_marks_parts_that_lose_to_them(tmp_path):
    def row(estimator, name, mse, mae, slot="", skipped=None, stamp="2026-02-01T00:00:00+00:00"):
        return dict(timestamp=stamp, part="long", estimator=estimator, slot=slot, name=name,
                    dataset="long_context_240", mse=mse, mae=mae, n_params=0 if not slot else 500, epochs_run=None
                    if not slot else 3, fit_s=None if not slot else 42.0, skipped=skipped, load_avg=2.0, git_rev="abc")
    pd.DataFrame([row("gateformer", "full", 0.30, 0.40, "temporal_mixer"),
                  row("last_value", "last_value", 1.50, 0.90), row("seasonal_naive", "seasonal_naive", 0.45, 0.50),
                  row("linear", "linear", 0.28, 0.41),
                  row("gtrxl", "xl_relative", 0.20, 0.30, "mixer", stamp="2026-01-01T00:00:00+00:00"),
                  row("gtrxl", "xl_relative", 0.90, 0.70, "mixer"),          # the latest run of a part counts
                  row("atlas", "omega", None, None, "memory", skipped="RuntimeError: out of memory")]
                 ).to_csv(tmp_path / "backbone.csv", index=False)
    report = load_report(tmp_path)
    text = "\n".join(report.long_context_section())
    lines = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert lines[0].startswith("| baseline |  | last value |") and lines[2].startswith("| baseline |  | linear")
    # beats the seasonal naive (x 0.67) but not the linear baseline's MSE: marked; its MAE 0.40 is the lowest
    assert "| Gateformer | `temporal_mixer` | `full` | 500 | 0.3000 ▼ | **0.4000** | 0.67 | 42 s | 3 |" in text
    assert "| baseline |  | linear (ridge over the 480 steps) | 0 | **0.2800** | 0.4100 | 0.62 |  |  |" in text
    assert "0.9000 ▼" in text and "0.2000" not in text
    assert "| ATLAS | `memory` | `omega` | | not run: RuntimeError: out of memory | | | | |" in text
    assert "### A long-context case" in report.render()


def test_the_depth_table_shows_the_gated_and_the_full_depth_pass_with_the_time_ratio(tmp_path):
    def row(run, mse, seconds, depth, stamp="2026-02-01T00:00:00+00:00"):
        return dict(timestamp=stamp, part="depth", estimator="gateformer", name="adaptive_depth", mse=mse, mae=mse,
                    eval_s=seconds, test_depth=depth, mean_depth=2.5, epochs_run=2, git_rev="abc",
                    **{"with": json.dumps({"e_layers": 4, "d_model": 128, "run": run})})
    pd.DataFrame([row("gated", 0.9, 9.0, 1.0, stamp="2026-01-01T00:00:00+00:00"),
                  row("gated", 0.404, 3.0, 2.25), row("full", 0.400, 4.0, 4.0)]).to_csv(tmp_path / "backbone.csv",
                                                                                        index=False)
    report = load_report(tmp_path)
    text = "\n".join(report.depth_section())
    assert "| gated | 2.25 of 4 | 0.4040 | 0.4040 | 3.00 s | 0.75 |" in text
    assert "| full depth | 4.00 of 4 | 0.4000 | 0.4000 | 4.00 s | 1.00 |" in text
    assert "run 2.50 of 4 blocks" in text and "+1.0%" in text and "e_layers 4, d_model 128" in text
    assert "### Adaptive depth" in report.render()


def test_the_anchor_and_side_by_side_tables_name_their_revisions(tmp_path):
    anchor = dict(timestamp="2026-01-01T00:00:00+00:00", dataset="ETTh1", horizon=96, lookback=96, mse=0.4,
                  mae=0.42, n_windows=10, setting="", cpu_s=1.0, mase=1.0)
    pd.DataFrame([{**anchor, "model": "autoets", "git_rev": "aaa"},
                  {**anchor, "model": "autotheta", "git_rev": "bbb"}]).to_csv(tmp_path / "anchors.csv", index=False)
    side = dict(timestamp="2026-01-01T00:00:00+00:00", dataset="ETTh1", horizon=96, seed=0, mse=0.39, mae=0.4,
                n_params=10, epochs_run=3, fit_test_s=10.0, fit_test_cpu_s=10.0, load_start=1.0, load_end=1.0)
    pd.DataFrame([{**side, "library": "tsformers", "model": "gateformer", "git_rev": "ccc"},
                  {**side, "library": "neuralforecast", "model": "itransformer", "git_rev": "ccc"}]).to_csv(
        tmp_path / "side_by_side.csv", index=False)
    report = load_report(tmp_path)
    assert "Code revisions of the cells (2, not yet one): aaa, bbb." in report.anchors_section()[-2]
    assert any(line.startswith("Every cell of this table comes from code revision ccc.")
               for line in report.side_by_side_section())


def test_the_side_by_side_table_averages_seeds_and_says_who_is_ahead_beyond_two_standard_errors(tmp_path):
    side = dict(timestamp="2026-01-01T00:00:00+00:00", dataset="ETTh1", horizon=96, n_windows=2785, fit_test_s=100.0,
                load_start=1.0, load_end=2.0, git_rev="abc")
    rows = [{**side, "library": "tsformers", "model": "gateformer", "seed": s, "mse": m, "mae": 0.40, "n_params": 133344,
             "epochs_run": e, "fit_test_cpu_s": c} for s, m, e, c in [(0, 0.390, 5, 60.0), (1, 0.392, 6, 70.0),
                                                                      (2, 0.388, 6, 80.0)]]
    rows += [{**side, "library": "neuralforecast", "model": "itransformer", "seed": s, "mse": m, "mae": 0.41,
              "n_params": 841568, "epochs_run": 10, "fit_test_cpu_s": 35.0} for s, m in [(0, 0.380), (1, 0.381),
                                                                                       (2, 0.379)]]
    rows.append({**side, "library": "neuralforecast", "model": "patchtst", "seed": 0, "mse": 0.378, "mae": 0.39,
                 "n_params": 3757153, "epochs_run": 7, "fit_test_cpu_s": 1400.0})
    pd.DataFrame(rows).to_csv(tmp_path / "side_by_side.csv", index=False)
    pd.DataFrame([dict(timestamp="2026-01-01T00:00:00+00:00", dataset="ETTh1", horizon=96, lookback=96, model="linear",
                       mse=0.389, mae=0.392, n_windows=2785, setting="", cpu_s=0.1, git_rev="abc")]).to_csv(
        tmp_path / "baselines.csv", index=False)
    lines = load_report(tmp_path).side_by_side_section()

    def cells(marker):
        return [c.strip() for c in next(line for line in lines if marker in line).strip("|").split("|")]

    ours, itransformer, patchtst = cells("| Gateformer |"), cells("| iTransformer | 841"), cells("| PatchTST | 3,")
    assert ours[5:9] == ["3", "0.3900 ± 0.0020 ▼", "0.4000 ▼", "–"], "mean ± sample sd, beaten by the linear map"
    assert ours[9] == "5–6" and ours[11:13] == ["70", "1.00"], "epochs as a range, the mean CPU seconds"
    # paired differences 0.010, 0.011, 0.009: mean 0.010, standard error 0.001 / sqrt(3)
    assert itransformer[8] == "+0.0100 ± 0.0006: behind" and itransformer[12] == "0.50"
    assert patchtst[5] == "1" and patchtst[6] == "**0.3780**" and patchtst[8] == "+0.0120 (1 seed: no verdict)"
    # against a baseline, the same for every seed: 0.001, 0.003, -0.001 -> mean 0.001, standard error 0.002 / sqrt(3)
    assert cells("| baseline | linear |")[8] == "+0.0010 ± 0.0012: within 2 SE"


def test_a_side_by_side_cpu_cell_names_the_threads_of_runs_beyond_the_protocols_one(tmp_path):
    side = dict(timestamp="2026-01-01T00:00:00+00:00", dataset="weather", horizon=96, n_windows=10, fit_test_s=100.0,
                load_start=1.0, load_end=2.0, git_rev="abc", mae=0.2, epochs_run=5, n_params=10)
    rows = [{**side, "library": "tsformers", "model": "gateformer", "seed": s, "mse": 0.175, "fit_test_cpu_s": 500.0,
             "n_threads": 1} for s in range(3)]
    rows += [{**side, "library": "neuralforecast", "model": "itransformer", "seed": s, "mse": 0.176,
              "fit_test_cpu_s": 1500.0, "n_threads": 1} for s in range(3)]
    rows += [{**side, "library": "neuralforecast", "model": "patchtst-authors", "seed": s, "mse": 0.177,
              "fit_test_cpu_s": 12000.0, "n_threads": threads} for s, threads in enumerate([2, 1, 2])]
    pd.DataFrame(rows).to_csv(tmp_path / "side_by_side.csv", index=False)
    lines = load_report(tmp_path).side_by_side_section()

    def cpu_cell(marker):
        return next(line for line in lines if marker in line).strip("|").split("|")[11].strip()

    assert cpu_cell("| Gateformer |") == "500" and cpu_cell("| iTransformer |") == "1500"
    assert cpu_cell("| PatchTST, authors' sizes |") == "12000 (1–2 threads)"
    rows = [dict(r, n_threads=2) if r["model"] == "patchtst-authors" else r for r in rows]
    pd.DataFrame(rows).to_csv(tmp_path / "side_by_side.csv", index=False)
    lines = load_report(tmp_path).side_by_side_section()
    assert cpu_cell("| PatchTST, authors' sizes |") == "12000 (2 threads)"


def test_the_weather_cycle_note_reads_the_linear_maps_validation_and_test_scores_with_and_without_the_cycle(
        tmp_path):
    base = dict(dataset="weather", horizon=96, lookback=96, n_windows=10, cpu_s=1.0, git_rev="abc", mae=0.3)
    rows = [dict(base, timestamp="2026-01-01T00:00:00+00:00", model="linear", mse=0.9,
                 setting="ridge 1 (validation MSE 0.9000)"),                    # an earlier run: not read
            dict(base, timestamp="2026-02-01T00:00:00+00:00", model="linear", mse=0.1953,
                 setting="ridge 100000 (validation MSE 0.4839)"),
            dict(base, timestamp="2026-02-01T00:00:00+00:00", model="linear_cycle", mse=0.2106,
                 setting="ridge 100000, cycle 144 (validation MSE 0.4363)"),
            dict(base, timestamp="2026-02-01T00:00:00+00:00", model="last_value", mse=0.26, setting="")]
    pd.DataFrame(rows).to_csv(tmp_path / "baselines.csv", index=False)
    report = load_report(tmp_path)
    assert report.linear_cycle_scores("weather") == {"linear": (0.4839, 0.1953), "linear_cycle": (0.4363, 0.2106)}
    note = report.weather_cycle_note()
    assert "validation MSE goes from 0.4839 to 0.4363 and its test MSE from 0.1953 to 0.2106" in note
    assert report.linear_cycle_scores("ETTh1") is None
    pd.DataFrame(rows[:2]).to_csv(tmp_path / "baselines.csv", index=False)
    assert load_report(tmp_path).weather_cycle_note() == ""                    # no cycle row, no note


def test_the_weather_daily_ranges_the_report_quotes_are_those_of_the_file():
    """WEATHER_DAILY_RANGE, measured on weather.csv: per split, each variable scaled by the training rows' mean and
    sd, its mean profile over the ten-minute phases of the day by each row's own timestamp, max - min, then the
    mean over the variables."""
    data_dir = Path(os.environ.get("TSFORMERS_DATA") or Path(__file__).resolve().parents[2] / "shared" / "datasets")
    if not (data_dir / "weather.csv").exists():
        pytest.skip(f"weather.csv is not in {data_dir} (set TSFORMERS_DATA)")
    from tsformers.datasets import split_bounds

    frame = pd.read_csv(data_dir / "weather.csv")
    times = pd.to_datetime(frame.pop("date"))
    bounds = split_bounds("weather", len(frame))
    train = frame.iloc[slice(*bounds["train"])]
    scaled = (frame - train.mean()) / train.std()
    phase = (times - times.dt.normalize()) // pd.Timedelta("10min")
    measured = {}
    for name, split in (("train", "train"), ("validation", "val"), ("test", "test")):
        rows = slice(*bounds[split])
        profile = scaled.iloc[rows].groupby(phase.iloc[rows].to_numpy()).mean()
        measured[name] = round(float((profile.max() - profile.min()).mean()), 2)
    assert measured == load_report(Path("unused")).WEATHER_DAILY_RANGE


def test_the_goal_table_says_what_each_of_our_rows_lacks_and_met_where_nothing_does(tmp_path):
    side = dict(timestamp="2026-01-01T00:00:00+00:00", horizon=96, n_windows=100, fit_test_s=100.0, load_start=1.0,
                load_end=1.0, git_rev="abc", mae=0.4, epochs_run=5)

    def runs(dataset, library, model, mses, cpu):
        return [{**side, "dataset": dataset, "library": library, "model": model, "seed": s, "mse": m,
                 "n_params": 10, "fit_test_cpu_s": cpu} for s, m in enumerate(mses)]

    rows = (runs("ETTh1", "tsformers", "gateformer", [0.370, 0.372, 0.371], 50.0)
            + runs("ETTh1", "neuralforecast", "itransformer", [0.380, 0.381, 0.382], 60.0)
            + runs("ETTh1", "neuralforecast", "patchtst", [0.379, 0.380, 0.381], 900.0)
            # ETTh2: level with iTransformer, PatchTST on one seed, slower, and spread beyond 0.005
            + runs("ETTh2", "tsformers", "gateformer", [0.300, 0.290, 0.310], 90.0)
            + runs("ETTh2", "neuralforecast", "itransformer", [0.300, 0.300, 0.300], 30.0)
            + runs("ETTh2", "neuralforecast", "patchtst", [0.299], 900.0)
            # ETTm1: TSLib's PatchTST not run, so PatchTST at its authors' sizes stands in for it
            + [dict(r, git_rev="def") for r in runs("ETTm1", "tsformers", "gateformer", [0.320, 0.322, 0.321], 50.0)]
            + runs("ETTm1", "neuralforecast", "itransformer", [0.340, 0.341, 0.342], 60.0)
            + runs("ETTm1", "neuralforecast", "patchtst-authors", [0.325, 0.321, 0.323], 200.0)
            # ETTm2: one revision, but ours ran on a processor iTransformer's rows did not record
            + [dict(r, cpu="Intel(R) Xeon(R) Processor, AVX-512")
               for r in runs("ETTm2", "tsformers", "gateformer", [0.160, 0.161, 0.162], 50.0)]
            + runs("ETTm2", "neuralforecast", "itransformer", [0.180, 0.181, 0.182], 60.0))
    pd.DataFrame(rows).to_csv(tmp_path / "side_by_side.csv", index=False)
    linear = dict(timestamp="2026-01-01T00:00:00+00:00", horizon=96, lookback=96, model="linear", mae=0.4,
                  n_windows=100, setting="", cpu_s=0.1, git_rev="abc")
    cycle = dict(linear, model="linear_cycle")      # ETTm1 has none: the cell says so
    pd.DataFrame([{**linear, "dataset": "ETTh1", "mse": 0.383}, {**linear, "dataset": "ETTh2", "mse": 0.289},
                  {**linear, "dataset": "ETTm1", "mse": 0.351}, {**cycle, "dataset": "ETTh1", "mse": 0.375},
                  {**cycle, "dataset": "ETTh2", "mse": 0.285}]).to_csv(tmp_path / "baselines.csv", index=False)
    lines = load_report(tmp_path).side_by_side_section()
    goal = lines[lines.index("### The goal, cell by cell"):]

    def cells(dataset):
        return [c.strip() for c in next(line for line in goal if line.startswith(f"| {dataset} |")).strip("|").split("|")]

    etth1, etth2 = cells("ETTh1"), cells("ETTh2")
    # paired differences -0.010, -0.009, -0.011 (iTransformer): mean -0.010, standard error 0.001 / sqrt(3)
    assert etth1[5] == "-0.0100 ± 0.0006: ahead" and etth1[7] == "-0.0120 ± 0.0006: ahead"
    # against the linear map with the cycle: -0.005, -0.003, -0.004
    assert etth1[8:] == ["-0.0040 ± 0.0006: ahead", "0.83", "met"]
    assert etth2[4] == "0.3000 ± 0.0100" and etth2[5] == "+0.0000 ± 0.0058: within 2 SE"
    assert etth2[8:] == ["+0.0150 ± 0.0058: behind", "3.00",
                         "not ahead of iTransformer; PatchTST on 1 seed; not ahead of the linear baseline; "
                         "not ahead of the linear baseline with the cycle; 3.00 times iTransformer's CPU; "
                         "seed sd 0.0100 > 0.005"]
    # paired differences -0.005, +0.001, -0.002 against the authors' sizes: within 2 SE, and the cell says whose
    ettm1 = cells("ETTm1")
    assert ettm1[6] == "-0.0020 ± 0.0017: within 2 SE (PatchTST, authors' sizes)"
    assert ettm1[8:] == ["–", "0.83 (other runs)",   # ours ran at another revision
                         "not ahead of PatchTST; no linear baseline with the cycle"]
    assert cells("ETTm2")[9] == "0.83 (other runs)"   # one revision, two processors
    assert etth1[9] == "0.83"                           # one revision, no processor recorded on either side
    note = next(line for line in lines if line.startswith("`benchmarks/side_by_side.py`"))
    assert "TSLib's PatchTST was not run on ETTm1" in note and "*PatchTST, authors' sizes* (on ETTm1)" in note
    assert note.count("PatchTST on ETTh1 at H = 96 runs with the TSLib settings") == 1, "once, whatever its seeds"


def test_the_speed_table_shows_the_arithmetic_per_window_and_reads_the_gap_from_it(tmp_path):
    base = dict(timestamp="2026-01-01T00:00:00+00:00", batch=32, steps="10/60", n_series=np.nan, load_start=1.0,
                load_end=1.0, n_threads=1, git_rev="abc")
    rows = [dict(base, case="import", library="tsformers", model="gateformer", label="tsformers", import_s=0.1),
            dict(base, case="train", library="tsformers", model="gateformer", label="tsformers", n_params=133344,
                 step_ms=40.0, windows_per_s=800.0, mflop_per_window=18.9, gflop_per_s=15.1,
                 hp=str({"d_model": 64, "d_ff": 64, "e_layers": 1, "n_heads": 4})),
            dict(base, case="train", library="neuralforecast", model="itransformer", label="neuralforecast",
                 n_params=131328, step_ms=20.0, windows_per_s=1600.0, mflop_per_window=5.4, gflop_per_s=8.6,
                 ratio=0.5, hp=str({"d_model": 96})),
            dict(base, case="defaults-train", library="tsformers", model="gateformer", label="tsformers",
                 n_params=109280, step_ms=25.0, windows_per_s=1280.0, mflop_per_window=10.0, gflop_per_s=12.8,
                 hp=str({"d_model": 64, "d_ff": 64, "e_layers": 1, "n_heads": 4, "patch_len": 16, "stride": 16})),
            dict(base, case="defaults-train", library="neuralforecast", model="itransformer", label="neuralforecast",
                 n_params=110000, step_ms=20.0, windows_per_s=1600.0, mflop_per_window=4.5, gflop_per_s=7.2,
                 ratio=0.8, hp=str({"d_model": 88})),
            dict(base, case="large-train", library="tsformers", model="gateformer", label="tsformers",
                 n_params=7_000_000, step_ms=400.0, windows_per_s=80.0, mflop_per_window=900.0, gflop_per_s=72.0,
                 hp=str({"d_model": 512, "d_ff": 512, "e_layers": 1, "n_heads": 8})),
            dict(base, case="large-train", library="neuralforecast", model="itransformer", label="neuralforecast",
                 n_params=7_100_000, step_ms=100.0, windows_per_s=320.0, mflop_per_window=300.0, gflop_per_s=96.0,
                 ratio=0.25, hp=str({"d_model": 1000}))]
    pd.DataFrame(rows).to_csv(tmp_path / "speed.csv", index=False)
    lines = load_report(tmp_path).speed_section()
    train = next(line for line in lines if line.startswith("| train | neuralforecast |"))
    assert "| 20.0 | 1600 | 5.4 | 8.6 |" in train and "| 0.50 |" in train
    reading = next(line for line in lines if line.startswith("Reading the train rows"))
    assert ("at d_model 64, patches of 8, 133,344 parameters, Gateformer's step does 3.5 times iTransformer's "
            "arithmetic per window (18.9 against 5.4 MFLOP) at 1.76 times its GFLOP/s, so 0.50 times its windows per "
            "second") in reading, "a row without patch_len ran the paper's patches of 8"
    assert ("at d_model 64, patches of 16, 109,280 parameters, Gateformer's step does 2.2 times iTransformer's "
            "arithmetic per window (10.0 against 4.5 MFLOP) at 1.78 times its GFLOP/s, so 0.80 times its windows per "
            "second") in reading
    assert "at d_model 512, patches of 8, 7,000,000 parameters, Gateformer's step does 3.0 times" in reading
    assert "at 0.75 times its GFLOP/s, so 0.25 times its windows per second" in reading


def test_the_speed_table_names_its_processor_and_the_train_ratios_of_the_runs_before_it(tmp_path):
    def run(stamp, ours, theirs, defaults=None, cpu=None):
        base = dict(timestamp=stamp, batch=32, steps="10/60", load_start=1.0, load_end=1.0, n_threads=1, n_params=1000,
                    n_series=np.nan, git_rev="abc", **({} if cpu is None else {"cpu": cpu}))
        rows = [dict(base, case="import", library="tsformers", model="gateformer", label="tsformers", import_s=0.1),
                dict(base, case="train", library="tsformers", model="gateformer", label="tsformers",
                     windows_per_s=ours),
                dict(base, case="train", library="neuralforecast", model="itransformer", label="neuralforecast",
                     windows_per_s=theirs, ratio=ours / theirs)]
        if defaults is not None:
            rows += [dict(base, case="defaults-train", library="tsformers", model="gateformer", label="tsformers",
                          windows_per_s=defaults[0]),
                     dict(base, case="defaults-train", library="neuralforecast", model="itransformer",
                          label="neuralforecast", windows_per_s=defaults[1], ratio=defaults[0] / defaults[1])]
        return rows

    rows = (run("2026-01-01T00:00:00+00:00", 500.0, 1000.0)
            + run("2026-01-02T00:00:00+00:00", 900.0, 1000.0, defaults=(940.0, 1000.0), cpu="Intel Xeon, AVX-512")
            + run("2026-01-03T00:00:00+00:00", 1030.0, 1000.0, defaults=(1040.0, 1000.0), cpu="AMD EPYC, AVX2"))
    rows[-3].update(ratio=1.03, ratio_low=0.9, ratio_high=1.1, repeats=3)  # the latest train row of theirs
    rows[-1].update(ratio=1.04)                                           # a run without repeats: no range
    pd.DataFrame(rows).to_csv(tmp_path / "speed.csv", index=False)
    lines = load_report(tmp_path).speed_section()
    assert sum(line.startswith("| train | tsformers |") for line in lines) == 1, "the table is the latest run"
    assert next(line for line in lines if line.startswith("| train | neuralforecast |")).endswith(
        "| 1.03 (0.90–1.10) | 1.0 |"), "the ratio's range over the paired repeats"
    assert next(line for line in lines if line.startswith("| defaults-train | neuralforecast |")).endswith(
        "| 1.04 | 1.0 |")
    line = next(line for line in lines if line.startswith("One run, "))
    assert line.startswith("One run, started 2026-01-03T00:00:00+00:00, rev abc, on AMD EPYC, AVX2.")
    assert line.endswith("the train ratios of the runs before it: 2026-01-01 (processor not recorded): paper size "
                         "0.50; 2026-01-02 (on Intel Xeon, AVX-512): paper size 0.90, defaults 0.94.")


def test_the_speed_run_names_the_processor_and_its_widest_vector_extension(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import speed

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC 9B14\nflags\t\t: fpu sse2 avx avx2 fma\n\n"
                    "processor\t: 1\nmodel name\t: AMD EPYC 9B14\nflags\t\t: fpu sse2 avx avx2 fma\n")
    assert speed.cpu_name(info) == "AMD EPYC 9B14, AVX2"
    info.write_text("model name\t: Intel(R) Xeon(R) Platinum\nflags\t: avx avx2 avx512f avx512bw\n")
    assert speed.cpu_name(info) == "Intel(R) Xeon(R) Platinum, AVX-512"
    assert speed.cpu_name(tmp_path / "absent")  # no /proc/cpuinfo: the platform's own name, never empty


def test_the_client_table_averages_seeds_shows_clients_gap_and_names_its_revisions(tmp_path):
    rows = [dict(_row("pvclient", "ETTh2", 96, s, m, 0.35, naive=(0.432, 0.422)), git_rev="aaa", fit_cpu_s=60.0)
            for s, m in [(0, 0.308), (1, 0.310), (2, 0.312)]]
    rows.append(dict(_row("pvclient", "ETTh2", 192, 0, 0.370, 0.40, naive=(0.53, 0.47)), git_rev="bbb", fit_cpu_s=90.0))
    rows.append(dict(_row("gateformer", "ETTh2", 96, 0, 0.30, 0.35), git_rev="ccc"))
    pd.DataFrame(rows).to_csv(tmp_path / "long_horizon.csv", index=False)
    pd.DataFrame([dict(timestamp="2026-01-01T00:00:00+00:00", dataset="ETTh2", horizon=h, lookback=96, model="linear",
                       mse=m, mae=a, n_windows=10, setting="", cpu_s=0.1, git_rev="ddd")
                  for h, m, a in [(96, 0.289, 0.338), (192, 0.375, 0.395)]]).to_csv(tmp_path / "baselines.csv",
                                                                                   index=False)
    lines = load_report(tmp_path).client_section()
    h96 = next(line for line in lines if line.startswith("| ETTh2 | 96 |"))
    h192 = next(line for line in lines if line.startswith("| ETTh2 | 192 |"))
    # Client's published ETTh2-96: 0.305 / 0.353
    assert h96 == "| ETTh2 | 96 | 3 | 0.310 ± 0.002 ▼ | 0.350 ▼ | 0.305 / 0.353 | +0.005 | 0.289 / 0.338 | 60 s |"
    assert "| 1 | 0.370 | 0.400 ▼ |" in h192, "better than the linear map's MSE, worse on MAE"
    assert lines[-2] == "Code revisions of the cells (2, not yet one): aaa, bbb.", "Gateformer's row is not in it"


def test_the_search_record_lists_each_setting_by_its_validation_loss_and_names_what_changed(tmp_path):
    """Validation-only runs and side-by-side runs with a validation loss, grouped by the parameters that differ
    from Gateformer's defaults (a run from before ``linear_base`` existed had none); mean ± sample sd over seeds
    (checked by hand); the lowest mean bold; rows without a validation loss (neuralforecast's) and other
    estimators left out."""
    from tsformers import GateformerForecaster

    defaults = GateformerForecaster().get_params()
    based = json.dumps({k: v for k, v in defaults.items() if k != "trainer_kwargs"} | {"random_state": 2})
    plain = json.dumps(json.loads(based) | {"linear_base": False, "random_state": 1})
    common = dict(timestamp="2026-01-01T00:00:00+00:00", dataset="ETTh1", horizon=96, git_rev="abc")
    older = json.dumps({k: v for k, v in json.loads(plain).items() if k != "linear_base"})  # before the parameter
    # a parameter the estimator no longer takes: a setting of its own where set, none where None
    gone = json.dumps(json.loads(based) | {"max_epoch_windows": 10000})
    gone_unset = json.dumps(json.loads(plain) | {"max_epoch_windows": None, "random_state": 2})
    pd.DataFrame([{**common, "model": "gateformer-defaults", "seed": s, "val_loss": v, "params": p}
                  for s, v, p in [(0, 0.70, older), (1, 0.68, plain), (2, 0.69, gone_unset), (0, 0.71, gone)]]
                 ).to_csv(tmp_path / "search.csv", index=False)
    pd.DataFrame([{**common, "library": "tsformers", "model": "gateformer-defaults+base", "seed": s, "val_loss": v,
                   "params": based, "git_rev": "def"} for s, v in enumerate([0.684, 0.686, 0.680])]
                 + [{**common, "library": "neuralforecast", "model": "itransformer", "seed": 0, "val_loss": None,
                     "params": "{}"}]).to_csv(tmp_path / "side_by_side.csv", index=False)
    lines = load_report(tmp_path).search_section()
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines if line.startswith("| ETTh1")]
    assert rows == [["ETTh1", "96", "`linear_base=False`", "3", "0.6900 ± 0.0100", "search.csv", "abc"],
                    ["ETTh1", "96", "`max_epoch_windows=10000`", "1", "0.7100", "search.csv", "abc"],
                    ["ETTh1", "96", "*defaults*", "3", "**0.6833 ± 0.0031**", "side_by_side.csv", "def"]]


def test_each_before_after_run_of_the_training_loop_gets_its_own_table_and_speed_up(tmp_path):
    def row(label, repeat, step_ms, stamp):
        return dict(timestamp=stamp, label=label, tree_rev="abc", repeat=repeat, batch=8, d_model=64, steps="20/220",
                    n_params=1000, fit_short_s=0.5, fit_long_s=3.0, step_ms=step_ms, windows_per_s=8e3 / step_ms,
                    fit_fixed_s=0.2, fit_long_wall_s=4.0, peak_rss_mib=700.0, load_start=1.0, load_end=1.0)
    rows = [row("before", 0, 14.0, "2026-01-01T00:00:00+00:00"), row("after", 0, 12.5, "2026-01-01T00:01:00+00:00"),
            row("before", 1, 15.0, "2026-01-01T00:02:00+00:00"), row("after", 1, 12.0, "2026-01-01T00:03:00+00:00"),
            row("foreach", 0, 13.0, "2026-02-01T00:00:00+00:00"), row("fused", 0, 10.4, "2026-02-01T00:01:00+00:00")]
    pd.DataFrame(rows).to_csv(tmp_path / "train_overhead.csv", index=False)
    lines = load_report(tmp_path).overhead_section()

    def table_row(label):
        return next(line for line in lines if line.startswith(f"| {label} |")).split(" | ")

    # each run's speed-up is against its own first tree, from the minimum step time over its repeats
    assert table_row("after")[2] == "12.00" and table_row("after")[-1] == f"{14.0 / 12.0:.2f} |"
    assert table_row("fused")[-1] == f"{13.0 / 10.4:.2f} |" and table_row("foreach")[-1] == "1.00 |"
    text = "\n".join(lines)
    assert text.index("| after |") < text.index("fused=True") < text.index("| foreach |")
    assert "Measured 2026-01-01T00:03:00+00:00" in text and "Measured 2026-02-01T00:01:00+00:00" in text


def test_rows_of_earlier_gateformer_defaults_stand_apart_from_the_current_defaults(tmp_path):
    from tsformers import GateformerForecaster

    today = GateformerForecaster().get_params()
    earlier = {**today, "batch_size": today["batch_size"] // 4, "patience": today["patience"] + 1}
    side = dict(timestamp="2026-01-01T00:00:00+00:00", dataset="ETTh1", horizon=96, library="tsformers",
                n_windows=100, fit_test_s=100.0, load_start=1.0, load_end=1.0, git_rev="abc", mae=0.4, epochs_run=5,
                n_params=10, fit_test_cpu_s=50.0)

    def runs(model, params, mses, stamp):
        return [{**side, "model": model, "seed": s, "mse": m, "params": json.dumps({**params, "random_state": s}),
                 "timestamp": stamp} for s, m in enumerate(mses)]

    rows = (runs("gateformer-defaults+base", earlier, [0.380, 0.381, 0.382], "2026-01-01T00:00:00+00:00")
            # the network alone under the earlier defaults (linear_base is in the label, not the setting)
            + runs("gateformer-defaults", {**earlier, "linear_base": False}, [0.39, 0.39, 0.39],
                   "2026-01-01T00:00:00+00:00")
            # today's defaults ran later: they must not supersede the earlier rows, nor be averaged with them
            + runs("gateformer-defaults+base", today, [0.370, 0.372, 0.371], "2026-02-01T00:00:00+00:00"))
    pd.DataFrame(rows).to_csv(tmp_path / "side_by_side.csv", index=False)
    lines = load_report(tmp_path).side_by_side_section()
    table = lines[:lines.index("### Gateformer's earlier defaults")]
    names = [line.split(" | ")[3] for line in table if line.startswith("| ETTh1 | 96 | tsformers |")]
    assert names == ["Gateformer (defaults)"], "the main table shows today's defaults only"
    current = next(line for line in table if "| Gateformer (defaults) |" in line)
    assert "0.3710 ± 0.0010" in current
    history = lines[lines.index("### Gateformer's earlier defaults"):lines.index("### The goal, cell by cell")]
    setting = f"`batch_size={earlier['batch_size']}`, `patience={earlier['patience']}`"
    settings = [line.split(" | ")[2] for line in history if line.startswith("| ETTh1 | 96 |")]
    assert settings == [setting, f"{setting}, no linear base"]
    earlier_row = next(line for line in history if f"| {setting} |" in line)
    # today's defaults minus the row: 0.370 - 0.380, 0.372 - 0.381, 0.371 - 0.382 by seed
    cells = earlier_row.split(" | ")
    assert cells[5] == "0.3810 ± 0.0010" and cells[7] == "-0.0100 ± 0.0006: ahead" and cells[-1] == "abc |"
    goal = lines[lines.index("### The goal, cell by cell"):]
    assert not [line for line in goal if "earlier defaults" in line and line.startswith("| ETTh1")], \
        "the goal reads today's settings only"


def test_the_side_by_side_reruns_line_counts_each_library_apart(tmp_path):
    report = load_report(tmp_path)
    nf = dict(library="neuralforecast", dataset="ETTh1", horizon=96, model="itransformer")
    ours = dict(nf, library="tsformers", model="gateformer")
    rows = [dict(nf, seed=0, mse=0.386627, git_rev="a", timestamp="2026-01-01"),
            dict(nf, seed=0, mse=0.386627, git_rev="b", timestamp="2026-02-01"),      # reproduced
            dict(nf, seed=1, mse=0.3869, git_rev="a", timestamp="2026-01-01"),
            dict(nf, seed=1, mse=0.3870, git_rev="b", timestamp="2026-02-01"),        # changed
            dict(nf, seed=2, mse=0.3860, git_rev="a", timestamp="2026-01-01"),        # ran once: not counted
            dict(ours, seed=0, mse=0.3897, git_rev="a", timestamp="2026-01-01"),
            dict(ours, seed=0, mse=0.3897, git_rev="c", timestamp="2026-03-01")]      # reproduced
    runs = pd.DataFrame(rows)
    shown = report.latest(runs, ["dataset", "horizon", "library", "model", "seed"])
    assert report.side_by_side_reruns_line(runs, shown) == (
        " neuralforecast's rows: 2 of their runs here ran again at a later revision (a, b), and 1 gave the MSE of "
        "their previous run to the last recorded digit (1 did not, by 0.0001 in MSE). Ours: 1 of their runs here ran again at a later "
        "revision (a, c), and 1 gave the MSE of their previous run to the last recorded digit.")
    # a library none of whose shown runs ran twice says nothing
    assert report.side_by_side_reruns_line(runs, shown[shown["seed"] == 2]) == ""


def test_the_reruns_line_says_by_how_much_and_on_which_processors_the_changed_runs_ran(tmp_path):
    report = load_report(tmp_path)
    ours = dict(library="tsformers", dataset="ETTm1", horizon=96, model="gateformer-defaults+base")
    intel, amd = "Intel(R) Xeon(R) Processor, AVX-512", "AMD EPYC, AVX2"
    rows = [dict(ours, seed=0, mse=0.318966, git_rev="a", timestamp="2026-01-01", cpu=None),
            dict(ours, seed=0, mse=0.319084, git_rev="b", timestamp="2026-02-01", cpu=intel),   # processor new
            dict(ours, seed=1, mse=0.3200, git_rev="a", timestamp="2026-01-01", cpu=amd),
            dict(ours, seed=1, mse=0.3210, git_rev="b", timestamp="2026-02-01", cpu=intel),     # two processors
            dict(ours, seed=2, mse=0.3300, git_rev="a", timestamp="2026-01-01", cpu=intel),
            dict(ours, seed=2, mse=0.3301, git_rev="b", timestamp="2026-02-01", cpu=intel),     # one processor
            dict(ours, seed=3, mse=0.3400, git_rev="a", timestamp="2026-01-01", cpu=None),
            dict(ours, seed=3, mse=0.3400, git_rev="b", timestamp="2026-02-01", cpu=intel)]     # reproduced
    runs = pd.DataFrame(rows)
    shown = report.latest(runs, ["dataset", "horizon", "library", "model", "seed"])
    assert report.side_by_side_reruns_line(runs, shown) == (
        " Ours: 4 of their runs here ran again at a later revision (a, b), and 1 gave the MSE of their previous run "
        f"to the last recorded digit (3 did not, by 0.0001 to 0.001 in MSE; 1 reran on {intel} after a run that "
        f"recorded no processor, 1 ran on {amd}, then on {intel}, 1 ran both times on {intel}: a fit is the same "
        "to the bit for one code on one processor, not across instruction sets (see [the design notes](design.md)), "
        "and a later revision may have changed the code a row runs).")


def test_the_cpu_caveat_of_the_side_by_side_tables_shows_only_beside_rows_recorded_before_71051cc(tmp_path):
    side = dict(dataset="ETTh1", horizon=96, library="tsformers", n_windows=100, fit_test_s=100.0, load_start=1.0,
                load_end=1.0, git_rev="abc", mae=0.4, epochs_run=5, n_params=10, fit_test_cpu_s=50.0)
    caveat = "our rows recorded before rev 71051cc also counted the intervals recalibrated"
    for stamp, shown in (("2026-12-05T17:00:00+00:00", True), ("2026-12-06T02:00:00+00:00", False)):
        rows = [{**side, "model": "gateformer-defaults+base", "seed": s, "mse": 0.37, "timestamp": stamp}
                for s in range(3)]
        pd.DataFrame(rows).to_csv(tmp_path / "side_by_side.csv", index=False)
        note = next(line for line in load_report(tmp_path).side_by_side_section()
                    if line.startswith("`benchmarks/side_by_side.py`"))
        assert (caveat in note) is shown, stamp


def test_the_side_by_side_table_reads_its_differences_from_the_defaults_whichever_ran_last(tmp_path):
    side = dict(dataset="ETTh1", horizon=96, n_windows=100, fit_test_s=100.0, load_start=1.0, load_end=1.0,
                git_rev="abc", mae=0.4, epochs_run=5, n_params=10, fit_test_cpu_s=50.0)

    def runs(library, model, mses, stamp):
        return [{**side, "library": library, "model": model, "seed": s, "mse": m, "timestamp": stamp}
                for s, m in enumerate(mses)]

    for paper_stamp in ("2026-01-01T00:00:00+00:00", "2026-03-01T00:00:00+00:00"):
        rows = (runs("neuralforecast", "itransformer", [0.380, 0.381, 0.382], "2026-01-15T00:00:00+00:00")
                + runs("tsformers", "gateformer", [0.390, 0.392, 0.388], paper_stamp)
                + runs("tsformers", "gateformer-defaults+base", [0.370, 0.372, 0.371], "2026-02-01T00:00:00+00:00"))
        pd.DataFrame(rows).to_csv(tmp_path / "side_by_side.csv", index=False)
        lines = load_report(tmp_path).side_by_side_section()
        table = [line.split(" | ") for line in lines if line.startswith("| ETTh1 | 96 | ")][:3]
        assert [row[3] for row in table] == ["Gateformer (defaults)", "Gateformer", "iTransformer"], paper_stamp
        # the defaults minus the row, by seed: paper settings -0.020, -0.020, -0.017; iTransformer -0.010, -0.009, -0.011
        assert table[1][8] == "-0.0190 ± 0.0010: ahead" and table[2][8] == "-0.0100 ± 0.0006: ahead", paper_stamp


def test_the_baseline_reruns_line_compares_each_cell_with_its_previous_run(tmp_path):
    base = dict(dataset="ETTh1", lookback=96, mae=0.4, n_windows=10, setting="", cpu_s=0.1, mase=1.0)
    rows = [dict(base, horizon=96, model="linear", mse=0.3831, git_rev="a", timestamp="2026-01-01"),
            dict(base, horizon=96, model="linear", mse=0.3831, git_rev="b", timestamp="2026-02-01"),   # reproduced
            dict(base, horizon=96, model="seasonal_naive", mse=0.50, git_rev="o", timestamp="2025-12-01"),
            dict(base, horizon=96, model="seasonal_naive", mse=0.51, git_rev="a", timestamp="2026-01-01"),
            dict(base, horizon=96, model="seasonal_naive", mse=0.52, git_rev="b", timestamp="2026-02-01"),  # changed
            dict(base, horizon=96, model="linear_cycle", mse=0.3711, git_rev="b", timestamp="2026-02-01")]  # once
    pd.DataFrame(rows).to_csv(tmp_path / "baselines.csv", index=False)
    report = load_report(tmp_path)
    shown = report.latest(pd.DataFrame(rows), ["dataset", "horizon", "model"])
    assert report.baseline_reruns_line(shown) == (" The baselines are closed-form: 2 of their cells here ran again at "
                                                  "a later revision (a, b), and 1 gave the MSE of their previous run "
                                                  "to the last recorded digit (1 did not, by 0.01 in MSE).")
    assert report.baseline_reruns_line(shown[shown["model"] == "linear_cycle"]) == ""


def test_the_anchors_reruns_line_pairs_runs_of_the_same_windows_only(tmp_path):
    base = dict(dataset="exchange", horizon=96, lookback=96, mae=0.2, setting="", cpu_s=1.0, mase=1.0)
    rows = [dict(base, model="autoets", n_windows=1422, mse=0.0810, git_rev="a", timestamp="2026-01-01"),
            dict(base, model="autoets", n_windows=1422, mse=0.0810, git_rev="b", timestamp="2026-02-01"),  # reproduced
            dict(base, model="autotheta", n_windows=204, mse=0.0812, git_rev="a", timestamp="2026-01-01"),  # stride 7
            dict(base, model="autotheta", n_windows=178, mse=0.0809, git_rev="b", timestamp="2026-02-01")]  # stride 8
    runs = pd.DataFrame(rows)
    report = load_report(tmp_path)
    shown = report.latest(runs, ["dataset", "horizon", "model"])
    # the AutoTheta cell read other windows at b: not a rerun of a's, so it is neither counted nor a difference
    assert report.anchors_reruns_line(runs, shown) == (
        " The anchors are deterministic: 1 of their cells here ran again at a later revision (a, b), and 1 gave the "
        "MSE of their previous run to the last recorded digit.")
    assert report.anchors_reruns_line(runs, shown[shown["model"] == "autotheta"]) == ""


def test_the_ensemble_section_pairs_two_networks_with_one_on_validation_and_test(tmp_path):
    from tsformers import GateformerForecaster

    today = GateformerForecaster().get_params()
    one = {k: v for k, v in today.items() if k != "ensemble_size"}       # rows from before the parameter
    side = dict(timestamp="2026-01-01T00:00:00+00:00", dataset="ETTm1", horizon=96, library="tsformers",
                n_windows=100, fit_test_s=100.0, load_start=1.0, load_end=1.0, mae=0.4, epochs_run=5, n_params=10)

    def runs(params, mses, vals, cpu, rev):
        return [{**side, "model": "gateformer-defaults+base", "seed": s, "mse": m, "val_loss": v, "git_rev": rev,
                 "fit_test_cpu_s": cpu, "params": json.dumps({**params, "random_state": s})}
                for s, (m, v) in enumerate(zip(mses, vals))]

    rows = (runs(one, [0.320, 0.324, 0.319], [0.376, 0.373, 0.378], 60.0, "old")
            + runs(today, [0.318, 0.321, 0.318], [0.373, 0.371, 0.375], 120.0, "new"))
    pd.DataFrame(rows).to_csv(tmp_path / "side_by_side.csv", index=False)
    lines = load_report(tmp_path).side_by_side_section()
    section = lines[lines.index("### The seed ensemble"):]
    cells = next(line for line in section if line.startswith("| ETTm1 | 96 |")).split(" | ")
    assert cells[2] == "0.3757 ± 0.0025 (3)" and cells[3] == "0.3730 ± 0.0020 (3)"    # validation: one, two
    assert cells[4] == "0.3210 ± 0.0026" and cells[5] == "0.3190 ± 0.0017"             # test: one, two
    # two minus one by seed: -0.002, -0.003, -0.001
    assert cells[6] == "-0.0020 ± 0.0006: ahead"
    # two revisions: two runs, whose CPU seconds the cell flags as compared across runs
    assert cells[-2] == "60 / 120 (other runs)" and cells[-1] == "old / new |"


def test_the_gpu_section_shows_the_latest_checks_and_their_training_steps_or_that_none_ran(tmp_path):
    assert "Not run yet: no GPU machine has been lent to a session since the script was written." in \
        load_report(tmp_path).gpu_section()
    check = dict(dataset="ETTh1", horizon=96, accelerator="gpu: NVIDIA H100", mse=0.3674, mae=0.3901, epochs_run=12,
                 fit_s=95.0, on_cpu=True, max_abs_diff=0.0, git_rev="abc1234", torch_version="2.11.0+cu130")
    earlier, later = "2026-01-01T00:00:00+00:00", "2026-02-01T00:00:00+00:00"
    pd.DataFrame([dict(check, timestamp=earlier, precision="32-true", identical=True, mse=0.5),
                  dict(check, timestamp=later, precision="32-true", identical=True),
                  dict(check, timestamp=later, precision="bf16-mixed", identical=False, max_abs_diff=3e-7)]
                 ).to_csv(tmp_path / "gpu_check.csv", index=False)
    step = dict(case="defaults-train", n_params=109280, ratio=float("nan"))
    pd.DataFrame([dict(step, timestamp=earlier, precision="32-true", library="tsformers", model="gateformer",
                       step_ms=9.0, windows_per_s=3556.0),
                  dict(step, timestamp=later, precision="bf16-mixed", library="tsformers", model="gateformer",
                       step_ms=4.0, windows_per_s=8000.0),
                  dict(step, timestamp=later, precision="bf16-mixed", library="neuralforecast", model="itransformer",
                       n_params=111944, step_ms=5.0, windows_per_s=6400.0, ratio=1.25)]
                 ).to_csv(tmp_path / "gpu_speed.csv", index=False)
    lines = load_report(tmp_path).gpu_section()
    rows = [line for line in lines if line.startswith("| ETTh1 |")]
    assert rows == ["| ETTh1 | 96 | 32-true | gpu: NVIDIA H100 | 0.3674 | 0.3901 | 12 | 95 s | yes | identical |",
                    "| ETTh1 | 96 | bf16-mixed | gpu: NVIDIA H100 | 0.3674 | 0.3901 | 12 | 95 s | yes | **differs** "
                    "(max 3e-07) |"], "the latest run only, a forecast that changed on reading marked"
    steps = [line for line in lines if line.startswith("| defaults-train |")]
    assert steps == ["| defaults-train | bf16-mixed | tsformers | Gateformer | 109,280 | 4.00 | 8000 |  |",
                     "| defaults-train | bf16-mixed | neuralforecast | iTransformer | 111,944 | 5.00 | 6400 | 1.25 |"]


def test_a_carried_neuralforecast_row_stands_for_its_new_revision_but_is_no_rerun_and_no_run_of_it(tmp_path):
    """A row carried by ``rerun.py --carry`` (ran at one revision, nothing it reads changed at the next) counts for
    the table's revision, is named as carried, is not a rerun that reproduced itself, and its CPU seconds are of
    another run than ours at the new revision."""
    side = dict(dataset="ETTh1", horizon=96, n_windows=100, fit_test_s=100.0, load_start=1.0, load_end=1.0, mae=0.4,
                epochs_run=5, n_params=10)
    ours = [{**side, "timestamp": "2026-03-01", "library": "tsformers", "model": "gateformer", "seed": s, "mse": m,
             "fit_test_cpu_s": 50.0, "git_rev": "new"} for s, m in enumerate([0.370, 0.372, 0.371])]
    theirs = [{**side, "timestamp": "2026-01-01", "library": "neuralforecast", "model": "itransformer", "seed": s,
               "mse": m, "fit_test_cpu_s": 60.0, "git_rev": "old"} for s, m in enumerate([0.380, 0.381, 0.382])]
    moved = [{**row, "git_rev": "new", "ran_at": "old"} for row in theirs]
    pd.DataFrame(ours + theirs + moved).to_csv(tmp_path / "side_by_side.csv", index=False)
    report = load_report(tmp_path)
    lines = report.side_by_side_section()
    note = next(line for line in lines if line.startswith("Every cell of this table comes from code revision new."))
    assert ("Of these, 3 of neuralforecast's rows ran at old and stand for new without running again" in note)
    assert "ran again at a later revision" not in note          # the carried rows are no reruns of themselves
    goal = lines[lines.index("### The goal, cell by cell"):]
    etth1 = [c.strip() for c in next(line for line in goal if line.startswith("| ETTh1 |")).strip("|").split("|")]
    assert etth1[5] == "-0.0100 ± 0.0006: ahead" and etth1[-2] == "0.83 (other runs)"
    # rows that ran where they stand say nothing of it
    pd.DataFrame(ours + [{**row, "git_rev": "new"} for row in theirs]).to_csv(tmp_path / "side_by_side.csv",
                                                                             index=False)
    plain = load_report(tmp_path).side_by_side_section()
    assert not any("without running again" in line for line in plain)
    goal_row = [line for line in plain if line.startswith("| ETTh1 |")][-1]
    assert [c.strip() for c in goal_row.strip("|").split("|")][-2] == "0.83"


def test_of_rows_with_one_timestamp_the_latest_is_the_last_in_the_file(tmp_path):
    # a carried row keeps its run's timestamp and follows the row it copies: the table shows the copy
    report = load_report(tmp_path)
    earlier = [dict(run=i % 7, timestamp=f"2026-01-0{1 + i % 3}", git_rev="old") for i in range(40)]
    copies = [dict(run=i, timestamp="2026-01-03", git_rev="new") for i in range(7)]
    shown = report.latest(pd.DataFrame(earlier + copies), ["run"])
    assert sorted(shown["run"]) == list(range(7)) and set(shown["git_rev"]) == {"new"}
    # and the first of them where the copy comes first: the file's order decides, not the revision's name
    shown = report.latest(pd.DataFrame(copies + [dict(r, timestamp="2026-01-03") for r in earlier]), ["run"])
    assert set(shown["git_rev"]) == {"old"}


def test_the_readme_summary_shows_every_anchor_and_baseline_names_what_falls_short_and_counts_the_longer_cells(
        tmp_path):
    side = dict(timestamp="2026-01-01T00:00:00+00:00", n_windows=100, fit_test_s=100.0, load_start=1.0, load_end=1.0,
                git_rev="abc", mae=0.4, epochs_run=5, n_params=10)

    def runs(dataset, horizon, library, model, mses, cpu):
        return [{**side, "dataset": dataset, "horizon": horizon, "library": library, "model": model, "seed": s,
                 "mse": m, "fit_test_cpu_s": cpu} for s, m in enumerate(mses)]

    ours = "gateformer-defaults+base"
    rows = (runs("ETTh1", 96, "tsformers", ours, [0.370, 0.372, 0.371], 50.0)
            + runs("ETTh1", 96, "tsformers", "gateformer", [0.390, 0.391, 0.392], 80.0)   # not the defaults: left out
            + runs("ETTh1", 96, "neuralforecast", "itransformer", [0.380, 0.381, 0.382], 100.0)
            + runs("ETTh1", 96, "neuralforecast", "patchtst-authors", [0.379, 0.380, 0.381], 400.0)
            # ETTh2: level with the linear map with the cycle, PatchTST not run
            + runs("ETTh2", 96, "tsformers", ours, [0.285, 0.286, 0.287], 50.0)
            + runs("ETTh2", 96, "neuralforecast", "itransformer", [0.300, 0.301, 0.302], 100.0)
            # Exchange: behind the last value, outside the goal's count
            + runs("exchange", 96, "tsformers", ours, [0.084, 0.085, 0.083], 50.0)
            + runs("exchange", 96, "neuralforecast", "itransformer", [0.087, 0.087, 0.087], 100.0)
            # the longer horizons: one met, one behind the linear map
            + runs("ETTh1", 192, "tsformers", ours, [0.410, 0.411, 0.412], 50.0)
            + runs("ETTh1", 192, "neuralforecast", "itransformer", [0.440, 0.441, 0.442], 100.0)
            + runs("ETTh1", 192, "neuralforecast", "patchtst-authors", [0.480, 0.481, 0.482], 400.0)
            + runs("ETTh1", 336, "tsformers", ours, [0.460, 0.461, 0.462], 50.0)
            + runs("ETTh1", 336, "neuralforecast", "itransformer", [0.470, 0.471, 0.472], 100.0)
            + runs("ETTh1", 336, "neuralforecast", "patchtst-authors", [0.520, 0.521, 0.522], 400.0))
    pd.DataFrame(rows).to_csv(tmp_path / "side_by_side.csv", index=False)
    base = dict(timestamp="2026-01-01T00:00:00+00:00", lookback=96, mae=0.4, n_windows=100, setting="", cpu_s=0.1,
                git_rev="abc")
    scores = {("ETTh1", 96): (1.29, 0.51, 0.383, 0.375), ("ETTh2", 96): (0.43, 0.39, 0.289, 0.286),
              ("exchange", 96): (0.081, 0.086, 0.083, 0.083), ("ETTh1", 192): (1.32, 0.58, 0.434, 0.415),
              ("ETTh1", 336): (1.33, 0.65, 0.475, 0.450)}
    pd.DataFrame([{**base, "dataset": d, "horizon": h, "model": model, "mse": mse}
                  for (d, h), mses in scores.items()
                  for model, mse in zip(["last_value", "seasonal_naive", "linear", "linear_cycle"], mses)]).to_csv(
        tmp_path / "baselines.csv", index=False)
    report = load_report(tmp_path)
    lines = report.readme_summary()

    def cells(dataset):
        line = next(line for line in lines if line.startswith(f"| {dataset} |"))
        return [c.strip() for c in line.strip("|").split("|")]

    assert lines[2].startswith("| data | Gateformer (defaults) | iTransformer | PatchTST | last value | "
                               "seasonal naive | linear | linear + cycle |")
    assert cells("ETTh1") == ["ETTh1", "**0.3710** ± 0.0010", "0.3810 ± 0.0010", "0.3800 ± 0.0010 (authors' sizes)",
                              "1.2900", "0.5100", "0.3830", "0.3750", "0.50", "met"]
    # paired differences -0.001, 0.000, +0.001 against 0.286: within two standard errors, so not ahead
    etth2 = cells("ETTh2")
    assert etth2[3] == "not run" and etth2[7] == "**0.2860**"
    assert etth2[-1] == "PatchTST not run; not ahead of linear + cycle (+0.0000 ± 0.0006)"
    exchange = cells("exchange")
    assert exchange[4] == "**0.0810**" and exchange[-1] == "outside the goal's count (skill over the last value -3.7%)"
    assert [line for line in lines if line.startswith("| ETTh1 |")] == [lines[4]], "the defaults' row alone"
    assert lines[-1] == ("At H = 192 and 336 the goal is met in 1 of 2 cells (ETTh1); short of it: ETTh1 336: "
                         "not ahead of linear + cycle (+0.0110 ± 0.0006).")

    readme = tmp_path / "README.md"
    readme.write_text("# x\n\nabove\n" + report.README_MARKERS[0] + "\nold\n" + report.README_MARKERS[1] + "\nbelow\n")
    readme.chmod(0o640)
    assert report.write_readme_summary(readme, ["new", "lines"])
    assert readme.read_text() == ("# x\n\nabove\n" + report.README_MARKERS[0] + "\nnew\nlines\n"
                                  + report.README_MARKERS[1] + "\nbelow\n")
    assert readme.stat().st_mode & 0o777 == 0o640, "the README keeps its permission bits"
    unmarked = tmp_path / "OTHER.md"
    unmarked.write_text("no markers\n")
    assert not report.write_readme_summary(unmarked, ["new"]) and unmarked.read_text() == "no markers\n"


def test_the_committed_benchmarks_page_and_readme_summary_are_what_the_report_renders_from_the_committed_results():
    report = load_report(BENCHMARKS / "results")
    root = BENCHMARKS.parent
    assert (root / "docs" / "benchmarks.md").read_text() == report.render(), \
        "docs/benchmarks.md is stale: run .venv/bin/python benchmarks/report.py"
    readme = (root / "README.md").read_text()
    start, end = report.README_MARKERS
    block = readme.split(start, 1)[1].split(end, 1)[0]
    assert block == "\n" + "\n".join(report.readme_summary()) + "\n", \
        "README.md's summary is stale: run .venv/bin/python benchmarks/report.py"
