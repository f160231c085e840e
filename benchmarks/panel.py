"""A many-series case: every variable of ETTh1, ETTh2, ETTm1, ETTm2 and weather as one global univariate panel.

    .venv/bin/python benchmarks/panel.py                                   # every model, ~8 CPU minutes
    .venv/bin/python benchmarks/panel.py --models naive seasonal_naive linear linear_per_dataset gbm
    .venv/bin/python benchmarks/panel.py --datasets ETTh1 ETTh2 --max-train-batches 20   # a quick check

The protocol (also in ``benchmarks/README.md`` and the rendered section of ``docs/benchmarks.md``):

- **Series**: each variable of each data set is one series of a long frame (``unique_id`` =
  ``"<data set>/<variable>"``, ``time``, ``y``): 4 x 7 ETT variables + 21 weather variables = 49 series.
- **Splits**: each series keeps its data set's standard chronological split (``split_bounds``: ETTh 12/4/4
  months, ETTm the same in 15-minute steps, weather 70/10/20). The time axis is the row position shifted so
  that every series' train/validation border falls on the same step ``T0`` (the largest training length):
  the estimators cut one validation part at the end of the panel, ``val_size`` = the longest validation
  split (ETTm's 11,520 steps), and a series with a shorter validation split (ETTh, weather) simply ends
  earlier in it, so each series' training rows are exactly its registry training split and its validation
  windows exactly its validation split. The fit frame holds each series' train + validation rows; the test
  split is never read by a fit.
- **Scaling**: the literature's convention: each series is standardised by the mean and standard deviation
  of its own training split before anything else, and the estimators run with ``scaler=None``. MSE and MAE
  are on these standardised values; MASE does not depend on the scaling.
- **Windows**: lookback 96, horizon 96. The test windows of a series end at the end of its test split and
  start every ``STRIDE`` = 25 steps before it (the origins ``test_end - 96 - 25 k``, the earliest at or after
  the test split's start): 112 windows per ETTh series, 457 per ETTm series, 418 per weather series, 16,744 in
  all. 25 is prime to a day of 24, 96 and 144 steps, so the origins visit every time of day (a stride of 24
  would put every hourly origin at the same hour). Every model is scored through its own
  ``backtest(n_windows, step=25)``; the script checks that every model's series, cutoffs and actual values are
  identical.
- **MASE**: each absolute error divided by its series' in-sample seasonal naive MAE over the training split
  (season = one day: 24 hourly steps, 96 15-minute steps, 144 10-minute steps;
  ``tsformers.metrics.evaluate(..., history=training rows, season=...)``). Per data set: the mean over its
  forecast values (its series have equally many windows); *all series*: the mean over the 49 series of each
  series' MASE, MSE and MAE (every series counts once, M4's convention).
- **Models**: ``NaiveForecaster`` (last value), ``SeasonalNaiveForecaster`` (one per data set, season a day;
  weather's season of 144 steps is longer than 96, so its seasonal naive reads a window of 144 rows: the same
  origins and targets), ``LinearForecaster`` (one ridge map for all 49 series, penalty chosen on the
  validation windows; and, as a fourth baseline, ``linear_per_dataset``: one map per data set fitted on its
  series only, since one map for series of three frequencies is a weak baseline), ``GBMForecaster`` (one
  global model, its defaults: 200,000 sampled rows, early stopping on the validation windows) and
  ``GateformerForecaster`` (one global network, ``GATEFORMER`` below: a small fixed setting, a fixed budget of
  ``--max-train-batches`` batches per epoch, early stopping on the validation windows only).
  ``ETSForecaster`` is not run: statsmodels fits each of the 49 series on 8,640 to 36,887 training rows with
  seasons up to 144, far beyond the CPU budget of this machine.

One row per model and data set, plus an ``all series`` row, is appended to ``benchmarks/results/panel.csv``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _protocol import append_rows  # noqa: E402

RESULTS = HERE / "results" / "panel.csv"
DATASETS = ["ETTh1", "ETTh2", "ETTm1", "ETTm2", "weather"]
SEASONS = {"h": 24, "15min": 96, "10min": 144}      # a day, in steps of the data's frequency
LOOKBACK = HORIZON = 96
STRIDE = 25  # prime to a day of 24, 96 and 144 steps: the origins visit every time of day
ALL = "all series"
ID, TIME, VALUE = "unique_id", "time", "y"
FIELDS = ["timestamp", "dataset", "model", "n_series", "mase", "mse", "mae", "n_windows", "stride", "horizon",
          "lookback", "cpu_s", "load_start", "git_rev", "setting"]

# The trained model: Gateformer at its estimator defaults' size (one layer, d_model 64, patches of 8), trained
# globally on the univariate windows of all 49 series. A batch of 256 windows and a learning rate of 1e-3 halved
# every epoch; at most --max-epochs epochs of --max-train-batches batches each (a fixed budget; each epoch draws
# its batches at random from every training window), early stopping on the validation windows (patience 2).
GATEFORMER = dict(d_model=64, n_heads=4, d_ff=128, e_layers=1, patch_len=8, stride=8, dropout=0.1,
                  learning_rate=1e-3, lr_schedule="halving", batch_size=256, patience=2)


class PanelData(NamedTuple):
    """The long frames of the panel and where each series' splits lie on its (aligned) time axis."""

    fit: pd.DataFrame       # each series' train + validation rows: what every estimator is fitted on
    full: pd.DataFrame      # each series' rows up to the end of its test split: what the backtests read
    train: pd.DataFrame     # each series' training rows: the MASE scale
    series: pd.DataFrame    # per series: id, dataset, variable, season, train_end, val_end, test_start, test_end
    val_steps: int          # the estimators' val_size: the longest validation split


