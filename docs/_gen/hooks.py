"""MkDocs hook: pages hold markers that become tables when the site is built.

- ``<!-- tsformers:backbone-catalog -->``: every registered backbone part, from
  ``tsformers.backbone.available()`` (name, kind, class, paper, token cost).
- ``<!-- tsformers:benchmarks model=gateformer -->``: the accuracy rows of every
  ``benchmarks/results/*.csv`` whose ``model`` starts with that name, averaged over seeds.
- ``<!-- tsformers:benchmark-results -->``: every results CSV as a table.
- ``<!-- tsformers:cli-help -->``: the ``tsformers`` command's ``--help`` texts.

So the site always shows what the registry and the results files hold now: a new mixer
or a new benchmark row needs no edit of the docs.
"""
from __future__ import annotations

import json
import math
import re
import shlex
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
MARKER = re.compile(r"<!--\s*tsformers:([a-z-]+)(.*?)-->")

# Columns that identify a benchmark cell (kept when present), then the numbers shown.
KEY_COLUMNS = ["section", "kind", "dataset", "horizon", "lookback", "model", "variant", "lead_hours"]
NUMBER_COLUMNS = ["mse", "mae", "nmae_pct", "nrmse_pct", "naive_mse", "naive_mae", "epochs_run", "epochs",
                  "fit_s", "cpu_seconds", "n_params"]
MAX_ROWS = 40          # longer CSVs show a summary and fold the rest
LONG_TEXT = 60         # cells longer than this (JSON params) are left out of the tables


def on_page_markdown(markdown, page, config, files):
    return MARKER.sub(lambda m: _render(m.group(1), _args(m.group(2)), page.file.src_uri), markdown)


def _args(text: str) -> dict:
    return dict(part.split("=", 1) for part in shlex.split(text) if "=" in part)


def _render(name: str, args: dict, where: str) -> str:
    renderers = {
        "backbone-catalog": backbone_catalog,
        "benchmarks": estimator_benchmarks,
        "benchmark-results": benchmark_results,
        "cli-help": cli_help,
    }
    if name not in renderers:
        raise ValueError(f"{where}: unknown marker tsformers:{name}; known: {', '.join(renderers)}")
    return renderers[name](**args)


# -- backbone catalog --------------------------------------------------------------------------

def backbone_catalog() -> str:
    import tsformers.backbone as backbone

    registry = backbone.available()
    out = [f"{sum(map(len, registry.values()))} parts of {len(registry)} kinds are registered.\n"]
    out.append("| kind | parts |\n|---|---|")
    for kind, names in registry.items():
        out.append(f"| [{kind}](#{_anchor(kind)}) | {', '.join(f'`{n}`' for n in names)} |")
    out.append("")
    measured = _backbone_measurements()
    if measured:
        out.append("Where `benchmarks/backbone.py` has measured a part (`benchmarks/results/backbone.csv`), its row "
                   "also shows the attention patterns it supports, the slope of its forward time against the "
                   "number of tokens on a log-log scale (1: linear, 2: quadratic; 256 to 16,384 tokens) and the "
                   "ETTh1-96 test MSE of Gateformer with the part in its slot.\n")
    for kind, names in registry.items():
        out.append(f"## {kind}\n")
        extra = any((kind, name) in measured for name in names)
        head = "| name | class | paper | token cost | what it does |"
        out.append(head + (" patterns | time slope | ETTh1-96 MSE |" if extra else "")
                   + "\n|" + "---|" * (8 if extra else 5))
        for name in names:
            cls = backbone.build_class(kind, name)
            paper = getattr(cls, "paper", None) or "—"
            cost = getattr(cls, "complexity", None)
            cost = f"`{cost}`" if cost else "—"
            row = (f"| `{name}` | `{cls.__module__}.{cls.__qualname__}` | {_cell(paper)} | {_cell(cost)} "
                   f"| {_cell(_summary(cls))} |")
            if extra:
                m = measured.get((kind, name), {})
                row += " ".join(f" {_cell(m.get(k, ''))} |" for k in ("patterns", "time slope", "mse"))
            out.append(row)
        out.append("")
    return "\n".join(out)


