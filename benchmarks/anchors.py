"""Anchors from statsforecast and mlforecast on the grid's test windows: AutoETS, AutoTheta, LightGBM.

    .venv/bin/python benchmarks/anchors.py --dataset ETTh1 ETTh2 --horizons 96
    .venv/bin/python benchmarks/anchors.py --dataset ETTh1 --models autotheta --stride autotheta=7

Three well-known, cheap forecasters that a reader can rerun with their own libraries, each in its own
interpreter (``benchmarks/.venv-anchors``: statsforecast, mlforecast, lightgbm; created on first use by
``_anchorsenv.py``; no torch) through ``_anchors_worker.py``:

- ``autoets`` / ``autotheta``: statsforecast's ``AutoETS`` and ``AutoTheta`` with the season of the data's
  frequency (``baselines.SEASONS``: 24 for hourly data), one model per variable, fitted on the **training
  rows only** (``[0, train_end)``: the rows whose windows our estimators learn their parameters from; the
  validation rows serve them for early stopping only, and these models have nothing to stop). Every test
  window is then forecast with ``model.forward(y=history up to the window's end, h)``: the fitted
  parameters stay fixed and the state is run over the history, which is what
  ``StatsForecast.cross_validation(refit=False)`` does after its single fit (that call would fit on every
  row before the first test cutoff, train + val, hence ``forward`` directly). Unlike the networks, the
  state reads the whole history before the window, not only its ``lookback`` rows (the models' own way).
- ``lgbm``: mlforecast's ``MLForecast`` with ``lightgbm.LGBMRegressor`` (``n_jobs=1``), lags
  ``1..lookback`` (all 96) and the calendar features hour and day of week (none where the protocol counts the
  rows as integer steps: weather, whose file repeats a timestamp; ``time_axis``), one global model over the
  variables, fitted on the training rows, forecasting **recursively** (mlforecast's default); each test
  window is read from its own ``lookback`` rows only, like the networks. The configuration comes from
  ``LGBM_GRID`` (with or without first differences as target transform, 100 or 300 trees, LightGBM's
  defaults otherwise) by the MSE on the validation windows (every ``VAL_STRIDE``-th).

The protocol is ``_protocol.py``'s and ``baselines.py``'s: the training split's standard scaling
(``PanelScaler`` on the train rows), the test windows of ``baselines.windows`` (stride 1, the first input
window starting ``lookback`` rows before the test split), MSE, MAE and MASE over all windows, steps and
variables on the scaled data, scored by ``baselines.scored_in_chunks``. Where a model is too costly for
every stride-1 window (``AutoTheta.forward`` re-runs its seasonal decomposition over the whole history, ~0.1
CPU s per window and variable: ~36 CPU min for the 2,785 ETTh windows) it reads every ``stride``-th window
(``STRIDES``, or ``--stride model=s``); the ``setting`` column then says so and gives the linear
baseline's MSE on the same subset, so the comparison stays like for like. The stride is raised to the next
one prime to the data's season (``season_stride``: 7 stays 7 on hourly data, becomes 8 on Exchange's season of
7), so the cutoffs visit every step of the cycle rather than one phase of it.

Rows go to ``benchmarks/results/anchors.csv`` (the columns of ``baselines.csv``; ``cpu_s`` is the
worker's CPU time for fit + validation + every forecast, one thread, imports excluded).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _anchorsenv import ANCHORS_WORKER, ensure_anchors_venv  # noqa: E402
from _nfenv import run_worker  # noqa: E402
from _protocol import append_rows, load_protocol_data, mase_scale  # noqa: E402
from baselines import RIDGE_GRID, SEASONS, ChannelIndependentRidge, scored_in_chunks, windows  # noqa: E402
from long_horizon import default_data_dir, git_rev  # noqa: E402

from tsformers.data.scaling import PanelScaler  # noqa: E402
from tsformers.datasets import info, load_dataset  # noqa: E402

RESULTS = HERE / "results" / "anchors.csv"
FIELDS = ["timestamp", "dataset", "horizon", "lookback", "model", "mse", "mae", "n_windows", "setting", "cpu_s",
          "git_rev", "mase", "versions"]
MODELS = {"autoets": ("statsforecast", "AutoETS"), "autotheta": ("statsforecast", "AutoTheta"),
          "lgbm": ("mlforecast", "LightGBM")}
STRIDES = {"autoets": 1, "autotheta": 7, "lgbm": 1}
VAL_STRIDE = 7
LGBM_GRID = [{"differences": d, "n_estimators": n} for d in (False, True) for n in (100, 300)]


def strided(n_windows: int, stride: int) -> np.ndarray:
    """The indices of the windows read at ``stride``: 0, stride, 2 * stride, ... below ``n_windows``."""
    if stride < 1:
        raise ValueError(f"stride must be at least 1, got {stride}")
    return np.arange(0, n_windows, stride)


def cutoffs(first: int, index: np.ndarray) -> list[int]:
    """The cutoff (row of the first target) of each window ``index``, the first window's being ``first``."""
    return [int(first + i) for i in index]


