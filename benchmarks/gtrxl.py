"""GTrXL benchmark: long lookback through memory, training stability with and without gating, cost per step.

Three sections, each appending rows to ``--out`` (``benchmarks/results/gtrxl.csv``):

* ``accuracy``: the literature's protocol (``_protocol.py``) on ETTm1 at horizon 96:
  GTrXL with lookback 96 (one segment), GTrXL with a long lookback read through
  its segment memory (1,024 steps in segments of 96), and Gateformer at lookback
  96 with its paper's settings.
* ``stability``: GTrXL trained from 5 seeds with the GRU gate and with plain
  residual connections (TrXL-I), on a stress setting (deeper, higher learning
  rate); final training loss, best validation loss and test MSE, mean and spread.
* ``scaling``: time and peak memory of one training step and of one streaming
  update as the lookback grows, for the segmented model (segments of 96, memory
  256) and for one segment over the whole lookback (full causal attention).

    .venv/bin/python benchmarks/gtrxl.py --sections accuracy --runs gateformer_l96 --threads 1
    python benchmarks/gtrxl.py --sections scaling accuracy stability --device cuda   # on a GPU machine

Every fit can be capped in wall-clock time (``--fit-seconds``, Lightning's
``max_time``); rows record the epochs actually run. See ``benchmarks/README.md``.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for _protocol when run as a script
from _protocol import evaluate_windows, load_protocol_data, n_parameters, peak_rss_mib  # noqa: E402

from tsformers.datasets import info  # noqa: E402
from tsformers.estimators.gateformer import GateformerForecaster  # noqa: E402
from tsformers.estimators.gtrxl import GTrXLForecaster  # noqa: E402
from tsformers.models.gtrxl import GTrXL  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HORIZON = 96

# GTrXL for ETT-scale data: d_model 128, 8 heads, d_ff 256, 3 layers, GRU gate with b_g = 2, identity-map
# ordering, lr 1e-4 halved every epoch, batch 32, patience 3: the estimator's defaults when these rows were
# recorded (benchmarks/results/gtrxl.csv; they embed the values, normalize="none", and forecast from the last
# value, last_value_anchor=True). The default learning
# rate is now 1e-3; the estimator's default embeds the changes (normalize="last_value").
GTRXL_COMMON = dict(d_model=128, n_heads=8, d_ff=256, n_layers=3, dropout=0.1, learning_rate=1e-4, batch_size=32,
                    lr_schedule="halving", patience=3, normalize="none")
# name -> (constructor, dataset-independent settings)
ACCURACY_RUNS = {
    # one segment of 96 steps; each token attends to all steps before it in the window
    "gtrxl_l96": lambda: GTrXLForecaster(horizon=HORIZON, lookback=96, segment_len=96, mem_len=96, **GTRXL_COMMON),
    # 1,024 steps in 11 segments of 96 with memory 341: the receptive field 3 x 341 + 1 = 1,024 is the lookback
    "gtrxl_l1024": lambda: GTrXLForecaster(horizon=HORIZON, lookback=1024, segment_len=96, mem_len=341,
                                           **GTRXL_COMMON),
    # Gateformer, the paper's ETTm1 / H = 96 row (benchmarks/long_horizon.py): e_layers 1, d_model 64, d_ff 64,
    # lr 5e-4, 4 heads, batch 8, 10 epochs, patience 3, lr halved every epoch
    "gateformer_l96": lambda: GateformerForecaster(linear_base=False, ensemble_size=1, horizon=HORIZON, lookback=96, e_layers=1, d_model=64, d_ff=64,
                                                   n_heads=4, learning_rate=5e-4, batch_size=8, max_epochs=10,
                                                   patience=3, lr_schedule="halving", dropout=0.1, patch_len=8,
                                                   stride=8, attention_dropout=None, cycle=None),
}
# The stress setting of the stability runs: 4 layers, learning rate 1e-3 held constant, no clipping, no early stop.
STABILITY = dict(horizon=HORIZON, lookback=96, segment_len=96, mem_len=96, d_model=128, n_heads=8, d_ff=256,
                 n_layers=4, dropout=0.1, learning_rate=1e-3, lr_schedule="constant", batch_size=32, patience=None,
                 normalize="none")
STABILITY_VARIANTS = {"gru": dict(gating="gru"), "residual": dict(gating="residual"),
                      "post_norm_residual": dict(block="post_norm", gating="residual")}

FIELDS = ["timestamp", "section", "dataset", "horizon", "lookback", "model", "variant", "seed", "mse", "mae",
          "naive_mse", "naive_mae", "n_windows", "epochs_run", "best_epoch", "max_epochs", "final_train_loss",
          "best_val_loss", "fit_s", "eval_s", "train_step_ms", "forward_ms", "update_step_ms", "peak_mem_mib",
          "device", "n_params", "torch_version", "n_threads", "params"]


class OnDevice(torch.nn.Module):
    """Runs a network on ``device`` for ``_protocol.evaluate_windows``, which feeds CPU tensors."""

    def __init__(self, network: torch.nn.Module, device: torch.device):
        super().__init__()
        self.network, self.device = network.to(device), device

    def forward(self, x):
        return self.network(x.to(self.device)).cpu()


def _stamp() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu x{torch.get_num_threads()}"


def _trainer_kwargs(device: torch.device, fit_seconds: float | None, quick: bool) -> dict:
    kwargs = {"accelerator": "gpu" if device.type == "cuda" else "cpu"}
    if fit_seconds:
        kwargs["max_time"] = {"seconds": int(fit_seconds)}
    if quick:
        kwargs.update(limit_train_batches=3, limit_val_batches=2)
    return kwargs


def _fit_cap(args) -> float | None:
    """Seconds of training a fit may take: ``--fit-seconds``, and what is left before ``--deadline-s`` (less a
    reserve for scoring). None when the deadline is too close to start another fit."""
    cap = args.fit_seconds or float("inf")
    if args.deadline_s:
        left = args.t_end - time.perf_counter() - 45
        if left < 15:
            return None
        cap = min(cap, left)
    return None if cap == float("inf") else cap


def fit_and_score(est, data, *, device, seed, fit_seconds, quick, max_epochs=None) -> dict:
    """Fit ``est`` on the protocol's fit frame and score every test window; one CSV row's worth."""
    overrides = dict(random_state=seed, val_size=int(data.val_steps),
                     trainer_kwargs=_trainer_kwargs(device, fit_seconds, quick))
    if max_epochs is not None:
        overrides["max_epochs"] = max_epochs
    est.set_params(**overrides)
    params = {k: v for k, v in est.get_params().items() if k != "trainer_kwargs"}
    t0 = time.perf_counter()
    est.fit(data.fit_frame)
    fit_s = time.perf_counter() - t0
    test_frame = data.test_frame.iloc[: est.lookback + HORIZON + 40] if quick else data.test_frame
    network = est.network_
    est.network_ = OnDevice(network, device)
    t0 = time.perf_counter()
    scores = evaluate_windows(est, test_frame)
    eval_s = time.perf_counter() - t0
    est.network_ = network.cpu()
    log = est.training_log_
    val = [r.get("val_loss", np.inf) for r in log]
    return {
        **scores, "epochs_run": len(log), "best_epoch": int(np.argmin(val)) + 1 if log else 0,
        "max_epochs": est.max_epochs, "final_train_loss": log[-1].get("train_loss") if log else None,
        "best_val_loss": float(np.min(val)) if log else None, "fit_s": fit_s, "eval_s": eval_s,
        "n_params": n_parameters(network), "params": json.dumps(params, sort_keys=True, default=str),
    }


# -- sections ---------------------------------------------------------------------------------------

def accuracy(args, device) -> list[dict]:
    rows = []
    dataset = info(args.accuracy_dataset)["name"]
    for run in args.runs:
        est = ACCURACY_RUNS[run]()
        data = load_protocol_data(dataset, args.data_dir, est.lookback)
        seconds = _fit_cap(args)
        if args.deadline_s and seconds is None:
            print(f"[accuracy] {run}: skipped, the deadline is near", flush=True)
            continue
        result = fit_and_score(est, data, device=device, seed=args.seeds[0], fit_seconds=seconds, quick=args.quick,
                               max_epochs=args.max_epochs if run.startswith("gtrxl") else None)
        row = _emit(args, {"section": "accuracy", "dataset": dataset, "horizon": HORIZON, "lookback": est.lookback,
                           "model": run, "variant": "", "seed": args.seeds[0], **result}, device)
        rows.append(row)
        print(f"[accuracy] {dataset} H={HORIZON} {run}: MSE {row['mse']:.4f} MAE {row['mae']:.4f} "
              f"(last value {row['naive_mse']:.4f}), {row['epochs_run']} epochs (best {row['best_epoch']}), "
              f"fit {row['fit_s']:.0f}s, eval {row['eval_s']:.0f}s", flush=True)
    return rows


def stability(args, device) -> list[dict]:
    rows = []
    dataset = info(args.stability_dataset)["name"]
    data = load_protocol_data(dataset, args.data_dir, STABILITY["lookback"])
    for variant in args.variants:
        for seed in args.seeds:
            est = GTrXLForecaster(**STABILITY, **STABILITY_VARIANTS[variant])
            seconds = _fit_cap(args)
            if args.deadline_s and seconds is None:
                print(f"[stability] {variant} seed={seed}: skipped, the deadline is near", flush=True)
                continue
            result = fit_and_score(est, data, device=device, seed=seed, fit_seconds=seconds,
                                   quick=args.quick, max_epochs=args.stability_epochs)
            row = _emit(args, {"section": "stability", "dataset": dataset, "horizon": HORIZON,
                               "lookback": est.lookback, "model": "gtrxl", "variant": variant, "seed": seed, **result},
                        device)
            rows.append(row)
            print(f"[stability] {dataset} {variant} seed={seed}: final train loss {row['final_train_loss']:.4f}, "
                  f"best val {row['best_val_loss']:.4f}, test MSE {row['mse']:.4f}, {row['epochs_run']} epochs, "
                  f"fit {row['fit_s']:.0f}s", flush=True)
    return rows


def _timed(fn, device, repeats: int) -> float:
    """Median milliseconds of ``fn()`` over ``repeats`` calls after two warm-up calls."""
    times = []
    for i in range(repeats + 2):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= 2:
            times.append(1e3 * (time.perf_counter() - t0))
    return float(np.median(times))


def _measure(lookback: int, segment_len: int, mem_len: int, batch: int, device, repeats: int) -> dict:
    """Train step, forward and one-step update of a GTrXL (d_model 128, 3 layers) on random data."""
    n_vars = 7
    torch.manual_seed(0)
    net = GTrXL(lookback=lookback, horizon=HORIZON, n_vars=n_vars, d_model=128, n_heads=8, d_ff=256, n_layers=3,
                segment_len=segment_len, mem_len=mem_len, dropout=0.1).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    x = torch.randn(batch, lookback, n_vars, device=device)
    y = torch.randn(batch, HORIZON, n_vars, device=device)

    def train_step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.mse_loss(net(x), y).backward()
        opt.step()

    row = {"n_params": n_parameters(net)}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    net.train()
    row["train_step_ms"] = _timed(train_step, device, repeats)
    if device.type == "cuda":
        row["peak_mem_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    net.eval()
    with torch.no_grad():
        row["forward_ms"] = _timed(lambda: net(x), device, repeats)
        state = net.advance(net.init_state(batch), x)
        row["update_step_ms"] = _timed(lambda: net.advance(state, x[:, -1:]), device, repeats)
    return row


def scaling(args, device) -> list[dict]:
    """Train-step and update-step cost against lookback: segments with memory vs one segment over everything."""
    rows = []
    for lookback in args.lookbacks:
        for variant, seg, mem in (("segments", 96, 256), ("one_segment", lookback, lookback)):
            if args.deadline_s and args.t_end - time.perf_counter() < 30:
                print(f"[scaling] lookback {lookback} {variant}: skipped, the deadline is near", flush=True)
                continue
            row = {"section": "scaling", "dataset": "random", "horizon": HORIZON, "lookback": lookback,
                   "model": "gtrxl", "variant": variant, "seed": 0,
                   "params": json.dumps({"segment_len": seg, "mem_len": mem, "batch": args.scaling_batch,
                                         "d_model": 128, "n_layers": 3})}
            try:
                row.update(_measure(lookback, seg, mem, args.scaling_batch, device, args.repeats))
            except torch.cuda.OutOfMemoryError:
                row["train_step_ms"] = "OOM"
            if device.type == "cuda":
                torch.cuda.empty_cache()
            row = _emit(args, row, device)
            rows.append(row)
            print(f"[scaling] lookback {lookback:>5} {variant:<11}: train step {row.get('train_step_ms')} ms, "
                  f"forward {row.get('forward_ms')} ms, update step {row.get('update_step_ms')} ms, "
                  f"peak {row.get('peak_mem_mib')} MiB", flush=True)
    return rows


# -- output -----------------------------------------------------------------------------------------

def _emit(args, row: dict, device) -> dict:
    row = {"timestamp": _stamp(), "device": _device_name(device), "torch_version": torch.__version__,
           "n_threads": torch.get_num_threads(), **row}
    if device.type != "cuda":
        row.setdefault("peak_mem_mib", peak_rss_mib())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    new = not args.out.exists() or not args.out.stat().st_size
    with open(args.out, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return row


def _summary(rows: list[dict]) -> None:
    stab = [r for r in rows if r["section"] == "stability"]
    if stab:
        print("\nstability (mean ± std over seeds; spread = max - min):")
        for variant in dict.fromkeys(r["variant"] for r in stab):
            rs = [r for r in stab if r["variant"] == variant]
            for key in ("final_train_loss", "best_val_loss", "mse"):
                v = np.array([r[key] for r in rs], dtype=float)
                print(f"  {variant:<20} {key:<17} {v.mean():.4f} ± {v.std(ddof=1) if len(v) > 1 else 0:.4f} "
                      f"(spread {v.max() - v.min():.4f}, n={len(v)})")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--sections", nargs="+", default=["accuracy", "stability", "scaling"],
                   choices=["accuracy", "stability", "scaling"])
    p.add_argument("--runs", nargs="+", default=list(ACCURACY_RUNS), choices=sorted(ACCURACY_RUNS))
    p.add_argument("--accuracy-dataset", default="ETTm1")
    p.add_argument("--stability-dataset", default="ETTh1")
    p.add_argument("--variants", nargs="+", default=["gru", "residual"], choices=sorted(STABILITY_VARIANTS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4],
                   help="stability: every seed; accuracy: the first")
    p.add_argument("--max-epochs", type=int, default=None, help="GTrXL accuracy runs (default: the estimator's 10)")
    p.add_argument("--stability-epochs", type=int, default=4)
    p.add_argument("--fit-seconds", type=float, default=None, help="cap each fit's training time (Lightning max_time)")
    p.add_argument("--deadline-s", type=float, default=None,
                   help="wall-clock budget of the whole script: fits are capped, or skipped, to end within it")
    p.add_argument("--lookbacks", nargs="+", type=int, default=[96, 192, 384, 768, 1536, 3072])
    p.add_argument("--scaling-batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--data-dir", default=os.environ.get("TSFORMERS_DATA") or str((REPO / ".." / "shared" /
                                                                                  "datasets").resolve()))
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "gtrxl.csv")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads; 0 keeps torch's default")
    p.add_argument("--quick", action="store_true", help="a smoke test: 3 batches per epoch, few test windows")
    args = p.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    args.t_end = time.perf_counter() + (args.deadline_s or 0)
    print(f"torch {torch.__version__}, device {_device_name(device)}, data {args.data_dir}", flush=True)
    rows = []
    for section in args.sections:
        rows += {"accuracy": accuracy, "stability": stability, "scaling": scaling}[section](args, device)
    _summary(rows)
    print(f"\nappended {len(rows)} row(s) to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