def build_panel(tables: dict[str, tuple[pd.DataFrame, dict, int]], time_col: str | None = None) -> PanelData:
    """The panel of every variable of ``tables`` ``{data set: (wide frame, split bounds, season)}``.

    Each numeric column other than ``time_col`` becomes the series ``"<data set>/<column>"``, standardised by its
    training rows' mean and standard deviation. Its time is its row position plus ``T0 - train_end`` (``T0`` the
    largest training length), so that every training split ends at ``T0``; ``val_steps`` is the longest
    validation split, so an estimator's ``val_size=val_steps`` cuts the panel at ``T0``.
    """
    t0 = max(bounds["train"][1] for _, bounds, _ in tables.values())
    val_steps = max(bounds["val"][1] - bounds["val"][0] for _, bounds, _ in tables.values())
    parts, info_rows = [], []
    for name, (wide, bounds, season) in tables.items():
        (a, train_end), (val_start, val_end), (test_start, test_end) = bounds["train"], bounds["val"], bounds["test"]
        assert a == 0 and val_start == train_end and test_start == val_end and test_end <= len(wide), (name, bounds)
        shift = t0 - train_end
        columns = [c for c in wide.columns if c != time_col and pd.api.types.is_numeric_dtype(wide[c])]
        for column in columns:
            values = wide[column].to_numpy(dtype=np.float64)[:test_end]
            mean, std = values[:train_end].mean(), values[:train_end].std()
            std = std if std > 0 else 1.0
            sid = f"{name}/{column}"
            parts.append(pd.DataFrame({ID: sid, TIME: np.arange(test_end) + shift, VALUE: (values - mean) / std}))
            info_rows.append({ID: sid, "dataset": name, "variable": column, "season": season,
                              "train_end": train_end + shift, "val_end": val_end + shift,
                              "test_start": test_start + shift, "test_end": test_end + shift})
    full = pd.concat(parts, ignore_index=True)
    series = pd.DataFrame(info_rows)
    ends = full[ID].map(series.set_index(ID)["val_end"])
    trains = full[ID].map(series.set_index(ID)["train_end"])
    return PanelData(fit=full[full[TIME] < ends].reset_index(drop=True), full=full,
                     train=full[full[TIME] < trains].reset_index(drop=True), series=series, val_steps=val_steps)


def load_panel(names, data_dir) -> PanelData:
    """:func:`build_panel` of the registered data sets ``names`` (standard splits, a day as the season)."""
    from tsformers.datasets import info, load_dataset, split_bounds
    tables = {}
    for name in names:
        wide = load_dataset(name, data_dir=data_dir)
        meta = info(name)
        tables[meta["name"]] = (wide.drop(columns=[meta["time_col"]]), split_bounds(name, len(wide)),
                                SEASONS[meta["freq"]])
    return build_panel(tables)


def test_windows(panel: PanelData, horizon: int = HORIZON, stride: int = STRIDE) -> dict[str, int]:
    """Per data set, the number of test windows per series: origins ``test_end - horizon - stride * k`` at or after
    the test split's start."""
    out = {}
    for name, group in panel.series.groupby("dataset", sort=False):
        length = int((group["test_end"] - group["test_start"]).iloc[0])
        out[name] = (length - horizon) // stride + 1
    return out