def window_setting(stride: int, n_windows: int, linear_mse: float | None = None) -> str:
    """The ``setting`` text of a strided run (empty at stride 1)."""
    if stride == 1:
        return ""
    text = f"stride {stride} ({len(strided(n_windows, stride))} of {n_windows} windows"
    return text + (f"; linear on them MSE {linear_mse:.4f})" if linear_mse is not None else ")")


def score(pred: np.ndarray, truth: np.ndarray, scale: np.ndarray) -> tuple[float, float, float]:
    """MSE, MAE and MASE of forecasts ``(W, H, N)`` against ``truth``, with ``baselines.scored_in_chunks``."""
    assert pred.shape == truth.shape, (pred.shape, truth.shape)
    return scored_in_chunks(lambda p: p, pred, truth, scale=scale)


def season_stride(stride: int, season: int) -> int:
    """The smallest stride at least ``stride`` that shares no factor with ``season``.

    A stride with a common factor (7 on a weekly season of 7, 12 on a daily one of 24) puts every cutoff on a
    few phases of the cycle, and the strided windows would score a different mix of hours than the full set.
    """
    if stride < 1:
        raise ValueError(f"stride must be at least 1, got {stride}")
    while stride > 1 and math.gcd(stride, season) > 1:
        stride += 1
    return stride


def parse_strides(items: list[str]) -> dict:
    out = dict(STRIDES)
    for item in items:
        model, _, value = item.partition("=")
        if model not in MODELS or not value:
            raise SystemExit(f"--stride takes model=s with a model of {sorted(MODELS)}, got {item!r}")
        out[model] = int(value)
    return out


def time_axis(times: np.ndarray, freq: str) -> tuple[np.ndarray, str | int, bool]:
    """The worker's time axis: ``(times, freq, calendar)``.

    Timestamps (int64 ns) at the data's frequency, with calendar features; or, where the rows repeat or reorder
    a timestamp (``weather.csv`` repeats one), the rows' positions as integer steps of frequency 1 and no
    calendar, as the protocol reads such rows (``_protocol.load_protocol_data``): mlforecast refuses repeated
    timestamps, and an hour of the day read off them would be wrong from the repeat on.
    """
    stamps = pd.Index(times)
    if isinstance(stamps, pd.DatetimeIndex) and stamps.is_unique and stamps.is_monotonic_increasing:
        return times.astype("datetime64[ns]").astype(np.int64), freq, True
    return np.arange(len(times), dtype=np.int64), 1, False


def prepare(name: str, lookback: int, horizon: int, data_dir):
    """The scaled rows up to the test split's end, their times, and the baselines' test windows over them."""
    data = load_protocol_data(name, data_dir, lookback)
    time_col = info(name)["time_col"]
    columns = [c for c in data.fit_frame.columns if c != time_col]
    train_end, val_end = data.bounds["train"][1], data.bounds["val"][1]
    test_start, test_end = data.bounds["test"]
    fit_values = data.fit_frame[columns].to_numpy(dtype=np.float64)
    scaler = PanelScaler.fit(fit_values[None, :train_end])
    full = load_dataset(name, data_dir=data_dir).iloc[:test_end]
    values = scaler.transform(full[columns].to_numpy(dtype=np.float64)[None])[0]
    times, freq, calendar = time_axis(full[time_col].to_numpy(), info(name)["freq"])
    test_scaled = scaler.transform(data.test_frame[columns].to_numpy(dtype=np.float64)[None])[0]
    x_test, y_test = windows(test_scaled, lookback, horizon)
    first = test_start                       # the first test window's cutoff
    assert np.allclose(values[first - lookback:], test_scaled), "the worker's rows must be the test windows' rows"
    x_train, y_train = windows(values[:train_end], lookback, horizon)
    x_val, y_val = windows(values[train_end - lookback:val_end], lookback, horizon)
    return dict(values=values, times=times, calendar=calendar, columns=columns,
                train_end=train_end, val_end=val_end, first=first, x_test=x_test, y_test=y_test,
                x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val,
                scale=mase_scale(values[:train_end]), season=SEASONS[info(name)["freq"]], freq=freq)


