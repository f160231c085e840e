"""The documentation site: `mkdocs build --strict`, then the built site served and opened in headless Chromium.

The browser part uses Debian's `chromium` package (`.ci/run` installs it) driven by playwright-python
with ``executable_path``, so no browser is downloaded. Screenshots of the pages it opens are written to
``build/screenshots/`` (ignored by git) for a look at what a reader sees.
"""
from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytestmark = pytest.mark.docs

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "build" / "screenshots"
MKDOCS = Path(sys.executable).with_name("mkdocs")
# Pages opened in the browser: the home page and an estimator page (mkdocstrings, a generated figure,
# tables rendered from the benchmark results).
PAGES = {"home": "", "gateformer": "estimators/gateformer/"}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("mkdocs", reason="the docs extra: pip install -e '.[docs]'")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "DISABLE_MKDOCS_2_WARNING": "true", "NO_MKDOCS_2_WARNING": "1",
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    build = subprocess.run([str(MKDOCS), "build", "--strict", "--site-dir", str(out)], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, f"mkdocs build --strict failed:\n{build.stdout}\n{build.stderr}"
    return out


def test_strict_build_has_every_section(site):
    for page in ["index.html", "getting-started/index.html", "data-formats/index.html",
                 "estimators/gateformer/index.html", "estimators/pvclient/index.html",
                 "estimators/lmuformer/index.html", "estimators/gtrxl/index.html", "estimators/atlas/index.html",
                 "backbone/index.html", "probabilistic/index.html", "streaming/index.html", "mlflow/index.html",
                 "scheduling/index.html", "scaling/index.html", "benchmarks/index.html",
                 "benchmark-results/index.html", "reference/estimators/index.html",
                 "notebooks/quickstart/index.html"]:
        assert (site / page).is_file(), page
    for name in ["gateformer", "pvclient", "lmuformer", "gtrxl", "atlas"]:
        assert (site / "img" / f"{name}.png").stat().st_size > 1000


def test_generated_content_follows_the_registry_and_results(site):
    from tsformers.backbone import available

    catalog = (site / "backbone" / "index.html").read_text()
    for kind, names in available().items():
        for name in names:
            assert f"<code>{name}</code>" in catalog, (kind, name)
    results = (site / "benchmark-results" / "index.html").read_text()
    for csv in (ROOT / "benchmarks" / "results").glob("*.csv"):
        assert f"benchmarks/results/{csv.name}" in results
    gateformer = (site / "estimators" / "gateformer" / "index.html").read_text()
    assert "benchmarks/results/long_horizon.csv" in gateformer   # its benchmark numbers
    assert "d_model" in gateformer and "patch_len" in gateformer  # its hyperparameters, from the docstring
    reference = (site / "reference" / "estimators" / "index.html").read_text()
    assert "%(common_parameters)s" not in reference and "checkpoint_dir" in reference


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def server(site):
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the stdlib's name)
        pass


def test_pages_render_in_chromium_without_console_errors(server):
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright: pip install -e '.[dev]'")
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no Chromium on this machine: apt-get install -y chromium (.ci/run does it)")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        try:
            for name, path in PAGES.items():
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                problems = []
                page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                        if m.type == "error" else None)
                page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
                page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} {r.failure}"))
                response = page.goto(server + path, wait_until="networkidle")
                assert response is not None and response.ok, (name, response and response.status)
                page.wait_for_selector("article h1")
                title = page.inner_text("article h1")
                shot = SCREENSHOTS / f"{name}.png"
                page.screenshot(path=str(shot), full_page=False)
                assert not problems, f"{name}: {problems}"
                assert title, name
                if name == "gateformer":
                    assert page.locator("article img[src$='gateformer.png']").evaluate("i => i.naturalWidth") > 0
                    assert page.locator("article table").count() >= 2      # benchmarks and hyperparameters
                assert shot.stat().st_size > 10_000
                page.close()
        finally:
            browser.close()