def backtest_frame(panel: PanelData, dataset: str, context: int) -> pd.DataFrame:
    """The rows a data set's backtest reads: its series from ``context`` steps before the test split to its end."""
    series = panel.series[panel.series["dataset"] == dataset]
    rows = panel.full[panel.full[ID].isin(series[ID])]
    start = rows[ID].map(series.set_index(ID)["test_start"]) - context
    return rows[rows[TIME] >= start].reset_index(drop=True)


def backtests(estimator, panel: PanelData, *, horizon: int = HORIZON, stride: int = STRIDE,
              context: int | None = None) -> dict[str, pd.DataFrame]:
    """``{data set: backtest frame}`` of a fitted estimator over every data set's test windows."""
    counts = test_windows(panel, horizon, stride)
    context = estimator.lookback if context is None else context
    return {name: estimator.backtest(backtest_frame(panel, name, context), n_windows=n, step=stride)
            for name, n in counts.items()}


def check_same_windows(reference: pd.DataFrame, other: pd.DataFrame, what: str) -> None:
    """Refuse a backtest whose windows (series, cutoffs, steps, actual values) differ from the reference's."""
    keys = [ID, "cutoff", TIME, "h"]
    a, b = reference.sort_values(keys), other.sort_values(keys)
    same = len(a) == len(b) and all(np.array_equal(a[k].to_numpy(), b[k].to_numpy()) for k in keys) \
        and np.allclose(a["actual"].to_numpy(float), b["actual"].to_numpy(float), rtol=0, atol=1e-6)
    if not same:
        raise AssertionError(f"{what}: the backtest windows differ from the first model's")


def scores(frames: dict[str, pd.DataFrame], panel: PanelData) -> dict[str, dict]:
    """Per data set and over all series: MASE, MSE and MAE (see the module's docstring) and the windows scored."""
    from tsformers.metrics import evaluate
    per_series = []
    out = {}
    for name, frame in frames.items():
        season = int(panel.series.loc[panel.series["dataset"] == name, "season"].iloc[0])
        history = panel.train[panel.train[ID].isin(frame[ID].unique())]
        rows = evaluate(frame, by=ID, history=history, season=season)
        per_series.append(rows)
        pooled = evaluate(frame, history=history, season=season).iloc[0]
        out[name] = {"mase": float(pooled["mase"]), "mse": float(pooled["mse"]), "mae": float(pooled["mae"]),
                     "n_series": int(frame[ID].nunique()),
                     "n_windows": int(frame.drop_duplicates([ID, "cutoff"]).shape[0])}
    every = pd.concat(per_series, ignore_index=True)
    out[ALL] = {"mase": float(every["mase"].mean()), "mse": float(every["mse"].mean()),
                "mae": float(every["mae"].mean()), "n_series": len(every),
                "n_windows": sum(v["n_windows"] for v in out.values())}
    return out


# -- the models ------------------------------------------------------------------------------------------------

def _common(panel: PanelData) -> dict:
    return dict(horizon=HORIZON, time_col=TIME, id_col=ID, target=VALUE, val_size=int(panel.val_steps), scaler=None)


