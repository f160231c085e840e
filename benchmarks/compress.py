"""Compression benchmark: every ``tsformers.compress`` method and baseline on ETTh1, horizon 96.

Gateformer (the paper's ETTh1 H=96 setting) and PV-Client (lookback 96) are
trained on the literature's protocol (``_protocol.py``: ETTh1 12/4/4 months,
scaler on train, early stopping on val, every stride-1 test window, MSE/MAE on
scaled data). Each method then compresses the trained model at about 50% and 25%
of its parameters or FLOPs (the method's own knob: a FLOP budget, a parameter
ratio, a width, a size ratio; methods without such a knob run once), with the
fit frame (train + val) as calibration and fine-tuning data. For each result:
parameters (all and non-zero), FLOPs of one forecast (counted, attention
included), size in bytes, CPU latency at batch 1 and 256 (one thread, median),
test MSE/MAE and the MSE change against the uncompressed model.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/compress.py --quick

writes ``benchmarks/results/compress.csv`` (one row per model x method x target,
replaced on every run) and ``benchmarks/results/compress_pareto.png`` (latency at
batch 1 against test MSE). ``--quick`` trains and fine-tunes for fewer epochs on a
shorter calibration frame (the numbers then show the mechanics, not the methods'
best accuracy). The machine may be shared: latencies are comparable within a run.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import time
import traceback
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _protocol import evaluate_windows, load_protocol_data  # noqa: E402

from tsformers import GateformerForecaster, PVClientForecaster  # noqa: E402
from tsformers import compress  # noqa: E402
from tsformers.compress.core import count_flops, count_parameters, model_size_bytes  # noqa: E402
from tsformers.compress.ot_fusion import ot_fusion  # noqa: E402
from tsformers.compress.scalekd import scalekd  # noqa: E402
from tsformers.compress.simq_nas import simq_nas  # noqa: E402
from tsformers.compress.supernet import cpu_latency, supernet  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LOOKBACK, HORIZON = 96, 96
FIELDS = ["model", "method", "target", "knob", "params", "params_nonzero", "param_ratio", "flops", "flop_ratio",
          "size_bytes", "lat_b1_ms", "lat_b256_ms", "test_mse", "test_mae", "d_mse", "d_mse_pct", "compress_s",
          "note"]


def base_models(quick: bool) -> dict:
    epochs = 2 if quick else 10
    common = dict(horizon=HORIZON, lookback=LOOKBACK, batch_size=8, patience=3, lr_schedule="halving",
                  dropout=0.1, max_epochs=epochs, random_state=0)
    return {
        "gateformer": GateformerForecaster(linear_base=False, ensemble_size=1, e_layers=1, d_model=64, d_ff=64, n_heads=4, learning_rate=1e-4,
                                           patch_len=8, stride=8, attention_dropout=None, cycle=None, **common),
        "pvclient": PVClientForecaster(n_heads=4, d_ff=128, e_layers=2, learning_rate=1e-4,
                                       **{**common, "batch_size": 32}),
    }


def methods(model: str, quick: bool) -> list[tuple[str, str, str, callable]]:
    """``(method, target, knob, f(est, df) -> estimator)`` for one base model."""
    ft = 1
    out = []
    for target, r in (("50%", 0.5), ("25%", 0.25)):
        out += [
            ("optin", target, f"flop_budget={r}", lambda e, d, r=r: compress.optin(e, d, flop_budget=r)),
            ("nvit", target, f"ratio={r}", lambda e, d, r=r: compress.nvit(e, d, ratio=r, steps=2,
                                                                           finetune_epochs=ft)),
            ("dsformer", target, f"rank={max(2, int(16 * r))}",
             lambda e, d, r=r: compress.dsformer(e, d, rank=max(2, int(16 * r)), nnz_per_col=2, epochs=ft)),
            ("magnitude", target, f"amount={1 - r}", lambda e, d, r=r: compress.magnitude(e, d, amount=1 - r)),
            ("magnitude_structured", target, f"amount={1 - r}",
             lambda e, d, r=r: compress.magnitude(e, d, amount=1 - r, structured=True, finetune_epochs=ft)),
            ("simq_nas", target, f"max_size={r}",
             lambda e, d, r=r: _simq(e, d, r, quick)),
            ("ot_fusion", target, f"anchor=optin({r})+original",
             lambda e, d, r=r: ot_fusion([compress.optin(e, d, flop_budget=r), e], d, soft=True,
                                         finetune_epochs=ft)),
        ]
        if model == "gateformer":
            small = dict(d_model=32 if r == 0.5 else 16, d_ff=32 if r == 0.5 else 16)
            out += [
                ("distill", target, str(small), lambda e, d, s=small: compress.distill(e, d, epochs=ft, **s)),
                ("scalekd", target, str(small), lambda e, d, s=small: scalekd(e, d, epochs=ft, **s)),
            ]
        else:
            small = dict(d_ff=64 if r == 0.5 else 32, e_layers=1)
            out += [
                ("distill", target, str(small), lambda e, d, s=small: compress.distill(e, d, epochs=ft, **s)),
                ("scalekd", target, str(small),
                 lambda e, d, s=small: scalekd(e, d, epochs=ft, layers={"encoder.layers.0": "encoder.layers.0"},
                                               weights={"frequency": 0.0}, **s)),
            ]
    out += [
        ("amp", "-", "tol=0.01", lambda e, d: compress.amp(e, d, tol=0.01)),
        ("amp", "-", "tol=0.05", lambda e, d: compress.amp(e, d, tol=0.05)),
        ("axformer", "-", "k=4", lambda e, d: compress.axformer(e, d, k=4)),
        ("quantize_dynamic", "-", "int8", lambda e, d: compress.quantize_dynamic(e, d)),
        ("fold_bn", "-", "", lambda e, d: compress.fold_bn(e, d)),
    ]
    return out


_SUPERNETS: dict = {}


def _simq(est, df, ratio, quick):
    key = id(est)
    if key not in _SUPERNETS:  # one supernet per base model, searched twice
        _SUPERNETS[key] = supernet(est, df, epochs=1)
    res = simq_nas(est, df, net=_SUPERNETS[key], n_samples=12 if quick else 32, population=16 if quick else 32,
                   generations=8 if quick else 20, max_size=ratio)
    return res.estimator


def measure(est, data) -> dict:
    net = est.network_.eval()
    x1 = torch.zeros(1, LOOKBACK, est.n_features_in_)
    x256 = torch.randn(256, LOOKBACK, est.n_features_in_)
    scores = evaluate_windows(est, data.test_frame)
    return {"params": count_parameters(est), "params_nonzero": count_parameters(est, nonzero=True),
            "flops": count_flops(est), "size_bytes": model_size_bytes(est),
            "lat_b1_ms": 1e3 * cpu_latency(net, x1, reps=9), "lat_b256_ms": 1e3 * cpu_latency(net, x256, reps=3),
            "test_mse": scores["mse"], "test_mae": scores["mae"]}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    for ax, model in zip(axes, ("gateformer", "pvclient")):
        mine = [r for r in rows if r["model"] == model and r.get("test_mse") not in (None, "")]
        for r in mine:
            marker = "*" if r["method"] == "original" else ("s" if r["target"] == "25%" else "o")
            ax.scatter(r["lat_b1_ms"], r["test_mse"], marker=marker, s=90 if marker == "*" else 30)
            ax.annotate(f"{r['method']} {r['target']}", (r["lat_b1_ms"], r["test_mse"]), fontsize=6,
                        xytext=(3, 2), textcoords="offset points")
        ax.set_xlabel("CPU latency, batch 1 (ms, 1 thread)")
        ax.set_ylabel("test MSE (ETTh1, H=96, scaled)")
        ax.set_title(model)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer epochs, a shorter calibration frame")
    p.add_argument("--models", nargs="+", default=["gateformer", "pvclient"])
    p.add_argument("--methods", nargs="+", default=None, help="only these methods")
    p.add_argument("--data-dir", default=os.environ.get("TSFORMERS_DATA")
                   or str((REPO / ".." / "shared" / "datasets").resolve()))
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "compress.csv")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    data = load_protocol_data("ETTh1", args.data_dir, LOOKBACK)
    calib = data.fit_frame.tail(4000).reset_index(drop=True) if args.quick else data.fit_frame
    rows = []
    for model in args.models:
        est = base_models(args.quick)[model].set_params(val_size=int(data.val_steps))
        t0 = time.perf_counter()
        est.fit(data.fit_frame)
        base = measure(est, data)
        rows.append({"model": model, "method": "original", "target": "100%", "knob": "", **base,
                     "param_ratio": 1.0, "flop_ratio": 1.0, "d_mse": 0.0, "d_mse_pct": 0.0,
                     "compress_s": time.perf_counter() - t0, "note": f"{len(est.training_log_)} epochs"})
        print(_line(rows[-1]), flush=True)
        for method, target, knob, run in methods(model, args.quick):
            if args.methods and method not in args.methods:
                continue
            t0 = time.perf_counter()
            row = {"model": model, "method": method, "target": target, "knob": knob}
            try:
                small = run(est, calib)
                row["compress_s"] = time.perf_counter() - t0
                row.update(measure(small, data))
                row.update(param_ratio=row["params"] / base["params"], flop_ratio=row["flops"] / base["flops"],
                           d_mse=row["test_mse"] - base["test_mse"],
                           d_mse_pct=100 * (row["test_mse"] - base["test_mse"]) / base["test_mse"])
            except Exception as err:  # noqa: BLE001 - a method that cannot apply is a result too
                row["compress_s"] = time.perf_counter() - t0
                row["note"] = f"{type(err).__name__}: {str(err)[:160]}"
                traceback.print_exc(limit=2)
            rows.append(row)
            print(_line(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items() if k in FIELDS})
    plot(rows, args.out.with_name("compress_pareto.png"))
    print(f"wrote {args.out} and {args.out.with_name('compress_pareto.png')}"
          f" ({'quick' if args.quick else 'full'} run)")
    return 0


def _line(r: dict) -> str:
    if r.get("test_mse") is None:
        return f"{r['model']:10s} {r['method']:22s} {r['target']:5s} {r.get('note', '')}"
    return (f"{r['model']:10s} {r['method']:22s} {r['target']:5s} params {r['params']:>8d} "
            f"({r['param_ratio']:.2f}) flops {r['flops']:>10d} ({r['flop_ratio']:.2f}) "
            f"b1 {r['lat_b1_ms']:7.2f} ms b256 {r['lat_b256_ms']:8.1f} ms mse {r['test_mse']:.4f} "
            f"({r['d_mse_pct']:+.1f}%) [{r['compress_s']:.0f} s]")


if __name__ == "__main__":
    raise SystemExit(main())
