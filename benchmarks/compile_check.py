"""Does ``torch.compile`` pay for itself on our training step? Gateformer (ETTh1-96 paper size), CPU.

Times a bare training step (forward, MSE, backward, AdamW) of the eager network and of
``torch.compile(network)`` in CPU seconds (``time.process_time``: a shared machine inflates wall time),
after warm-up, and the one-off compile cost (the first steps). Prints the break-even number of steps
and appends to ``benchmarks/results/compile_check.csv``.

    .venv/bin/python benchmarks/compile_check.py --batch 8 32
"""
from __future__ import annotations

import argparse
import csv
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def steps_cpu(net, x, y, n, opt):
    t0 = time.process_time()
    for _ in range(n):
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(net(x)[..., : y.shape[-1]], y)
        loss.backward()
        opt.step()
    return time.process_time() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", nargs="+", type=int, default=[8, 32])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--out", type=Path, default=HERE / "results" / "compile_check.csv")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from tsformers.models.gateformer import Gateformer

    rows = []
    for batch in args.batch:
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(batch, 96, 7, generator=g), torch.randn(batch, 96, 7, generator=g)
        res = {}
        for mode in ("eager", "compiled"):
            torch.manual_seed(0)
            net = Gateformer(lookback=96, horizon=96, n_vars=7, d_model=64, n_heads=4, d_ff=64, e_layers=1)
            run = torch.compile(net) if mode == "compiled" else net
            opt = torch.optim.AdamW(net.parameters(), lr=1e-4, foreach=True)
            first = steps_cpu(run, x, y, 3, opt)  # includes compilation
            per_step = steps_cpu(run, x, y, args.steps, opt) / args.steps
            res[mode] = (first, per_step)
        saving = res["eager"][1] - res["compiled"][1]
        overhead = res["compiled"][0] - 3 * res["compiled"][1]
        row = {"timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"), "batch": batch,
               "eager_step_ms": 1e3 * res["eager"][1], "compiled_step_ms": 1e3 * res["compiled"][1],
               "compile_cpu_s": overhead, "break_even_steps": overhead / saving if saving > 0 else float("inf"),
               "load": os.getloadavg()[0], "torch_version": torch.__version__}
        rows.append(row)
        print(f"batch {batch}: eager {row['eager_step_ms']:.2f} ms/step, compiled {row['compiled_step_ms']:.2f} "
              f"ms/step (CPU), compile {overhead:.1f} CPU s, break-even after {row['break_even_steps']:.0f} steps",
              flush=True)
    new = not args.out.exists()
    with open(args.out, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        if new:
            writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
