"""Measured step times and the estimated cost of each long-horizon cell, for the cells too slow to run here.

For each dataset and horizon, the model with its paper settings (``long_horizon.MODELS``) is fitted
for ``--steps`` training steps on that dataset's train rows (no validation), twice as many the second
time; the difference is the time of one step. One epoch is then estimated as
``steps_per_epoch x step`` plus the validation pass (one forward pass per validation window, estimated
as a third of a training step per window, batched), and a full run as ``max_epochs`` epochs (an upper
bound: early stopping often ends earlier). Step times are CPU seconds of this single-threaded process,
so they estimate the wall time on an otherwise idle core (the shared machine's wall time is far longer). Rows go to ``benchmarks/results/epoch_estimates.csv``.

    .venv/bin/python benchmarks/estimate_epochs.py --dataset ETTh1 ETTh2 ETTm1 ETTm2 weather exchange
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _protocol import load_protocol_data  # noqa: E402
from long_horizon import LOOKBACK, MODELS, default_data_dir, git_rev  # noqa: E402

from tsformers.datasets import info  # noqa: E402

HERE = Path(__file__).resolve().parent


def step_seconds(model: str, data, horizon: int, steps: int) -> tuple[float, object]:
    """CPU seconds of one training step (``time.process_time``: a shared machine inflates wall time)."""
    times = {}
    est = None
    for n in (2, steps, 2 * steps):  # the first, untimed, takes imports and first-call costs
        est = MODELS[model](data.name, horizon)
        est.set_params(val_size=0, max_epochs=1, verbose=False, random_state=0,
                       trainer_kwargs={"limit_train_batches": n})
        t0 = time.process_time()
        est.fit(data.fit_frame.iloc[: data.bounds["train"][1]])
        times[n] = time.process_time() - t0
    return (times[2 * steps] - times[steps]) / steps, est


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", nargs="+", default=["ETTh1", "ETTh2", "ETTm1", "ETTm2", "weather", "exchange"])
    p.add_argument("--horizons", nargs="+", type=int, default=[96, 192, 336, 720])
    p.add_argument("--models", nargs="+", default=["gateformer"], choices=sorted(MODELS))
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--data-dir", default=default_data_dir())
    p.add_argument("--out", type=Path, default=HERE / "results" / "epoch_estimates.csv")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for name in args.dataset:
        dataset = info(name)["name"]
        data = load_protocol_data(dataset, args.data_dir, LOOKBACK)
        train_end = data.bounds["train"][1]
        for horizon in args.horizons:
            for model in args.models:
                load_start = os.getloadavg()[0]
                step, est = step_seconds(model, data, horizon, args.steps)
                max_epochs = MODELS[model](dataset, horizon).max_epochs  # the paper's, not the probe's 1
                n_train = train_end - LOOKBACK - horizon + 1
                n_val = data.val_steps - horizon + 1
                steps_per_epoch = math.ceil(n_train / est.batch_size)
                epoch_s = steps_per_epoch * step + n_val * step / est.batch_size / 3
                row = {"timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"), "dataset": dataset,
                       "horizon": horizon, "model": model, "batch_size": est.batch_size,
                       "n_params": sum(p.numel() for p in est.network_.parameters()), "step_ms": 1e3 * step,
                       "steps_per_epoch": steps_per_epoch, "val_windows": n_val, "epoch_s_est": epoch_s,
                       "max_epochs": max_epochs, "run_s_est": epoch_s * max_epochs,
                       "load_start": load_start, "load_end": os.getloadavg()[0], "git_rev": git_rev()}
                rows.append(row)
                print(f"{dataset:<9} {horizon:>4} {model}: {row['n_params']:>9} params, step {1e3 * step:7.1f} ms x "
                      f"{steps_per_epoch} steps -> epoch ~{epoch_s / 60:6.1f} min, {max_epochs} epochs "
                      f"~{epoch_s * max_epochs / 3600:5.2f} h (load {load_start:.1f})", flush=True)
                new = not args.out.exists()
                with open(args.out, "a", newline="") as fh:
                    writer = csv.DictWriter(fh, fieldnames=list(row))
                    if new:
                        writer.writeheader()
                    writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
