"""Before/after of the training loop: the time of one training step, our package imported from two trees.

Gateformer with its ETTh1-96 paper settings (d_model 64, 1 layer, patches of 8, batch 8) on the ETTh1 train
rows (``--batch``, ``--d-model`` and ``--patch-len`` change them: 32 and 16 give the estimator's default step):
each measurement is a fresh process (``_speed_worker.py``, task ``train``) that fits for SHORT and
LONG steps; the difference gives the time of one step without the fixed cost of a fit. The trees
are measured in turn, ``--repeats`` times (A B A B ...), so both see the same machine. Times are CPU
seconds of the worker process (see ``_speed_worker.py``), which a shared machine inflates far less than
wall time; the minimum over the repeats is the figure compared, the median is printed too.

    .venv/bin/python benchmarks/train_overhead.py --trees /tmp/before /tmp/after --labels before after

Rows go to ``benchmarks/results/train_overhead.csv``.
"""
from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _nfenv import run_worker  # noqa: E402
from _protocol import append_rows  # noqa: E402

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trees", nargs="+", type=Path, required=True)
    p.add_argument("--labels", nargs="+", required=True)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", nargs=2, type=int, default=[20, 220])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--patch-len", type=int, default=8, help="patch length and stride (the paper's 8; defaults: 16)")
    p.add_argument("--data-dir", default=os.environ.get("TSFORMERS_DATA") or str(HERE.parent.parent / "shared" /
                                                                                   "datasets"))
    p.add_argument("--out", type=Path, default=HERE / "results" / "train_overhead.csv")
    args = p.parse_args(argv)
    assert len(args.trees) == len(args.labels)
    hp = {"d_model": args.d_model, "d_ff": args.d_model, "e_layers": 1, "n_heads": 4, "patch_len": args.patch_len,
          "stride": args.patch_len}
    spec = {"task": "train", "library": "tsformers", "model": "gateformer", "hp": hp, "batch": args.batch,
            "steps_short": args.steps[0], "steps_long": args.steps[1], "threads": 1,
            "csv": str(Path(args.data_dir) / "ETTh1.csv"), "train_end": 8640}
    rows = []
    for rep in range(args.repeats):
        for label, tree in zip(args.labels, args.trees):
            old = os.environ.get("PYTHONPATH", "")
            os.environ["PYTHONPATH"] = str(tree)
            try:
                res = run_worker(sys.executable, HERE / "_speed_worker.py", spec)
            finally:
                os.environ["PYTHONPATH"] = old
            rev = (tree / "REV").read_text().strip() if (tree / "REV").exists() else ""
            row = {"timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"), "label": label,
                   "tree_rev": rev, "repeat": rep, "batch": args.batch, "d_model": args.d_model,
                   "patch_len": args.patch_len, "steps": f"{args.steps[0]}/{args.steps[1]}", **res}
            rows.append(row)
            print(f"  repeat {rep} {label:<10} step {res['step_ms']:.2f} ms, {res['windows_per_s']:.0f} windows/s, "
                  f"fit fixed {res['fit_fixed_s']:.2f}s, peak RSS {res['peak_rss_mib']:.0f} MiB "
                  f"(load {res['load_start']:.1f})", flush=True)
    print(f"\n{'label':<10} {'min step ms':>11} {'median':>8} {'max windows/s':>13} {'fit fixed s (min)':>17} "
          f"{'speed-up vs ' + args.labels[0]:>18}")
    base = min(r["step_ms"] for r in rows if r["label"] == args.labels[0])
    for label in args.labels:
        steps = [r["step_ms"] for r in rows if r["label"] == label]
        fixed = min(r["fit_fixed_s"] for r in rows if r["label"] == label)
        print(f"{label:<10} {min(steps):>11.2f} {np.median(steps):>8.2f} {args.batch * 1e3 / min(steps):>13.0f} "
              f"{fixed:>17.2f} {base / min(steps):>18.2f}")
    append_rows(args.out, rows, list(rows[0]))
    print(f"\nappended {len(rows)} row(s) to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
