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
# Pinned, so that a row's numbers can be reproduced; each row also records the versions its worker imported.
PACKAGES = {"statsforecast": "2.1.1", "mlforecast": "1.1.0", "lightgbm": "4.7.0"}


def ensure_anchors_venv(python: str = sys.executable) -> Path:
    """Create ``benchmarks/.venv-anchors`` with the pinned :data:`PACKAGES` unless it has them already."""
    pins = [f"{name}=={version}" for name, version in PACKAGES.items()]
    if ANCHORS_PYTHON.exists():
        probe = subprocess.run([str(ANCHORS_PYTHON), "-c", "import importlib.metadata as m, sys\n"
                                f"sys.exit(any(m.version(n) != v for n, v in {PACKAGES!r}.items()))"],
                               capture_output=True)
        if probe.returncode == 0:
            return ANCHORS_PYTHON
    print(f"installing {', '.join(pins)} into {ANCHORS_VENV} ...", flush=True)
    if not ANCHORS_PYTHON.exists():
        subprocess.run([python, "-m", "venv", str(ANCHORS_VENV)], check=True)
    subprocess.run([str(ANCHORS_PYTHON), "-m", "pip", "install", "-q", *pins], check=True)
    return ANCHORS_PYTHON


if __name__ == "__main__":
    print(ensure_anchors_venv())
