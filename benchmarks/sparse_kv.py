"""GTrXL's sparse KV cache (``kv_cache="sparse"``, ALISA) against its segment memory over a long stream.

One GTrXL is trained (with the segment memory of ``mem_len`` steps; the cache is an inference policy),
then the same weights stream ``--steps`` steps of the demo series one step at a time, once per
variant: the segment memory (the reference) and the sparse cache at several windows and heavy-hitter
counts. Per variant: the time of one ``advance`` by one step (the network's update, without the
estimator's data path), the state's size in bytes at the end (it stops growing once the memory or
cache is full), and the MSE of the forecasts made every ``--stride`` steps (scaled values, the same
origins for every variant); the ratios to the reference are measured in the same run.
Rows are appended to ``benchmarks/results/sparse_kv.csv``; ``report.py`` renders the latest run.

    .venv/bin/python benchmarks/sparse_kv.py                 # ~4 CPU minutes on one thread
    .venv/bin/python benchmarks/sparse_kv.py --steps 2000    # a quick look
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the benchmarks' helpers when run as a script
from _protocol import append_rows  # noqa: E402
from long_horizon import git_rev  # noqa: E402

from tsformers.data.prepare import network_channels, panel_calendar
from tsformers.datasets import make_demo
from tsformers.estimators.gtrxl import GTrXLForecaster

REPO = Path(__file__).resolve().parents[1]
HORIZON, MEM_LEN = 24, 64
MODEL = dict(horizon=HORIZON, lookback=160, d_model=32, n_heads=4, d_ff=64, n_layers=2, segment_len=32,
             mem_len=MEM_LEN, max_epochs=3, batch_size=32, learning_rate=3e-3, linear_base=False, random_state=0)
# name -> (kv_window, kv_global); None: the segment memory of mem_len steps (the reference)
VARIANTS = {"segment memory": None, "sparse 64+0": (64, 0), "sparse 32+32": (32, 32), "sparse 32+0": (32, 0),
            "sparse 16+16": (16, 16)}
FIELDS = ["timestamp", "git_rev", "variant", "kv_window", "kv_global", "mem_len", "steps", "train_steps",
          "n_origins", "step_ms", "state_bytes", "mse", "step_ratio", "state_ratio", "mse_ratio",
          "load_start", "load_end", "torch_version", "n_threads"]


def state_bytes(state: dict) -> int:
    return sum(v.numel() * v.element_size() for v in state.values())


def variant_network(fitted: GTrXLForecaster, kv) -> torch.nn.Module:
    """The fitted network's weights in the network of a variant: the segment memory (None) or (window, k_global)."""
    params = fitted.get_params() | (dict(kv_cache="sparse", kv_window=kv[0], kv_global=kv[1]) if kv else {})
    est = GTrXLForecaster(**params)
    est.__dict__.update({k: v for k, v in vars(fitted).items() if k.endswith("_")})   # its schema, static encoder
    network = est._network(fitted.n_features_in_)
    network.load_state_dict(fitted.network_.state_dict())
    return network.eval()


def stream(networks: dict, inputs: torch.Tensor, scaled: np.ndarray, train_steps: int, stride: int) -> dict:
    """Stream ``inputs`` (1, T, channels) after the first ``train_steps`` one step at a time through every
    network, the variants taking turns at each step (so a busy machine slows them alike): time, size, MSE.

    ``scaled`` (1, T, n_targets): the scaled values the forecasts are scored against.
    """
    with torch.no_grad():
        states = {name: net.advance(net.init_state(1), inputs[:, :train_steps]) for name, net in networks.items()}
    elapsed, errors = dict.fromkeys(networks, 0.0), {name: [] for name in networks}
    with torch.no_grad():
        for t in range(train_steps, scaled.shape[1] - HORIZON):
            for name, net in networks.items():
                start = time.perf_counter()
                states[name] = net.advance(states[name], inputs[:, t:t + 1])
                elapsed[name] += time.perf_counter() - start
                if (t - train_steps) % stride == stride - 1:
                    forecast = net.forecast(states[name]).numpy()[0]                  # (H, n_vars), scaled
                    errors[name].append(((forecast - scaled[0, t + 1:t + 1 + HORIZON]) ** 2).mean())
    steps = scaled.shape[1] - HORIZON - train_steps
    return {name: {"step_ms": 1000 * elapsed[name] / steps, "state_bytes": state_bytes(states[name]),
                   "mse": float(np.mean(errors[name])), "steps": steps, "n_origins": len(errors[name])}
            for name in networks}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=10_000, help="streamed steps after the training history")
    p.add_argument("--train-steps", type=int, default=2_000)
    p.add_argument("--stride", type=int, default=25, help="a forecast every this many steps")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "sparse_kv.csv")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0]
    df = make_demo(n_series=3, n_steps=args.train_steps + args.steps + HORIZON, seed=0)
    fitted = GTrXLForecaster(**MODEL).fit(df.iloc[:args.train_steps])
    columns = list(fitted.schema_.targets)
    scaled = fitted.scaler_.transform(df[columns].to_numpy()[None])                 # (1, T, n_vars)
    # the network's channels of every step at once, as the estimator's update builds them
    channels = network_channels(scaled, fitted.schema_, fitted._missing_policy(), HORIZON,
                                calendar=panel_calendar(pd.DatetimeIndex(df["date"]), fitted.schema_, HORIZON))
    inputs = torch.from_numpy(channels.astype(np.float32))
    networks = {name: variant_network(fitted, kv) for name, kv in VARIANTS.items()}
    rows = stream(networks, inputs, scaled, args.train_steps, args.stride)
    for name, row in rows.items():
        print(name, row, flush=True)
    ref = rows["segment memory"]
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    out = []
    for name, row in rows.items():
        kv = VARIANTS[name]
        out.append({"timestamp": stamp, "git_rev": git_rev(), "variant": name,
                    "kv_window": kv[0] if kv else "", "kv_global": kv[1] if kv else "",
                    "mem_len": MEM_LEN, "train_steps": args.train_steps, **row,
                    "step_ratio": row["step_ms"] / ref["step_ms"],
                    "state_ratio": row["state_bytes"] / ref["state_bytes"], "mse_ratio": row["mse"] / ref["mse"],
                    "load_start": load_start, "load_end": os.getloadavg()[0],
                    "torch_version": torch.__version__, "n_threads": torch.get_num_threads()})
    append_rows(args.out, out, FIELDS)
    print(f"appended {len(rows)} rows to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