def _backbone_measurements() -> dict:
    """(kind, name) -> patterns / time slope / mse from benchmarks/results/backbone.csv, where present."""
    path = RESULTS / "backbone.csv"
    if not path.is_file():
        return {}
    frame = pd.read_csv(path)
    if not {"kind", "name", "part"} <= set(frame.columns):
        return {}
    out = {}
    for (kind, name), group in frame.groupby(["kind", "name"], sort=False):
        row = {}
        patterns = group[group["part"] == "patterns"]
        cols = [c for c in ("self", "causal_self", "cross", "causal_cross") if c in group]
        if len(patterns) and cols:
            last = patterns.iloc[-1]
            row["patterns"] = ", ".join(c.replace("_", " ") for c in cols if last[c] == "ok") or "—"
        scaling = group[group["part"] == "scaling"]
        if "time_slope" in group and scaling["time_slope"].notna().any():
            row["time slope"] = f"{scaling['time_slope'].dropna().iloc[-1]:.2f}"
        accuracy = group[group["part"] == "accuracy"]
        if "mse" in group and accuracy["mse"].notna().any():
            row["mse"] = f"{accuracy['mse'].dropna().iloc[-1]:.4f}"
        if row:
            out[(str(kind), str(name))] = row
    return out


def _summary(cls) -> str:
    doc = (cls.__doc__ or "").strip()
    if not doc:
        return "—"
    first = doc.split("\n\n")[0]
    return " ".join(first.split()).replace("``", "`")


def _anchor(text: str) -> str:
    return re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-")


# -- benchmarks ----------------------------------------------------------------------------------

def _results() -> dict[str, pd.DataFrame]:
    return {path.stem: pd.read_csv(path) for path in sorted(RESULTS.glob("*.csv"))}


def estimator_benchmarks(model: str) -> str:
    """Accuracy rows of every results file for models named ``model*``, averaged over seeds."""
    parts = []
    for stem, frame in _results().items():
        if "model" not in frame or "mse" not in frame:
            continue
        rows = frame[frame["model"].astype(str).str.lower().str.startswith(model.lower()) & frame["mse"].notna()]
        if "lead_hours" in rows:
            rows = rows[rows["lead_hours"].astype(str) == "all"]
        if rows.empty:
            continue
        keys = [c for c in KEY_COLUMNS if c in rows and rows[c].notna().any()]
        numbers = [c for c in NUMBER_COLUMNS if c in rows and rows[c].notna().any()]
        grouped = rows.assign(**{k: rows[k].fillna("") for k in keys}).groupby(keys, sort=False)
        table = grouped[numbers].mean()
        table.insert(0, "runs", grouped.size())
        table = table.reset_index()
        parts.append(f"From `benchmarks/results/{stem}.csv` (mean over the runs of each setting):\n\n{_table(table)}")
    if not parts:
        return f"*No benchmark results for `{model}` in `benchmarks/results/` yet.*"
    return "\n\n".join(parts)


def benchmark_results() -> str:
    out = []
    for stem, frame in _results().items():
        out.append(f"## {stem}\n")
        script = f"benchmarks/{stem}.py"
        source = (f"Produced by `{script}` (see `benchmarks/README.md`)." if (ROOT / script).is_file()
                  else "See `benchmarks/README.md` for the script that writes it.")
        out.append(f"`benchmarks/results/{stem}.csv`, {len(frame)} rows. {source}\n")
        shown = _drop_long(frame)
        if len(shown) > MAX_ROWS and "lead_hours" in shown:
            summary = shown[shown["lead_hours"].astype(str) == "all"]
            out.append("Over all lead times:\n\n" + _table(summary) + "\n")
        elif len(shown) > MAX_ROWS:
            out.append(_table(shown.head(MAX_ROWS)) + "\n")
        else:
            out.append(_table(shown) + "\n")
            continue
        body = _table(shown).replace("\n", "\n    ")
        out.append(f'??? note "All {len(shown)} rows"\n\n    {body}\n')
    return "\n".join(out)


def _drop_long(frame: pd.DataFrame) -> pd.DataFrame:
    long = [c for c in frame if frame[c].astype(str).str.len().max() > LONG_TEXT]
    frame = frame.drop(columns=long)
    return frame.loc[:, frame.notna().any()]


def _table(frame: pd.DataFrame) -> str:
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(_cell(_fmt(v)) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *rows])


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.3g}"
    return str(value)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


# -- command line --------------------------------------------------------------------------------

def cli_help() -> str:
    import argparse
    import os

    from tsformers.cli import build_parser

    os.environ.setdefault("COLUMNS", "100")
    parser = build_parser()
    out = ["```text\n$ tsformers --help\n" + parser.format_help().rstrip() + "\n```\n"]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.append(f"### tsformers {name}\n\n```text\n$ tsformers {name} --help\n"
                           + sub.format_help().rstrip() + "\n```\n")
    return "\n".join(out)


if __name__ == "__main__":  # a quick look without building the site
    print(json.dumps({"kinds": len(backbone_catalog().splitlines())}))

