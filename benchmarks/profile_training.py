"""Where a training step's time goes: Gateformer on ETTh1 (paper settings, batch 8), under cProfile.

Fits for ``--steps`` optimiser steps (no validation) and splits the wall time of the fit into the
model's work (forward, backward, optimiser step), data (fetching batches) and the rest (Lightning's
loop, hooks, logging, callbacks: the framework's per-step cost), all in CPU seconds. Prints the split and the top
functions by own time, and appends one row to ``benchmarks/results/profile_training.csv``.

    .venv/bin/python benchmarks/profile_training.py --steps 400
"""
from __future__ import annotations

import argparse
import cProfile
import csv
import os
import pstats
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch

HERE = Path(__file__).resolve().parent


def etth1_fit_frame(data_dir: str) -> pd.DataFrame:
    frame = pd.read_csv(Path(data_dir) / "ETTh1.csv").iloc[:8640]
    frame = frame.drop(columns=["date"])
    frame.insert(0, "t", np.arange(len(frame)))
    return frame


def buckets(stats: pstats.Stats) -> dict:
    """Cumulative seconds of the calls that do model work or fetch data.

    forward: the network's forward; backward: autograd; optimizer: the Adam update itself
    (``_single_tensor_adam`` / ``_multi_tensor_adam`` / ``_fused_adam``) and ``zero_grad`` (Lightning's
    ``optimizer.step`` wraps the closure with forward and backward, so it is not used); data: the
    DataLoader's ``__next__``; seeding: the per-step reseeding callback.
    """
    out = {"forward": 0.0, "backward": 0.0, "optimizer": 0.0, "data": 0.0, "seeding": 0.0, "log": 0.0}
    for (filename, _, name), (_, _, _, cum, _) in stats.stats.items():
        if name == "forward" and "tsformers/models" in filename and "gateformer" in filename.lower():
            out["forward"] += cum
        elif name == "backward" and filename.endswith("torch/autograd/__init__.py"):
            out["backward"] += cum
        elif name in ("_single_tensor_adam", "_multi_tensor_adam", "_fused_adam") and "torch/optim" in filename:
            out["optimizer"] += cum
        elif name == "zero_grad" and filename.endswith("torch/optim/optimizer.py"):
            out["optimizer"] += cum
        elif name == "__next__" and "torch/utils/data/dataloader.py" in filename:
            out["data"] += cum
        elif name == "on_train_batch_start" and filename.endswith("tsformers/training/fit.py"):
            out["seeding"] += cum
        elif name == "log" and filename.endswith("lightning/pytorch/core/module.py"):
            out["log"] += cum
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--data-dir", default=os.environ.get("TSFORMERS_DATA") or str(HERE.parent.parent / "shared" /
                                                                                   "datasets"))
    p.add_argument("--label", default="")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--out", type=Path, default=HERE / "results" / "profile_training.csv")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from tsformers import GateformerForecaster

    frame = etth1_fit_frame(args.data_dir)

    def make(steps):
        return GateformerForecaster(linear_base=False, ensemble_size=1, time_col="t", horizon=96, lookback=96, d_model=64, d_ff=64, e_layers=1,
                                    n_heads=4, patch_len=8, stride=8, attention_dropout=None, batch_size=args.batch,
                                    max_epochs=1, val_size=0,
                                    learning_rate=1e-4, random_state=0, trainer_kwargs={"limit_train_batches": steps})

    make(5).fit(frame)  # warm-up: imports, first-call costs
    load_start = os.getloadavg()[0]
    profiler = cProfile.Profile(time.process_time)  # CPU time: a shared machine inflates it far less
    t0 = time.process_time()
    profiler.enable()
    make(args.steps).fit(frame)
    profiler.disable()
    wall = time.process_time() - t0
    stats = pstats.Stats(profiler)
    b = buckets(stats)
    model = b["forward"] + b["backward"] + b["optimizer"]
    rest = wall - model - b["data"] - b["seeding"] - b["log"]
    print(f"{args.steps} steps of batch {args.batch} in {wall:.2f} CPU s under cProfile ({1e3 * wall / args.steps:.2f} ms "
          f"per step; load {load_start:.1f})")
    for k, v in {**b, "other (framework)": rest}.items():
        print(f"  {k:<18} {v:7.2f}s  {100 * v / wall:5.1f}%  {1e3 * v / args.steps:6.2f} ms/step")
    print("\ntop functions by own time:")
    stats.sort_stats("tottime").print_stats(args.top)

    # the same fit without the profiler: the real per-step time
    t0 = time.process_time()
    make(args.steps).fit(frame)
    plain = time.process_time() - t0
    print(f"without the profiler: {plain:.2f} CPU s, {1e3 * plain / args.steps:.2f} ms per step (fixed cost included)")
    row = {"timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"), "label": args.label,
           "steps": args.steps, "batch": args.batch, "cpu_profiled_s": wall, "cpu_plain_s": plain,
           **{f"{k}_s": v for k, v in b.items()}, "other_s": rest, "load_start": load_start,
           "load_end": os.getloadavg()[0], "torch_version": torch.__version__}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    new = not args.out.exists()
    with open(args.out, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