def run_model(model: str, panel: PanelData, args) -> tuple[dict[str, pd.DataFrame], str]:
    """Fit ``model`` and backtest it on every data set: ``({data set: backtest}, setting)``."""
    from tsformers import GateformerForecaster, GBMForecaster, LinearForecaster, NaiveForecaster, \
        SeasonalNaiveForecaster
    common = _common(panel)
    if model in ("seasonal_naive", "linear_per_dataset"):  # one model per data set, fitted on its series only
        frames, settings = {}, []
        for name, season in panel.series.groupby("dataset", sort=False)["season"].first().items():
            part = _subset(panel, name)           # its own validation split: val_size is its length
            if model == "seasonal_naive":         # the season is a day in that data set's steps
                lookback = max(LOOKBACK, int(season))
                est = SeasonalNaiveForecaster(lookback=lookback, season_length=int(season), **_common(part))
                settings.append(f"{name} {season}" + (f" (window {lookback})" if lookback != LOOKBACK else ""))
            else:
                est = LinearForecaster(lookback=LOOKBACK, **_common(part))
            est.fit(part.fit)
            if model == "linear_per_dataset":
                settings.append(f"{name} {est.alpha_:g}")
            frames[name] = backtests(est, part)[name]
        if model == "seasonal_naive":
            return frames, "season " + ", ".join(settings)
        return frames, ("one ridge map per data set, penalty " + ", ".join(settings)
                        + " (chosen on its validation windows)")
    if model == "naive":
        est, setting = NaiveForecaster(lookback=LOOKBACK, **common), ""
    elif model == "linear":
        est = LinearForecaster(lookback=LOOKBACK, **common)
    elif model == "gbm":
        est = GBMForecaster(lookback=LOOKBACK, random_state=args.seed, **common)
    elif model == "gateformer":
        est = GateformerForecaster(linear_base=False, ensemble_size=1, lookback=LOOKBACK, max_epochs=args.max_epochs, random_state=args.seed,
                                   trainer_kwargs={"limit_train_batches": args.max_train_batches},
                                   **GATEFORMER, **common)
    else:
        raise SystemExit(f"unknown model {model!r}; choose from {MODELS}")
    est.fit(panel.fit)
    if model == "linear":
        setting = f"one ridge map, penalty {est.alpha_:g} (chosen on the validation windows)"
    elif model == "gbm":
        setting = f"one global model, {est.n_trees_} trees, {est.max_samples:,} sampled rows"
    elif model == "gateformer":
        setting = (json.dumps(GATEFORMER, sort_keys=True)
                   + f"; {args.max_train_batches} batches/epoch, ≤{args.max_epochs} epochs, seed {args.seed}"
                   + _epochs_note(est.training_log_))
    return backtests(est, panel), setting


def _epochs_note(log: list[dict]) -> str:
    """How many epochs ran and which one's weights were kept (the lowest validation loss)."""
    val = [row.get("val_loss", np.nan) for row in log]
    if not log or np.isnan(val).all():
        return ""
    return f"; {len(log)} epochs run, best {int(np.nanargmin(val)) + 1} (validation MSE {np.nanmin(val):.4f})"


def _subset(panel: PanelData, dataset: str) -> PanelData:
    """The panel of one data set's series, its ``val_steps`` that data set's validation split."""
    keep = panel.series[panel.series["dataset"] == dataset]
    pick = lambda f: f[f[ID].isin(keep[ID])].reset_index(drop=True)  # noqa: E731
    return PanelData(fit=pick(panel.fit), full=pick(panel.full), train=pick(panel.train), series=keep,
                     val_steps=int((keep["val_end"] - keep["train_end"]).max()))


MODELS = ["naive", "seasonal_naive", "linear", "linear_per_dataset", "gbm", "gateformer"]


def main(argv=None) -> int:
    from long_horizon import default_data_dir, git_rev
    rev = git_rev()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", "--dataset", nargs="+", default=DATASETS)
    p.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    p.add_argument("--data-dir", default=default_data_dir())
    p.add_argument("--max-epochs", type=int, default=8)
    p.add_argument("--max-train-batches", type=int, default=500, help="training batches per epoch (Gateformer)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    panel = load_panel(args.datasets, args.data_dir)
    print(f"{len(panel.series)} series, windows per series {test_windows(panel)}, val_size {panel.val_steps}",
          flush=True)
    reference = None
    for model in args.models:
        load = os.getloadavg()[0]
        started = time.process_time()
        frames, setting = run_model(model, panel, args)
        cpu = time.process_time() - started
        if reference is None:
            reference = frames
        for name in frames:
            check_same_windows(reference[name], frames[name], f"{model} on {name}")
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        rows = []
        for name, s in scores(frames, panel).items():
            rows.append({"timestamp": stamp, "dataset": name, "model": model, "n_series": s["n_series"],
                         "mase": s["mase"], "mse": s["mse"], "mae": s["mae"], "n_windows": s["n_windows"],
                         "stride": STRIDE, "horizon": HORIZON, "lookback": LOOKBACK, "cpu_s": cpu,
                         "load_start": load, "git_rev": rev, "setting": setting})
            print(f"{model:<15} {name:<11} MASE {s['mase']:.3f}  MSE {s['mse']:.3f}  MAE {s['mae']:.3f}  "
                  f"windows {s['n_windows']}", flush=True)
        print(f"{model}: {cpu:.0f} CPU s; {setting}", flush=True)
        append_rows(args.out, rows, FIELDS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
