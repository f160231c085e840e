"""Render ``docs/benchmarks.md`` from the CSVs under ``benchmarks/results/`` (never edit the tables by hand).

    .venv/bin/python benchmarks/report.py            # writes docs/benchmarks.md
    .venv/bin/python benchmarks/report.py --stdout   # prints it instead

Sections: the long-horizon grid (our runs, estimates for the cells not run, the published peers at
lookback 96 with their sources, averages), accuracy side by side with neuralforecast, speed and memory
side by side, the training-loop before/after, and the cold start of the batch path.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _csvfile import replace_text  # noqa: E402
from _published import CLIENT, CLIENT_SOURCE, ITRANSFORMER_TABLE, SOURCE, SOURCE_EXCHANGE  # noqa: E402

RESULTS = HERE / "results"
DATASETS = ["ETTh1", "ETTh2", "ETTm1", "ETTm2", "weather", "exchange"]
HORIZONS = [96, 192, 336, 720]
# The input window of every grid-protocol table; ILI (lookback 36) has its own tables
GRID_LOOKBACK = 96
NAMES = {"gateformer": "Gateformer", "itransformer": "iTransformer", "patchtst": "PatchTST",
         "patchtst-authors": "PatchTST, authors' sizes",
         "lmuformer": "LMUFormer", "gtrxl": "GTrXL", "atlas": "ATLAS", "pvclient": "PV-Client",
         # Gateformer's defaults include the linear base; rows without it are labelled apart (long_horizon._label)
         "gateformer+base": "Gateformer + linear base", "gateformer-defaults": "Gateformer (defaults, no linear base)",
         "gateformer-defaults+base": "Gateformer (defaults)"}


#: columns read as text: a revision of digits alone (0328105) would read as a number and lose its leading zero
TEXT_COLUMNS = {"git_rev": str, "ran_at": str}


def _read(name: str) -> pd.DataFrame | None:
    path = RESULTS / name
    if not path.exists() or not path.stat().st_size:
        return None
    return pd.read_csv(path, dtype=TEXT_COLUMNS)


def side_by_side_runs() -> pd.DataFrame | None:
    """Every run of ``side_by_side.py``: ``side_by_side.csv`` and the files written beside it (``side_by_side_*.csv``,
    whose older columns come back empty), one frame, or None when there are none."""
    frames = [pd.read_csv(p, dtype=TEXT_COLUMNS) for p in sorted(RESULTS.glob("side_by_side*.csv")) if p.stat().st_size]
    return pd.concat(frames, ignore_index=True) if frames else None


def grid_runs() -> pd.DataFrame | None:
    """The runs of ``long_horizon.csv`` under the grid's protocol: lookback 96 on the grid's data sets.

    The ILI runs (lookback 36, horizons 24-60) share the file and have their own tables; a table of the grid
    reads none of them, its revisions line included.
    """
    lh = _read("long_horizon.csv")
    return None if lh is None else lh[(lh["lookback"] == GRID_LOOKBACK) & lh["dataset"].isin(DATASETS)]


def _f(v, digits=3) -> str:
    return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{digits}f}"


def _secs(s) -> str:
    if s is None or (isinstance(s, float) and np.isnan(s)):
        return "–"
    return f"{s:.0f} s" if s < 600 else (f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h")


def latest_run(name: str) -> pd.DataFrame | None:
    """The rows of the latest run (one timestamp) in the results CSV ``name``, or None when it has none."""
    frame = _read(name)
    return None if frame is None else frame[frame["timestamp"] == frame["timestamp"].max()]


def measured_line(first) -> str:
    """When, at which revision and load a run of a ``latest_run`` section was measured (its first row)."""
    return (f"Measured {first.timestamp} (rev {first.git_rev}, torch {first.torch_version}, "
            f"{int(first.n_threads)} thread) at a 1-minute load of {first.load_start:.1f} at the start and "
            f"{first.load_end:.1f} at the end.")


def latest(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Each key's last row by timestamp; of rows with one timestamp, the last in the file (a row carried to a later
    revision keeps its run's timestamp and follows the row it copies)."""
    return frame.sort_values("timestamp", kind="stable").groupby(keys, as_index=False).tail(1)


SHARE_RULE = ("rows measured before rev 6cb1905 kept all of the network's correction or none (none where the map "
              "alone scored as well on the validation windows); from 6cb1905 the fit keeps the share of it (none, a "
              "quarter, half, three quarters or all) with the lowest validation loss")
LOSS_MARK = "▼"  # beside a metric of ours that is worse than the best baseline's on the same windows
BASELINES = {"last_value": "last value", "seasonal_naive": "seasonal naive", "linear": "linear",
             "linear_cycle": "linear + cycle"}
#: The linear baselines the side-by-side goal asks ours to beat: the literature's map, and the same map on the
#: values less their seasonal cycle (what Gateformer's default cycle="auto" takes out), so that the cycle alone
#: cannot pass for the network's work.
GOAL_LINEAR = ("linear", "linear + cycle")
LOSS_LEGEND = (f"**Bold**: the lowest MSE and the lowest MAE of the row, whoever owns them (the baselines "
               f"included). {LOSS_MARK}: worse than the best of the baselines (last value, seasonal naive, "
               f"linear, linear + cycle) on that metric, on the same windows.")
BASELINE_NOTE = ("The baselines, on the same test windows (`benchmarks/baselines.py`, "
                 "`benchmarks/results/baselines.csv`): *last value* repeats the window's last observation; "
                 "*seasonal naive* the last observed season (a day for the ETT data and weather, a week for "
                 "Exchange); *linear* is a closed-form ridge map from the window to the horizon, shared by all "
                 "variables and normalised by the window's last value, its penalty chosen on the validation "
                 "windows; *linear + cycle* the same map on the values less their seasonal cycle (each variable's "
                 "mean at each phase of the season above over the training rows, added back onto the forecast: "
                 "what `LinearForecaster(cycle=...)` and Gateformer's default `cycle=\"auto\"` take out).")


def baselines() -> dict:
    """``{(dataset, horizon): {label: (mse, mae)}}`` of the baselines on the grid's windows.

    From ``baselines.csv``; the last value falls back to the ``naive_*`` columns that ``long_horizon.py``
    records beside every run (the same windows).
    """
    out: dict = {}
    lh = grid_runs()
    if lh is not None and "naive_mse" in lh:
        for r in latest(lh.dropna(subset=["naive_mse"]), ["dataset", "horizon"]).itertuples():
            out.setdefault((r.dataset, int(r.horizon)), {})["last value"] = (float(r.naive_mse), float(r.naive_mae))
    bl = _read("baselines.csv")
    if bl is not None:
        for r in latest(bl[bl["lookback"] == GRID_LOOKBACK], ["dataset", "horizon", "model"]).itertuples():
            out.setdefault((r.dataset, int(r.horizon)), {})[BASELINES[r.model]] = (float(r.mse), float(r.mae))
    return out


def baseline_mase(lookback: int = GRID_LOOKBACK) -> dict:
    """``{(dataset, horizon): {label: mase}}`` of the baselines on the grid's windows, where recorded."""
    bl = _read("baselines.csv")
    if bl is None or "mase" not in bl:
        return {}
    out: dict = {}
    for r in latest(bl[(bl["lookback"] == lookback)].dropna(subset=["mase"]), ["dataset", "horizon", "model"]).itertuples():
        out.setdefault((r.dataset, int(r.horizon)), {})[BASELINES[r.model]] = float(r.mase)
    return out


def mase_cell(ours: float | None, base: dict) -> tuple[str, str]:
    """Our MASE (bold when no baseline beats it, :data:`LOSS_MARK` when the best one does) and the best baseline's."""
    if not base:
        return _f(ours), "–"
    label, best = min(base.items(), key=lambda kv: kv[1])
    if ours is None or np.isnan(ours):
        return "–", f"{best:.3f} ({label})"
    text = f"{ours:.3f}"
    if round(ours, 3) <= round(best, 3):
        return f"**{text}**", f"{best:.3f} ({label})"
    return f"{text} {LOSS_MARK}", f"**{best:.3f}** ({label})"


def revisions_line(*frames) -> str:
    """The code revisions of a table's cells, from their rows' ``git_rev``: one revision is the goal."""
    revs = _revisions(frames)
    if not revs:
        return "Code revision of the cells: not recorded."
    return (f"Every cell of this table comes from code revision {revs[0]}." if len(revs) == 1
            else f"Code revisions of the cells ({len(revs)}, not yet one): {', '.join(revs)}.")


def _revisions(frames) -> list[str]:
    return sorted({str(v) for f in frames if f is not None and "git_rev" in f for v in f["git_rev"].dropna()})


def repeated_line(column: str, source: str, own, *frames) -> str:
    """The revisions of a column that repeats another table's cells (``frames``), where they differ from the one
    revision of the table's own cells (``own``): that table's, not this one's."""
    revs = _revisions(frames)
    if not revs or revs == _revisions([own]):
        return ""
    return f" The {column} column repeats {source}: code revision{'s' if len(revs) > 1 else ''} {', '.join(revs)}."


def best_of(scores: dict | None):
    """The lowest of each metric among ``scores`` (label -> (mse, mae), or any tuple of metrics), or None."""
    if not scores:
        return None
    return tuple(min(v[i] for v in scores.values()) for i in range(len(next(iter(scores.values())))))


def cells_with_best(scores: dict, ours=(), baseline=None) -> dict:
    """Each entry of ``scores`` (name -> (mse, mae), or None) as ``"mse / mae"``, the row's best of each in bold.

    Any number of metrics works alike (``(mase, mse, mae)`` gives ``"mase / mse / mae"``). The names in ``ours``
    get :data:`LOSS_MARK` beside each metric that is worse than ``baseline``'s.
    """
    known = {name: v for name, v in scores.items() if v is not None}
    n_metrics = len(next(iter(known.values()))) if known else 0
    best = [min(v[i] for v in known.values()) for i in range(n_metrics)]
    cells = {}
    for name, v in scores.items():
        if v is None:
            cells[name] = "–"
            continue
        parts = []
        for i in range(n_metrics):
            text = f"{v[i]:.3f}"
            if round(v[i], 3) == round(best[i], 3):
                text = f"**{text}**"
            if name in ours and baseline is not None and round(v[i], 3) > round(baseline[i], 3):
                text += f" {LOSS_MARK}"
            parts.append(text)
        cells[name] = " / ".join(parts)
    return cells


def skill(ours_mse: float, baseline_mse: float) -> str:
    """MSE skill over the baseline, ``1 - ours / baseline``: above 0 we are better, below 0 worse."""
    return f"{1 - ours_mse / baseline_mse:+.1%}"


# -- 1. the grid --------------------------------------------------------------------------------------

def grid_section(model: str = "gateformer") -> list[str]:
    lh = grid_runs()
    est = _read("epoch_estimates.csv")
    runs = {}
    if lh is not None:
        lh = latest(lh[(lh["model"] == model) & (lh["seed"] == 0)], ["dataset", "horizon"])
        runs = {(r.dataset, int(r.horizon)): r for r in lh.itertuples()}
    sbs = side_by_side_runs()
    if sbs is not None:  # cells run only by side_by_side.py (same protocol and settings) fill the gaps
        sbs = latest(sbs[(sbs["library"] == "tsformers") & (sbs["model"] == model) & (sbs["seed"] == 0)],
                     ["dataset", "horizon"])
        for r in sbs.itertuples():
            if (r.dataset, int(r.horizon)) not in runs:
                runs[(r.dataset, int(r.horizon))] = r._replace(total_s=r.fit_test_s) if hasattr(r, "total_s") else \
                    pd.Series({**r._asdict(), "total_s": r.fit_test_s, "best_epoch": np.nan,
                               "from_sbs": True})
    estimates = {}
    if est is not None:
        est = latest(est[est["model"] == model], ["dataset", "horizon"])
        estimates = {(r.dataset, int(r.horizon)): r for r in est.itertuples()}
    peers = list(ITRANSFORMER_TABLE)
    out = ["## Long-horizon accuracy, lookback 96: the grid", "",
           f"`benchmarks/long_horizon.py --dataset {' '.join(DATASETS)} --horizons {' '.join(map(str, HORIZONS))}` "
           f"with {NAMES[model]}'s paper settings, seed 0 (`benchmarks/results/long_horizon.csv`). MSE / MAE on "
           "the scaled data, every stride-1 test window. *Run* gives the epochs run (best epoch kept), the "
           "wall time of fit plus test and the 1-minute load average at the start (2 cores, shared). Cells "
           "not run show the estimated cost of a full run on one idle core, from the CPU time of a training step "
           "measured with the paper settings (`benchmarks/estimate_epochs.py`, "
           "`benchmarks/results/epoch_estimates.csv`): time per epoch (training steps plus the validation "
           "pass) and x 10 epochs, an upper bound since early stopping usually ends after 4 to 7. On the "
           "shared machine the wall time was 5 to 8 times the CPU time.", "",
           BASELINE_NOTE + " *Skill* is our MSE skill over the last value, 1 − MSE / MSE(last value) (for "
           "Exchange, a near random walk, the figure that matters): below zero, the last value is better. "
           + LOSS_LEGEND + " *MASE*: the mean absolute error divided by each variable's mean one-step change "
           "over the training rows (scale-free; the last value's in-sample error is 1), ours next to the best "
           "baseline's, bold where lower.", "",
           "| data | H | " + f"{NAMES[model]} (ours) | skill | MASE | best baseline MASE | run | "
           + " | ".join(BASELINES.values()) + " | " + " | ".join(peers) + " |",
           "|---|---|---|---|---|---|---|" + "---|" * (len(BASELINES) + len(peers))]
    known, known_mase = baselines(), baseline_mase()
    for dataset in DATASETS:
        ours_cells, base_cells, ours_mase, base_mase = [], [], [], []
        for h in HORIZONS:
            r = runs.get((dataset, h))
            base = {label: known.get((dataset, h), {}).get(label) for label in BASELINES.values()}
            baseline = base["last value"]
            score = None
            base_cells.append(base)
            if r is not None:
                score = (float(r.mse), float(r.mae))
                ours_cells.append(score)
                rev = getattr(r, "git_rev", np.nan)
                where = (f"load {r.load_start:.1f}, rev {rev}" if isinstance(rev, str) and rev
                         else "idle machine, an earlier rev")
                best = "" if pd.isna(getattr(r, "best_epoch", np.nan)) else f" ({int(r.best_epoch)})"
                origin = ", side_by_side.py" if getattr(r, "from_sbs", False) else ""
                run = f"{int(r.epochs_run)} ep{best}, {_secs(r.total_s)}, {where}{origin}"
            else:
                e = estimates.get((dataset, h))
                run = (f"est. {_secs(e.epoch_s_est)}/epoch, ≤{_secs(e.run_s_est)} "
                       f"(step {e.step_ms:.0f} ms, load {e.load_start:.1f})") if e is not None else "–"
            scores = {"ours": score, **base,
                      **{peer: ITRANSFORMER_TABLE[peer].get(dataset, {}).get(h) for peer in peers}}
            cells = cells_with_best(scores, ours=("ours",),
                                    baseline=best_of({k: v for k, v in base.items() if v is not None}))
            if score is None:
                cells["ours"] = "not run"
            gain = skill(score[0], baseline[0]) if score is not None and baseline is not None else "–"
            mase = float(getattr(r, "mase", np.nan)) if r is not None else np.nan
            ours_mase.append(mase)
            base_mase.append(known_mase.get((dataset, h), {}))
            mase_ours, mase_base = mase_cell(mase, base_mase[-1])
            out.append(f"| {dataset} | {h} | {cells['ours']} | {gain} | {mase_ours} | {mase_base} | {run} | "
                       + " | ".join(cells[label] for label in BASELINES.values()) + " | "
                       + " | ".join(cells[peer] for peer in peers) + " |")
        complete = len(ours_cells) == len(HORIZONS)
        avg = {"ours": tuple(np.mean(ours_cells, axis=0)) if complete else None}
        for label in BASELINES.values():
            values = [b[label] for b in base_cells if b[label] is not None]
            avg[label] = tuple(np.mean(values, axis=0)) if len(values) == len(HORIZONS) else None
        for peer in peers:
            cells = ITRANSFORMER_TABLE[peer].get(dataset, {})
            avg[peer] = tuple(np.mean(list(cells.values()), axis=0)) if len(cells) == 4 else None
        cells = cells_with_best(avg, ours=("ours",),
                                baseline=best_of({k: avg[k] for k in BASELINES.values() if avg[k] is not None}))
        if not complete:
            cells["ours"] = f"({len(ours_cells)}/4 run)"
        gain = skill(avg["ours"][0], avg["last value"][0]) if complete and avg["last value"] else ""
        full = [labels for labels in base_mase if labels]
        shared = set.intersection(*(set(b) for b in full)) if len(full) == len(HORIZONS) else set()
        mase_ours, mase_base = mase_cell(float(np.mean(ours_mase)) if complete else np.nan,
                                         {label: float(np.mean([b[label] for b in full])) for label in shared})
        out.append(f"| {dataset} | avg | {cells['ours']} | {gain} | {mase_ours} | {mase_base} | | "
                   + " | ".join(cells[label] for label in BASELINES.values()) + " | "
                   + " | ".join(cells[peer] for peer in peers) + " |")
    used = pd.DataFrame([{"git_rev": getattr(r, "git_rev", np.nan)} for r in runs.values()])
    bl = _read("baselines.csv")
    bl = None if bl is None else latest(bl[(bl["lookback"] == GRID_LOOKBACK) & bl["dataset"].isin(DATASETS)],
                                        ["dataset", "horizon", "model"])
    out += ["", revisions_line(used, bl) + baseline_reruns_line(bl)]
    out += ["", f"Published numbers: {SOURCE} (iTransformer, PatchTST, DLinear, TimesNet, all rerun by the "
            "iTransformer authors under this protocol), checked against a public transcription of that table; "
            f"Exchange: DLinear and TimesNet only ({SOURCE_EXCHANGE}); the iTransformer and PatchTST Exchange "
            "cells could not be checked against a copy here and are left out. Gateformer's own paper table "
            "was not recoverable (an image), so it has no published row. Client (the PV-Client paper's "
            f"forecaster) publishes, at lookback 96 ({CLIENT_SOURCE}): "
            + "; ".join(f"{d} {' / '.join(f'{v[0]:.3f}' for v in c.values())}" for d, c in CLIENT.items())
            + " (MSE at 96/192/336/720).", ""]
    return out


# -- 1b. seeds ----------------------------------------------------------------------------------------

