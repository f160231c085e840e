"""Peak memory of fit and predict on big panels of short series.

Each size runs in a fresh subprocess so that its peak RSS is its own. Fit is
one epoch limited to a fixed number of batches (the memory question is whether
the windows are materialised, not how long an epoch takes); predict forecasts
every series. Windows are strided views of the panel, so memory should grow
with the panel itself (series x steps), not with the number of windows.

    python benchmarks/panel_memory.py --series 1000 10000 100000
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "panel_memory.csv"

CHILD = r"""
import json, resource, sys, time
import numpy as np, pandas as pd, torch
torch.set_num_threads(1)
from tsformers import GateformerForecaster
n_series, n_steps = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
t = np.arange(n_steps)
values = np.sin(2 * np.pi * t / 24)[None, :] + 0.1 * rng.standard_normal((n_series, n_steps))
df = pd.DataFrame({"unique_id": np.repeat(np.arange(n_series), n_steps),
                   "ds": np.tile(pd.date_range("2024-01-01", periods=n_steps, freq="h"), n_series),
                   "y": values.reshape(-1)})
del values
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
f = GateformerForecaster(linear_base=False, ensemble_size=1, horizon=12, lookback=48, d_model=16, d_ff=32, n_heads=2, batch_size=256, max_epochs=1,
                         trainer_kwargs={"limit_train_batches": 20, "limit_val_batches": 5})
start = time.perf_counter(); f.fit(df); fit_s = time.perf_counter() - start
after_fit = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter(); out = f.predict(); predict_s = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
n_windows = n_series * (n_steps - 48 - 12 + 1)
print(json.dumps({"n_series": n_series, "n_steps": n_steps, "rows": len(df), "windows": n_windows,
                  "frame_mib": df.memory_usage(deep=True).sum() / 2**20, "rss_after_data_mib": base / 1024,
                  "rss_peak_fit_mib": after_fit / 1024, "rss_peak_mib": peak / 1024, "fit_s": fit_s,
                  "predict_s": predict_s, "forecast_rows": len(out)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--steps", type=int, default=96, help="length of every series")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    rows = []
    for n in args.series:
        done = subprocess.run([sys.executable, "-c", CHILD, str(n), str(args.steps)], capture_output=True,
                              text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    header = f"{'series':>8} {'windows':>11} {'frame MiB':>10} {'RSS data':>9} {'RSS fit':>8} {'RSS peak':>9} " \
             f"{'fit s':>7} {'predict s':>10}"
    print(header)
    for r in rows:
        print(f"{r['n_series']:>8} {r['windows']:>11} {r['frame_mib']:>10.1f} {r['rss_after_data_mib']:>9.0f} "
              f"{r['rss_peak_fit_mib']:>8.0f} {r['rss_peak_mib']:>9.0f} {r['fit_s']:>7.1f} {r['predict_s']:>10.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    new = not args.out.exists()
    with open(args.out, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["timestamp", *rows[0]])
        if new:
            writer.writeheader()
        for r in rows:
            writer.writerow({"timestamp": stamp, **r})
    print(f"appended to {args.out}")


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"total {time.perf_counter() - started:.0f} s")
