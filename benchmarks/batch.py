"""Batch forecasting benchmark: `tsformers forecast` on 10,000 and 100,000 short series.

Trains a small Gateformer once on a long panel, saves it, writes Parquet panels
of short series (``--steps`` rows each, just over the lookback), and times the
``tsformers forecast`` command on each in a fresh process: wall time, the
forecast time the command logs (reading, validating, forecasting and writing,
without Python's start-up and imports), series per second and the peak
resident memory of that process (its ``VmHWM`` at exit). One CSV row per
run is appended to ``--out``.

    .venv/bin/python benchmarks/batch.py --threads 1
    .venv/bin/python benchmarks/batch.py --series 100000 --chunk-sizes 5000 100000   # bounded memory vs one chunk
"""
from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def make_panel(n_series: int, n_steps: int, seed: int = 0, first_id: int = 0) -> pd.DataFrame:
    """A long panel (``unique_id``, ``ds``, ``y``) of daily-seasonal hourly series, generated vectorised.

    The series are named ``s0000000``... from ``first_id`` on (to write a big panel a part at a time).
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n_steps)
    level = rng.uniform(10, 50, (n_series, 1))
    amplitude = rng.uniform(2, 8, (n_series, 1))
    phase = rng.uniform(0, 2 * np.pi, (n_series, 1))
    y = level + amplitude * np.sin(2 * np.pi * t / 24 + phase) + rng.normal(0, 0.5, (n_series, n_steps))
    ids = np.char.add("s", np.char.zfill(np.arange(first_id, first_id + n_series).astype(str), 7))
    return pd.DataFrame({"unique_id": np.repeat(ids, n_steps),
                         "ds": np.tile(pd.date_range("2024-01-01", periods=n_steps, freq="h").to_numpy(), n_series),
                         "y": y.reshape(-1)})


def train_model(path: Path, args) -> None:
    from tsformers import GateformerForecaster

    model = GateformerForecaster(linear_base=False, ensemble_size=1, horizon=args.horizon, lookback=args.lookback, max_epochs=args.max_epochs,
                                 random_state=0)
    model.fit(make_panel(args.train_series, args.train_steps, seed=1))
    model.save(path)


# Runs the command and reports the process's own peak RSS (VmHWM) at exit. getrusage/wait4's ru_maxrss would not
# do: Linux carries the peak of the forked parent (this script, holding the panel) over the exec.
CHILD = """
import atexit, re, sys
def report():
    hwm = re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)
    print(f"VmHWM {hwm} kB", file=sys.stderr)
atexit.register(report)
from tsformers.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_forecast(model: Path, data: Path, out: Path, chunk_size: int, threads: int) -> dict:
    """``tsformers forecast`` in a fresh process: its wall time, logged forecast time and peak RSS."""
    env = {**os.environ}
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    command = [sys.executable, "-c", CHILD, "forecast", "--model", str(model), "--input", str(data),
               "--output", str(out), "--chunk-size", str(chunk_size)]
    started = time.perf_counter()
    proc = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"tsformers forecast failed ({proc.returncode}): {proc.stderr}")
    forecast_s = float(re.search(r"wrote \d+ rows to .* in ([\d.]+) s", proc.stderr).group(1))
    peak_kib = int(re.search(r"VmHWM (\d+) kB", proc.stderr).group(1))
    return {"wall_s": wall, "forecast_s": forecast_s, "peak_rss_mib": peak_kib / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--steps", type=int, default=72, help="rows per series in the forecast input")
    parser.add_argument("--chunk-sizes", type=int, nargs="+", default=[5000])
    parser.add_argument("--horizon", type=int, default=24)
    parser.add_argument("--lookback", type=int, default=48)
    parser.add_argument("--max-epochs", type=int, default=2)
    parser.add_argument("--train-series", type=int, default=64)
    parser.add_argument("--train-steps", type=int, default=400)
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the forecast process; 0: default")
    parser.add_argument("--workdir", default=None, help="where the model and the panels go (default: a temp dir)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "batch.csv"))
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="tsformers-batch-", dir=args.workdir) as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        train_model(work / "model", args)
        print(f"trained GateformerForecaster(lookback={args.lookback}, horizon={args.horizon}) on "
              f"{args.train_series} series in {time.perf_counter() - started:.1f} s")
        rows = []
        for n_series in args.series:
            data = work / f"panel_{n_series}.parquet"
            make_panel(n_series, args.steps, seed=2).to_parquet(data)
            size = data.stat().st_size / 2**20
            for chunk in args.chunk_sizes:
                result = run_forecast(work / "model", data, work / f"forecast_{n_series}.parquet", chunk,
                                      args.threads)
                row = {"timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                       "n_series": n_series, "steps": args.steps, "input_rows": n_series * args.steps,
                       "input_mib": round(size, 1), "chunk_size": chunk, "lookback": args.lookback,
                       "horizon": args.horizon, "threads": args.threads or torch.get_num_threads(),
                       "wall_s": round(result["wall_s"], 2), "forecast_s": round(result["forecast_s"], 2),
                       "series_per_s": round(n_series / result["forecast_s"]),
                       "peak_rss_mib": round(result["peak_rss_mib"]), "torch_version": torch.__version__}
                rows.append(row)
                print(f"{n_series:>8} series  chunk {chunk:>6}  forecast {row['forecast_s']:>7.1f} s  "
                      f"({row['series_per_s']:>6} series/s)  wall {row['wall_s']:>6.1f} s  "
                      f"peak RSS {row['peak_rss_mib']:>5} MiB")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    new = not out.exists()
    with out.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        if new:
            writer.writeheader()
        writer.writerows(rows)
    print(f"appended {len(rows)} rows to {out}")


if __name__ == "__main__":
    main()
