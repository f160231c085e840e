"""The baselines of the long-horizon grid, on the windows the estimators are scored on.

    .venv/bin/python benchmarks/baselines.py                       # every data set and horizon, ~1 CPU min
    .venv/bin/python benchmarks/baselines.py --dataset ETTh1 --horizons 96

Three forecasts that cost nothing to train, so every table can say what a model adds over them:

- ``last_value``: every step of the horizon repeats the window's last observation.
- ``seasonal_naive``: step ``h`` repeats the value one season before it (the season of the data's
  frequency: a day of hours or 15-minute steps, a day of 10-minute steps, a week of days or of weeks
  ... see ``SEASONS``), the last observed season tiled over longer horizons.
- ``linear``: a linear map from the window to the horizon, shared by every variable (channel
  independent) and normalised by the window's last value (NLinear / RLinear style), fitted in closed
  form by ridge regression on the training windows; the ridge penalty is chosen on the validation
  windows from ``RIDGE_GRID``, then the test windows are read once.
- ``linear_cycle``: the same map on the values less their seasonal cycle (the season above: each
  variable's mean at each phase of it over the training rows, added back onto the forecast), as
  ``LinearForecaster(cycle=...)`` and Gateformer's default ``cycle="auto"`` take it out
  (``tsformers.data.cycle``): what the cycle alone buys a linear map.

The protocol is ``_protocol.py``'s: the training split's standard scaling, every stride-1 window of
the test split (its first input window starting ``lookback`` rows before it), MSE and MAE over all
windows, steps and variables on the scaled data. Rows go to ``benchmarks/results/baselines.csv``.
"""
from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _protocol import append_rows, load_protocol_data, mase_scale  # noqa: E402
from long_horizon import default_data_dir, git_rev  # noqa: E402

from tsformers.data.cycle import SeasonalCycle  # noqa: E402
from tsformers.data.scaling import PanelScaler  # noqa: E402
from tsformers.datasets import info, load_dataset  # noqa: E402

RESULTS = HERE / "results" / "baselines.csv"
FIELDS = ["timestamp", "dataset", "horizon", "lookback", "model", "mse", "mae", "n_windows", "setting", "cpu_s",
          "git_rev", "mase"]
SEASONS = {"h": 24, "15min": 96, "10min": 144, "D": 7, "W-TUE": 52}
RIDGE_GRID = [1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7]
DATASETS = ["ETTh1", "ETTh2", "ETTm1", "ETTm2", "weather", "exchange"]


