"""Cold start of the batch path: a fresh interpreter per command, wall time, as ratios to ``import torch``.

In one run, each command is run ``--repeats`` times, the commands taking turns (A B C D A B C D ...),
so that every one sees the same machine; the minimum and the median wall time of each are recorded,
and their ratios to those of ``python -c "import torch"``:

- ``python``: ``python -c pass``, the interpreter's own start;
- ``import torch``: ``python -c "import torch"``;
- ``import tsformers``: ``python -c "import tsformers"``;
- ``forecast torch``: ``tsformers forecast`` of one series with the torch engine;
- ``forecast onnx``: the same with ``--engine onnx``.

The forecasts use the demo model (``tsformers demo``'s Gateformer: horizon 24, lookback 96, one epoch),
saved and exported to ONNX in a temporary folder first, on the last 96 rows of the demo data (one
multivariate series). ``tsformers forecast`` is run as its console script runs it
(``from tsformers.cli import main``), with this tree first on ``PYTHONPATH``, one thread
(``OMP_NUM_THREADS=1``).

Every module is read from compiled bytecode, as from an installed package (pip compiles a wheel's modules
when it installs them): the commands write their bytecode to a scratch ``PYTHONPYCACHEPREFIX`` in the
untimed first round, also where ``PYTHONDONTWRITEBYTECODE`` is set (this project's machines set it, and
until 2026-12-04 every timed run compiled tsformers' ~200 modules from source: about 0.1 s of each
command's time that a user does not pay).

    .venv/bin/python benchmarks/cold_start.py --repeats 7

Rows (one per command) go to ``benchmarks/results/cold_start.csv``; ``report.py`` renders the latest run.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))  # this tree's tsformers, also where another one is installed in the venv
FIELDS = ["timestamp", "case", "command", "repeats", "min_s", "median_s", "ratio_min", "ratio_median",
          "over_torch_min_s", "load_start", "load_end", "cpus", "machine", "python", "torch_version", "git_rev"]
REFERENCE = "import torch"
CLI = "import sys; from tsformers.cli import main; sys.exit(main(sys.argv[1:]))"
SHOWN = {"python": "python -c pass", REFERENCE: 'python -c "import torch"',
         "import tsformers": 'python -c "import tsformers"', "forecast torch": "tsformers forecast",
         "forecast onnx": "tsformers forecast --engine onnx"}


def prepare(folder: Path) -> tuple[Path, Path]:
    """The demo model saved and exported in ``folder``, and one series' history as CSV."""
    from tsformers import GateformerForecaster
    from tsformers.datasets import make_demo

    df = make_demo()
    model = GateformerForecaster(linear_base=False, ensemble_size=1, horizon=24, lookback=96, max_epochs=1, batch_size=32, learning_rate=1e-3,
                                 random_state=0).fit(df)
    path = model.save(folder / "model")
    model.export_onnx(path)
    df.tail(96).to_csv(folder / "history.csv", index=False)
    return path, folder / "history.csv"


def commands(python: str, model: Path, history: Path, folder: Path) -> dict[str, list[str]]:
    forecast = [python, "-c", CLI, "forecast", "--model", str(model), "--input", str(history)]
    return {
        "python": [python, "-c", "pass"],
        REFERENCE: [python, "-c", "import torch"],
        "import tsformers": [python, "-c", "import tsformers"],
        "forecast torch": forecast + ["--output", str(folder / "torch.csv")],
        "forecast onnx": forecast + ["--output", str(folder / "onnx.csv"), "--engine", "onnx"],
    }


def environment(base: dict, bytecode: Path) -> dict:
    """The commands' environment: this tree first on the path, one thread, bytecode cached under ``bytecode``."""
    env = {key: value for key, value in base.items() if key != "PYTHONDONTWRITEBYTECODE"}
    path = os.pathsep.join([str(ROOT), base.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**env, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "PYTHONPYCACHEPREFIX": str(bytecode)}


def wall_time(command: list[str], env: dict) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{command[2][:40]}... exited {done.returncode}: {done.stderr[-2000:]}")
    return elapsed


def measure(cases: dict[str, list[str]], repeats: int, env: dict) -> dict[str, list[float]]:
    times = {case: [] for case in cases}
    for case, command in cases.items():  # one untimed round: the page cache holds every file afterwards
        wall_time(command, env)
    for _ in range(repeats):
        for case, command in cases.items():
            times[case].append(wall_time(command, env))
    return times


def rows(times: dict[str, list[float]], cases: dict[str, list[str]], **common) -> list[dict]:
    ref_min, ref_median = min(times[REFERENCE]), statistics.median(times[REFERENCE])
    out = []
    for case, values in times.items():
        low, mid = min(values), statistics.median(values)
        out.append({**common, "case": case, "command": SHOWN[case], "repeats": len(values), "min_s": round(low, 4),
                    "median_s": round(mid, 4), "ratio_min": round(low / ref_min, 3),
                    "ratio_median": round(mid / ref_median, 3), "over_torch_min_s": round(low - ref_min, 3)})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=7, help="timed runs of each command (default 7)")
    p.add_argument("--python", default=sys.executable, help="the interpreter to start (default: this one)")
    p.add_argument("--out", type=Path, default=HERE / "results" / "cold_start.csv")
    args = p.parse_args(argv)
    if args.repeats < 5:
        p.error("--repeats must be at least 5: a median of fewer runs on a shared machine says little")
    import torch

    with tempfile.TemporaryDirectory(prefix="tsformers-cold-") as scratch:
        folder = Path(scratch)
        model, history = prepare(folder)
        cases = commands(args.python, model, history, folder)
        env = environment(os.environ, folder / "bytecode")
        load_start = os.getloadavg()[0]
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        times = measure(cases, args.repeats, env)
        load_end = os.getloadavg()[0]
    from _protocol import append_rows
    from long_horizon import git_rev

    out = rows(times, cases, timestamp=stamp, load_start=round(load_start, 2), load_end=round(load_end, 2),
               cpus=os.cpu_count(), machine=platform.machine(), python=platform.python_version(),
               torch_version=torch.__version__, git_rev=git_rev())
    append_rows(args.out, out, FIELDS)
    print(f"{'case':<18}{'min s':>8}{'median s':>10}{'x torch (min)':>15}{'x torch (median)':>18}")
    for r in out:
        print(f"{r['case']:<18}{r['min_s']:>8.2f}{r['median_s']:>10.2f}{r['ratio_min']:>15.2f}{r['ratio_median']:>18.2f}")
    print(f"load {load_start:.1f} -> {load_end:.1f} on {os.cpu_count()} cores; rows appended to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