def mean_std(values) -> str:
    """``mean ± sample standard deviation`` (ddof 1), or the single value when there is one."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return f"{values[0]:.3f}"
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"


def with_spread(cell: str, values) -> str:
    """A mean's ``cell`` with the seeds' sample standard deviation after the mean, before any loss mark."""
    spread = mean_std(values).split(" ± ")
    if len(spread) < 2:
        return cell
    mean, marked, mark = cell.partition(f" {LOSS_MARK}")
    return f"{mean} ± {spread[1]}{marked}{mark}"


def seeds_section(model: str = "gateformer") -> list[str]:
    lh = grid_runs()
    if lh is None:
        return []
    lh = latest(lh[lh["model"] == model], ["dataset", "horizon", "seed"])
    seeded = lh.groupby(["dataset", "horizon"]).filter(lambda g: g["seed"].nunique() >= 2)
    if seeded.empty:
        return []
    out = ["## Seeds: mean and spread", "",
           f"{NAMES[model]} cells rerun with `--seeds 0 1 2` (the estimator's `random_state`: weight "
           "initialisation, dropout and the order of the training windows). MSE / MAE as mean ± sample "
           "standard deviation over the seeds; *range* is the lowest and highest MSE. The dataset average is "
           "shown where every horizon has all its seeds. The wall times span different machine loads (seed 0 "
           "often ran while the 2 cores were shared by up to nine jobs; see each row of the CSV).", "",
           "*best baseline*: the lowest MSE / MAE of the baselines on the same windows (see the grid); "
           + LOSS_MARK + " marks a mean worse than it.", "",
           "| data | H | seeds | MSE | MAE | MSE range | best baseline | epochs | fit + test per seed |",
           "|---|---|---|---|---|---|---|---|---|"]
    known = baselines()

    def versus(mse_mean, mae_mean, baseline):
        if baseline is None:
            return "", "", "–"
        marks = [f" {LOSS_MARK}" if round(v, 3) > round(b, 3) else "" for v, b in zip((mse_mean, mae_mean), baseline)]
        return marks[0], marks[1], f"{baseline[0]:.3f} / {baseline[1]:.3f}"
    for dataset in DATASETS:
        cells = seeded[seeded["dataset"] == dataset]
        if cells.empty:
            continue
        for horizon in HORIZONS:
            g = cells[cells["horizon"] == horizon].sort_values("seed")
            if g.empty:
                continue
            m_mse, m_mae, last = versus(g["mse"].mean(), g["mae"].mean(), best_of(known.get((dataset, horizon))))
            out.append(f"| {dataset} | {horizon} | {', '.join(str(int(x)) for x in g['seed'])} | "
                       f"{mean_std(g['mse'])}{m_mse} | {mean_std(g['mae'])}{m_mae} | "
                       f"{g['mse'].min():.3f}–{g['mse'].max():.3f} | {last} | "
                       f"{', '.join(str(int(x)) for x in g['epochs_run'])} | "
                       f"{_secs(g['total_s'].min())}–{_secs(g['total_s'].max())} |")
        counts = cells.groupby("horizon")["seed"].nunique()
        if len(counts) == len(HORIZONS) and counts.min() == counts.max():
            # the average over horizons per seed, then the spread of those averages
            per_seed = cells.groupby("seed")[["mse", "mae"]].mean()
            per_horizon = [known.get((dataset, h), {}) for h in HORIZONS]
            labels = set.intersection(*(set(b) for b in per_horizon))
            baseline = best_of({label: tuple(np.mean([b[label] for b in per_horizon], axis=0)) for label in labels})
            m_mse, m_mae, last = versus(per_seed["mse"].mean(), per_seed["mae"].mean(), baseline)
            out.append(f"| {dataset} | avg | {', '.join(str(int(x)) for x in per_seed.index)} | "
                       f"{mean_std(per_seed['mse'])}{m_mse} | {mean_std(per_seed['mae'])}{m_mae} | "
                       f"{per_seed['mse'].min():.3f}–{per_seed['mse'].max():.3f} | {last} | | |")
    out += ["", revisions_line(seeded), ""]
    return out


# -- 1c. the other estimators -------------------------------------------------------------------------

def _params(row) -> dict:
    return json.loads(row.params) if isinstance(getattr(row, "params", None), str) else {}


def levels_read(row) -> str:
    """How a streaming estimator's run read the series' levels, from its recorded parameters."""
    params = _params(row)
    changes = params.get("normalize") == "last_value" or params.get("input_changes") is True
    return "changes" if changes else "values"


def with_linear_base(row) -> bool:
    """Whether the run forecast with a linear base (``linear_base=True``; runs before it had none)."""
    return bool(_params(row).get("linear_base", False))


def form_read(row, kept: int | None = None, seeds: int = 1) -> str:
    """The model cell's note: how the run read the levels and, with a linear base, whether the network was kept
    (``kept`` of ``seeds`` runs; by default the row's own best epoch decides)."""
    if not with_linear_base(row):
        return levels_read(row)
    kept = int(int(row.best_epoch) > 0) if kept is None else kept
    if kept == 0:
        return f"{levels_read(row)}, linear base: map alone"
    return f"{levels_read(row)}, linear base: network kept" + (f" in {kept} of {seeds}" if kept < seeds else "")


def trained_on(frame: pd.DataFrame) -> str:
    """" (GPU)" after a time cell whose runs trained on a GPU (``long_horizon.py --accelerator gpu``), else ""."""
    where = frame["accelerator"].dropna().astype(str) if "accelerator" in frame else pd.Series(dtype=str)
    return " (GPU)" if where.str.startswith("gpu").any() else ""


def _span(values) -> str:
    low, high = int(min(values)), int(max(values))
    return f"{low}" if low == high else f"{low}–{high}"


def other_models_section() -> list[str]:
    lh = grid_runs()
    if lh is None:
        return []
    lh = lh.assign(linear_base=lambda f: [with_linear_base(r) for r in f.itertuples()])
    runs = latest(lh, ["dataset", "horizon", "model", "linear_base", "seed"])
    first = runs[runs["seed"] == 0]  # a cell is its seed-0 run; other seeds join it from the same revision
    # PV-Client and Gateformer with the linear base have their own sections (client_section, linear_base_section)
    others = first[~first["model"].str.startswith("gateformer") & (first["model"] != "pvclient")]
    if others.empty:
        return []
    gate = {(r.dataset, int(r.horizon)): r for r in first[first["model"] == "gateformer"].itertuples()}
    out = ["## The other estimators on the grid", "",
           "The same protocol and script (`benchmarks/long_horizon.py --models lmuformer gtrxl atlas`), each "
           "estimator with its defaults at lookback 96; the settings are in `long_horizon.MODELS`. "
           "The model cell says how each run read the levels: *changes* is `normalize=\"last_value\"` (each "
           "step's change in, the forecast added onto the last value; today's default, and GTrXL's former "
           "`input_changes=True`), *values* the papers' form from before that option (GTrXL on values with "
           "the earlier learning rate 1e-4 scored 0.790 on ETTh1, an earlier row of the CSV). *linear base* "
           "is `linear_base=True` (today's default): the ridge map of the *linear* baseline plus the network's "
           "gated correction (" + SHARE_RULE + "; *map alone*: the forecast is then the linear baseline's, best "
           "epoch 0; *network kept in k of n*: k of the n seeds kept some of it). Rows without it are the network alone, so each pair is the "
           "ablation of what the network adds to the map. *seeds*: the runs averaged (MSE mean ± sample "
           "standard deviation), all at the seed-0 run's revision. Times are the mean fit + test per run; "
           "*(GPU)* marks runs trained on a GPU (`--accelerator gpu`, one NVIDIA H200 shared by up to 14 "
           "runs at once, the test windows scored on one CPU thread), whose seconds do not compare with the "
           "CPU tables'. PV-Client is in the next section, next to Client's published numbers. The Gateformer "
           "column repeats the grid's cell.", "",
           "*Skill* is the MSE skill over the last value; *best baseline* the lowest MSE / MAE of the grid's "
           "baselines on the same windows. " + LOSS_LEGEND, "",
           "| data | H | model | seeds | params | MSE | MAE | skill | epochs (best) | fit + test | load | Gateformer | "
           "best baseline |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    known = baselines()
    est = _read("epoch_estimates.csv")
    est = None if est is None else latest(est[est["model"] != "gateformer"], ["dataset", "horizon", "model"])
    shown, repeated = [], []
    for dataset in DATASETS:
        for horizon in HORIZONS:
            rows = others[(others["dataset"] == dataset) & (others["horizon"] == horizon)]
            g = gate.get((dataset, horizon))
            base = known.get((dataset, horizon), {})
            baseline = best_of(base)
            last = "–" if baseline is None else f"{baseline[0]:.3f} / {baseline[1]:.3f}"
            cells_of = []
            for r in rows.itertuples():
                group = runs[(runs["dataset"] == dataset) & (runs["horizon"] == horizon) & (runs["model"] == r.model)
                             & (runs["linear_base"] == r.linear_base) & (runs["git_rev"] == r.git_rev)]
                cells_of.append((float(group["mse"].mean()), r, group))
            if cells_of and g is not None:
                repeated.append(g)
            for mse, r, group in sorted(cells_of, key=lambda c: c[0]):
                shown.append(group)
                scores = {"model": (mse, float(group["mae"].mean())), "last value": baseline,
                          "gateformer": None if g is None else (float(g.mse), float(g.mae))}
                cells = cells_with_best(scores, ours=("model", "gateformer"), baseline=baseline)
                mse_cell, mae_cell = cells["model"].split(" / ")
                mse_cell = with_spread(mse_cell, group["mse"])
                gain = skill(mse, base["last value"][0]) if "last value" in base else "–"
                kept = int((group["best_epoch"] > 0).sum())
                out.append(f"| {dataset} | {horizon} | {NAMES.get(r.model, r.model)} "
                           f"({form_read(r, kept, len(group))}) | {len(group)} | {int(r.n_params):,} | "
                           f"{mse_cell} | {mae_cell} | {gain} | {_span(group['epochs_run'])} "
                           f"({_span(group['best_epoch'])}) | {_secs(group['total_s'].mean())}{trained_on(group)} | "
                           f"{r.load_start:.1f} | {cells['gateformer']} | {cells['last value']} |")
            if est is None:
                continue
            cell = est[(est["dataset"] == dataset) & (est["horizon"] == horizon) & ~est["model"].isin(rows["model"])]
            for e in cell.sort_values("run_s_est").itertuples():
                ref = "–" if g is None else f"{g.mse:.3f} / {g.mae:.3f}"
                out.append(f"| {dataset} | {horizon} | {NAMES.get(e.model, e.model)} | | {int(e.n_params):,} | not run | | "
                           f"| | est. {_secs(e.epoch_s_est)}/epoch, ≤{_secs(e.run_s_est)} | {e.load_start:.1f} | {ref} "
                           f"| {last} |")
    own = pd.concat(shown) if shown else None
    gateformer_revisions = repeated_line("Gateformer", "the grid's cells", own, pd.DataFrame(repeated))
    out += ["", revisions_line(*shown) + gateformer_revisions, "",
            "Cells marked *not run* give the estimated cost on one idle core, measured as "
            "for the grid (`benchmarks/estimate_epochs.py`): time per epoch and the bound for the full 10 epochs.", ""]
    return out


def linear_base_section() -> list[str]:
    """Gateformer with ``linear_base=True`` (``--set linear_base=true``, model ``gateformer+base``) per cell and seed
    mean, next to Gateformer alone (the grid's paper settings) and the baselines."""
    lh = grid_runs()
    if lh is None:
        return []
    runs = latest(lh[lh["model"] == "gateformer+base"], ["dataset", "horizon", "seed"])
    if runs.empty:
        return []
    alone = latest(lh[lh["model"] == "gateformer"], ["dataset", "horizon", "seed"])
    out = ["## Gateformer with the linear base", "",
           "`benchmarks/long_horizon.py --models gateformer --set linear_base=true`: Gateformer with its paper "
           "settings (the grid's), its forecast the *linear* baseline's ridge map plus the network's gated "
           "correction (`linear_base=True`, see [Streaming updates](streaming.md#the-linear-base)); " + SHARE_RULE + ". "
           "*kept* counts the seeds whose fit kept some of the network's correction. *alone* is Gateformer without the base on the same seeds where they were run "
           "(mean over them). " + LOSS_LEGEND, "",
           "| data | H | seeds | MSE | MAE | kept | alone | best baseline |",
           "|---|---|---|---|---|---|---|---|"]
    known = baselines()
    repeated = []
    for (dataset, horizon), cell in runs.groupby(["dataset", "horizon"], sort=False):
        base = known.get((dataset, int(horizon)), {})
        baseline = best_of(base)
        same = alone[(alone["dataset"] == dataset) & (alone["horizon"] == horizon) & alone["seed"].isin(cell["seed"])]
        repeated.append(same)
        scores = {"base": (cell["mse"].mean(), cell["mae"].mean()), "best baseline": baseline,
                  "alone": (same["mse"].mean(), same["mae"].mean()) if len(same) else None}
        cells = cells_with_best(scores, ours=("base", "alone"), baseline=baseline)
        mse_cell, mae_cell = cells["base"].split(" / ")
        mse_cell = with_spread(mse_cell, cell["mse"])
        kept = int((cell["best_epoch"] > 0).sum())
        out.append(f"| {dataset} | {int(horizon)} | {len(cell)} | {mse_cell} | {mae_cell} | {kept} of {len(cell)} | "
                   f"{cells['alone']}{f' ({len(same)})' if len(same) else ''} | {cells['best baseline']} |")
    return out + ["", revisions_line(runs) + repeated_line("*alone*", "the seeds table's cells", runs, *repeated), ""]


# -- PV-Client's network as Client, on the grid ---------------------------------------------------------

def client_section() -> list[str]:
    """PV-Client (clip off) on the long-horizon grid with Client's script settings, next to Client's own numbers."""
    lh = grid_runs()
    if lh is None:
        return []
    lh = latest(lh[lh["model"] == "pvclient"], ["dataset", "horizon", "seed"])
    if lh.empty:
        return []
    lh = in_grid_order(lh, "seed", [0, 1, 2])
    out = ["## PV-Client's network as Client, on the grid", "",
           "PV-Client's architecture is Client's (cross-variable attention over whole-window tokens plus a "
           "linear trend module). `benchmarks/long_horizon.py --models pvclient` runs it with PV clipping off "
           "(`clip=False`) and Client's script settings per data set (`long_horizon.CLIENT_TABLE`: learning "
           "rate, d_ff, w_lin; 2 layers, 8 heads, batch 32, 10 epochs, patience 3, the rate halved every "
           f"epoch), lookback 96, same protocol as the grid. *Client*: its published MSE / MAE ({CLIENT_SOURCE}). "
           "*Gap*: our mean MSE minus Client's (negative: better); where it exceeds 0.01, the "
           "[PV-Client page](estimators/pvclient.md#benchmark-numbers) says why (ETTh1: Client's rate of 1e-4, "
           "halved every epoch, stops the training while it still improves). " + LOSS_MARK + ": worse than the "
           "best baseline of the grid on the same windows.", "",
           "| data | H | seeds | MSE (± std) | MAE | Client | gap | best baseline | CPU per run |",
           "|---|---|---|---|---|---|---|---|---|"]
    known = baselines()
    for (dataset, horizon), runs in lh.groupby(["dataset", "horizon"], sort=False):
        horizon = int(horizon)
        mse_, mae_ = runs["mse"].mean(), runs["mae"].mean()
        published = CLIENT.get(dataset, {}).get(horizon)
        baseline = best_of(known.get((dataset, horizon)))
        marks = ["" if baseline is None or v <= b else f" {LOSS_MARK}" for v, b in zip((mse_, mae_), baseline or (0, 0))]
        spread = f" ± {runs['mse'].std():.3f}" if len(runs) > 1 else ""
        gap = "–" if published is None else f"{mse_ - published[0]:+.3f}"
        cpu = runs["fit_cpu_s"].mean() if "fit_cpu_s" in runs else runs["total_s"].mean()
        out.append(f"| {dataset} | {horizon} | {len(runs)} | {mse_:.3f}{spread}{marks[0]} | {mae_:.3f}{marks[1]} | "
                   f"{_f(published and published[0])} / {_f(published and published[1])} | {gap} | "
                   f"{'–' if baseline is None else f'{baseline[0]:.3f} / {baseline[1]:.3f}'} | {_secs(cpu)} |")
    return out + ["", revisions_line(lh), ""]


# -- the small-data case: ILI ------------------------------------------------------------------------

ILI_LOOKBACK, ILI_HORIZONS = 36, [24, 36, 48, 60]
STREAMING = ("lmuformer", "gtrxl", "atlas")  # the estimators whose default forecasts with the linear base
#: the models that forecast with the linear base by default: the streaming three and Gateformer's defaults (rows
#: labelled ``gateformer-defaults`` ran them without it; ``gateformer`` rows are the paper's network alone)
LINEAR_BASE_BY_DEFAULT = STREAMING + ("gateformer-defaults", "gateformer-defaults+base")

#: (model, parameter): its default; a run that set another value is an ablation, not the estimator's defaults.
ABLATION_PARAMS = {("atlas", "frozen_memory"): False, ("atlas", "linear_path"): True, ("atlas", "memory"): "omega",
                   ("lmuformer", "spiking"): False, ("lmuformer", "memory"): "lmu"}


def ablation_of(row) -> dict:
    """The ablation parameters a run set away from their defaults (empty: the mechanisms as the estimator has them)."""
    params = _params(row)
    return {name: params[name] for (model, name), default in ABLATION_PARAMS.items()
            if model == row.model and name in params and params[name] != default}


def with_default_setting(row) -> bool:
    """Whether a run used its estimator's defaults: no ablation, and the linear base where it is the default."""
    return not ablation_of(row) and with_linear_base(row) == (row.model in LINEAR_BASE_BY_DEFAULT)


def small_data_section() -> list[str]:
    """ILI (weekly, 966 rows) at the literature's lookback 36: every estimator run there next to the baselines."""
    lh, bl = _read("long_horizon.csv"), _read("baselines.csv")
    if lh is None or bl is None or "mase" not in lh or "mase" not in bl:
        return []
    lh = lh[(lh["dataset"] == "illness") & (lh["lookback"] == ILI_LOOKBACK)].dropna(subset=["mase"])
    lh = latest(lh[[with_default_setting(r) for r in lh.itertuples()]], ["horizon", "model", "seed"])
    bl = latest(bl[(bl["dataset"] == "illness") & (bl["lookback"] == ILI_LOOKBACK)].dropna(subset=["mase"]),
                ["horizon", "model"])
    if lh.empty or bl.empty:
        return []
    metrics = ["mse", "mae", "mase"]
    out = ["## The small-data case: ILI", "",
           "Weekly influenza-like-illness counts (7 variables, 966 weeks; the 70/10/20 split), at the literature's "
           f"lookback {ILI_LOOKBACK} and horizons {', '.join(map(str, ILI_HORIZONS))}, where deep models often "
           "lose: 676 training weeks give about 600 windows. Each estimator runs with its defaults: *Gateformer "
           "(defaults)* is the estimator's one default setting, *Gateformer* the paper's network alone with its "
           "ETTh1 H = 96 setting (the paper has no ILI settings); Gateformer's defaults and the streaming three "
           "forecast with their default linear base, the *linear* baseline's map plus the network's gated "
           "correction (" + SHARE_RULE + "; *network kept in k of n* seeds): `benchmarks/long_horizon.py "
           "--dataset illness --lookback 36 --horizons 24 36 48 60 --models gateformer gateformer-defaults "
           "lmuformer gtrxl atlas --seeds 0 1 2`, the mean ± standard deviation over "
           "the seeds. The baselines run on the same windows (`benchmarks/baselines.py --dataset illness "
           "--lookback 36`); the seasonal naive repeats the value 52 weeks back, read from a season of history "
           "since the window is shorter. MSE and MAE on the scaled data; MASE divides each absolute error by its "
           "variable's mean one-step change over the training weeks (so the last value's in-sample error is 1). "
           f"**Bold**: the lowest of each metric at that horizon, whoever owns it. {LOSS_MARK}: worse than the "
           "best baseline on that metric.", "",
           "*80% / 95% cover.*: the share of test values inside the estimator's split-conformal intervals "
           "(`predict(level=[80, 95])`), next to their nominal 80% and 95%.", "",
           "| H | model | seeds | MSE | MAE | MASE | 80% / 95% cover. |", "|---|---|---|---|---|---|---|"]
    for horizon in ILI_HORIZONS:
        rows = [(BASELINES[r.model], "–", {m: (float(getattr(r, m)), 0.0) for m in metrics}, False, "–")
                for r in bl[bl["horizon"] == horizon].itertuples()]
        for model, runs in lh[lh["horizon"] == horizon].groupby("model"):
            stats = {m: (float(runs[m].mean()), float(runs[m].std(ddof=1)) if len(runs) > 1 else 0.0)
                     for m in metrics}
            cover = "–" if "coverage_80" not in runs or runs["coverage_80"].isna().any() else \
                f"{runs['coverage_80'].mean():.1%} / {runs['coverage_95'].mean():.1%}"
            label = NAMES.get(model, model)
            if any(with_linear_base(r) for r in runs.itertuples()):
                kept = int((runs["best_epoch"] > 0).sum())
                note = f"linear base: network kept in {kept} of {len(runs)}"
                label = f"{label[:-1]}; {note})" if label.endswith(")") else f"{label} ({note})"
            rows.append((label, str(len(runs)), stats, True, cover))
        if not any(not ours for *_, ours, _ in rows):
            continue  # no baseline at this horizon: nothing to read a model's row against
        best = {m: min(stats[m][0] for _, _, stats, _, _ in rows) for m in metrics}
        best_baseline = {m: min(stats[m][0] for _, _, stats, ours, _ in rows if not ours) for m in metrics}
        for label, seeds, stats, ours, cover in rows:
            cells = []
            for m in metrics:
                mean, std = stats[m]
                text = f"{mean:.3f}" + (f" ± {std:.3f}" if ours and seeds != "1" else "")
                if round(mean, 3) == round(best[m], 3):
                    text = f"**{text}**"
                if ours and round(mean, 3) > round(best_baseline[m], 3):
                    text += f" {LOSS_MARK}"
                cells.append(text)
            out.append(f"| {horizon} | {label} | {seeds} | " + " | ".join(cells) + f" | {cover} |")
    revisions = sorted(set(lh["git_rev"].dropna().astype(str)) | set(bl["git_rev"].dropna().astype(str)))
    out += ["", f"Code revisions of the cells: {', '.join(revisions) or 'not recorded'}." + baseline_reruns_line(bl), ""]
    return out


# -- the many-series case: one univariate panel --------------------------------------------------------

PANEL_ALL = "all series"
PANEL_MODELS = {"naive": "last value", "seasonal_naive": "seasonal naive", "linear": "linear",
                "linear_per_dataset": "linear per data set", "gbm": "GBM (ours)", "gateformer": "Gateformer (ours)"}
PANEL_BASELINES = ("naive", "seasonal_naive", "linear", "linear_per_dataset")


def _panel_rank(model: str) -> int:
    return list(PANEL_MODELS).index(model) if model in PANEL_MODELS else len(PANEL_MODELS)


def panel_section() -> list[str]:
    """``panel.py``: every ETT and weather variable as one global univariate panel, MASE first, per data set and over
    all series, the baselines' rows on the same windows."""
    pn = _read("panel.csv")
    if pn is None:
        return []
    pn = latest(pn, ["dataset", "model"])
    pn = in_grid_order(pn.assign(horizon=pn["horizon"].astype(int)), "model", PANEL_MODELS)
    first = pn.iloc[0]
    counts = pn[pn["dataset"] != PANEL_ALL].groupby("dataset", sort=False)
    per_series = {name: int(g["n_windows"].iloc[0] // g["n_series"].iloc[0]) for name, g in counts}
    n_series = pn.loc[pn["dataset"] == PANEL_ALL, "n_series"]
    out = ["## A many-series case: ETT and weather as one univariate panel", "",
           "`benchmarks/panel.py` (rows in `benchmarks/results/panel.csv`): every variable of ETTh1, ETTh2, ETTm1, "
           f"ETTm2 and weather is one series of a long frame, {int(n_series.iloc[0]) if len(n_series) else '–'} "
           "series in all, and each model is fitted once, globally, on all of them (the seasonal naive once per "
           "data set, since its season differs). Each series keeps its data set's standard chronological split "
           "(ETTh 12/4/4 months, ETTm the same in 15-minute steps, weather 70/10/20): the fit reads its training "
           "and validation rows, the validation windows only for early stopping and the choice of the ridge "
           "penalty, never the test rows. Each series is standardised by the mean and standard deviation of its "
           "own training split (the literature's convention; the estimators run with `scaler=None`). "
           f"Lookback {int(first.lookback)}, horizon {int(first.horizon)}; the test windows of a series end at "
           f"the end of its test split and start every {int(first.stride)} steps before it (a stride prime to a "
           "day of 24, 96 and 144 steps, so the origins visit every time of day): "
           + ", ".join(f"{n} per {name} series" for name, n in per_series.items())
           + ". Every model forecasts exactly these windows through its own `backtest` (the script checks "
           "that the series, cutoffs and actual values agree). **MASE** divides each absolute error by its "
           "series' in-sample seasonal naive MAE over the training split, season one day (24 hourly, 96 "
           "15-minute, 144 10-minute steps), so below 1 reads \"better than repeating yesterday, in sample\"; "
           "MSE and MAE are on the standardised values. A data set's row is the mean over its forecast values; "
           f"*{PANEL_ALL}* the mean over the series of each series' score, every series counting once. "
           "*CPU s*: the model's fit and every backtest, one torch thread (the whole panel, so the same on each "
           "of its rows).", "",
           "*last value*, *seasonal naive* (`NaiveForecaster`, `SeasonalNaiveForecaster`; weather's season of "
           "144 steps is read from a window of 144 rows, the same origins and targets) and *linear* "
           "(`LinearForecaster`: one ridge map from the last-value-normalised window to the horizon for all "
           "series, its penalty chosen on the validation windows; *linear per data set*: one such map per data "
           "set, fitted on its series and chosen on its validation windows, since one map for series of three "
           "frequencies is a weak baseline) are the baselines; *GBM* is `GBMForecaster`, "
           "one global model of gradient-boosted trees on the window's lags (its defaults); *Gateformer* one "
           "global network with a small fixed setting and a fixed budget (below). `ETSForecaster` is not run: "
           "statsmodels would fit each series on 8,640 to 36,887 training rows with seasons up to 144, beyond "
           "the CPU budget. **Bold**: the lowest of each metric within a data set's rows, whoever owns it. "
           f"{LOSS_MARK}: worse than the best of the four baselines on that metric, on the same windows.", "",
           "| data | model | MASE | MSE | MAE | series | windows | CPU s |",
           "|---|---|---|---|---|---|---|---|"]
    for dataset, group in pn.groupby("dataset", sort=False):
        rows = {r.model: r for r in group.itertuples()}
        scores = {m: (float(r.mase), float(r.mse), float(r.mae)) for m, r in rows.items()}
        baseline = best_of({m: v for m, v in scores.items() if m in PANEL_BASELINES})
        cells = cells_with_best(scores, ours=tuple(m for m in scores if m not in PANEL_BASELINES), baseline=baseline)
        for model, r in rows.items():
            mase_cell, mse_cell, mae_cell = cells[model].split(" / ")
            out.append(f"| {dataset} | {PANEL_MODELS.get(model, model)} | {mase_cell} | {mse_cell} | {mae_cell} | "
                       f"{int(r.n_series)} | {int(r.n_windows):,} | {r.cpu_s:.0f} |")
    settings = latest(pn, ["model"])
    revisions = sorted(set(pn["git_rev"].dropna().astype(str)))
    loads = pn["load_start"].dropna()
    described = [f"*{PANEL_MODELS.get(r.model, r.model)}*: {r.setting.replace('|', '/')}"
                 for r in settings.sort_values("model", key=lambda c: c.map(_panel_rank)).itertuples()
                 if isinstance(r.setting, str) and r.setting]
    out += [""] + (["Settings: " + "; ".join(described) + ".", ""] if described else []) + [
        f"Code revision{'s' if len(revisions) > 1 else ''} of the table: {', '.join(revisions) or 'not recorded'}"
        + ("" if loads.empty else
           f"; 1-minute load average at each model's start {loads.min():.1f}–{loads.max():.1f}")
        + ".", ""]
    return out


# -- ablations ----------------------------------------------------------------------------------------

#: model -> (label, the ablation parameters that define it) in the order shown; the first is the estimator's form.
ABLATIONS = {
    "atlas": [("memory + linear path (the paper's form)", {}),
              ("memory frozen: no test-time writes", {"frozen_memory": True}),
              ("memory alone: no linear path", {"linear_path": False}),
              ("memory off: nothing in its slot (`memory='identity'`)", {"memory": "identity"})],
    "lmuformer": [("LMU memory, plain", {}), ("spiking (LIF neurons)", {"spiking": True}),
                  ("the convolutions alone: no LMU memory (`memory='identity'`)", {"memory": "identity"})],
}


def ablation_section() -> list[str]:
    """Each mechanism on and off, the network alone (no linear base), on ILI: what it buys, per horizon."""
    lh, bl = _read("long_horizon.csv"), _read("baselines.csv")
    if lh is None or bl is None or "mase" not in lh:
        return []
    lh = lh[(lh["dataset"] == "illness") & (lh["lookback"] == ILI_LOOKBACK) & lh["model"].isin(list(ABLATIONS))]
    lh = lh.dropna(subset=["mase"])
    lh = lh[[not with_linear_base(r) for r in lh.itertuples()]]
    if lh.empty:
        return []
    lh = lh.assign(variant=[json.dumps(ablation_of(r), sort_keys=True) for r in lh.itertuples()])
    lh = latest(lh, ["horizon", "model", "variant", "seed"])
    bl = latest(bl[(bl["dataset"] == "illness") & (bl["lookback"] == ILI_LOOKBACK)].dropna(subset=["mase"]),
                ["horizon", "model"])
    best_base = {int(h): (g["mse"].min(), g["mae"].min(), g["mase"].min()) for h, g in bl.groupby("horizon")}
    out = ["## Ablations: what each mechanism buys", "",
           "The networks alone (`linear_base=False`, so the linear map cannot hide what a mechanism does), on ILI "
           f"at lookback {ILI_LOOKBACK} (the small-data table's protocol, 3 seeds, the validation weeks for early "
           "stopping only), each mechanism switched off in turn with `benchmarks/long_horizon.py --dataset illness "
           "--lookback 36 --horizons 24 36 48 60 --seeds 0 1 2 --set linear_base=false --set NAME=VALUE`. MSE / "
           "MAE / MASE as mean ± standard deviation over the seeds. *change*: the variant's mean MSE against the "
           f"estimator's form at the same horizon; below each table, averaged over the horizons. {LOSS_MARK}: "
           "worse than the best "
           "baseline's MSE at that horizon (the baselines are in the ILI table).", ""]
    for model, variants in ABLATIONS.items():
        runs = lh[lh["model"] == model]
        if runs.empty:
            continue
        out += [f"| {NAMES.get(model, model)} | H | seeds | MSE | MAE | MASE | change |", "|---|---|---|---|---|---|---|"]
        reference = {}
        sentences = []
        for label, setting in variants:
            rows = runs[runs["variant"] == json.dumps(setting, sort_keys=True)]
            changes = []
            for horizon in ILI_HORIZONS:
                g = rows[rows["horizon"] == horizon]
                if g.empty:
                    continue
                mse = g["mse"].mean()
                if not setting:
                    reference[horizon] = mse
                elif horizon in reference:
                    changes.append(mse / reference[horizon] - 1)
                mark = f" {LOSS_MARK}" if horizon in best_base and round(mse, 3) > round(best_base[horizon][0], 3) else ""
                change = f"{changes[-1]:+.1%}" if setting and horizon in reference else "–"
                out.append(f"| {label} | {horizon} | {len(g)} | {mean_std(g['mse'])}{mark} | {mean_std(g['mae'])} | "
                           f"{mean_std(g['mase'])} | {change} |")
            if setting and changes:
                sentences.append(f"*{label}*: MSE {np.mean(changes):+.1%} against the estimator's form, averaged "
                                 f"over {len(changes)} horizons ({'worse' if np.mean(changes) > 0 else 'better'} "
                                 f"at {sum(c > 0 for c in changes) if np.mean(changes) > 0 else sum(c < 0 for c in changes)} "
                                 f"of {len(changes)}).")
        out += [""] + ([f"- {NAMES.get(model, model)}, {sentence}" for sentence in sentences] + [""] if sentences else [])
    out += [revisions_line(lh), ""]
    return out


# -- the backbone's parts in their slots ----------------------------------------------------------

SLOT_MODELS = ["gateformer", "pvclient", "gtrxl", "lmuformer", "atlas"]


def metric_cell(value: float, lowest: float, baseline: float | None) -> str:
    """``value`` to four digits, bold when it is the column's ``lowest``, :data:`LOSS_MARK` when worse than
    ``baseline`` (None: no mark)."""
    text = f"**{value:.4f}**" if value == lowest else f"{value:.4f}"
    return text + (f" {LOSS_MARK}" if baseline is not None and round(value, 4) > round(baseline, 4) else "")


def slots_section() -> list[str]:
    """Every part each estimator's slots accept, one at a time on ETTh1-96, against the estimator's defaults."""
    bb = _read("backbone.csv")
    if bb is None or "slot" not in bb:
        return []
    bb = bb[(bb["part"] == "slots") & bb["estimator"].notna()]
    if bb.empty:
        return []
    bb = latest(bb, ["estimator", "slot", "name"])
    base = baselines().get(("ETTh1", 96), {})
    best_base = (min(v[0] for v in base.values()), min(v[1] for v in base.values())) if base else None
    out = ["## The backbone's parts in their slots", "",
           "`benchmarks/backbone.py --part slots`: every part that an estimator's slots accept "
           "(`available(None, estimator)`), one at a time in its slot, everything else as the estimator's row "
           "*(defaults)*, on ETTh1 at lookback 96 and H = 96 (the grid's windows, seed 0). Gateformer and PV-Client "
           "(as Client) have the grid's paper settings for ETTh1-96. One recipe per estimator for all its parts, "
           "so that the parts compare, not the best each could reach: batch 32, the learning rate scaled linearly "
           "from the estimator's batch, the epochs shown, early stopping on the validation windows. Gateformer's "
           "temporal mixers and stacks, measured with the same recipe by `--part accuracy`, are in the "
           "[backbone catalog](backbone.md). LMUFormer, GTrXL and ATLAS (the network alone, without the linear "
           "base) train on fewer batches per epoch, as their *epochs* column says (`--train-batches`): a "
           "whole ETTh1 epoch costs them minutes here, as much as half an hour with some parts; they are also "
           "measured in the long-context case below. *change*: the MSE against the defaults' row of the same "
           "run; *s/epoch*: "
           "the median training epoch at the row's load (the machine is shared: compare within a table). "
           "A part that cannot run with these settings says why. "
           f"{LOSS_MARK}: worse than the best of the baselines on the same windows"
           + (f" (MSE {best_base[0]:.3f}, MAE {best_base[1]:.3f}: " + ", ".join(
               f"{label} {v[0]:.3f} / {v[1]:.3f}" for label, v in base.items()) + ")" if best_base else "")
           + "; **bold**: the lowest MSE and MAE of each estimator's table.", ""]
    for model in SLOT_MODELS:
        rows = bb[bb["estimator"] == model]
        if rows.empty:
            continue
        scored = rows.dropna(subset=["mse"])
        default = scored[scored["slot"] == "(default)"]
        reference = float(default["mse"].iloc[0]) if len(default) else None
        low = (scored["mse"].min(), scored["mae"].min()) if len(scored) else (None, None)
        out += [f"**{NAMES.get(model, model)}**", "",
                "| slot | part | params | MSE | MAE | change | s/epoch | epochs |", "|---|---|---|---|---|---|---|---|"]
        order = {slot: i for i, slot in enumerate(dict.fromkeys(["(default)", *rows["slot"]]))}
        rows = rows.assign(_order=rows["slot"].map(order), needs=rows["with"] if "with" in rows else "")
        rows = rows.sort_values(["_order", "mse"], na_position="last")
        for r in rows.itertuples():
            slot, part = ("*(defaults)*", "") if r.slot == "(default)" else (f"`{r.slot}`", f"`{r.name}`")
            if isinstance(r.needs, str) and r.needs:  # the other settings the part needs
                part += " with " + ", ".join(f"`{k}={v!r}`" for k, v in json.loads(r.needs).items())
            if pd.isna(r.mse):
                out.append(f"| {slot} | {part} | | not run: {str(r.skipped).replace('|', '/')} | | | | |")
                continue
            cells = [metric_cell(value, lowest, b)
                     for value, lowest, b in zip((r.mse, r.mae), low, best_base or (None, None))]
            change = "–" if r.slot == "(default)" or reference is None else f"{r.mse / reference - 1:+.1%}"
            capped = getattr(r, "train_batches", None)
            epochs = f"{int(r.epochs_run)} of {int(r.max_epochs)}" + (
                f" × {int(capped)} batches" if isinstance(capped, (int, float)) and capped == capped else "")
            out.append(f"| {slot} | {part} | {int(r.n_params):,} | {cells[0]} | {cells[1]} | {change} | "
                       f"{r.s_per_epoch:.0f} | {epochs} |")
        out += ["", revisions_line(rows) + f" 1-minute load during the runs: {rows['load_avg'].min():.1f}–"
                f"{rows['load_avg'].max():.1f}.", ""]
    return out


LONG_BASELINES = {"last_value": "last value", "seasonal_naive": "seasonal naive (240 steps)",
                  "linear": "linear (ridge over the 480 steps)"}


def long_context_section() -> list[str]:
    """The parts that mix along time on the long-context case, next to the baselines on the same windows."""
    bb = _read("backbone.csv")
    if bb is None or "estimator" not in bb:
        return []
    bb = bb[(bb["part"] == "long") & bb["estimator"].notna()]
    if bb.empty:
        return []
    bb = latest(bb, ["estimator", "name"])
    base = bb[bb["estimator"].isin(list(LONG_BASELINES))].dropna(subset=["mse"])
    best_base = (base["mse"].min(), base["mae"].min()) if len(base) else None
    scored = bb.dropna(subset=["mse"])
    low = (scored["mse"].min(), scored["mae"].min())
    first = bb.iloc[0]
    out = ["### A long-context case", "",
           f"`benchmarks/backbone.py --part long`: the slots that mix along time, every part they accept, and "
           f"every other part of the streaming estimators' slots (measured here only), on a history longer than "
           f"any 96-step window. The series (`{first.dataset}`, seeded) repeats a smooth "
           "random 240-step shape under AR(1) noise; each model reads 480 steps to forecast 48, so a good "
           "forecast needs the steps one period back. 4,800 rows to fit (the last 10% of them for early "
           "stopping), every stride-1 window of the last 1,200 rows to score, on the training rows' scaling. "
           "Small models (d_model 32; Gateformer with 16-step patches, 30 tokens; GTrXL reads the window in five "
           "96-step segments through its memory; every network alone, `linear_base=False`) and one "
           "recipe: at most 3 epochs of at most 60 batches of 32, learning rate 1e-3. *x seasonal naive*: the "
           f"MSE over the seasonal naive's. {LOSS_MARK}: worse than the best baseline on that metric; **bold**: "
           "the lowest of the column.", "",
           "| model | slot | part | params | MSE | MAE | x seasonal naive | fit | epochs |",
           "|---|---|---|---|---|---|---|---|---|"]
    seasonal = base[base["estimator"] == "seasonal_naive"]["mse"]
    reference = float(seasonal.iloc[0]) if len(seasonal) else None
    order = {m: i for i, m in enumerate([*LONG_BASELINES, *SLOT_MODELS])}
    # each model's time-mixing slot first, then its other slots
    bb = bb.assign(_order=bb["estimator"].map(order), _other=~bb["slot"].isin(["temporal_mixer", "mixer", "memory"]))
    bb = bb.sort_values(["_order", "_other", "slot", "mse"], na_position="last")
    for r in bb.itertuples():
        is_base = r.estimator in LONG_BASELINES
        model = "baseline" if is_base else NAMES.get(r.estimator, r.estimator)
        part = LONG_BASELINES[r.estimator] if is_base else f"`{r.name}`"
        slot = "" if is_base else f"`{r.slot}`"
        if pd.isna(r.mse):
            out.append(f"| {model} | {slot} | {part} | | not run: {str(r.skipped).replace('|', '/')} | | | | |")
            continue
        cells = [metric_cell(value, lowest, None if is_base else b)
                 for value, lowest, b in zip((r.mse, r.mae), low, best_base or (None, None))]
        ratio = "–" if reference is None else f"{r.mse / reference:.2f}"
        epochs = "" if is_base or pd.isna(r.epochs_run) else f"{int(r.epochs_run)}"
        fit = "" if is_base else _secs(r.fit_s)
        out.append(f"| {model} | {slot} | {part} | {int(r.n_params):,} | {cells[0]} | {cells[1]} | {ratio} | {fit} | "
                   f"{epochs} |")
    out += ["", revisions_line(bb) + f" 1-minute load during the runs: {bb['load_avg'].min():.1f}–"
            f"{bb['load_avg'].max():.1f}.", ""]
    return out


def depth_section() -> list[str]:
    """Gateformer with adaptive depth: the depth its gates run, the accuracy and the time against full depth."""
    bb = _read("backbone.csv")
    if bb is None or "test_depth" not in bb:
        return []
    bb = bb[bb["part"] == "depth"].dropna(subset=["mse"])
    if bb.empty:
        return []
    bb = bb[bb["timestamp"] == bb["timestamp"].max()]
    runs = {json.loads(w)["run"]: r for w, r in zip(bb["with"], bb.itertuples())}
    if set(runs) != {"gated", "full"}:
        return []
    gated, full = runs["gated"], runs["full"]
    case = {k: v for k, v in json.loads(bb["with"].iloc[0]).items() if k != "run"}
    layers = int(case["e_layers"])
    out = ["### Adaptive depth: the depth it runs and the time it saves", "",
           "`benchmarks/backbone.py --part depth`: Gateformer with `stack=\"adaptive_depth\"` (ECO-M2F) at "
           + ", ".join(f"{k} {v}" for k, v in case.items()) + f" on ETTh1-96 (the recipe above, {int(gated.epochs_run)} "
           "epochs), then every test window scored twice: as `predict` runs it (each window as deep as its gates "
           "say) and at full depth (`network.at_depth(e_layers)`), the two passes in turn in one process, the "
           f"fastest of each kept.", "",
           "| run | blocks per encoder (test windows) | MSE | MAE | one pass over the test windows | time |",
           "|---|---|---|---|---|---|"]
    for label, r in (("gated", gated), ("full depth", full)):
        out.append(f"| {label} | {r.test_depth:.2f} of {layers} | {r.mse:.4f} | {r.mae:.4f} | {r.eval_s:.2f} s | "
                   f"{r.eval_s / full.eval_s:.2f} |")
    out += ["", f"On the training windows the gates run {gated.mean_depth:.2f} of {layers} blocks (`mean_depth_`). "
            f"The gated pass takes {gated.eval_s / full.eval_s:.2f} of the full depth's time and changes the test "
            f"MSE by {gated.mse / full.mse - 1:+.1%}. " + revisions_line(bb), ""]
    return out


# -- interval coverage --------------------------------------------------------------------------------

#: the commit from which fits scale their conformal errors by the forecast window (``conformal_scale_ ==
#: "window"``), and its time: runs recorded before it scaled them by the series alone
WINDOW_SCALE_SINCE = ("6bf3f3e", "2026-12-07T20:04:23+00:00")


def interval_rule(timestamps: pd.Series) -> pd.Series:
    """Per row, how its run's intervals were scaled: ``window`` from :data:`WINDOW_SCALE_SINCE` on, else ``series``."""
    since = pd.Timestamp(WINDOW_SCALE_SINCE[1])
    return pd.to_datetime(timestamps, utc=True).map(lambda t: "window" if t >= since else "series")


def coverage_section() -> list[str]:
    """The empirical coverage of the conformal intervals of every run that recorded it, next to the nominal."""
    lh = _read("long_horizon.csv")
    if lh is None or "coverage_80" not in lh:
        return []
    runs = lh.dropna(subset=["coverage_80"])
    # the estimators' own forms, not their ablations; a streaming estimator's network alone (no linear base, its
    # default) is a row of its own
    runs = runs[[not ablation_of(r) for r in runs.itertuples()]]
    runs = runs.assign(alone=[r.model in STREAMING and not with_linear_base(r) for r in runs.itertuples()],
                       scale=interval_rule(runs["timestamp"]))
    runs = latest(runs, ["dataset", "horizon", "model", "alone", "scale", "seed", "lookback"])
    if runs.empty:
        return []
    out = ["## Interval coverage", "",
           "The share of test values inside each estimator's split-conformal intervals (`predict(level=[80, 95])`, "
           "calibrated on the tail of the fit data), over every stride-1 test window of the runs above that "
           "recorded it (`benchmarks/_protocol.py`), the mean over the seeds run. Well calibrated intervals "
           "cover about their nominal level; less means the calibration windows were calmer than the test "
           "period. *Width* is the mean width of the 80% interval on the scaled data. *CRPS*: of the conformal "
           "predictive distribution (its quantiles 0.05, 0.10, ..., 0.95 are the interval ends at levels 10% to "
           "90% and the point forecast; `tsformers.metrics.crps`), on the scaled data; – where the run predates "
           "it. For a point forecast the CRPS would be its MAE, the column beside it. Each estimator as its defaults "
           "run it; *network alone*: LMUFormer, GTrXL or ATLAS without their default linear base (the ablation "
           "runs of other mechanisms are left out). *Scale*: how the run's conformal errors were scaled, by "
           f"the series alone (runs before {WINDOW_SCALE_SINCE[0]}) or by the forecast window (since; "
           "the next table).", "",
           "| data | lookback | H | model | scale | seeds | 80% | 95% | width 80% | CRPS | MAE |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    order = {name: i for i, name in enumerate(DATASETS + ["illness"])}
    grouped = runs.groupby(["dataset", "lookback", "horizon", "model", "alone", "scale"])
    for (dataset, lookback, horizon, model, alone, scale), rows in sorted(
            grouped, key=lambda kv: (order.get(kv[0][0], 99), *kv[0][1:])):
        name = NAMES.get(model, model) + (" (network alone)" if alone else "")
        out.append(f"| {dataset} | {int(lookback)} | {int(horizon)} | {name} | {scale} | {len(rows)} | "
                   f"{rows['coverage_80'].mean():.1%} | {rows['coverage_95'].mean():.1%} | "
                   f"{rows['width_80'].mean():.3f} | "
                   f"{_f(rows['crps'].mean() if 'crps' in rows and rows['crps'].notna().all() else None)} | "
                   f"{rows['mae'].mean():.3f} |")
    return out + [""] + interval_scale_section() + recalibration_section()


def interval_scale_section() -> list[str]:
    """The rules for scaling the conformal errors side by side (``results/interval_scale.csv``, the latest run of
    each data set): chosen on the validation halves, checked once on the test windows."""
    rows = _read("interval_scale.csv")
    if rows is None:
        return []
    rows = latest(rows, ["dataset", "split", "rule", "level"])
    rules = list(dict.fromkeys(rows["rule"]))
    out = ["### Scaling the intervals by the window", "",
           "`benchmarks/interval_scale.py`: Gateformer's defaults (seed 0) on each data set, every stride-1 window "
           "of the validation and test parts forecast once, and three ways to scale a window's conformal errors: "
           "*series*, the series' scale alone (the rule before); *window spread*, each target's standard "
           "deviation over the window's lookback; *half-way*, its square root (the default since "
           f"{WINDOW_SCALE_SINCE[0]}: `tsformers.estimators.evaluation.window_scale_factor`). *Validation*: "
           "calibrated on the first half of the validation windows, scored on those forecasting after them "
           "(the choice); *test*: calibrated on every validation window, scored on every test window (said "
           "plainly: an exploratory run compared the rules on these test windows first, the same day, before the "
           "choice was put to the validation halves). "
           "*Score*: the interval score (the width plus 2 / (1 − level) times the distance of a value outside the "
           "interval, scaled data; lower is better), *x series* its ratio to the series rule's; the lowest of "
           "each data set, split and level in bold.", "",
           "| data | split | rule | 80% coverage | 80% score | x series | 95% coverage | 95% score | x series |",
           "|---|---|---|---|---|---|---|---|---|"]
    order = {name: i for i, name in enumerate(DATASETS)}
    for (dataset, split), group in sorted(rows.groupby(["dataset", "split"]),
                                          key=lambda kv: (order.get(kv[0][0], 99), kv[0][1] != "validation")):
        cell = {(r.rule, int(r.level)): r for r in group.itertuples()}
        for rule in rules:
            parts = []
            for level in (80, 95):
                r, base = cell.get((rule, level)), cell.get(("series", level))
                if r is None:
                    parts += ["–", "–", "–"]
                    continue
                best = min(v.interval_score for (_, lv), v in cell.items() if lv == level)
                score = f"{r.interval_score:.3f}"
                parts += [f"{r.coverage:.1%}", f"**{score}**" if r.interval_score == best else score,
                          "–" if base is None else f"{r.interval_score / base.interval_score:.3f}"]
            out.append(f"| {dataset} | {split} | {rule} | {' | '.join(parts)} |")
    picks = []
    for split in ("validation", "test"):
        part = rows[rows["split"] == split]
        wins = {rule: int(sum(g.loc[g["interval_score"].idxmin(), "rule"] == rule
                              for _, g in part.groupby(["dataset", "level"])))
                for rule in rules}
        picks.append(f"{split}: " + ", ".join(f"{rule} lowest in {n}" for rule, n in wins.items()))
    total = rows.groupby(["dataset", "level"]).ngroups
    out += ["", f"Of the {total} data set and level pairs, " + "; ".join(picks) + ". "
            + revisions_line(rows), ""]
    return out


def recalibration_section() -> list[str]:
    """Fit-time against recalibrated intervals, from the same runs (``results/recalibration.csv``)."""
    rc = _read("recalibration.csv")
    if rc is None or "recal_coverage_80" not in rc:
        return []
    runs = latest(rc.dropna(subset=["recal_coverage_80"]), ["dataset", "horizon", "model", "seed", "lookback"])
    every = sorted({int(v) for v in runs["recal_every"]} - set(runs["horizon"].astype(int)))
    out = ["### Recalibrated as the test rows arrive", "",
           "The same kind of intervals when the deployed model is recalibrated on a schedule, as "
           "[`calibrate`](probabilistic.md#recalibrating-on-recent-rows) lets a nightly job do: every H steps of "
           "the test period, before forecasting, the conformal errors are recomputed from the windows whose "
           "forecast steps lie in the last `val_size` observed rows (`calibrate(rows so far, last_steps=val_size)`; "
           "`benchmarks/_protocol.py`, `recalibrated_intervals`). Test values enter the calibration only once "
           "observed, the network is unchanged. *Fit-time*: the same run's intervals calibrated once at fit, "
           "as in the table above. Each estimator with the settings of the grid (`long_horizon.MODELS`: Gateformer "
           "and PV-Client with their papers' settings, the streaming estimators with their defaults; "
           "`benchmarks/long_horizon.py --out benchmarks/results/recalibration.csv`), one seed each."
           + (f" Recalibrated every {', '.join(map(str, every))} steps in some rows." if every else ""), "",
           "| data | lookback | H | model | seed | 80% fit-time | 80% recalibrated | 95% fit-time | 95% recalibrated "
           "| width 80% fit-time | width 80% recalibrated | CRPS fit-time | CRPS recalibrated |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    order = {name: i for i, name in enumerate(DATASETS + ["illness"])}
    for r in sorted(runs.itertuples(), key=lambda r: (order.get(r.dataset, 99), r.lookback, r.horizon, r.model, r.seed)):
        name = NAMES.get(r.model, r.model) + ("" if r.model not in STREAMING or with_linear_base(r)
                                              else " (network alone)")
        out.append(f"| {r.dataset} | {int(r.lookback)} | {int(r.horizon)} | {name} | {int(r.seed)} | "
                   f"{r.coverage_80:.1%} | {r.recal_coverage_80:.1%} | {r.coverage_95:.1%} | {r.recal_coverage_95:.1%} | "
                   f"{r.width_80:.3f} | {r.recal_width_80:.3f} | {_f(r.crps)} | {_f(r.recal_crps)} |")
    ett = runs[runs["dataset"].str.startswith("ETT")]
    if len(ett):
        out += ["", f"On the ETT data the 80% intervals cover {ett['coverage_80'].min():.1%}–"
                    f"{ett['coverage_80'].max():.1%} as calibrated at fit and {ett['recal_coverage_80'].min():.1%}–"
                    f"{ett['recal_coverage_80'].max():.1%} recalibrated; the 95% intervals "
                    f"{ett['coverage_95'].min():.1%}–{ett['coverage_95'].max():.1%} and "
                    f"{ett['recal_coverage_95'].min():.1%}–{ett['recal_coverage_95'].max():.1%}. "
                    f"The CRPS recalibrated is lower in {int((ett['recal_crps'] < ett['crps']).sum())} of "
                    f"{len(ett)} runs."]
    return out + ["", revisions_line(runs), ""]


# -- 2. side by side ----------------------------------------------------------------------------------

def patchtst_note(sbs: pd.DataFrame) -> str:
    """What the table says about neuralforecast's PatchTST: its cost where it ran, else why it is missing."""
    runs = sbs[(sbs["library"] == "neuralforecast") & (sbs["model"] == "patchtst")]
    missing = sorted(set(sbs["dataset"]) - set(runs["dataset"]))
    parts = []
    for r in runs.drop_duplicates(["dataset", "horizon"]).itertuples():   # one sentence a cell, whatever its seeds
        ours = sbs[(sbs["library"] == "tsformers") & (sbs["dataset"] == r.dataset) & (sbs["horizon"] == r.horizon)]
        size = f", {r.n_params / ours['n_params'].iloc[0]:.0f} times Gateformer's parameters" if len(ours) else ""
        parts.append(f"neuralforecast's PatchTST on {r.dataset} at H = {r.horizon} runs with the TSLib settings "
                     f"(d_model 512, d_ff 2048, patch 16, stride 8{size}), the model its reference scripts train.")
    if missing:
        parts.append(f"TSLib's PatchTST was not run on {', '.join(missing)}: on ETTh1 it costs "
                     + (f"{runs['fit_test_cpu_s'].max() / 60:.0f} CPU minutes" if len(runs) else "over 18 CPU minutes")
                     + ", and the ETTm data sets have four times as many training windows.")
    authors = sbs[(sbs["library"] == "neuralforecast") & (sbs["model"] == "patchtst-authors")]
    if len(authors):
        parts.append(f"*{NAMES['patchtst-authors']}* (on {', '.join(dict.fromkeys(authors['dataset']))}) is PatchTST at "
                     "the sizes of its authors' scripts (yuqinie98/PatchTST: 3 layers, patch 16 / stride 8, batch "
                     "128; d_model 16, d_ff 128, 4 heads, dropout 0.3 on ETTh; d_model 128, d_ff 256, 16 heads, "
                     "dropout 0.2 on ETTm and weather), trained with their type3 learning-rate schedule for at "
                     "most 10 epochs with patience 3, our protocol's (the scripts: lookback 336, 100 "
                     "epochs): affordable here, "
                     "where TSLib's sizes are not; the goal counts it as PatchTST where TSLib's did not run.")
    return " ".join(parts)


def in_grid_order(frame: pd.DataFrame, column: str, ranked) -> pd.DataFrame:
    """Rows by data set (the grid's order), horizon, then ``column`` in the order of ``ranked``."""
    order = {name: i for i, name in enumerate(DATASETS)} | {name: i for i, name in enumerate(ranked)}
    return frame.sort_values(["dataset", "horizon", column],
                             key=lambda c: c if c.name == "horizon" else c.map(order), )


def seed_difference(ours: pd.Series, theirs: pd.Series | float) -> tuple[float, float, int]:
    """Our MSE minus theirs over the seeds both ran (indexed by seed): mean, standard error, seed count.

    ``theirs`` as a number (a baseline: the same forecast whatever the seed) pairs with each of our seeds.
    The standard error is the sample standard deviation of the paired differences over the square root of
    their count, NaN with fewer than two pairs.
    """
    if isinstance(theirs, pd.Series):
        common = ours.index.intersection(theirs.index)
        diff = ours.loc[common] - theirs.loc[common]
    else:
        diff = ours - theirs
    n = len(diff)
    se = float(diff.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return float(diff.mean()) if n else float("nan"), se, n


def verdict(mean: float, se: float, n: int) -> str | None:
    """What our MSE minus a row's says at two standard errors: ahead, behind, within 2 SE (None: no verdict)."""
    if n < 2 or np.isnan(mean):
        return None
    if se == 0:
        return "ahead" if mean < 0 else ("behind" if mean > 0 else "level")
    return "ahead" if mean < -2 * se else ("behind" if mean > 2 * se else "within 2 SE")


def difference_cell(mean: float, se: float, n: int) -> str:
    """Our MSE minus a row's, with its standard error and what it says at two standard errors."""
    if n == 0 or np.isnan(mean):
        return "–"
    if n < 2:
        return f"{mean:+.4f} (1 seed: no verdict)"
    return f"{mean:+.4f} ± {se:.4f}: {verdict(mean, se, n)}"


GOAL_ANCHORS = (("neuralforecast", "itransformer"), ("neuralforecast", "patchtst"))
# where TSLib's PatchTST did not run on a data set (its cost), the goal counts PatchTST at its authors' sizes
GOAL_STAND_INS = {("neuralforecast", "patchtst"): ("neuralforecast", "patchtst-authors")}
GOAL_SEEDS, GOAL_SD = 3, 0.005
GOAL_HORIZON = 96   # the goal's first horizon; the README's summary shows its cells


def goal_cells(sbs: pd.DataFrame, known: dict) -> list[dict]:
    """The side-by-side goal, cell by cell: each of our models against nf iTransformer, nf PatchTST and the linear
    baselines (paired by seed, two standard errors), its CPU time against iTransformer's, and what is missing.

    One dict per of our rows: ``dataset``, ``horizon``, ``ours`` (its :func:`_seed_runs` entry), ``anchors`` and
    ``linears`` (name -> (cell text, verdict or None, the anchor's run or MSE)), ``ratio`` (CPU over
    iTransformer's, NaN where unknown), ``apart`` (the two ran in other runs), ``short`` (what fails, as the docs'
    goal table says it) and ``brief`` (the same reasons as the README says them: a linear map by its short label,
    with the difference).
    """
    out = []
    for (dataset, horizon), group in sbs.groupby(["dataset", "horizon"], sort=False):
        runs = _seed_runs(group)
        anchors = {(r["library"], r["model"]): r for r in runs if r["library"] != "tsformers"}
        linears = {label: known.get((dataset, int(horizon)), {}).get(label) for label in GOAL_LINEAR}
        for ours in (r for r in runs if r["library"] == "tsformers"):
            cell = dict(dataset=dataset, horizon=horizon, ours=ours, anchors={}, linears={}, short=[], brief=[])
            for key in GOAL_ANCHORS:
                theirs, name, stand_in = anchors.get(key), NAMES[key[1]], ""
                if theirs is None and key in GOAL_STAND_INS:
                    theirs, stand_in = anchors.get(GOAL_STAND_INS[key]), f" ({NAMES[GOAL_STAND_INS[key][1]]})"
                if theirs is None:
                    cell["anchors"][name] = ("not run", None, None)
                    _fall_short(cell, f"{name} not run")
                    continue
                diff = seed_difference(ours["by_seed"], theirs["by_seed"])
                cell["anchors"][name] = (difference_cell(*diff) + stand_in, verdict(*diff), theirs)
                if theirs["seeds"] < GOAL_SEEDS:
                    _fall_short(cell, f"{name} on {theirs['seeds']} seed{'s' if theirs['seeds'] > 1 else ''}")
                elif verdict(*diff) not in ("ahead", None):   # None: our own seeds are too few, said below
                    _fall_short(cell, f"not ahead of {name}")
            for label, linear in linears.items():
                name = "the linear baseline" + (" with the cycle" if label != "linear" else "")
                if linear is None:
                    cell["linears"][label] = ("–", None, None)
                    _fall_short(cell, f"no {name[4:]}")
                    continue
                diff = seed_difference(ours["by_seed"], linear[0])
                cell["linears"][label] = (difference_cell(*diff), verdict(*diff), linear[0])
                if verdict(*diff) not in ("ahead", None):
                    difference = cell["linears"][label][0].split(":")[0]
                    _fall_short(cell, f"not ahead of {name}", f"not ahead of {label} ({difference})")
            it = anchors.get(GOAL_ANCHORS[0])
            cell["ratio"] = ours["cpu_s"] / it["cpu_s"] if it is not None else float("nan")
            cell["apart"] = it is not None and other_runs(ours, it)
            if np.isnan(cell["ratio"]):
                _fall_short(cell, "no CPU time to compare")
            elif cell["ratio"] > 1:
                _fall_short(cell, f"{cell['ratio']:.2f} times iTransformer's CPU")
            if ours["seeds"] < GOAL_SEEDS:
                _fall_short(cell, f"ours on {ours['seeds']} seed{'s' if ours['seeds'] > 1 else ''}")
            elif ours["mse_sd"] > GOAL_SD:
                _fall_short(cell, f"seed sd {ours['mse_sd']:.4f} > {GOAL_SD}")
            out.append(cell)
    return out


def _fall_short(cell: dict, reason: str, brief: str | None = None) -> None:
    """Record what a goal cell lacks: ``reason`` in the docs' words, ``brief`` (else the same) in the README's."""
    cell["short"].append(reason)
    cell["brief"].append(reason if brief is None else brief)


def goal_rows(sbs: pd.DataFrame, known: dict) -> list[str]:
    """The goal table's rows, one per :func:`goal_cells` entry."""
    out = []
    for cell in goal_cells(sbs, known):
        ours, ratio = cell["ours"], cell["ratio"]
        spread = f" ± {ours['mse_sd']:.4f}" if ours["seeds"] > 1 else ""
        cells = [text for text, _, _ in (*cell["anchors"].values(), *cell["linears"].values())]
        out.append(f"| {cell['dataset']} | {cell['horizon']} | {model_name(ours['model'])} | {ours['seeds']} | "
                   f"{ours['mse']:.4f}{spread} | {' | '.join(cells)} | "
                   f"{'–' if np.isnan(ratio) else f'{ratio:.2f}' + (' (other runs)' if cell['apart'] else '')} | "
                   f"{'met' if not cell['short'] else '; '.join(cell['short'])} |")
    return out


def _seed_runs(group: pd.DataFrame) -> list[dict]:
    """One entry per (library, model) of a data set and horizon: its seeds' rows summed up, in ``group``'s order."""
    runs = []
    for (library, model), rows in group.groupby(["library", "model"], sort=False):
        cpu = rows["fit_test_cpu_s"] if "fit_test_cpu_s" in rows else pd.Series(np.nan, index=rows.index)
        runs.append(dict(library=library, model=model, n_params=int(rows["n_params"].iloc[0]), seeds=len(rows),
                         mse=float(rows["mse"].mean()), mae=float(rows["mae"].mean()),
                         mse_sd=float(rows["mse"].std(ddof=1)) if len(rows) > 1 else float("nan"),
                         by_seed=rows.set_index("seed")["mse"].astype(float),
                         epochs=(int(rows["epochs_run"].min()), int(rows["epochs_run"].max())),
                         fit_test_s=float(rows["fit_test_s"].mean()),
                         cpu_s=float(cpu.mean()) if cpu.notna().all() else float("nan"),
                         load=(float(rows["load_start"].min()), float(rows["load_end"].max())),
                         revisions=frozenset(ran_at(rows)) if "git_rev" in rows else frozenset(),
                         processors=frozenset(rows["cpu"].fillna("").astype(str)) if "cpu" in rows
                         else frozenset([""]),
                         threads=frozenset(rows["n_threads"].dropna().astype(int)) if "n_threads" in rows
                         else frozenset()))
    return runs


def threads_note(threads: frozenset) -> str:
    """What a CPU-seconds cell adds where its seeds ran on more than the protocol's one torch thread."""
    if not threads or max(threads) == 1:
        return ""
    low, high = min(threads), max(threads)
    return f" ({high} threads)" if low == high else f" ({low}–{high} threads)"


def ran_at(rows: pd.DataFrame) -> pd.Series:
    """The revision each row ran at: its ``git_rev``, or for a row carried to that revision without running again
    (``rerun.py --carry``: nothing the run reads changed) the revision of the run, ``ran_at``."""
    own = rows["ran_at"] if "ran_at" in rows else pd.Series(np.nan, index=rows.index)
    return own.where(own.notna() & (own.astype(str) != ""), rows["git_rev"]).astype(str)


def carried(rows: pd.DataFrame) -> pd.Series:
    """Whether each row was carried to its ``git_rev`` from an earlier run (:func:`ran_at`), not run there."""
    return ran_at(rows) != rows["git_rev"].astype(str)


def carried_line(shown: pd.DataFrame) -> str:
    """Which of a table's rows were carried to the revision they stand for instead of running again, and from
    where; empty where none was."""
    if "ran_at" not in shown or "git_rev" not in shown:
        return ""
    moved = shown[carried(shown)]
    if moved.empty:
        return ""
    by_library = ", ".join(f"{count} of {library}'s" for library, count in moved["library"].value_counts().items())
    sources = ", ".join(sorted(set(ran_at(moved))))
    targets = ", ".join(sorted(set(moved["git_rev"].astype(str))))
    return (f" Of these, {by_library} rows ran at {sources} and stand for {targets} "
            "without running again: what such a run reads (the spec its worker is handed, the data file's "
            "content, the worker's code and the pinned versions) has one digest at both revisions "
            "(`rerun.py --carry`), so the numbers are the run's and its CPU seconds those of its own session.")


#: the largest ratio between the CPU seconds of two runs of the same fit, to the same MSE, in different sessions of
#: the shared machine (other loads, other processors): how far apart the CPU seconds of different runs can be
CPU_SPREAD_ACROSS_RUNS = 2.7


def other_runs(ours: dict, theirs: dict) -> bool:
    """Whether two sides' CPU seconds come from different runs: other revisions, or other processors (a row that
    did not record its processor counts as one processor unknown). The same fit, to the same MSE, has taken up to
    :data:`CPU_SPREAD_ACROSS_RUNS` times the CPU seconds on the shared machine of one session as on another's:
    only runs of one machine compare fairly."""
    return ours["revisions"] != theirs["revisions"] or ours["processors"] != theirs["processors"]


DEFAULTS_MODELS = ("gateformer-defaults+base", "gateformer-defaults")


def with_earlier_defaults(model: str, setting: str) -> str:
    """``<model> [<setting>]``: the name of a defaults row that ran with ``setting`` where today's defaults differ."""
    return f"{model} [{setting}]"


def earlier_defaults(model: str) -> tuple[str, str | None]:
    """The model and the earlier defaults' setting of a name made by :func:`with_earlier_defaults` (None for
    any other name)."""
    base, bracket, setting = model.partition(" [")
    return (base, setting[:-1]) if bracket and setting.endswith("]") else (model, None)


def name_earlier_defaults(runs: pd.DataFrame) -> pd.DataFrame:
    """Rows of Gateformer's defaults that ran with defaults since changed, named apart.

    A ``gateformer-defaults`` row records the estimator's defaults when it ran (its ``params``). Where those differ
    from today's (``linear_base`` aside: the label says it), the row's model becomes ``<model> [<setting>]``
    (:func:`setting_label` against today's defaults), so it is neither averaged with nor superseded by the current
    defaults' rows, and shown as the earlier defaults (:func:`model_name`).
    """
    if "params" not in runs:
        return runs
    from tsformers import GateformerForecaster

    defaults = GateformerForecaster().get_params()
    models = runs["model"].astype(str).tolist()
    for i, (model, params) in enumerate(zip(models, runs["params"])):
        if model in DEFAULTS_MODELS and isinstance(params, str):
            setting = setting_label(json.dumps({**json.loads(params), "linear_base": defaults["linear_base"]}),
                                    defaults)
            if setting != "*defaults*":
                models[i] = with_earlier_defaults(model, setting)
    return runs.assign(model=models)


def earlier_defaults_last(runs: pd.DataFrame) -> pd.DataFrame:
    """Within each data set, horizon and library, the rows of earlier defaults after the others (the first
    tsformers row is the one the table's differences read)."""
    group = runs.groupby(["dataset", "horizon", "library"], sort=False).ngroup()
    earlier = runs["model"].astype(str).map(lambda model: earlier_defaults(model)[1] is not None)
    return runs.assign(_group=group, _earlier=earlier).sort_values(["_group", "_earlier"], ).drop(
        columns=["_group", "_earlier"])


def model_name(model: str) -> str:
    """A model's name in the tables; ``<model> [<setting>]`` (:func:`name_earlier_defaults`) as earlier defaults."""
    base, setting = earlier_defaults(model)
    if setting is None:
        return NAMES.get(model, model)
    alone = "" if base.endswith("+base") else ", no linear base"
    return f"Gateformer (earlier defaults: {setting}{alone})"


#: When side_by_side.py's CPU seconds came to span what neuralforecast's do: rev 71051cc's commit time. A row is
#: written when its run ends, so one recorded before it ran an earlier revision.
CPU_SPANS_ALIKE_SINCE = pd.Timestamp("2026-12-05T17:50:44Z")
CPU_OVERSTATED = ("our rows recorded before rev 71051cc also counted the intervals recalibrated over the test rows "
                  "and a score of the validation windows, work neuralforecast's rows do not do, so those overstate "
                  "our CPU time")


def cpu_overstated(runs: pd.DataFrame) -> bool:
    """Whether any of our ``runs`` with CPU seconds recorded them before :data:`CPU_SPANS_ALIKE_SINCE`."""
    if "fit_test_cpu_s" not in runs:
        return False
    ours = runs[(runs["library"] == "tsformers") & runs["fit_test_cpu_s"].notna()]
    return bool((pd.to_datetime(ours["timestamp"], utc=True, format="ISO8601") < CPU_SPANS_ALIKE_SINCE).any())


#: The side-by-side table's rows within a library: Gateformer's defaults first (the row its differences read: the
#: one default the goal asks for), then the other settings, then the anchors. Explicit, not the order the runs ran
#: in: a rerun that runs the cheap rows first would otherwise change which row the table compares against.
SIDE_BY_SIDE_ORDER = ["gateformer-defaults+base", "gateformer-defaults", "gateformer+base", "gateformer",
                      "itransformer", "patchtst", "patchtst-authors"]


def side_by_side_frames():
    """Every side-by-side row, the latest run of each cell and seed (``every``), and of those today's settings
    (``sbs``) and the defaults' settings since changed (``history``); None without side-by-side results."""
    every_run = side_by_side_runs()
    if every_run is None:
        return None
    every_run = name_earlier_defaults(every_run)
    every = latest(every_run, ["dataset", "horizon", "library", "model", "seed"])
    every = earlier_defaults_last(in_grid_order(in_grid_order(every, "model", SIDE_BY_SIDE_ORDER),
                                                "library", ["tsformers", "neuralforecast"]))
    earlier = every["model"].astype(str).map(lambda model: earlier_defaults(model)[1] is not None)
    return every_run, every, every[~earlier], every[earlier]


def side_by_side_section() -> list[str]:
    frames = side_by_side_frames()
    if frames is None:
        return []
    every_run, every, sbs, history = frames
    out = ["## Accuracy side by side with neuralforecast", "",
           "`benchmarks/side_by_side.py`: one protocol (the same rows, the same train-split scaling, "
           "the same validation windows for early stopping, every stride-1 test window, MSE/MAE on the scaled "
           "data). neuralforecast runs in its own venv (`benchmarks/.venv-nf`) through "
           "`NeuralForecast.cross_validation(refit=False)`, with the hyperparameters of each model's reference "
           "scripts at lookback 96 (iTransformer: thuml/iTransformer scripts; PatchTST: Time-Series-Library's, "
           "as the iTransformer paper reran it). Where a model ran several seeds (*seeds*), its MSE is their "
           "mean ± the sample standard deviation, its MAE, times and load the mean and range over them. "
           "*ours − row*: the MSE of Gateformer's defaults (the first tsformers row of the data set) minus the "
           "row's, averaged over the seeds both ran (paired by seed; "
           "a baseline is the same for every seed), ± its standard error; *ahead* or *behind* when the "
           "difference is beyond two standard errors, else *within 2 SE*; with one seed there is no verdict. "
           "*fit + test* is the wall time of the fit and of every test "
           "window, one torch thread each (where a CPU cell names more threads, the run ran on them: one run "
           "on one core outlasted a session, `rerun.py --threads`; its CPU seconds include what the threads "
           "spend waiting on each other); *CPU s* the CPU seconds of the same"
           + (f" ({CPU_OVERSTATED})" if cpu_overstated(sbs) else "") + "; "
           "*x ours* is the CPU time over ours where known, else the wall time (rows of different revisions "
           "ran in different runs, at the loads given, and runs of different sessions may have had different "
           f"processors: the same fit's CPU seconds, to the same MSE, have differed by up to "
           f"{CPU_SPREAD_ACROSS_RUNS:g} times between them). Epochs are "
           "not comparable one to one where batch sizes differ: Gateformer's paper recipe and its earlier defaults "
           "use batches of 8 (1,057 steps per ETTh1 epoch), its defaults since 544bdc0 and the others batches "
           "of 32 (265). One protocol difference is left: neuralforecast's early stopping "
           "keeps the last epoch's weights, ours (as TSLib) the best epoch's; when validation loss rises "
           "before the patience runs out that costs it accuracy. " + patchtst_note(sbs), "",
           "Each data set closes with the baselines on the same test windows. " + BASELINE_NOTE + " "
           + LOSS_LEGEND, "",
           "| data | H | library | model | params | seeds | MSE | MAE | ours − row | epochs | fit + test (wall) "
           "| CPU s | x ours | load |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    known = baselines()
    for (dataset, horizon), group in sbs.groupby(["dataset", "horizon"], sort=False):
        base_scores = known.get((dataset, int(horizon)), {})
        baseline = best_of(base_scores)
        published = {peer: ITRANSFORMER_TABLE[peer].get(dataset, {}).get(int(horizon)) for peer in ("iTransformer", "PatchTST")}
        runs = _seed_runs(group)
        scores = {("run", i): (r["mse"], r["mae"]) for i, r in enumerate(runs)}
        scores.update({("published", peer): v for peer, v in published.items() if v})
        scores.update({("baseline", label): v for label, v in base_scores.items()})
        ours = tuple(("run", i) for i, r in enumerate(runs) if r["library"] == "tsformers")
        cells = cells_with_best(scores, ours=ours, baseline=baseline)
        ours_run = next((r for r in runs if r["library"] == "tsformers"), None)
        key = "cpu_s" if all(not np.isnan(r["cpu_s"]) for r in runs) else "fit_test_s"
        for i, r in enumerate(runs):
            ratio = f"{r[key] / ours_run[key]:.2f}" if ours_run else "–"
            mse_cell, mae_cell = _four_digits(cells[("run", i)], r["mse"], r["mae"])
            if r["seeds"] > 1:
                mse_cell = mse_cell.replace(f"{r['mse']:.4f}", f"{r['mse']:.4f} ± {r['mse_sd']:.4f}", 1)
            diff = ("–" if ours_run is None or r is ours_run
                    else difference_cell(*seed_difference(ours_run["by_seed"], r["by_seed"])))
            cpu_cell = "–" if np.isnan(r["cpu_s"]) else f"{r['cpu_s']:.0f}" + threads_note(r["threads"])
            epochs = f"{r['epochs'][0]}" if r["epochs"][0] == r["epochs"][1] else f"{r['epochs'][0]}–{r['epochs'][1]}"
            out.append(f"| {dataset} | {horizon} | {r['library']} | {model_name(r['model'])} | "
                       f"{r['n_params']:,} | {r['seeds']} | {mse_cell} | {mae_cell} | {diff} | {epochs} | "
                       f"{_secs(r['fit_test_s'])} | {cpu_cell} | "
                       f"{ratio} | {r['load'][0]:.1f}–{r['load'][1]:.1f} |")
        for peer, v in published.items():
            if v:
                mse_cell, mae_cell = cells[("published", peer)].split(" / ")
                out.append(f"| {dataset} | {horizon} | published | {peer} | | | {mse_cell} | {mae_cell} | | | | | | |")
        for label in BASELINES.values():
            if label in base_scores:
                mse_cell, mae_cell = _four_digits(cells[("baseline", label)], *base_scores[label])
                diff = ("–" if ours_run is None
                        else difference_cell(*seed_difference(ours_run["by_seed"], base_scores[label][0])))
                out.append(f"| {dataset} | {horizon} | baseline | {label} | | | {mse_cell} | {mae_cell} | {diff} "
                           f"| | | | | |")
    out += ["", revisions_line(sbs) + " A revision is this project's code, which ran both libraries' rows."
            + carried_line(sbs) + side_by_side_reruns_line(every_run, sbs)
            + " Gateformer's earlier defaults are in the next "
            "table.", ""]
    out += earlier_defaults_section(every, history)
    return out + ["### The goal, cell by cell", "",
                  "What the side-by-side goal asks of each of our rows above: lower MSE than neuralforecast's "
                  "iTransformer and PatchTST and than the linear baseline (the literature's map, and the same map on "
                  "the values less their seasonal cycle, *linear + cycle*, so that what Gateformer's default "
                  "`cycle=\"auto\"` takes out cannot pass for the network's work), each beyond two standard errors "
                  "of the "
                  f"paired difference, with every trained side on at least {GOAL_SEEDS} seeds, a seed standard "
                  f"deviation of at most {GOAL_SD}, and no more CPU time than iTransformer's fit (*CPU / "
                  "iTransformer*, the mean CPU seconds of fit and test; *other runs* where the two sides ran "
                  "at different revisions or on different processors (or one not recorded), so in different runs "
                  f"at different loads, where the same fit's CPU seconds have differed by up to "
                  f"{CPU_SPREAD_ACROSS_RUNS:g} times: the table "
                  "above "
                  "gives each row's load). *Short of it* lists "
                  "what fails; *met* where nothing does.", "",
                  "| data | H | ours | seeds | MSE | − iTransformer | − PatchTST | − linear | − linear + cycle "
                  "| CPU / iTransformer | short of it |",
                  "|---|---|---|---|---|---|---|---|---|---|---|", *goal_rows(sbs, known), ""] \
        + ensemble_section(every, known) + cycle_section(every, known) + search_section()


# parameters that say nothing about the setting searched: the run's seed, its data and its plumbing
_NOT_A_SETTING = {"random_state", "val_size", "verbose", "trainer_kwargs", "horizon", "lookback", "target",
                  "covariates", "future_covariates", "calendar", "time_col", "id_col", "checkpoint_dir"}


def setting_label(params: str, defaults: dict) -> str:
    """The parameters of a run (its ``params`` JSON) that differ from the estimator's defaults, or *defaults*."""
    # runs from before the estimator took linear_base, cycle or ensemble_size had neither base nor cycle and fitted one
    # network (as a model saved then loads); a parameter it no longer takes is a setting where it was set (not None)
    earlier = {"linear_base": False, "cycle": None, "ensemble_size": 1}
    changed = {k: v for k, v in {**earlier, **json.loads(params)}.items()
               if k not in _NOT_A_SETTING and (defaults[k] != v if k in defaults else v is not None)}
    return ", ".join(f"`{k}={v!r}`" for k, v in sorted(changed.items())) or "*defaults*"


def same_on_rerun_line(runs: pd.DataFrame | None, what: str, shown: pd.DataFrame | None, keys: list[str],
                       noun: str = "cells") -> str:
    """Of the cells ``shown`` (latest of ``runs``, every row of a results file; a cell is one value of ``keys``), how
    many ran again at another revision and gave the MSE of their previous run to the last recorded digit. Equal MSE
    across revisions shows rows that depend on the data and a library alone; a change of the code they ran (a
    library's, or ours between two revisions) shows as a difference. ``what`` opens the sentence, ``noun`` names a
    cell in it. Empty where none ran twice."""
    if shown is None or runs is None or shown.empty or not {"git_rev", "timestamp", *keys} <= set(runs):
        return ""
    rows = runs.merge(shown[keys].drop_duplicates(), on=keys)
    # each cell's last two runs, at two revisions
    pairs = [g.sort_values("timestamp").tail(2) for _, g in rows.groupby(keys)]
    pairs = [p for p in pairs if p["git_rev"].nunique() == 2]
    if not pairs:
        return ""
    same = sum(p["mse"].nunique() == 1 for p in pairs)
    revs = sorted({str(r) for p in pairs for r in p["git_rev"]})
    return (f" {what}: {len(pairs)} of their {noun} here ran again at a later revision "
            f"({', '.join(revs)}), and {same} gave the MSE of their previous run to the last recorded digit"
            + (f" ({len(pairs) - same} did not{differing_runs_clause(pairs)})." if len(pairs) > same else "."))


def differing_runs_clause(pairs: list[pd.DataFrame]) -> str:
    """Of the reruns in ``pairs`` (a cell's previous run, then its rerun) whose MSE changed: by how much, and on
    which processors the two ran (where the rows record one). A fit is the same to the bit on one processor and
    torch build, not across instruction sets, so the processors say whether the code or the machine moved it."""
    changed = [p for p in pairs if p["mse"].nunique() > 1]
    if not changed:
        return ""
    gaps = sorted(abs(float(p["mse"].iloc[1]) - float(p["mse"].iloc[0])) for p in changed)
    clause = f", by {gaps[0]:.2g}" + (f" to {gaps[-1]:.2g}" if len(gaps) > 1 else "") + " in MSE"
    if "cpu" not in pairs[0]:
        return clause
    kinds: dict[str, int] = {}
    for p in changed:
        before, after = (c if isinstance(c, str) else "" for c in p["cpu"])
        kind = (f"ran both times on {after}" if before and before == after
                else f"ran on {before}, then on {after}" if before and after
                else f"reran on {after} after a run that recorded no processor" if after
                else "recorded no processor either time")
        kinds[kind] = kinds.get(kind, 0) + 1
    parts = [f"{count} {kind}" for kind, count in sorted(kinds.items(), key=lambda item: -item[1])]
    return (f"{clause}; " + ", ".join(parts) + ": a fit is the same to the bit for one code on one processor, "
            "not across instruction sets (see [the design notes](design.md)), and a later revision may have "
            "changed the code a row runs")


def baseline_reruns_line(shown: pd.DataFrame | None) -> str:
    """:func:`same_on_rerun_line` of the baselines' cells ``shown``: closed-form, they depend on the data alone."""
    return same_on_rerun_line(_read("baselines.csv"), "The baselines are closed-form", shown,
                              ["dataset", "horizon", "lookback", "model"])


def anchors_reruns_line(runs: pd.DataFrame, shown: pd.DataFrame) -> str:
    """:func:`same_on_rerun_line` of the anchors' cells ``shown`` among all their ``runs``, a cell being also its
    test windows (a stride that changed reads other windows, so its MSE is not a rerun's)."""
    return same_on_rerun_line(runs, "The anchors are deterministic", shown,
                              ["dataset", "horizon", "lookback", "model", "n_windows"])


def side_by_side_reruns_line(runs: pd.DataFrame, shown: pd.DataFrame) -> str:
    """:func:`same_on_rerun_line` of the side-by-side runs ``shown`` among all ``runs``, one sentence per library: a
    run is a data set, horizon, model and seed. neuralforecast's code is the library's, ours changes with the
    revision, so the two are counted apart."""
    keys = ["dataset", "horizon", "library", "model", "seed"]
    if "ran_at" in runs and "git_rev" in runs:  # a carried row is its run again, not a rerun
        runs = runs[~carried(runs)]
    return "".join(same_on_rerun_line(runs[runs["library"] == library], who, shown[shown["library"] == library], keys,
                                      noun="runs")
                   for library, who in (("neuralforecast", "neuralforecast's rows"), ("tsformers", "Ours")))


def earlier_defaults_section(every: pd.DataFrame, history: pd.DataFrame) -> list[str]:
    """The side-by-side rows of Gateformer's defaults whose settings have since changed, each against today's
    defaults on the same data set (paired by seed), with the revisions they ran at."""
    if history.empty:
        return []
    out = ["### Gateformer's earlier defaults", "",
           "The same protocol, Gateformer with defaults since changed (*setting*: where they differ from today's; "
           "*no linear base*: the network alone). *defaults − row*: today's defaults' MSE minus the row's, paired "
           "by seed, ± its standard error. Each row gives the revisions it ran at"
           + (f" (*CPU s*: {CPU_OVERSTATED})" if cpu_overstated(history) else "") + "; the history of each change "
           "is on [the Gateformer page](estimators/gateformer.md#one-setting-for-every-data-set).", "",
           "| data | H | setting | params | seeds | MSE | MAE | defaults − row | epochs | fit + test (wall) | CPU s "
           "| load | revisions |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (dataset, horizon), group in every.groupby(["dataset", "horizon"], sort=False):
        runs = _seed_runs(group)
        today = next((r for r in runs if r["model"] in DEFAULTS_MODELS), None)
        for r in runs:
            base, setting = earlier_defaults(r["model"])
            if setting is None:
                continue
            alone = "" if base.endswith("+base") else ", no linear base"
            spread = f" ± {r['mse_sd']:.4f}" if r["seeds"] > 1 else ""
            diff = "–" if today is None else difference_cell(*seed_difference(today["by_seed"], r["by_seed"]))
            epochs = f"{r['epochs'][0]}" if r["epochs"][0] == r["epochs"][1] else f"{r['epochs'][0]}–{r['epochs'][1]}"
            cpu = "–" if np.isnan(r["cpu_s"]) else f"{r['cpu_s']:.0f}"
            out.append(f"| {dataset} | {horizon} | {setting}{alone} | {r['n_params']:,} | {r['seeds']} | "
                       f"{r['mse']:.4f}{spread} | {r['mae']:.4f} | {diff} | {epochs} | {_secs(r['fit_test_s'])} | "
                       f"{cpu} | {r['load'][0]:.1f}–{r['load'][1]:.1f} | {', '.join(sorted(r['revisions']))} |")
    return out + [""]


def _validation_runs() -> pd.DataFrame | None:
    """Gateformer's runs with a validation loss (``search.csv`` and the side-by-side runs), each labelled with its
    ``setting`` (:func:`setting_label`), the latest per data set, horizon, setting and seed."""
    sources = {"search.csv": _read("search.csv"), "side_by_side.csv": side_by_side_runs()}
    frames = [f.assign(source=name) for name, f in sources.items() if f is not None and "val_loss" in f]
    if not frames:
        return None
    runs = pd.concat(frames, ignore_index=True)
    runs = runs[runs["val_loss"].notna() & runs["model"].astype(str).str.startswith("gateformer")]
    if runs.empty:
        return None
    from tsformers import GateformerForecaster

    defaults = GateformerForecaster().get_params()
    runs = runs.assign(setting=[setting_label(p, defaults) for p in runs["params"]])
    return latest(runs, ["dataset", "horizon", "setting", "seed"])


#: Today's defaults but for one network instead of a seed ensemble of two: the rows from before ``ensemble_size``
ONE_NETWORK = "`ensemble_size=1`"
#: ... and without the seasonal cycle besides: the rows from before ``cycle`` existed
NO_CYCLE = "`cycle=None`, `ensemble_size=1`"
DEFAULTS_ROW = "gateformer-defaults+base"


def _setting_name(setting: str) -> str:
    """The side-by-side model name of the defaults' rows that ran with ``setting`` (``*defaults*``: today's)."""
    return DEFAULTS_ROW if setting == "*defaults*" else with_earlier_defaults(DEFAULTS_ROW, setting)


PAIRED_OTHER_RUNS = ("*other runs* where the two ran at other revisions or on other processors (or one not "
                     "recorded), whose CPU seconds compare only roughly: the same fit's have differed by up to "
                     f"{CPU_SPREAD_ACROSS_RUNS:g} times between the runs of different sessions")


def paired_setting_rows(sbs: pd.DataFrame, known: dict, off: str, on: str) -> list[str]:
    """Per data set and horizon where both ran: the validation loss of the defaults' rows with setting ``off`` and
    with ``on`` (the search record and the side-by-side runs), their test MSE, the paired difference on − off, the
    linear baselines and the revisions (off / on)."""
    val = _validation_runs()
    rows = []
    for (dataset, horizon), group in sbs.groupby(["dataset", "horizon"], sort=False):
        runs = {r["model"]: r for r in _seed_runs(group) if r["library"] == "tsformers"}
        with_on, with_off = runs.get(_setting_name(on)), runs.get(_setting_name(off))
        if with_on is None or with_off is None:
            continue
        cells = []
        for setting in (off, on):
            v = None if val is None else val[(val["dataset"] == dataset) & (val["horizon"] == horizon)
                                             & (val["setting"] == setting)]["val_loss"].astype(float)
            cells.append("–" if v is None or v.empty else
                         f"{v.mean():.4f}" + (f" ± {v.std(ddof=1):.4f}" if len(v) > 1 else "") + f" ({len(v)})")
        diff = difference_cell(*seed_difference(with_on["by_seed"], with_off["by_seed"]))
        linear = known.get((dataset, int(horizon)), {})
        lin = [f"{linear[k][0]:.4f}" if k in linear else "–" for k in GOAL_LINEAR]
        revisions = ", ".join(sorted(with_off["revisions"])) + " / " + ", ".join(sorted(with_on["revisions"]))
        cpu = [r["cpu_s"] for r in (with_off, with_on)]
        cpu_cell = ("–" if any(np.isnan(c) for c in cpu) else f"{cpu[0]:.0f} / {cpu[1]:.0f}"
                    + (" (other runs)" if other_runs(with_off, with_on) else ""))
        rows.append(f"| {dataset} | {horizon} | {cells[0]} | {cells[1]} | {with_off['mse']:.4f} ± "
                    f"{with_off['mse_sd']:.4f} | {with_on['mse']:.4f} ± {with_on['mse_sd']:.4f} | {diff} | "
                    f"{' | '.join(lin)} | {cpu_cell} | {revisions} |")
    return rows


def linear_cycle_scores(dataset: str, horizon: int = 96) -> dict | None:
    """The linear map's validation MSE (from the ridge choice its setting records) and test MSE, without and with
    the seasonal cycle, on ``dataset``: ``{"linear": (val, test), "linear_cycle": (val, test)}``, or None."""
    bl = _read("baselines.csv")
    if bl is None:
        return None
    rows = latest(bl[(bl["lookback"] == GRID_LOOKBACK) & (bl["dataset"] == dataset) & (bl["horizon"] == horizon)
                     & bl["model"].isin(["linear", "linear_cycle"])], ["model"])
    out = {}
    for r in rows.itertuples():
        val = re.search(r"validation MSE ([0-9.]+)", str(r.setting))
        if val:
            out[r.model] = (float(val.group(1)), float(r.mse))
    return out if len(out) == 2 else None


#: the mean over weather's 21 scaled variables of the range of their mean daily profile (max - min over the 144
#: ten-minute phases of the day, by each row's own timestamp), measured on the file in each split
WEATHER_DAILY_RANGE = {"train": 0.85, "validation": 0.91, "test": 0.43}


def weather_cycle_note() -> str:
    """Why weather gets no daily cycle even where its validation windows prefer one: the linear map's scores."""
    scores = linear_cycle_scores("weather")
    if scores is None:
        return ""
    (val, test), (val_c, test_c) = scores["linear"], scores["linear_cycle"]
    r = WEATHER_DAILY_RANGE
    return (f" The linear map shows what a daily cycle does on weather: with it, its validation MSE goes from "
            f"{val:.4f} to {val_c:.4f} and its test MSE from {test:.4f} to {test_c:.4f} (`baselines.csv`, "
            f"H = 96). The training and validation rows run from January to mid-October, the test rows from late "
            f"October to December, whose days swing about half as much (the mean daily range of the scaled "
            f"variables: {r['train']:.2f} over the training rows, {r['validation']:.2f} over the validation "
            f"rows, {r['test']:.2f} over the test rows): a profile taken from the training months overstates the "
            f"test months' cycle, and the validation windows cannot tell. Weather's rows stay integer steps "
            f"(no calendar, so `cycle=\"auto\"` takes none) and no cycle is set for it by hand.")


def cycle_section(sbs: pd.DataFrame, known: dict) -> list[str]:
    """Gateformer's defaults with the seasonal cycle taken out (``cycle="auto"``) against the same defaults without
    it (the rows from before the parameter), both with one network (the defaults before ``ensemble_size``): the
    validation loss the choice read, then the test MSE, paired by seed, next to the linear map with and without
    the cycle."""
    rows = paired_setting_rows(sbs, known, NO_CYCLE, ONE_NETWORK)
    if not rows:
        return []
    return ["### The seasonal cycle", "",
            "Gateformer's default `cycle=\"auto\"` takes each target's mean daily profile over the training part "
            "out of the scaled values and adds it back onto the forecast (`tsformers.data.cycle`; CycleNet's "
            "residual cycle forecasting with the cycle fixed to the training mean). Under this protocol it is a "
            "day on the ETT data (24 hourly steps, 96 at 15 minutes) and a week (7) on Exchange; none on weather, "
            "whose rows the protocol counts as integer steps (its file repeats a timestamp), which have no "
            "calendar. Chosen on the validation windows (*validation*: the mean ± sd of the runs counted in "
            "brackets, the search record's `cycle=None` and cycle rows), then tested once: *test* is the "
            "side-by-side rows of the defaults without the cycle (the earlier defaults, same network and recipe) "
            "and with it, 3 seeds each, both one network (`ensemble_size=1`, the defaults when the cycle was "
            "chosen); *cycle − none* their paired difference. *linear* and *linear + cycle* are "
            "the baselines on the same windows. *CPU s*: mean CPU seconds of fit and test per run, without / with; "
            f"{PAIRED_OTHER_RUNS}. "
            "*revisions*: without / with. On weather both rows are the same "
            "fits (no cycle) at two revisions, equal to the last digit; the search record below has the daily cycle "
            "given explicitly (`cycle=144`), which the validation windows preferred." + weather_cycle_note(), "",
            "| data | H | validation, no cycle | validation, cycle | test, no cycle | test, cycle | cycle − none "
            "(paired) | linear | linear + cycle | CPU s | revisions |",
            "|---|---|---|---|---|---|---|---|---|---|---|", *rows, ""]


def ensemble_section(sbs: pd.DataFrame, known: dict) -> list[str]:
    """Gateformer's defaults (a seed ensemble of two networks) against the same defaults with one network (the rows
    from before ``ensemble_size``): validation, then test, paired by seed, and the CPU each costs."""
    rows = paired_setting_rows(sbs, known, ONE_NETWORK, "*defaults*")
    if not rows:
        return []
    return ["### The seed ensemble", "",
            "Gateformer's default `ensemble_size=2` fits two networks apart, the first under `random_state` (the "
            "one-network fit itself), the second under a seed drawn from it, and forecasts their mean "
            "(`tsformers.backbone.SeedEnsemble`). The members of the runs under seeds 0, 1 and 2 are six distinct "
            "networks, so the seeds' spread is that of independent ensembles. Chosen on the validation windows "
            "(*validation*: the mean ± sd of the runs counted in brackets, from the search record and the "
            "side-by-side runs), then tested once: *test* is the side-by-side rows of one network and of the "
            "ensemble, 3 seeds each; *two − one* their paired difference (the ensemble's first member is the "
            "one-network fit of the same seed, so the pairing is exact where both ran on one processor: across "
            "processors the float kernels differ in their last bits, and a fit carries that on: see "
            "[the design notes](design.md)). *CPU s*: mean CPU seconds of fit and test "
            f"per run, one / two; {PAIRED_OTHER_RUNS}. *revisions*: one / two.", "",
            "| data | H | validation, one network | validation, two | test, one network | test, two | two − one "
            "(paired) | linear | linear + cycle | CPU s | revisions |",
            "|---|---|---|---|---|---|---|---|---|---|---|", *rows, ""]


def search_section() -> list[str]:
    """The settings tried for Gateformer's one default, by their validation loss alone (the search record)."""
    runs = _validation_runs()
    if runs is None:
        return []
    runs = in_grid_order(runs, "setting", [])   # data sets in the grid's order, settings as they were first run
    out = ["### The search record: validation loss alone", "",
           "Every Gateformer setting tried for the one default, scored by its validation loss only (the MSE on "
           "the scaled validation windows the fit early-stopped on; with a linear base, of the forecast the fit "
           "kept): `long_horizon.py --validation-only` runs (`search.csv`, never reading the test split) and the "
           "side-by-side runs, which record it too. *setting*: the parameters that differ from the estimator's "
           "defaults. **Bold**: the lowest mean of the data set. A setting is chosen on these numbers, then "
           "tested once.", "",
           "| data | H | setting | seeds | validation MSE (mean ± sd) | from | revisions |", "|---|---|---|---|---|---|---|"]
    for (dataset, horizon), cell in runs.groupby(["dataset", "horizon"], sort=False):
        settings = list(cell.groupby("setting", sort=False))
        scores = [group["val_loss"].astype(float) for _, group in settings]
        means = [loss.mean() for loss in scores]
        for i, ((setting, group), loss) in enumerate(zip(settings, scores)):
            text = f"{means[i]:.4f}" + (f" ± {loss.std():.4f}" if len(loss) > 1 else "")
            if i == int(np.argmin(means)):
                text = f"**{text}**"
            out.append(f"| {dataset} | {int(horizon)} | {setting} | {len(loss)} | {text} | "
                       f"{', '.join(sorted(set(group['source'])))} | {', '.join(sorted(set(group['git_rev'].astype(str))))} |")
    return out + [""]


ANCHORS = {"autoets": ("statsforecast", "AutoETS"), "autotheta": ("statsforecast", "AutoTheta"),
           "lgbm": ("mlforecast", "LightGBM")}


def anchors_section() -> list[str]:
    """statsforecast's AutoETS / AutoTheta and mlforecast's LightGBM (``anchors.csv``) next to the baselines."""
    runs = _read("anchors.csv")
    if runs is None:
        return []
    anchors = latest(runs[runs["lookback"] == GRID_LOOKBACK], ["dataset", "horizon", "model"])
    anchors = in_grid_order(anchors, "model", ANCHORS)
    out = ["### Anchors: statsforecast and mlforecast", "",
           "`benchmarks/anchors.py` (rows in `benchmarks/results/anchors.csv`): well-known forecasters from other "
           "libraries on the same rows, train-split scaling and test windows, each run in its own venv "
           "(`benchmarks/.venv-anchors`, one thread). *AutoETS* and *AutoTheta* (statsforecast; season 24 for "
           "hourly data, 96 for the 15-minute ETTm data, 144 for weather's 10-minute rows) are fitted per variable on "
           "the training rows, then "
           "every test window is forecast with "
           "`forward` on the history up to the window: parameters fixed, state run over the data (what "
           "`cross_validation(refit=False)` does after its single fit); the state reads the whole history, not "
           "only the 96-row window. *LightGBM* (mlforecast, `LGBMRegressor`) is one global model on lags 1..96 "
           "and hour and day of week (lags alone on weather, whose rows the protocol counts as integer steps: its "
           "file repeats a timestamp), fitted on the training rows, forecasting recursively from each window's "
           "96 rows; its target transform and number of trees come from a four-point grid scored on the "
           "validation windows (on lagged levels the trees cannot forecast outside the range of the training "
           "split; first differences can: the validation windows chose them on Exchange and levels on every ETT data "
           "set, *setting* lists the grid and its scores). *windows*: the test windows read; where that is fewer than every stride-1 "
           "window (AutoTheta re-runs its seasonal decomposition over the whole history for each window), "
           "*setting* gives the stride and the linear baseline's MSE on the same subset; the stride shares no factor with "
           "the data's season (`anchors.season_stride`: 7 on hourly data, 97 on ETTm's 15-minute rows, 8 on "
           "Exchange's days), so the windows read fall on every phase of it. *CPU s*: fit, "
           "validation and every forecast. **Bold**: the lowest MSE and MAE of the rows of the data set.", "",
           "| data | H | library | model | MSE | MAE | MASE | windows | CPU s | setting |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    known = baselines()
    for (dataset, horizon), group in anchors.groupby(["dataset", "horizon"], sort=False):
        base_scores = known.get((dataset, int(horizon)), {})
        scores = {("anchor", r.model): (float(r.mse), float(r.mae)) for r in group.itertuples()}
        scores.update({("baseline", label): v for label, v in base_scores.items()})
        cells = cells_with_best(scores)
        for r in group.itertuples():
            library, label = ANCHORS.get(r.model, ("", r.model))
            mse_cell, mae_cell = _four_digits(cells[("anchor", r.model)], r.mse, r.mae)
            mase = getattr(r, "mase", np.nan)
            setting = "" if pd.isna(r.setting) else str(r.setting).replace("|", "/")
            out.append(f"| {dataset} | {horizon} | {library} | {label} | {mse_cell} | {mae_cell} | {_f(mase)} | "
                       f"{int(r.n_windows):,} | {r.cpu_s:.0f} | {setting} |")
        for label in BASELINES.values():
            if label in base_scores:
                mse_cell, mae_cell = _four_digits(cells[("baseline", label)], *base_scores[label])
                out.append(f"| {dataset} | {horizon} | baseline | {label} | {mse_cell} | {mae_cell} | | | | |")
    return out + ["", anchors_not_run(anchors), "",
                  revisions_line(anchors) + " A revision is this project's protocol code; the anchors' code is "
                  "their libraries' (installed by `benchmarks/_anchorsenv.py`)." + anchors_reruns_line(runs, anchors)
                  + " " + versions_line(anchors), ""]


#: why AutoTheta is the anchor most often missing: measured here (statsforecast 2.1.1, one thread, load 3)
AUTOTHETA_COST = ("AutoTheta's fit optimises four Theta models over the whole training history and every "
                  "`forward` repeats the seasonality test and decomposition over the whole history up to the "
                  "window: on ETTm's 34,560 training rows at season 96 the fit took 161 CPU s per variable and a "
                  "forward 4 to 10 CPU s per window and variable (measured here, one thread, load 3), so an ETTm "
                  "cell at stride 97 costs about an hour of CPU (ETTm2 at H = 96: 3,823 s), and weather's 21 "
                  "variables an estimated four hours or more.")


def anchors_not_run(anchors: pd.DataFrame) -> str:
    """The anchor models missing from a data set and horizon that has rows, by model and data set."""
    missing: dict = {}
    for (dataset, horizon), group in anchors.groupby(["dataset", "horizon"], sort=False):
        ran = set(group["model"])
        for model in (m for m in ANCHORS if m not in ran):      # in the table's order of anchors
            missing.setdefault((model, dataset), []).append(int(horizon))
    if not missing:
        return "Every anchor ran on every data set and horizon of the table."
    parts = [f"{ANCHORS[model][1]} on {dataset} at H = {', '.join(map(str, horizons))}"
             for (model, dataset), horizons in missing.items()]
    reason = (" " + AUTOTHETA_COST) if any(model == "autotheta" for model, _ in missing) else ""
    return "Not run: " + "; ".join(parts) + "." + reason


def versions_line(rows: pd.DataFrame) -> str:
    """The library versions the rows' workers imported (their ``versions`` column, JSON), and how many rows
    predate that record."""
    recorded = rows["versions"].dropna() if "versions" in rows else pd.Series(dtype=object)
    sets = sorted({", ".join(f"{k} {v}" for k, v in sorted(json.loads(text).items())) for text in recorded})
    if not sets:
        return "Library versions: not recorded by these rows."
    missing = len(rows) - len(recorded)
    return (f"Library versions: {'; '.join(sets)}" + (" (one set)" if len(sets) == 1 else f" ({len(sets)} sets)")
            + (f"; not recorded by {missing} of {len(rows)} rows, which predate the record." if missing else "."))


def _four_digits(cell: str, mse: float, mae: float) -> tuple[str, str]:
    """The MSE and MAE cells of a measured row at four digits, keeping the bold and loss marks of ``cell``."""
    out = []
    for part, value in zip(cell.split(" / "), (mse, mae)):
        out.append(part.replace(f"{value:.3f}", f"{value:.4f}", 1))
    return out[0], out[1]


# -- 2b. PV ------------------------------------------------------------------------------------------

PV_MODELS = {  # name: (label, what it reads over the forecast day, a baseline?)
    "pvclient": ("PV-Client (ours)", "weather + calendar, per-step pathway", False),
    "pvclient_paper": ("PV-Client, paper's architecture (ours)", "weather + calendar", False),
    "gateformer": ("Gateformer (ours)", "weather + calendar", False),
    "pvclient_past_weather": ("PV-Client, past weather (ours)", "calendar only (weather: history)", False),
    "gbm": ("gradient-boosted regression", "weather + calendar", True),
    "sarimax": ("SARIMAX", "5 weather columns", True),
    "clearsky_persistence": ("clear-sky persistence", "yesterday's power, clear-sky GHI", True),
    "persistence": ("persistence (same hour yesterday)", "yesterday's power", True),
}
PV_SETTINGS = {  # the weather setting (pv.py's variant column): what "weather of the day" is
    "actual weather": "NSRDB's satellite-derived actuals of the forecast day: a perfect weather forecast, so "
                      "these rows are an *upper bound* of a real day-ahead forecast.",
    "yesterday weather": "a forecast known at the origin: every atmospheric column is its value 24 h earlier "
                         "(the weather stays as it was); clear-sky irradiance, solar zenith and the calendar "
                         "are exact (astronomy).",
}


def pv_section() -> list[str]:
    pv = _read("pv.csv")
    if pv is None:
        return []
    pv = pv[pv["lead_hours"].astype(str) == "all"]
    metrics = ["nmae_pct", "nrmse_pct", "mae", "mse"]
    out = ["## PV power, day ahead", "",
           "`benchmarks/pv.py`: hourly AC power of two 6 kW plants (Golden, CO, 2020 and Cocoa, FL, 2019), "
           "24 h ahead from 48 h of history, every test hour an origin; every model's forecast clipped to "
           "[0, capacity] and zero at night (solar zenith >= 90 degrees). Mean over the seeds of the trained "
           "networks (± the standard deviation of nMAE over seeds). PV-Client's training settings were "
           "chosen on the validation hours (`pv_search.csv`). **Bold**: the best of the column. " + LOSS_MARK +
           ": worse than at least one baseline row (gradient-boosted regression, SARIMAX, the two "
           "persistences) on that metric.", ""]
    for (dataset, variant), cell in pv.groupby(["dataset", "variant"], sort=False):
        mean, spread = cell.groupby("model")[metrics].mean(), cell.groupby("model")["nmae_pct"].std()
        runs = cell.groupby("model").size()
        baselines = [m for m, (_, _, is_baseline) in PV_MODELS.items() if is_baseline and m in mean.index]
        best = mean.min()
        out += [f"### {dataset}, {variant}", "", f"Weather of the day: {PV_SETTINGS.get(variant, variant)}", "",
                "| model | reads over the forecast day | runs | nMAE % | nRMSE % | MAE kW | MSE kW² |",
                "|---|---|---|---|---|---|---|"]
        for model, (label, reads, is_baseline) in PV_MODELS.items():
            if model not in mean.index:
                continue
            cells = []
            for metric in metrics:
                value = mean.loc[model, metric]
                text = f"{value:.2f}" if metric.endswith("pct") else f"{value:.3f}"
                if np.isclose(value, best[metric]):
                    text = f"**{text}**"
                if metric == "nmae_pct" and runs[model] > 1:
                    text += f" ± {spread[model]:.2f}"
                if not is_baseline and baselines and value > mean.loc[baselines, metric].min():
                    text += f" {LOSS_MARK}"
                cells.append(text)
            out.append(f"| {label} | {reads} | {int(runs[model])} | " + " | ".join(cells) + " |")
        out.append("")
    return out


# -- 3. speed -----------------------------------------------------------------------------------------

def speed_section() -> list[str]:
    sp = _read("speed.csv")
    if sp is None:
        return []
    starts = sp.index[(sp["case"] == "import") & (sp["label"] == "tsformers")]
    earlier = [sp.loc[a:b - 1] for a, b in zip(starts[:-1], starts[1:])]
    if len(starts):
        sp = sp.loc[starts[-1]:]
    out = ["## Speed and memory side by side", "",
           "`benchmarks/speed.py`: every measurement in a fresh interpreter (ours in the project venv, "
           "neuralforecast's in `benchmarks/.venv-nf`), all in one run, one torch thread each. Models of "
           "equal size: Gateformer with its ETTh1-96 paper settings against the neuralforecast width with the "
           "closest parameter count. Training: ETTh1 train rows, 7 variables, lookback 96, horizon 96, "
           "batches of 32 multivariate windows (PatchTST: 32 x 7 univariate windows), step time from two fits "
           "of different lengths so the fixed cost of a fit is separate. Predict: `predict()` of the next 96 "
           "steps, frame in and frame out, median of 5 calls. *large-train*: the same training at Gateformer's "
           "d_model 512 against the iTransformer width of the closest parameter count, where a step is "
           "arithmetic rather than op dispatch. *defaults-train*: the same training with the estimator's default "
           "network (the paper's ETTh1-96 network but for its patches: 16 steps, not 8) against the iTransformer "
           "width of its parameter count. *MFLOP/window*: torch's count (`torch.utils.flop_counter`) of "
           "one training step's matmul, convolution and attention FLOPs, forward and backward, per window; "
           "*GFLOP/s*: that arithmetic over the step time. Peak RSS of the process. *ratio*: our "
           "throughput over theirs (train) or their latency over ours (predict, import); above 1, we are "
           "faster. Each train case runs `--repeats` times (3 since 2026-12-06), the libraries taking turns: its step "
           "time is the median repeat, and the ratio's range over the repeats run side by side follows it in "
           "brackets (one measurement on this shared machine can be off by a third). (`--baseline-tree` adds our "
           "package from an older tree as `tsformers@LABEL`; the before/after of "
           "the training loop is measured separately below.)", "",
           "| case | library | model | params | series | step ms | windows/s | MFLOP/window | GFLOP/s | fit fixed s "
           "| predict s | import s | peak RSS MiB | ratio | load |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def g(r, k, d=1):
        v = getattr(r, k, np.nan)
        return "" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{d}f}"

    for r in sp.itertuples():
        params = "" if pd.isna(r.n_params) else f"{int(r.n_params):,}"
        series = "" if pd.isna(r.n_series) else f"{int(r.n_series):,}"
        rss = g(r, "peak_rss_mib", 0) or g(r, "rss_after_import_mib", 0)
        out.append(f"| {r.case} | {r.label} | {NAMES.get(r.model, r.model)} | {params} | {series} | "
                   f"{g(r, 'step_ms')} | {g(r, 'windows_per_s', 0)} | {g(r, 'mflop_per_window')} | "
                   f"{g(r, 'gflop_per_s')} | {g(r, 'fit_fixed_s', 2)} | "
                   f"{g(r, 'predict_median_s', 3)} | {g(r, 'import_s')} | {rss} | {ratio_cell(r)} | "
                   f"{g(r, 'load_start')} |")
    out += ["", machine_line(sp, earlier), ""]
    if len(sp[sp["case"] == "train"]):
        # (the framework's share of a step is measured apart, in one run: "The training loop, before and after")
        out += ["Reading the train rows: " + work_line(sp) + "The tiny models show the per-step floor of each "
                "stack (op dispatch, not arithmetic), and `predict` the per-call cost: neuralforecast builds a "
                "Trainer for every call.", ""]
    return out


def gpu_section() -> list[str]:
    """Gateformer on a GPU (``gpu_check.py``'s latest run and the training steps it measured), or that none ran."""
    out = ["## On a GPU", "",
           "`benchmarks/gpu_check.py`, the prepared script for a machine with a GPU (never run in CI): Gateformer's "
           "defaults fitted on the GPU at full precision (`32-true`) and at `bf16-mixed`, scored on every test window "
           "of the protocol above (the forecasts made on the CPU, where the fitted network comes back), and the "
           "model saved and read back: *identical* when its forecast equals the fitted one's to the bit. Then "
           "`speed.py`'s training cases on the same GPU against neuralforecast's at each precision, step times "
           "by the wall clock (*ratio*: our windows per second over theirs).", ""]
    checks = latest_run("gpu_check.csv")
    if checks is None:
        return out + ["Not run yet: no GPU machine has been lent to a session since the script was written.", ""]
    out += ["| data | H | precision | trained on | MSE | MAE | epochs | fit | network on the CPU | saved, read back |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in checks.itertuples():
        same = "identical" if r.identical else f"**differs** (max {r.max_abs_diff:.2g})"
        out.append(f"| {r.dataset} | {r.horizon} | {r.precision} | {r.accelerator} | {r.mse:.4f} | {r.mae:.4f} | "
                   f"{r.epochs_run} | {_secs(r.fit_s)} | {'yes' if r.on_cpu else '**no**'} | {same} |")
    first = checks.iloc[0]
    out += ["", f"Run {first.timestamp} at rev {first.git_rev}, torch {first.torch_version}.", ""]
    steps = _read("gpu_speed.csv")
    steps = None if steps is None else steps[steps["timestamp"] >= first.timestamp]
    if steps is not None and len(steps):
        out += ["| case | precision | library | model | params | step ms | windows/s | ratio |", "|---|---|---|---|---|---|---|---|"]
        for r in steps.itertuples():
            ratio = "" if pd.isna(r.ratio) else f"{r.ratio:.2f}"
            out.append(f"| {r.case} | {r.precision} | {r.library} | {NAMES.get(r.model, r.model)} | "
                       f"{int(r.n_params):,} | {r.step_ms:.2f} | {r.windows_per_s:.0f} | {ratio} |")
        out.append("")
    return out


def ratio_cell(r) -> str:
    """A speed row's ratio, with its range over the repeats run side by side where the run repeated the case."""
    if pd.isna(getattr(r, "ratio", np.nan)):
        return ""
    low, high = getattr(r, "ratio_low", np.nan), getattr(r, "ratio_high", np.nan)
    spread = "" if pd.isna(low) or pd.isna(high) else f" ({low:.2f}–{high:.2f})"
    return f"{r.ratio:.2f}{spread}"


def _train_ratio(run: pd.DataFrame, case: str) -> float | None:
    """Our windows per second over iTransformer's in one run's ``case``, as ``speed.py`` recorded it on
    iTransformer's row (None where the run has no such row)."""
    theirs = run[(run["case"] == case) & (run["model"] == "itransformer")]["ratio"].dropna()
    return float(theirs.iloc[0]) if len(theirs) else None


def machine_line(run: pd.DataFrame, earlier: list[pd.DataFrame]) -> str:
    """When, at which revision and on which processor the speed run measured, and the train ratios of the runs
    before it (ratios hold on the machine they were measured on)."""
    def where(r: pd.DataFrame) -> str:
        cpus = sorted(set(r["cpu"].dropna().astype(str))) if "cpu" in r else []
        return f"on {' / '.join(cpus)}" if cpus else "processor not recorded"

    revs = sorted(set(run["git_rev"].dropna().astype(str)) - {""})
    text = (f"One run, started {run.iloc[0].timestamp}, rev {', '.join(revs) or 'not recorded'}, {where(run)}. "
            "Both libraries' kernels change with the processor's instruction set, so the ratios hold on the machine "
            "of their run")
    before = []
    for r in earlier[-3:]:
        ratios = [(label, _train_ratio(r, case)) for label, case in (("paper size", "train"),
                                                                       ("defaults", "defaults-train"))]
        shown = ", ".join(f"{label} {value:.2f}" for label, value in ratios if value is not None)
        if shown:
            before.append(f"{r.iloc[0].timestamp[:10]} ({where(r)}): {shown}")
    return text + ("; the train ratios of the runs before it: " + "; ".join(before) + "." if before else ".")


def work_line(sp: pd.DataFrame) -> str:
    """What the FLOP counts say about the train rows: our arithmetic per window and its speed against iTransformer's."""
    parts, speeds = [], []
    for case in ("train", "defaults-train", "large-train"):
        rows = sp[sp["case"] == case]
        ours = rows[rows["label"] == "tsformers"]
        theirs = rows[rows["model"] == "itransformer"]
        if not len(ours) or not len(theirs) or "mflop_per_window" not in rows or rows["mflop_per_window"].isna().any():
            continue
        o, t = ours.iloc[0], theirs.iloc[0]
        hp = ast.literal_eval(o.hp)
        speeds.append(o.gflop_per_s / t.gflop_per_s)
        parts.append(f"at d_model {hp['d_model']}, patches of {hp.get('patch_len', 8)}, {int(o.n_params):,} "
                     "parameters, Gateformer's step does "
                     f"{o.mflop_per_window / t.mflop_per_window:.1f} times iTransformer's arithmetic per window "
                     f"({o.mflop_per_window:.1f} against {t.mflop_per_window:.1f} MFLOP) at "
                     f"{speeds[-1]:.2f} times its GFLOP/s, so "
                     f"{o.windows_per_s / t.windows_per_s:.2f} times its windows per second")
    if not parts:
        return "no FLOP counts were recorded in this run. "
    return ("the FLOP counts say where each ratio comes from: " + "; ".join(parts) + ". Gateformer "
            "attends over each variate's patches and then across the variates, iTransformer only across the "
            "variates: at equal parameter count the gap is the arithmetic per window, which Gateformer runs at "
            f"{min(speeds):.2f}–{max(speeds):.2f} times iTransformer's speed per FLOP. ")


# -- 4. training loop ---------------------------------------------------------------------------------

def _overhead_table(to, labels: list[str]) -> list[str]:
    """One before/after run of ``train_overhead.py``: a row per tree, the speed-up against the first."""
    out = ["| label | repeats | min step ms | median step ms | windows/s (best) | fit fixed s (min) | peak RSS MiB | "
           "speed-up |", "|---|---|---|---|---|---|---|---|"]
    base = to[to["label"] == labels[0]]["step_ms"].min()
    for label in labels:
        t = to[to["label"] == label]
        out.append(f"| {label} | {len(t)} | {t['step_ms'].min():.2f} | {t['step_ms'].median():.2f} | "
                   f"{(t['batch'].iloc[0] * 1e3 / t['step_ms'].min()):.0f} | {t['fit_fixed_s'].min():.2f} | "
                   f"{t['peak_rss_mib'].max():.0f} | {base / t['step_ms'].min():.2f} |")
    first = to[to["label"].isin(labels)]
    patches = (f", patches of {int(first['patch_len'].iloc[0])}" if "patch_len" in first
               and first["patch_len"].notna().all() else "")
    return out + ["", f"Measured {first['timestamp'].max()}; batch {int(first['batch'].iloc[0])}, d_model "
                      f"{int(first['d_model'].iloc[0])}{patches}, steps {first['steps'].iloc[0]}.", ""]


#: the optimiser's before/after run: the labels train_overhead.py was given
ADAMW_LABELS = ["foreach", "fused"]
#: the dropout's before/after runs (torch's masks, then tsformers.backbone.dropout's), one per network
DROPOUT_LABELS = ["torch dropout", "backbone dropout"]
#: Gateformer's attention weights dropped at dropout (0.1, the default) against kept whole (attention_dropout=0)
ATTENTION_DROPOUT_LABELS = ["attention-dropout-0.1", "attention-dropout-0"]


def overhead_section() -> list[str]:
    to = _read("train_overhead.csv")
    if to is None:
        return []
    loop_labels = [label for label in dict.fromkeys(to["label"])
                   if label not in ADAMW_LABELS + DROPOUT_LABELS + ATTENTION_DROPOUT_LABELS]
    out = ["## The training loop, before and after", "",
           "`benchmarks/profile_training.py` (cProfile of a Gateformer fit, ETTh1, batch 8) found three costs "
           "that do no model work: `torch.manual_seed` in the per-step reseeding callback (on a machine "
           "without CUDA it defers a seeding call for CUDA, XPU and MTIA and formats a stack trace for each, on "
           "every step: three `traceback.format_stack` calls per step), "
           "Lightning's `self.log` of the training loss on every step, and AdamW's per-parameter Python loop. "
           "Now only the CPU generator is reseeded (the accelerator's too when training there), the epoch's "
           "mean loss is logged once at its last batch (same weighting), and AdamW runs with `foreach=True`. "
           "Losses, validation losses and forecasts are bit-for-bit the same as before (checked on ETTh1, "
           "2 epochs). `benchmarks/train_overhead.py` measures one training step, the package imported from "
           "the tree before and after the change, in turn, in one run (minimum over the repeats: the "
           "fairest figure on a shared machine):", ""]
    out += _overhead_table(to, loop_labels)
    if set(ADAMW_LABELS) <= set(to["label"]):
        out += ["Later, AdamW's `foreach=True` (one kernel per operation over all parameters) gave way to "
                "`fused=True` (the whole update of every parameter in one kernel; torch has it on CPU since 2.4). "
                "It is the same update up to float rounding, not bit for bit (after 50 steps of batch 8 the "
                "weights differed by at most 3e-5), so results of the fused tree are recorded under its own "
                "revision. The same measurement, the tree before and after:", ""]
        out += _overhead_table(to, ADAMW_LABELS)
    dropout_runs = to[to["label"].isin(DROPOUT_LABELS)]
    if len(dropout_runs):
        out += ["Then dropout. On CPU torch draws a dropout mask with one Mersenne-Twister number per element "
                "(`bernoulli_`, about 4 ns each here), and attention with dropout takes torch's unfused path, whose "
                "softmax over fewer than 16 keys (Gateformer's 7 patches, 7 variates) is about ten times slower "
                "than over 16; a profile of the default network's step put dropout at about a third of it. "
                "`tsformers.backbone.dropout` draws a mask from a quarter of the random numbers (four 16-bit "
                "lanes per 64-bit draw of the same generator: drop probability p rounded to a multiple of "
                "1/65536, kept elements scaled by the exact inverse keep probability) and runs the short rows' "
                "softmax in three ops; every dropout and attention with dropout of the backbone and the models "
                "use it. The masks are a different random stream from torch's, so fits are not bit for bit "
                "those of the tree before: results are recorded under the new revision. The same measurement, "
                "the tree before and after, for the paper's network (batch 8, patches of 8) and the default one "
                "(batch 32, patches of 16):", ""]
        for patch in sorted(dropout_runs["patch_len"].dropna().unique()):
            run = dropout_runs[dropout_runs["patch_len"] == patch]
            out += _overhead_table(run, DROPOUT_LABELS)
    if set(ATTENTION_DROPOUT_LABELS) <= set(to["label"]):
        out += ["Without dropout on the attention weights (Gateformer's `attention_dropout=0`, tried as the default "
                "and not taken: see the Gateformer page) the attention of a training step takes torch's fused "
                "kernel; the default network (batch 32, patches of 16), the tree with the weights dropped at 0.1 "
                "and the tree with 0 in turn:", ""]
        out += _overhead_table(to, ATTENTION_DROPOUT_LABELS)
    return out


def profile_section() -> list[str]:
    pr = _read("profile_training.csv")
    out = []
    if pr is not None:
        pr = latest(pr, ["label"])
        out += ["Where a step's CPU time goes, `benchmarks/profile_training.py` (cProfile, 300 steps of batch 8; "
                "the profiler inflates Python-heavy parts, so the plain step time is given too), ms per step:", "",
                "| tree | forward | backward | Adam update | data | reseeding | `self.log` | rest (Lightning) | "
                "total (profiled) | plain step |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in pr.itertuples():
            n = r.steps / 1e3
            out.append(f"| {r.label} | {r.forward_s / n:.2f} | {r.backward_s / n:.2f} | {r.optimizer_s / n:.2f} | "
                       f"{r.data_s / n:.2f} | {r.seeding_s / n:.2f} | {r.log_s / n:.2f} | {r.other_s / n:.2f} | "
                       f"{r.cpu_profiled_s / n:.2f} | {r.cpu_plain_s / n:.2f} |")
        out.append("")
    cc = _read("compile_check.csv")
    if cc is not None:
        out += ["`torch.compile` (`benchmarks/compile_check.py`, a bare training step of the same network, CPU "
                "seconds): " + "; ".join(
                    f"batch {int(r.batch)}: eager {r.eager_step_ms:.2f} ms, compiled {r.compiled_step_ms:.2f} ms per "
                    f"step, compiling costs {r.compile_cpu_s:.0f} s" for r in latest(cc, ["batch"]).itertuples())
                + ". It does not pay on these small models on CPU, so training stays eager.", ""]
    out += ["The data path was already lean: windows are strided views and `__getitems__` gathers a batch "
            "in one indexing operation (about 2% of a step), with `num_workers=0`; a worker process would "
            "only compete with the training thread for the 2 cores.", ""]
    return out


# -- 5. cold start -------------------------------------------------------------------------------------

COLD_START_GOALS = {
    "import tsformers": "at most `import torch` + 0.5 s",
    "forecast torch": "at most `import torch` + 1 s",
    "forecast onnx": "under 1 s on an idle machine; imports no torch, Lightning, scikit-learn, MLflow",
}


def cold_start_section() -> list[str]:
    """The latest run of ``cold_start.py``: each command's wall time and its ratio to ``import torch``."""
    run = latest_run("cold_start.csv")
    if run is None:
        return []
    first = run.iloc[0]
    out = ["## Cold start of the batch path", "",
           "`benchmarks/cold_start.py`: a fresh interpreter per command, the commands taking turns in one run, "
           f"each {int(first.repeats)} times; wall time, minimum and median, and their ratios to "
           "`python -c \"import torch\"` measured in the same run (*x torch*; the minimum is the fairest "
           "figure on a shared machine). The forecasts are `tsformers forecast` of one series (the demo model, "
           "horizon 24, lookback 96) from a saved model directory, with the torch engine and with "
           "`--engine onnx`. Every command reads compiled bytecode, as from an installed package (the "
           "untimed first round writes it to a scratch `PYTHONPYCACHEPREFIX`; runs before 2026-12-04 "
           "compiled tsformers from source in every timed run, about 0.08 s more for the torch engine).", "",
           "| command | min s | median s | x torch (min) | x torch (median) | min − torch s | median − torch s | "
           "goal |",
           "|---|---|---|---|---|---|---|---|"]
    torch_median = run.loc[run["case"] == "import torch", "median_s"].iloc[0]
    for r in run.itertuples():
        out.append(f"| `{r.command}` | {r.min_s:.2f} | {r.median_s:.2f} | {r.ratio_min:.2f} | {r.ratio_median:.2f} | "
                   f"{r.over_torch_min_s:+.2f} | {r.median_s - torch_median:+.2f} | "
                   f"{COLD_START_GOALS.get(r.case, '')} |")
    out += ["", f"Measured {first.timestamp} (rev {first.git_rev}, torch {first.torch_version}, Python "
            f"{first.python}) on {int(first.cpus)} cores ({first.machine}) at a 1-minute load of "
            f"{first.load_start:.1f} at the start and {first.load_end:.1f} at the end: the machine was shared, "
            f"so the absolute times are inflated and only the ratios compare.", ""]
    return out


def spark_scoring_section() -> list[str]:
    """``spark_scoring.py``: scoring many series with ``spark_forecast`` and with the CLI, size by size."""
    sc = _read("spark_scoring.csv")
    if sc is None:
        return []
    sc = latest(sc, ["engine", "n_series"]).sort_values(["n_series", "engine"], ascending=[True, False])
    out = ["## Scoring many series: Spark and the CLI", "",
           "`benchmarks/spark_scoring.py`: a Gateformer (lookback 48, horizon 24) forecasts every series of a "
           "panel of 96-step series, with `tsformers.tracking.spark.spark_forecast` on Spark's `local[2]` (two "
           "Python workers, one thread each) and with `tsformers forecast --chunk-size 5000` in one process on "
           "one thread, each engine in a fresh process. *Score s*: the scoring alone, after Spark's workers "
           "warmed up (importing torch and loading the model took 25–34 s on a first job). Peak memory of the "
           "driver's Python, Spark's JVM (in local mode the driver and executor share it; heap capped by "
           "`--driver-memory`) and the workers (proportional set size), and the CLI's process. Both engines of "
           "a size ran in the same run, one after the other, except where the *rev* or *load* cells say "
           "otherwise (– : the row was transcribed from the run's log).", "",
           "| series | engine | score s | series/s | rows/s | driver Python MiB | JVM MiB | workers MiB | "
           "process MiB | load | rev |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sc.itertuples():
        load = "–" if pd.isna(r.load_start) else f"{r.load_start:.1f}–{r.load_end:.1f}"
        spark = r.engine == "spark"
        out.append(f"| {int(r.n_series):,} | {r.engine} | {r.score_s:.1f} | {r.series_per_s:,.0f} | "
                   f"{r.rows_per_s:,.0f} | {_f(r.peak_driver_python_mib, 0) if spark else '–'} | "
                   f"{_f(r.peak_jvm_mib, 0)} | {_f(r.peak_workers_pss_mib, 0)} | "
                   f"{'–' if spark else _f(r.peak_driver_python_mib, 0)} | {load} | {r.git_rev} |")
    out += ["", "Memory is bounded by the partitions and chunks, not the panel: from 100,000 to 1,000,000 series "
            "(ten times the rows) Spark's workers and JVM stay near their 100,000-series peaks and the driver's "
            "Python does not grow. On one machine the CLI's single thread scores more series per second than "
            "Spark's two workers: about ten times at 100,000 series (a busy machine, load ~6) and three times at "
            "1,000,000 (load ~1–2); the Spark side is not profiled yet (the candidates are the shuffle that "
            "groups rows into series, the Arrow transfer and MLflow's input checks). Spark pays off where the "
            "panel lives on a cluster, not on one machine.", ""]
    return out


def sparse_kv_section() -> list[str]:
    """The latest run of ``sparse_kv.py``: GTrXL's sparse KV cache against its segment memory, as ratios."""
    run = latest_run("sparse_kv.csv")
    if run is None:
        return []
    first = run.iloc[0]
    out = ["## GTrXL's sparse KV cache on a long stream", "",
           f"`benchmarks/sparse_kv.py`: one GTrXL (d_model 32, 2 layers, segment memory of "
           f"{int(first.mem_len)} steps) trained on {int(first.train_steps):,} steps of the demo series, then "
           f"{int(first.steps):,} more streamed one step at a time with the same weights, once per variant: the "
           "segment memory and `kv_cache=\"sparse\"` (ALISA: the last *window* tokens plus *global* heavy "
           "hitters by accumulated attention, per layer), the variants taking turns at each step. *Step ms*: "
           "one `advance` by one step (the network, without the estimator's data path); *state*: the streaming "
           f"state's bytes at the end; *MSE*: scaled values, forecasts every {int(first.steps) // int(first.n_origins)} "
           f"steps ({int(first.n_origins)} origins, horizon 24). *x*: the ratio to the segment memory in the "
           "same run.", "",
           "| variant | window | global | step ms | x step | state bytes | x state | MSE | x MSE |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in run.itertuples():
        window = "–" if pd.isna(r.kv_window) else f"{int(r.kv_window)}"
        k_global = "–" if pd.isna(r.kv_global) else f"{int(r.kv_global)}"
        out.append(f"| {r.variant} | {window} | {k_global} | {r.step_ms:.2f} | {r.step_ratio:.2f} | "
                   f"{int(r.state_bytes):,} | {r.state_ratio:.2f} | {r.mse:.4f} | {r.mse_ratio:.3f} |")
    out += ["", measured_line(first) + " A window of `mem_len` without heavy hitters is the segment memory "
            "(the same forecasts); the cache stores each token's accumulated score and position besides its "
            "state, so at the same number of tokens its state is a little larger. The heavy hitters are attended "
            "at distances beyond `mem_len`, which the relative encoding never met in training (the cache is an "
            "inference policy): compare each row's *x MSE* with the window of the same budget without them.", ""]
    return out


def packed_panel_section() -> list[str]:
    """The latest run of ``packed_panel.py``: the packed advance of a ragged panel against one call per span."""
    run = latest_run("packed_panel.csv")
    if run is None:
        return []
    first = run.iloc[0]
    out = ["## Ragged panels in the streaming estimators: packed advance", "",
           f"`benchmarks/packed_panel.py`: {int(first.n_series):,} hourly series of distinct lengths from "
           f"{int(first.min_steps):,} to {int(first.max_steps):,} steps ({int(first.total_steps):,} in all, "
           f"{int(first.distinct_spans):,} distinct spans), forecast by each streaming estimator (fitted small: "
           "one epoch, width 16) with `predict(df)`, which advances every series' state over its whole history. "
           "*per-span*: one network call per distinct span (the reference); *packed*: chunks of different "
           "series at different positions share a call, the shortest length first for all, then whole chunks "
           f"of {int(first.chunk)} steps, then powers of two (no padding). Wall time of `predict` over "
           f"{int(first.repeats)} rounds, the variants taking turns (minimum and median; *x*: the per-span time "
           "over this one, in the same run); peak RSS of a fresh process that loads the model and predicts "
           "once, and its rise during `predict`; the largest difference of the forecasts from the reference "
           "(data units).", "",
           "| model | advance | calls | min s | median s | x (min) | x (median) | peak RSS MiB | predict RSS MiB | "
           "max abs diff |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in run.itertuples():
        out.append(f"| {r.model} | {r.variant} | {int(r.calls):,} | {r.min_s:.2f} | {r.median_s:.2f} | "
                   f"{r.speedup_min:.2f} | {r.speedup_median:.2f} | {r.peak_rss_mib:.0f} | {r.predict_rss_mib:.0f} | "
                   f"{r.max_abs_diff:.1e} |")
    out += ["", measured_line(first) + " Packing trades memory for calls: a packed call holds a chunk of "
            "every series that takes it, where the reference holds one span's series at a time, so `predict`'s "
            "peak grows with the series × the chunk. The windowed estimators never pad (every window has the "
            "lookback's length), so the streaming advance is where a ragged panel costs calls; see "
            "[Streaming](streaming.md#ragged-panels).", ""]
    return out


#: the data sets the side-by-side goal counts; Exchange, a near random walk, is reported as skill over the last value
GOAL_DATASETS = ("ETTh1", "ETTh2", "ETTm1", "ETTm2", "weather")
#: the README's block that :func:`readme_summary` writes, between these two lines
README_MARKERS = ("<!-- how it compares: rendered by benchmarks/report.py from benchmarks/results/*.csv; do not "
                  "edit by hand -->", "<!-- end of how it compares -->")


def readme_summary() -> list[str]:
    """The README's "How it compares": the goal at H = 96 for Gateformer's defaults, every anchor and baseline on
    the same windows, and a count of the goal's cells at the longer horizons; empty without side-by-side results."""
    frames = side_by_side_frames()
    if frames is None:
        return []
    known = baselines()
    cells = [c for c in goal_cells(frames[2], known) if c["ours"]["model"] == DEFAULTS_ROW]
    short_cells = [c for c in cells if int(c["horizon"]) == GOAL_HORIZON]
    if not short_cells:
        return []
    labels = list(BASELINES.values())
    out = ["Test MSE at horizon 96 (lookback 96, scaled data, every test window), measured here under one "
           "protocol (`benchmarks/side_by_side.py`): `GateformerForecaster()` with its defaults and "
           "neuralforecast's iTransformer and PatchTST at the settings of their reference scripts, each the mean "
           f"± standard deviation of {GOAL_SEEDS} seeds, and the baselines on the same windows (`NaiveForecaster`, "
           "`SeasonalNaiveForecaster`, `LinearForecaster` without and with the seasonal cycle). **Bold**: the lowest "
           "of the row. *Goal*: lower MSE than iTransformer, PatchTST and both linear maps, each beyond two "
           "standard errors of the paired difference, in no more CPU time than iTransformer's; what falls short "
           "is named, losses included. Every table, the search record and the speed table: "
           "[docs/benchmarks.md](docs/benchmarks.md).", "",
           "| data | Gateformer (defaults) | iTransformer | PatchTST | " + " | ".join(labels)
           + " | CPU / iTransformer | goal |",
           "|---|---|---|---|" + "---|" * len(labels) + "---|---|"]
    for c in short_cells:
        scores = {"ours": (c["ours"]["mse"], c["ours"]["mse_sd"])}
        names = {}
        for name, (_, _, theirs) in c["anchors"].items():
            scores[name] = None if theirs is None else (theirs["mse"], theirs["mse_sd"])
            names[name] = "" if theirs is None else _stand_in(name, theirs["model"])
        base = known.get((c["dataset"], int(c["horizon"])), {})
        for label in labels:
            scores[label] = (base[label][0], float("nan")) if label in base else None
        best = min(v[0] for v in scores.values() if v is not None)
        texts = []
        for name, v in scores.items():
            if v is None:
                texts.append("not run")
                continue
            text = f"{v[0]:.4f}"
            text = f"**{text}**" if round(v[0], 4) == round(best, 4) else text
            texts.append(text + ("" if np.isnan(v[1]) else f" ± {v[1]:.4f}") + names.get(name, ""))
        goal = "met" if not c["short"] else "; ".join(c["brief"])
        if c["dataset"] not in GOAL_DATASETS:
            goal = "outside the goal's count" + (f" (skill over the last value "
                                                 f"{skill(c['ours']['mse'], base['last value'][0])})"
                                                 if "last value" in base else "")
        ratio = "–" if np.isnan(c["ratio"]) else f"{c['ratio']:.2f}" + (" (other runs)" if c["apart"] else "")
        out.append(f"| {c['dataset']} | {' | '.join(texts)} | {ratio} | {goal} |")
    longer = [c for c in cells if int(c["horizon"]) != GOAL_HORIZON and c["dataset"] in GOAL_DATASETS]
    if longer:
        met = [c for c in longer if not c["short"]]
        horizons = sorted({int(c["horizon"]) for c in longer})
        out += ["", f"At H = {_in_words(horizons)} the goal is met in "
                f"{len(met)} of {len(longer)} cells ({', '.join(dict.fromkeys(c['dataset'] for c in longer))}); "
                "short of it: " + "; ".join(f"{c['dataset']} {c['horizon']}: {', '.join(c['brief'])}"
                                            for c in longer if c["short"]) + "."]
    return out


def _stand_in(name: str, model: str) -> str:
    """What a stand-in's name adds to the anchor's it stands for: " (authors' sizes)" for PatchTST's
    "PatchTST, authors' sizes"; nothing for the anchor itself."""
    full = NAMES[model]
    return "" if full == name else f" ({full.removeprefix(name).lstrip(', ')})"


def _in_words(items) -> str:
    """``[192, 336, 720]`` -> "192, 336 and 720"."""
    items = [str(i) for i in items]
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def write_readme_summary(readme: Path, lines: list[str]) -> bool:
    """Put ``lines`` between the README's :data:`README_MARKERS` (atomically); False where it has no markers."""
    text = readme.read_text()
    start, end = README_MARKERS
    if start not in text or end not in text:
        return False
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    replace_text(readme, head + start + "\n" + "\n".join(lines) + "\n" + end + tail)
    return True


def render() -> str:
    head = ["# Benchmarks", "",
            "Rendered by `benchmarks/report.py` from `benchmarks/results/*.csv`; do not edit by hand. The scripts "
            "and the protocol are described in `benchmarks/README.md`. All numbers come from a 2-core CPU "
            "machine (torch 2.13.0+cpu, one torch thread per process) that was shared with other jobs while "
            "they ran: each row records the 1-minute load average, absolute times are inflated accordingly "
            "(a Gateformer ETTh1 epoch takes ~10 s on the idle machine and 100–140 s at load 8–14), and "
            "only the ratios measured in the same run compare like with like.", ""]
    body = (grid_section() + seeds_section() + linear_base_section() + other_models_section() + client_section()
            + small_data_section() + ablation_section() + slots_section() + long_context_section() + depth_section() + panel_section() + coverage_section()
            + side_by_side_section() + anchors_section() + pv_section() + speed_section() + gpu_section()
            + overhead_section()
            + profile_section() + sparse_kv_section() + packed_panel_section()
            + cold_start_section() + spark_scoring_section())
    return "\n".join(head + body).rstrip() + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=HERE.parent / "docs" / "benchmarks.md")
    p.add_argument("--stdout", action="store_true")
    p.add_argument("--readme", type=Path, default=HERE.parent / "README.md",
                   help="the README whose block between README_MARKERS gets the summary")
    args = p.parse_args(argv)
    text = render()
    if args.stdout:
        print(text)
    else:
        replace_text(args.out, text)   # a whole page or none: a reader (or mkdocs serve) never sees half of one
        print(f"wrote {args.out}")
        if args.readme is not None and write_readme_summary(args.readme, readme_summary()):
            print(f"wrote the summary in {args.readme}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
