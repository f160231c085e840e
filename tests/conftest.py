"""With ``TSFORMERS_NO_SKIPS=1`` a skipped test fails.

``.ci/run`` exports it for ``make test`` and ``make test-spark``: CI installs every extra, Chromium and the
benchmark data, so a skip there means something went missing, and the docs, notebook, ONNX or Spark tests would
otherwise pass without running. Without it (``make test`` on a fresh clone) such tests skip, and ``-rs`` prints
why.
"""
from __future__ import annotations

import os

import pytest


def _fail_skips(report) -> None:
    if os.environ.get("TSFORMERS_NO_SKIPS") == "1" and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped, but TSFORMERS_NO_SKIPS=1 forbids skips here: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_skips(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_skips(outcome.get_result())


@pytest.fixture(scope="session")
def spark():
    """A Spark session in local mode (the ``spark`` tests: ``make test-spark``)."""
    # checked here, not at import: `make test` deselects the spark tests without installing pyspark
    pytest.importorskip("pyspark")
    import sys

    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # the workers need this environment's packages
    session = (SparkSession.builder.master("local[1]").appName("tsformers-test")
               .config("spark.sql.session.timeZone", "UTC").config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", "3").config("spark.driver.memory", "1g").getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
