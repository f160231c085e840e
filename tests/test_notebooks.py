"""Every notebook in notebooks/ executes from top to bottom without an error (nbclient, on a copy).

The committed notebooks carry their outputs (written by `python notebooks/execute.py`); this test runs
them again without writing, so that a change in the package that breaks a tutorial fails here.
The ETTh1 and PV notebooks read the data where a user's would: `load_dataset` from $TSFORMERS_DATA or the
cache folder. Here $TSFORMERS_DATA names the benchmark files' folder (../shared/datasets unless set), and
without the file the notebook is skipped with its reason (no download here: the suite runs offline).
"""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.notebooks

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
DATA = Path(os.environ.get("TSFORMERS_DATA") or ROOT.parent / "shared" / "datasets")
NEEDS_DATA = {"long_horizon.ipynb": "ETTh1.csv", "pv_weather.ipynb": "pv_golden_co_2020.csv"}


def _executor():
    spec = importlib.util.spec_from_file_location("notebooks_execute", ROOT / "notebooks" / "execute.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_notebooks_are_committed_with_their_outputs():
    assert {p.name for p in NOTEBOOKS} >= {"quickstart.ipynb", "long_horizon.ipynb", "pv_weather.ipynb",
                                           "streaming.ipynb", "mlflow_batch.ipynb", "backbone_swap.ipynb"}
    for path in NOTEBOOKS:
        cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
        assert cells and all(c["execution_count"] for c in cells), f"{path.name}: run notebooks/execute.py"
        errors = [o for c in cells for o in c["outputs"] if o["output_type"] == "error"]
        assert not errors, f"{path.name} was committed with an error output"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, monkeypatch):
    pytest.importorskip("nbclient", reason="the docs extra: pip install -e '.[docs]'")
    pytest.importorskip("ipykernel", reason="the docs extra: pip install -e '.[docs]'")
    if path.name == "mlflow_batch.ipynb":
        pytest.importorskip("mlflow", reason="the mlflow extra")
    needed = NEEDS_DATA.get(path.name)
    if needed and not (DATA / needed).is_file():
        pytest.skip(f"{needed} not in {DATA}: set TSFORMERS_DATA")
    monkeypatch.setenv("TSFORMERS_DATA", str(DATA))  # the kernel inherits it
    executed, _ = _executor().execute(path, write=False)   # raises CellExecutionError with the cell and traceback
    cells = [c for c in executed.cells if c.cell_type == "code"]
    assert cells and all(c.execution_count for c in cells), f"{path.name}: a code cell did not run"
    # every cell that shows something in the committed tutorial (a table, a plot, a number) still shows it
    committed = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    silent = [i for i, (old, new) in enumerate(zip(committed, cells)) if old["outputs"] and not new.outputs]
    assert not silent, f"{path.name}: code cells {silent} no longer produce their output"