def linear_on(prep: dict, index: np.ndarray) -> float:
    """The linear baseline (``baselines.py``'s ridge, penalty chosen on the validation windows) on windows ``index``."""
    ridge = ChannelIndependentRidge(prep["x_train"], prep["y_train"])
    val = {p: scored_in_chunks(ridge.solve(p).predict, prep["x_val"], prep["y_val"])[0] for p in RIDGE_GRID}
    ridge.solve(min(val, key=val.get))
    return scored_in_chunks(ridge.predict, prep["x_test"][index], prep["y_test"][index])[0]


def run_model(python, model: str, prep: dict, horizon: int, lookback: int, stride: int, workdir: Path,
              log=None) -> dict:
    n_windows = len(prep["y_test"])
    index = strided(n_windows, stride)
    library, _ = MODELS[model]
    spec = {"task": library, "model": model, "data": str(workdir / "data.npz"), "out": str(workdir / f"{model}.npy"),
            "horizon": horizon, "lookback": lookback, "train_end": prep["train_end"], "season": prep["season"],
            "freq": prep["freq"], "calendar": prep["calendar"], "cutoffs": cutoffs(prep["first"], index),
            "threads": 1}
    if model == "lgbm":
        val_first = prep["train_end"]
        spec["val_cutoffs"] = cutoffs(val_first, strided(len(prep["y_val"]), VAL_STRIDE))
        spec["grid"] = LGBM_GRID
    result = run_worker(python, ANCHORS_WORKER, spec, log=log)
    pred = np.load(spec["out"])
    mse, mae, mase = score(pred, prep["y_test"][index], prep["scale"])
    linear = linear_on(prep, index) if stride > 1 else None
    setting = window_setting(stride, n_windows, linear)
    if model == "lgbm":
        chosen = result["chosen"]
        grid = ", ".join(f"{'differences' if c['differences'] else 'levels'} {c['n_estimators']}: {v:.4f}"
                         for c, v in zip(result["grid"], result["val_mse"]))
        features = "hour, day of week" if prep["calendar"] else "no calendar (integer steps)"
        detail = (f"recursive, lags 1..{lookback} + {features}; chosen "
                  f"{'first differences' if chosen['differences'] else 'levels'}, {chosen['n_estimators']} trees "
                  f"by validation MSE (every {VAL_STRIDE}th validation window; {grid})")
    else:
        detail = f"season {prep['season']}; fit on train, forward; chosen: {', '.join(result['chosen'])}"
    setting = "; ".join(p for p in (setting, detail) if p)
    return {"model": model, "mse": mse, "mae": mae, "mase": mase, "n_windows": len(index), "setting": setting,
            "cpu_s": float(result["cpu_s"]), "worker": result}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", nargs="+", default=["ETTh1", "ETTh2"])
    p.add_argument("--horizons", nargs="+", type=int, default=[96])
    p.add_argument("--lookback", type=int, default=96)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--stride", nargs="*", default=[], help="model=s: read every s-th test window (default STRIDES)")
    p.add_argument("--data-dir", default=default_data_dir())
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--log", type=Path, default=None, help="where the workers' output goes")
    args = p.parse_args(argv)
    strides = parse_strides(args.stride)
    python = ensure_anchors_venv()
    rev = git_rev()
    for name in args.dataset:
        for horizon in args.horizons:
            prep = prepare(name, args.lookback, horizon, args.data_dir)
            with tempfile.TemporaryDirectory() as tmp:
                np.savez(Path(tmp) / "data.npz", values=prep["values"], times=prep["times"])
                for model in args.models:
                    stride = season_stride(strides[model], prep["season"])
                    if stride != strides[model]:
                        print(f"{name}: stride {strides[model]} shares a factor with the season {prep['season']}; "
                              f"{model} reads every {stride}th window", flush=True)
                    row = run_model(python, model, prep, horizon, args.lookback, stride, Path(tmp), args.log)
                    worker = row.pop("worker")
                    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
                    row = {"timestamp": stamp, "dataset": name, "horizon": horizon, "lookback": args.lookback,
                           "git_rev": rev, "versions": json.dumps(worker.get("versions", {}), sort_keys=True),
                           **row}
                    append_rows(args.out, [row], FIELDS)
                    print(f"{name:<7} {horizon:>4} {model:<10} MSE {row['mse']:.4f}  MAE {row['mae']:.4f}  "
                          f"MASE {row['mase']:.4f}  windows {row['n_windows']}  CPU {row['cpu_s']:.0f} s  "
                          f"{row['setting']}  {json.dumps(worker.get('versions', {}))}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