def windows(values: np.ndarray, lookback: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Every stride-1 window of ``values`` ``(T, N)``: inputs ``(W, L, N)`` and targets ``(W, H, N)`` (views)."""
    w = np.lib.stride_tricks.sliding_window_view(values, lookback + horizon, axis=0)   # (W, N, L + H)
    return w[:, :, :lookback].transpose(0, 2, 1), w[:, :, lookback:].transpose(0, 2, 1)


def last_value(x: np.ndarray, horizon: int, **_) -> np.ndarray:
    return np.repeat(x[:, -1:], horizon, axis=1)


def seasonal_naive(x: np.ndarray, horizon: int, *, season: int, **_) -> np.ndarray:
    """``y[t + h] = x[t + h - season * k]`` with the smallest ``k`` that lands inside the window."""
    steps = np.arange(horizon)
    back = season - steps % season              # how far before the window's end the repeated value lies
    return x[:, x.shape[1] - back]


class ChannelIndependentRidge:
    """Ridge regression from the last-value-normalised window ``(L,)`` to the horizon ``(H,)``, one map for all variables."""

    def __init__(self, x: np.ndarray, y: np.ndarray, chunk: int = 4096):
        lookback, horizon = x.shape[1], y.shape[1]
        self.gram = np.zeros((lookback + 1, lookback + 1))        # + 1: the intercept
        self.cross = np.zeros((lookback + 1, horizon))
        for start in range(0, len(x), chunk):                      # the Gram matrices, a chunk of windows at a time
            a, b = self._design(x[start:start + chunk]), self._targets(x[start:start + chunk], y[start:start + chunk])
            self.gram += a.T @ a
            self.cross += a.T @ b
        self.weights = None

    @staticmethod
    def _design(x: np.ndarray) -> np.ndarray:
        centred = x - x[:, -1:]                                    # (B, L, N)
        rows = centred.transpose(0, 2, 1).reshape(-1, x.shape[1])   # (B * N, L): every variable a sample
        return np.hstack([rows, np.ones((len(rows), 1))])

    @staticmethod
    def _targets(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (y - x[:, -1:]).transpose(0, 2, 1).reshape(-1, y.shape[1])

    def solve(self, penalty: float) -> "ChannelIndependentRidge":
        ridge = penalty * np.eye(len(self.gram))
        ridge[-1, -1] = 0.0                                        # the intercept is not shrunk
        self.weights = np.linalg.solve(self.gram + ridge, self.cross)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        out = self._design(x) @ self.weights                       # (B * N, H)
        b, n = x.shape[0], x.shape[2]
        return out.reshape(b, n, -1).transpose(0, 2, 1) + x[:, -1:]


def linear_cycle(fit_scaled: np.ndarray, test_scaled: np.ndarray, train_end: int, test_first_row: int, season: int,
                 lookback: int, horizon: int, scale: np.ndarray) -> tuple:
    """The ridge map on the values less each variable's phase means over the training rows (``season`` steps a
    cycle, phases counted from row 0; the test rows start at row ``test_first_row``). The cycle is added back
    onto the forecast and lies in the truth alike, so the errors on the values less it are the forecast's."""
    profile = SeasonalCycle.fit(fit_scaled[None, :train_end], 0, season)
    fit_rest = fit_scaled - profile.at(0, len(fit_scaled))[0]
    test_rest = test_scaled - profile.at(test_first_row, len(test_scaled))[0]
    x_train, y_train = windows(fit_rest[:train_end], lookback, horizon)
    x_val, y_val = windows(fit_rest[train_end - lookback:], lookback, horizon)
    ridge = ChannelIndependentRidge(x_train, y_train)
    val_mse = {penalty: scored_in_chunks(ridge.solve(penalty).predict, x_val, y_val)[0] for penalty in RIDGE_GRID}
    chosen = min(val_mse, key=val_mse.get)
    return (*scored_in_chunks(ridge.solve(chosen).predict, *windows(test_rest, lookback, horizon), scale=scale),
            f"ridge {chosen:g}, cycle {season} (validation MSE {val_mse[chosen]:.4f})")


