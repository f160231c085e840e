"""Execute the notebooks of this folder with nbclient.

    python notebooks/execute.py                 # run every notebook, write the outputs in place (to commit them)
    python notebooks/execute.py --check         # run them on copies, fail on any error (tests/test_notebooks.py)
    python notebooks/execute.py quickstart      # only the notebooks whose names contain "quickstart"

Each notebook runs in a fresh kernel with this folder as its working directory and one torch thread
(``OMP_NUM_THREADS=1`` unless set), and prints its run time. Outputs are written without execution
timestamps, so a rerun changes only what the code prints.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
TIMEOUT_S = 600  # per cell


def notebooks(patterns: list[str] | None = None) -> list[Path]:
    found = sorted(HERE.glob("*.ipynb"))
    if patterns:
        found = [p for p in found if any(s in p.stem for s in patterns)]
    return found


def execute(path: Path, *, write: bool) -> tuple[nbformat.NotebookNode, float]:
    """Run every cell of ``path`` in a fresh kernel; an error in a cell raises. Returns the executed notebook
    and the seconds taken."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=TIMEOUT_S, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    if write:
        nb.metadata.pop("widgets", None)
        nbformat.write(nb, path)
    return nb, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="run only notebooks whose names contain one of these")
    parser.add_argument("--check", action="store_true", help="do not write outputs, only fail on errors")
    args = parser.parse_args(argv)
    total = 0.0
    for path in notebooks(args.names):
        _, seconds = execute(path, write=not args.check)
        total += seconds
        print(f"{path.name}: {seconds:.1f} s", flush=True)
    print(f"total: {total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
