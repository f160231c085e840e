"""Gateformer on one GPU: fit, forecasts and the saved model at full and bf16-mixed precision, and the training
step against neuralforecast's on the same GPU.

    .venv/bin/python benchmarks/gpu_check.py                        # on a machine with a CUDA GPU
    .venv/bin/python benchmarks/gpu_check.py --accelerator cpu --max-epochs 1 --limit-batches 4 --skip-step

The prepared script for a lent GPU machine (never CI): one command, everything it measures recorded.

**The estimator**, for each of ``--precisions`` (default ``32-true`` and ``bf16-mixed``): Gateformer with its
defaults (``long_horizon.gateformer_defaults``: the seed ensemble, the cycle, the linear base), its Trainer on
the GPU at that precision (``trainer_kwargs``), fitted on the protocol's training and validation rows of
``--dataset`` (``_protocol.load_protocol_data``, as ``long_horizon.py`` and ``side_by_side.py``) and scored on
every stride-1 test window (MSE, MAE, MASE: ``_protocol.evaluate_windows``, so a row reads next to the CPU
rows of those tables). Then what a user relies on after a GPU fit: the network is back on the CPU
(``on_cpu``), the forecast of the next ``H`` steps after the fit rows, and the same forecast from the model
saved and read back (``save`` / ``load``, torch engine, on the CPU): ``identical`` when they are equal to the
bit, ``max_abs_diff`` their largest difference either way. Rows go to ``benchmarks/results/gpu_check.csv``.

**The training step**: ``speed.py``'s *train*, *defaults-train* and *large-train* cases (Gateformer at the
paper's size, at its defaults and at d_model 512, each against the neuralforecast model of the closest
parameter count) with ``--accelerator gpu`` at each precision, step times by the wall clock; rows to
``benchmarks/results/gpu_speed.csv`` (``speed.py``'s columns). neuralforecast runs in ``$TSFORMERS_NF_VENV``
(``benchmarks/.venv-nf`` by default, made by ``_nfenv.py`` where the package index is reachable; on a machine
without a network, a venv made there with ``--system-site-packages`` and neuralforecast's wheels carried in).
``--skip-step`` leaves this part out.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import speed  # noqa: E402
from _protocol import (append_rows, evaluate_windows, load_protocol_data, mase_scale, n_parameters,  # noqa: E402
                       scaled_values)
from long_horizon import accelerator_name, default_data_dir, gateformer_defaults, git_rev  # noqa: E402

RESULTS = HERE / "results"
FIELDS = ["timestamp", "dataset", "horizon", "precision", "accelerator", "seed", "mse", "mae", "mase", "naive_mse",
          "n_windows", "epochs_run", "fit_s", "fit_cpu_s", "eval_s", "on_cpu", "identical", "max_abs_diff",
          "n_params", "max_epochs", "limit_batches", "torch_version", "git_rev", "load_start", "load_end"]


def fit_defaults(data, horizon: int, precision: str, *, accelerator: str, seed: int, max_epochs: int | None,
                 limit_batches: int | None):
    """Gateformer's defaults fitted on ``data``'s fit rows with the Trainer on ``accelerator`` at ``precision``."""
    trainer = {"accelerator": accelerator, "devices": 1, "precision": precision}
    if limit_batches:  # a short check of the script itself, not a result
        trainer |= {"limit_train_batches": limit_batches, "limit_val_batches": limit_batches}
    est = gateformer_defaults(data.name, horizon).set_params(
        random_state=seed, val_size=int(data.val_steps), verbose=False, trainer_kwargs=trainer,
        **({"max_epochs": max_epochs} if max_epochs else {}))
    return est.fit(data.fit_frame)


def check_precision(data, horizon: int, precision: str, *, accelerator: str, seed: int, max_epochs: int | None,
                    limit_batches: int | None, timestamp: str | None = None) -> dict:
    """Fit Gateformer's defaults at ``precision`` on ``accelerator``, score the test windows, save and read back.

    ``timestamp``: the run's start, which every row of one run shares (the report reads a run by it)."""
    load_start = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    est = fit_defaults(data, horizon, precision, accelerator=accelerator, seed=seed, max_epochs=max_epochs,
                       limit_batches=limit_batches)
    fit_s, fit_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    on_cpu = all(p.device.type == "cpu" for p in est.network_.parameters())

    t0 = time.perf_counter()
    train_rows = data.fit_frame.iloc[:len(data.fit_frame) - data.val_steps]
    scores = evaluate_windows(est, data.test_frame, scale=mase_scale(scaled_values(est, train_rows)))
    eval_s = time.perf_counter() - t0

    forecast = est.predict(data.fit_frame)
    with tempfile.TemporaryDirectory() as folder:
        again = type(est).load(est.save(Path(folder) / "model")).predict(data.fit_frame)
    targets = list(est.schema_.targets)
    diff = np.abs(forecast[targets].to_numpy(np.float64) - again[targets].to_numpy(np.float64))
    return {"timestamp": timestamp or datetime.now(timezone.utc).isoformat(timespec="seconds"), "dataset": data.name,
            "horizon": horizon, "precision": precision, "accelerator": accelerator_name(accelerator), "seed": seed,
            **{k: scores[k] for k in ("mse", "mae", "mase", "naive_mse", "n_windows")},
            "epochs_run": len(est.training_log_), "fit_s": fit_s, "fit_cpu_s": fit_cpu_s, "eval_s": eval_s,
            "on_cpu": on_cpu, "identical": bool(forecast.equals(again)), "max_abs_diff": float(diff.max()),
            "n_params": n_parameters(est.network_), "max_epochs": est.max_epochs, "limit_batches": limit_batches or "",
            "torch_version": torch.__version__, "git_rev": git_rev(), "load_start": load_start,
            "load_end": os.getloadavg()[0]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--accelerator", default="gpu", choices=["gpu", "cpu"],
                   help="gpu (the check); cpu runs the same steps here, to try the script itself")
    p.add_argument("--precisions", nargs="+", default=["32-true", "bf16-mixed"])
    p.add_argument("--dataset", default="ETTh1")
    p.add_argument("--horizon", type=int, default=96)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-epochs", type=int, default=None, help="default: the estimator's")
    p.add_argument("--limit-batches", type=int, default=None, help="train and validation batches per epoch")
    p.add_argument("--skip-step", action="store_true", help="leave out the training step against neuralforecast's")
    p.add_argument("--steps", nargs=2, type=int, default=[20, 220], metavar=("SHORT", "LONG"),
                   help="optimiser steps of speed.py's two timed fits")
    p.add_argument("--data-dir", default=default_data_dir())
    p.add_argument("--out", type=Path, default=RESULTS / "gpu_check.csv")
    p.add_argument("--speed-out", type=Path, default=RESULTS / "gpu_speed.csv")
    args = p.parse_args(argv)
    accelerator_name(args.accelerator)  # no GPU: said before anything runs

    data = load_protocol_data(args.dataset, args.data_dir, lookback=96)
    rows, started = [], datetime.now(timezone.utc).isoformat(timespec="seconds")
    for precision in args.precisions:
        row = check_precision(data, args.horizon, precision, accelerator=args.accelerator, seed=args.seed,
                              max_epochs=args.max_epochs, limit_batches=args.limit_batches, timestamp=started)
        rows.append(row)
        print(f"{row['dataset']} H={row['horizon']} {precision} on {row['accelerator']}: MSE {row['mse']:.4f} "
              f"MAE {row['mae']:.4f}, fit {row['fit_s']:.0f} s ({row['epochs_run']} epochs), network on the CPU: "
              f"{row['on_cpu']}, saved and read back: {'identical' if row['identical'] else 'DIFFERENT'} "
              f"(max |diff| {row['max_abs_diff']:.3g})", flush=True)
    append_rows(args.out, rows, FIELDS)
    print(f"appended {len(rows)} row(s) to {args.out}")

    if not args.skip_step:
        for precision in args.precisions:
            speed.main(["--accelerator", args.accelerator, "--precision", precision, "--skip", "import", "predict",
                        "tiny", "--steps", *map(str, args.steps), "--large-steps", *map(str, args.steps),
                        "--data-dir", args.data_dir, "--out", str(args.speed_out)])
    failed = [row["precision"] for row in rows if not (row["on_cpu"] and row["identical"])]
    if failed:
        print(f"FAILED: the saved model's forecasts differ, or the network stayed on the device, at {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
