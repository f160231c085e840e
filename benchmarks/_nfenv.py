"""The neuralforecast virtual environment the side-by-side benchmarks compare against.

``benchmarks/.venv-nf`` (git-ignored) holds its own torch and neuralforecast, so neither library's
dependencies (Lightning versions, numpy, pandas) touch the other's. It is created on first use:
the CPU torch wheel first (a plain ``torch`` requirement would pull the multi-GB CUDA build), then
neuralforecast from the package index.
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
NF_VENV = Path(os.environ.get("TSFORMERS_NF_VENV", HERE / ".venv-nf"))
NF_PYTHON = NF_VENV / "bin" / "python"
WORKER = HERE / "_nf_worker.py"
TORCH_VERSION = "2.13.0"
# Pinned, as the anchors' packages are (``_anchorsenv.PACKAGES``): every neuralforecast row of
# ``results/side_by_side*.csv`` ran on this version (its ``lib_version``), so a venv created later reruns them
# on the same code instead of whatever the index holds that day.
NF_VERSION = "3.3.0"


#: the spec entries that name a file the worker reads: a run's digest holds the file's content, not its path
FILE_INPUTS = ("csv",)


def local_modules(script: Path) -> list[Path]:
    """``script`` and the modules of its folder it imports, directly or through one another, sorted."""
    script = Path(script)
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            todo += [module for name in names if (module := script.parent / f"{name.split('.')[0]}.py").exists()]
    return sorted(seen)


def run_digest(spec: dict, worker: Path = WORKER, *, nf_version: str = NF_VERSION,
               torch_version: str = TORCH_VERSION) -> str:
    """What decides a worker run's result, as one SHA-256: the worker's code (its file and the modules of its
    folder it imports), every entry of ``spec`` (a file it names by the file's content, not its path: the data
    may sit elsewhere on another machine) and the pinned versions of neuralforecast and torch its environment has.

    Two runs of one digest ran the same code on the same inputs, so a row of one stands for the other at any
    code revision with that digest (on one processor they give the same numbers; the packages neuralforecast
    pulls in are not pinned, only resolved by pip for the pinned version, and the row records its versions).
    """
    def sha(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    inputs = {key: sha(Path(value).read_bytes()) if key in FILE_INPUTS else value for key, value in spec.items()}
    code = {path.name: sha(path.read_bytes()) for path in local_modules(worker)}
    return sha(json.dumps({"code": code, "inputs": inputs, "neuralforecast": nf_version, "torch": torch_version},
                          sort_keys=True).encode())


def ensure_nf_venv(python: str = sys.executable) -> Path:
    """Create ``benchmarks/.venv-nf`` with the CPU build of torch and neuralforecast :data:`NF_VERSION`.

    An existing venv is kept when it imports both at those versions; one with another neuralforecast gets the
    pinned one installed over it.
    """
    if NF_PYTHON.exists():
        probe = subprocess.run([str(NF_PYTHON), "-c", "import neuralforecast, torch, sys\n"
                                f"sys.exit(neuralforecast.__version__ != {NF_VERSION!r} or "
                                f"not torch.__version__.startswith({TORCH_VERSION!r}))"], capture_output=True)
        if probe.returncode == 0:
            return NF_PYTHON
    print(f"creating {NF_VENV} (torch {TORCH_VERSION} CPU wheel, then neuralforecast {NF_VERSION}) ...", flush=True)
    if not NF_PYTHON.exists():
        subprocess.run([python, "-m", "venv", str(NF_VENV)], check=True)
    pip = [str(NF_PYTHON), "-m", "pip", "install", "-q"]
    local_wheels = sorted(Path("/opt/wheels").glob(f"torch-{TORCH_VERSION}+cpu-*.whl"))
    if local_wheels:
        subprocess.run([*pip, str(local_wheels[0])], check=True)
    else:
        subprocess.run([*pip, f"torch=={TORCH_VERSION}", "--index-url", "https://download.pytorch.org/whl/cpu"],
                       check=True)
    subprocess.run([*pip, f"neuralforecast=={NF_VERSION}", "psutil"], check=True)
    return NF_PYTHON


def thread_env(threads: int = 1) -> dict:
    """The environment every timed subprocess gets: the same thread settings for both libraries."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore",
               TOKENIZERS_PARALLELISM="false", RAY_DISABLE_IMPORT_WARNING="1")
    return env


def run_worker(python, worker, spec: dict, *, log=None, timeout: float | None = None) -> dict:
    """Run ``worker`` with ``spec`` (written to a temporary JSON file) under ``python``; return its RESULT line."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(spec, fh)
        path = fh.name
    try:
        proc = subprocess.run([str(python), str(worker), path], capture_output=True, text=True,
                              env=thread_env(spec.get("threads", 1)), timeout=timeout)
    finally:
        os.unlink(path)
    if log is not None:
        with open(log, "a") as fh:
            fh.write(f"### {spec.get('task')} {spec.get('library', '')} {spec.get('model', '')}\n")
            fh.write(proc.stdout[-20000:])
            fh.write(proc.stderr[-20000:])
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"{worker} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