def errors(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    err = pred - truth
    return float(np.mean(err ** 2)), float(np.mean(np.abs(err)))


def scored_in_chunks(forecast, x: np.ndarray, y: np.ndarray, chunk: int = 1024,
                     scale: np.ndarray | None = None) -> tuple[float, ...]:
    """MSE and MAE of ``forecast`` over the windows ``x -> y`` ``(W, H, N)``, and the MASE with ``scale`` ``(N,)``."""
    sq = ab = scaled = 0.0
    for start in range(0, len(x), chunk):
        err = forecast(x[start:start + chunk]) - y[start:start + chunk]
        sq += float((err ** 2).sum())
        ab += float(np.abs(err).sum())
        if scale is not None:
            scaled += float((np.abs(err) / scale).sum())
    return (sq / y.size, ab / y.size) if scale is None else (sq / y.size, ab / y.size, scaled / y.size)


def seasonal_windows(name: str, data_dir, scaler, columns, season: int, lookback: int, horizon: int,
                     x_test: np.ndarray, y_test: np.ndarray):
    """The seasonal naive's test windows: the same targets, read from at least a season of history.

    With ``lookback`` shorter than the season (ILI: 36 weeks, a season of 52) the value one season back
    lies before the window; the test split's rows are then read with ``season`` rows of context instead,
    so the forecast targets (and their number) are the same as every other model's.
    """
    if lookback >= season:
        return x_test, y_test
    longer = load_dataset(name, data_dir=data_dir, split="test", context=season)[columns].to_numpy(dtype=np.float64)
    x, y = windows(scaler.transform(longer[None])[0], season, horizon)
    assert y.shape == y_test.shape and np.allclose(y, y_test), "the seasonal windows must forecast the same targets"
    return x, y


def run_dataset(name: str, horizons: list[int], lookback: int, data_dir) -> list[dict]:
    data = load_protocol_data(name, data_dir, lookback)
    columns = [c for c in data.fit_frame.columns if c != info(name)["time_col"]]
    train_end = data.bounds["train"][1]
    fit_values = data.fit_frame[columns].to_numpy(dtype=np.float64)
    scaler = PanelScaler.fit(fit_values[None, :train_end])                      # the estimators' scaling
    fit_scaled = scaler.transform(fit_values[None])[0]
    test_scaled = scaler.transform(data.test_frame[columns].to_numpy(dtype=np.float64)[None])[0]
    season = SEASONS[info(name)["freq"]]
    scale = mase_scale(fit_scaled[:train_end])       # per variable, the training rows' mean one-step change
    stamp, rev = datetime.now(timezone.utc).isoformat(timespec="seconds"), git_rev()
    rows = []
    for horizon in horizons:
        x_test, y_test = windows(test_scaled, lookback, horizon)
        x_train, y_train = windows(fit_scaled[:train_end], lookback, horizon)
        # validation windows: their inputs may reach back into the training rows, as the estimators' do
        x_val, y_val = windows(fit_scaled[train_end - lookback:], lookback, horizon)
        results = {}
        started = time.process_time()
        results["last_value"] = (*scored_in_chunks(lambda x: last_value(x, horizon), x_test, y_test, scale=scale),
                                 "")
        results["seasonal_naive"] = (*scored_in_chunks(lambda x: seasonal_naive(x, horizon, season=season),
                                                       *seasonal_windows(name, data_dir, scaler, columns, season,
                                                                         lookback, horizon, x_test, y_test),
                                                       scale=scale),
                                     f"season {season}")
        ridge = ChannelIndependentRidge(x_train, y_train)
        val_mse = {penalty: scored_in_chunks(ridge.solve(penalty).predict, x_val, y_val)[0] for penalty in RIDGE_GRID}
        chosen = min(val_mse, key=val_mse.get)
        results["linear"] = (*scored_in_chunks(ridge.solve(chosen).predict, x_test, y_test, scale=scale),
                             f"ridge {chosen:g} (validation MSE {val_mse[chosen]:.4f})")
        results["linear_cycle"] = linear_cycle(fit_scaled, test_scaled, train_end, data.bounds["test"][0] - lookback,
                                               season, lookback, horizon, scale)
        seconds = time.process_time() - started
        for model, (mse, mae, mase, setting) in results.items():
            rows.append({"timestamp": stamp, "dataset": name, "horizon": horizon, "lookback": lookback,
                         "model": model, "mse": mse, "mae": mae, "n_windows": len(x_test), "setting": setting,
                         "cpu_s": seconds, "git_rev": rev, "mase": mase})
            print(f"{name:<9} {horizon:>4} {model:<15} MSE {mse:.4f}  MAE {mae:.4f}  MASE {mase:.4f}  {setting}",
                  flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", nargs="+", default=DATASETS)
    p.add_argument("--horizons", nargs="+", type=int, default=[96, 192, 336, 720])
    p.add_argument("--lookback", type=int, default=96)
    p.add_argument("--data-dir", default=default_data_dir())
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    for name in args.dataset:
        append_rows(args.out, run_dataset(name, args.horizons, args.lookback, args.data_dir), FIELDS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
