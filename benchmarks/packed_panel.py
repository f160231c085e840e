"""The packed advance of a ragged panel against one network call per distinct span, for the streaming estimators.

A seeded ragged panel (``--series`` hourly series of distinct lengths between ``--min-steps`` and
``--max-steps``, each starting at its own hour) is forecast by LMUFormer, GTrXL and ATLAS, each fitted
small on a few of its series (one epoch, tiny widths: training is not what is measured). ``predict(df)``
advances every series' state over its whole history, once per variant, the variants taking turns in
each of ``--repeats`` rounds (so a busy machine slows them alike): the per-span reference (the private
``tsformers.estimators.forecasting._advance_spans``, one call per distinct span) and the packed advance
(``advance_panel``, the default). Per model and variant: the wall time of ``predict`` (minimum and
median), the network calls, the peak RSS of a fresh process that loads the saved model and predicts
once (and its rise during ``predict``), and the largest difference of the forecasts from the reference.
Rows are appended to ``benchmarks/results/packed_panel.csv``; ``report.py`` renders the latest run.

    nice -n 19 .venv/bin/python benchmarks/packed_panel.py                    # ~10 minutes on one thread
    .venv/bin/python benchmarks/packed_panel.py --series 50 --repeats 1       # a quick look
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from datetime import datetime, timezone
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import torch

import tsformers.estimators.network_path as network_path
from tsformers import AtlasForecaster, BaseForecaster, GTrXLForecaster, LMUFormerForecaster
from tsformers.estimators.forecasting import CHUNK, _advance_spans

REPO = Path(__file__).resolve().parents[1]
HORIZON, LOOKBACK, FIT_SERIES = 24, 96, 16
# linear_base=False: the forecast is the network's, whose advance is measured (with the base, a network
# that does not beat the linear map on validation leaves the forecast to the map alone)
TRAIN = dict(horizon=HORIZON, lookback=LOOKBACK, max_epochs=1, batch_size=64, random_state=0, linear_base=False,
             trainer_kwargs={"limit_train_batches": 20, "limit_val_batches": 2})
MODELS = {
    "LMUFormer": (LMUFormerForecaster, dict(d_model=16, memory_size=16)),
    "GTrXL": (GTrXLForecaster, dict(d_model=16, n_heads=2, d_ff=32, n_layers=2, segment_len=32, mem_len=32)),
    "ATLAS": (AtlasForecaster, dict(d_model=16, n_heads=2, d_ff=32, n_layers=1, d_key=4, window=16, chunk_size=16,
                                    omega_window=4)),
}
VARIANTS = ("per-span", "packed")
FIELDS = ["timestamp", "git_rev", "model", "variant", "n_series", "min_steps", "max_steps", "total_steps",
          "distinct_spans", "chunk", "calls", "repeats", "min_s", "median_s", "speedup_min", "speedup_median",
          "peak_rss_mib", "predict_rss_mib", "max_abs_diff", "load_start", "load_end", "torch_version", "n_threads"]


def ragged_panel(n_series: int, min_steps: int, max_steps: int, seed: int = 0) -> pd.DataFrame:
    """``n_series`` hourly series of distinct lengths in [min_steps, max_steps], each from its own start."""
    rng = np.random.default_rng(seed)
    lengths = rng.choice(np.arange(min_steps, max_steps + 1), n_series, replace=False)
    starts = rng.integers(0, max_steps - lengths + 1)
    parts = []
    for i, (start, n) in enumerate(zip(starts, lengths)):
        times = pd.date_range("2024-01-01", periods=n, freq="h") + pd.Timedelta(hours=int(start))
        level, phase = rng.normal(0, 2), rng.uniform(0, 2 * np.pi)
        y = level + np.sin(2 * np.pi * times.hour / 24 + phase) + 0.2 * rng.standard_normal(n)
        parts.append(pd.DataFrame({"unique_id": f"s{i:04d}", "ds": times, "y": y}))
    return pd.concat(parts, ignore_index=True)


@contextmanager
def variant(name: str):
    """``predict`` with the per-span reference in place of the packed advance, or as it is."""
    with mock.patch.object(network_path, "advance_panel", _advance_spans) if name == "per-span" else nullcontext():
        yield


def timed_predict(f, df: pd.DataFrame, name: str) -> tuple[float, int, np.ndarray]:
    """One ``predict(df)`` in ``name``: its wall time, its network calls and its forecast."""
    calls, advance = [], f.network_.advance
    f.network_.advance = lambda state, x: (calls.append(1), advance(state, x))[1]
    try:
        with variant(name):
            start = time.perf_counter()
            out = f.predict(df)
            elapsed = time.perf_counter() - start
    finally:
        f.network_.advance = advance
    return elapsed, len(calls), out["y"].to_numpy()


def _status_mib(field: str) -> float:
    """A memory field of this process (``VmRSS``, ``VmHWM``: its peak) from /proc/self/status, in MiB."""
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field))
    return int(line.split()[1]) / 1024


def memory_child(model_dir: str, name: str, args) -> None:
    """In a fresh process: load the model, predict once in ``name``; print the peak RSS and its rise (MiB)."""
    torch.set_num_threads(args.threads)
    df = ragged_panel(args.series, args.min_steps, args.max_steps)
    f = BaseForecaster.load(model_dir)
    Path("/proc/self/clear_refs").write_text("5")  # the peak RSS starts again from here (Linux)
    before = _status_mib("VmRSS")
    with variant(name):
        f.predict(df)
    peak = _status_mib("VmHWM")
    print(json.dumps({"peak_rss_mib": peak, "predict_rss_mib": peak - before}))


def measure(model: str, df: pd.DataFrame, args, tmp: Path) -> dict:
    cls, widths = MODELS[model]
    fit_frame = df[df.unique_id.isin(df.unique_id.unique()[:FIT_SERIES])]
    f = cls(**TRAIN, **widths).fit(fit_frame)
    rows = {name: {} for name in VARIANTS}
    times, forecasts = {name: [] for name in VARIANTS}, {}
    for r in range(args.repeats):
        for name in VARIANTS if r % 2 == 0 else VARIANTS[::-1]:
            elapsed, rows[name]["calls"], forecasts[name] = timed_predict(f, df, name)
            times[name].append(elapsed)
    model_dir = f.save(tmp / model)
    for name in VARIANTS:
        child = subprocess.run([sys.executable, __file__, "--memory-child", str(model_dir), name,
                                "--series", str(args.series), "--min-steps", str(args.min_steps),
                                "--max-steps", str(args.max_steps), "--threads", str(args.threads)],
                               capture_output=True, text=True, check=True)
        rows[name] |= json.loads(child.stdout.strip().splitlines()[-1])
    ref = times["per-span"]
    for name in VARIANTS:
        rows[name] |= {"min_s": min(times[name]), "median_s": float(np.median(times[name])),
                       "speedup_min": min(ref) / min(times[name]),
                       "speedup_median": float(np.median(ref) / np.median(times[name])),
                       "max_abs_diff": float(np.abs(forecasts[name] - forecasts["per-span"]).max())}
        print(model, name, rows[name], flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--series", type=int, default=500)
    p.add_argument("--min-steps", type=int, default=200)
    p.add_argument("--max-steps", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "packed_panel.csv")
    p.add_argument("--memory-child", nargs=2, metavar=("MODEL_DIR", "VARIANT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_child:
        memory_child(*args.memory_child, args)
        return 0
    # the benchmarks' own helpers, imported here so that the memory child above loads no more than a user would
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _protocol import append_rows
    from long_horizon import git_rev

    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0]
    df = ragged_panel(args.series, args.min_steps, args.max_steps)
    sizes = df.groupby("unique_id").size()
    spans = df.groupby("unique_id")["ds"].agg(["min", "max"]).drop_duplicates()
    panel = dict(n_series=args.series, min_steps=int(sizes.min()), max_steps=int(sizes.max()),
                 total_steps=len(df), distinct_spans=len(spans), chunk=CHUNK, repeats=args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        results = {model: measure(model, df, args, Path(tmp)) for model in args.models}
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    common = dict(timestamp=stamp, git_rev=git_rev(), load_start=load_start, load_end=os.getloadavg()[0],
                  torch_version=torch.__version__, n_threads=torch.get_num_threads(), **panel)
    append_rows(args.out, [{**common, "model": model, "variant": name, **row}
                           for model, rows in results.items() for name, row in rows.items()], FIELDS)
    print(f"appended {sum(map(len, results.values()))} rows to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
