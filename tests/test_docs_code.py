"""Every Python code block of README.md and docs/ runs, in order, as a reader would paste it.

Each page is one test: its ``python`` blocks run one after another in one namespace (a later
block may use what an earlier one defined, as on the page), in a temporary working folder, with no
network (data sets come from ``$TSFORMERS_DATA`` or ``../shared/datasets``; a page that needs one
is skipped, with the reason, where neither has it).

An HTML comment on the line before a fence tells this collector something a reader need not see:

- ``<!-- docs-test: spark -->``: the block needs a Spark session (``spark``), so it runs in
  ``make test-spark`` (the ``spark`` marker), after the page's other blocks.
- ``<!-- docs-test: skip <reason> -->``: the block cannot run on a CPU-only test machine (it asks
  for GPUs). The reason is required, and the test below keeps the list of such blocks short.

Training is capped (one epoch of a few batches) so that the pages run within the suite's budget:
this checks that the code runs as written and returns what the page says it returns (a frame of
the right shape); accuracy is measured in ``benchmarks/``, not here.
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import lightning
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"(?:^<!-- docs-test: (?P<note>[^>]*?) -->\n)?^```(?P<lang>[\w-]*)[^\n]*\n(?P<code>.*?)^```",
                   re.M | re.S)
SHARED_DATA = ROOT.parent / "shared" / "datasets"


@dataclass
class Block:
    page: str
    line: int
    code: str
    note: str  # "", "spark" or "skip <reason>"


def blocks(page: str) -> list[Block]:
    """The page's Python blocks (fences tagged ``python`` or ``py``), with their line numbers and notes."""
    text = (ROOT / page).read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        if match.group("lang") in ("python", "py"):
            found.append(Block(page, text.count("\n", 0, match.start("code")) + 1, match.group("code"),
                               (match.group("note") or "").strip()))
    return found


RUN_PAGES = [p for p in PAGES if any(b.note == "" for b in blocks(p))]
SPARK_PAGES = [p for p in PAGES if any(b.note == "spark" for b in blocks(p))]


def test_the_collector_finds_the_pages_blocks_and_notes():
    readme = blocks("README.md")
    assert readme and readme[0].code.startswith("from tsformers import"), "the README's first block is its example"
    notes = [b.note for p in PAGES for b in blocks(p) if b.note]
    assert all(n == "spark" or re.fullmatch(r"skip \S.*", n) for n in notes), notes
    skipped = [f"{b.page}:{b.line}" for p in PAGES for b in blocks(p) if b.note.startswith("skip")]
    assert len(skipped) <= 1, f"blocks not run: {skipped}; make them runnable rather than skipping them"
    assert len(RUN_PAGES) >= 15


class _ShortTrainer(lightning.Trainer):
    """A Trainer that stops after one epoch of at most four batches, whatever the page asked for."""

    def __init__(self, *args, **kwargs):
        kwargs.update(max_epochs=min(kwargs.get("max_epochs") or 1, 1), limit_train_batches=4)
        if kwargs.get("limit_val_batches") != 0:
            kwargs["limit_val_batches"] = 2
        super().__init__(*args, **kwargs)


@pytest.fixture
def reader(tmp_path, monkeypatch):
    """A reader's session: a fresh working folder, no network, local data sets, short training, quiet plots."""
    previous_uri = sys.modules["mlflow"].get_tracking_uri() if "mlflow" in sys.modules else None
    data = os.environ.get("TSFORMERS_DATA") or (str(SHARED_DATA) if SHARED_DATA.is_dir() else None)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))          # the cache and MLflow's defaults stay here
    monkeypatch.setenv("TSFORMERS_DATA_URL", "http://127.0.0.1:9/")   # a closed port: no download
    monkeypatch.setenv("MPLBACKEND", "Agg")
    if data:
        monkeypatch.setenv("TSFORMERS_DATA", data)
    else:
        monkeypatch.delenv("TSFORMERS_DATA", raising=False)
    monkeypatch.setattr(lightning, "Trainer", _ShortTrainer)
    yield data
    # the pages switch on autologging and set a tracking URI: process-wide state the next tests must not see
    if "mlflow" in sys.modules:
        import mlflow

        import tsformers.tracking
        tsformers.tracking.autolog(disable=True)
        mlflow.set_tracking_uri(previous_uri)


def _run(page: str, selected: list[Block], namespace: dict) -> None:
    for block in selected:
        code = compile(block.code, f"{page}:{block.line}", "exec")
        try:
            exec(code, namespace)
        except Exception as error:  # noqa: BLE001 - re-raised with the block's place
            raise AssertionError(f"the code block at {page}:{block.line} failed: {error!r}") from error


def _needs_data(page: str, data: str | None) -> None:
    """Skip a page whose code blocks (not its prose) read a benchmark file this machine does not have."""
    code = "\n".join(b.code for b in blocks(page) if b.note == "")
    for name in re.findall(r'load_dataset\("([^"]+)"', code):
        if data is None or not (Path(data) / f"{name}.csv").exists():
            pytest.skip(f"{page} reads the {name} data set: put {name}.csv in $TSFORMERS_DATA "
                        f"(this test never downloads)")


@pytest.mark.parametrize("page", RUN_PAGES)
def test_page_code_runs(page, reader):
    _needs_data(page, reader)
    _run(page, [b for b in blocks(page) if b.note == ""], {"__name__": "__docs__"})


# What a Spark page presumes: a registered model at the alias "production" and a folder of history
# files, both in the working folder (a cluster's registry and storage, in the pages).
SPARK_SETUP = """
import os

import mlflow
import tsformers.tracking
from tsformers import GateformerForecaster
from tsformers.datasets import make_demo

# absolute: MLflow keeps one database engine per URI for the process's life, so a relative SQLite URI an earlier
# test opened in its own folder would still write there, while the training processes (fresh, started in
# this folder) would open this folder's store and find no run in it; and an experiment of this store, not the
# one an earlier test left active
mlflow.set_tracking_uri(f"sqlite:///{os.path.abspath('mlflow.db')}")
mlflow.set_experiment("spark pages")
panel = make_demo(n_steps=400, layout="long")
model = GateformerForecaster(horizon=24, lookback=96, d_model=16, d_ff=16, n_heads=2).fit(panel)
version = tsformers.tracking.log_model(model, "model", registered_model_name="demand").registered_model_version
mlflow.MlflowClient().set_registered_model_alias("demand", "production", version)
panel.to_parquet("history.parquet")
"""


@pytest.mark.spark
@pytest.mark.parametrize("page", SPARK_PAGES)
def test_page_spark_code_runs(page, reader, spark):
    namespace = {"__name__": "__docs__", "spark": spark}
    exec(compile(SPARK_SETUP, "<spark setup>", "exec"), namespace)
    os.mkdir("history")
    os.replace("history.parquet", "history/part-0.parquet")
    _run(page, [b for b in blocks(page) if b.note == "spark"], namespace)
    forecast = spark.read.parquet(os.path.abspath("forecast")).toPandas()   # the JVM's working folder is not ours
    assert len(forecast) == 3 * 24 and set(forecast["unique_id"]) == {"series_0", "series_1", "series_2"}
