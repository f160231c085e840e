"""The statsforecast / mlforecast virtual environment of the anchors benchmark (``benchmarks/anchors.py``).

``benchmarks/.venv-anchors`` (git-ignored) holds statsforecast, mlforecast and lightgbm with their own
numpy, pandas and numba, so none of their dependencies touch tsformers' environment (and no torch is
installed there: none of the three needs it). It is created on first use, like ``_nfenv.py``'s
``benchmarks/.venv-nf``; the worker (``_anchors_worker.py``) runs in it through ``_nfenv.run_worker``,
with the same one-thread environment (``_nfenv.thread_env``).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ANCHORS_VENV = Path(os.environ.get("TSFORMERS_ANCHORS_VENV", HERE / ".venv-anchors"))
ANCHORS_PYTHON = ANCHORS_VENV / "bin" / "python"
ANCHORS_WORKER = HERE / "_anchors_worker.py"
PACKAGES = ["statsforecast", "mlforecast", "lightgbm"]


def ensure_anchors_venv(python: str = sys.executable) -> Path:
    """Create ``benchmarks/.venv-anchors`` with statsforecast, mlforecast and lightgbm unless it works already."""
    if ANCHORS_PYTHON.exists():
        probe = subprocess.run([str(ANCHORS_PYTHON), "-c", "import statsforecast, mlforecast, lightgbm"],
                               capture_output=True)
        if probe.returncode == 0:
            return ANCHORS_PYTHON
    print(f"creating {ANCHORS_VENV} ({', '.join(PACKAGES)}) ...", flush=True)
    subprocess.run([python, "-m", "venv", str(ANCHORS_VENV)], check=True)
    subprocess.run([str(ANCHORS_PYTHON), "-m", "pip", "install", "-q", *PACKAGES], check=True)
    return ANCHORS_PYTHON


if __name__ == "__main__":
    print(ensure_anchors_venv())
