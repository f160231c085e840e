"""benchmarks/report.py: the seed spread and the other-estimator rows come out of the results CSV correctly."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd

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


def _row(model, dataset, horizon, seed, mse, mae, stamp="2026-01-01T00:00:00+00:00"):
    return dict(timestamp=stamp, dataset=dataset, horizon=horizon, model=model, seed=seed, mse=mse, mae=mae,
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
    assert f"**{per_seed_avg.mean():.3f} ± {per_seed_avg.std(ddof=1):.3f}**" in avg_line
    assert "| ETTh2 | 96 |" in text and "| ETTh2 | avg |" not in text
    assert "ETTm1" not in text


def test_other_estimators_are_listed_next_to_the_gateformer_cell(tmp_path):
    rows = [_row("gateformer", "ETTh1", 96, 0, 0.389, 0.402), _row("lmuformer", "ETTh1", 96, 0, 0.407, 0.430),
            _row("atlas", "ETTh1", 96, 0, 0.395, 0.410), _row("gtrxl", "ETTh1", 96, 1, 0.1, 0.1)]
    pd.DataFrame(rows).to_csv(tmp_path / "long_horizon.csv", index=False)
    lines = load_report(tmp_path).other_models_section()
    body = [line for line in lines if line.startswith("| ETTh1 |")]
    # seed 0 only, sorted by MSE, each with the Gateformer cell for reference
    assert [line.split(" | ")[2] for line in body] == ["ATLAS", "LMUFormer"]
    assert all(line.rstrip(" |").endswith("0.389 / 0.402") for line in body)
