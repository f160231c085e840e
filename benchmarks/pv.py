"""PV benchmark: day-ahead AC power of the Golden, CO plant with weather covariates.

PV-Client against persistence (the same hour yesterday), clear-sky persistence, a
gradient-boosted regression on the hour's weather, a SARIMAX with the weather as
exogenous regressors, and Gateformer; MSE and MAE (kW^2, kW) and nMAE / nRMSE
(% of the 6 kW capacity) per lead time, written to ``benchmarks/results/pv.csv``.

    .venv/bin/python benchmarks/pv.py --threads 1          # 3 seeds, about 5 min of CPU

The setting
-----------
- Data: ``load_dataset("pv_golden")``: hourly, local standard time, NSRDB weather
  aligned by time (t + 7 h), gaps filled (see ``datasets/README.md``); power in kW.
  Split 70/10/20 by time. Every model sees the train + val rows only; the test
  origins are every ``--stride``-th hour of the test part (stride 1: all of them).
- Horizon 24 h from lookback 48 h: PV-Client's setting (two days of history, one day
  ahead; the paper's 192 -> 96 steps of 15 minutes) in hours.
- Weather: GHI, DNI, DHI, temperature, relative humidity (five factors, as PV-Client
  feeds five). They are *known-future* covariates, read over the forecast day:
  NSRDB's satellite-derived actuals stand in for a weather forecast, so every model
  that uses them is an upper bound of what a real day-ahead forecast would reach.
  The row ``pvclient_past_weather`` uses the weather history only.
- Forecasts of every model are clipped to [0, capacity] (PV-Client does it itself;
  the others get the same clip so that it is not what separates them). The truth
  is the measured power, small negative night values included.
- ``gbm``: what a practitioner runs for this job (the source study of the Golden data uses
  XGBoost): scikit-learn's ``HistGradientBoostingRegressor`` of the hour's power on the
  hour's NSRDB weather (every weather column of the data set: irradiances and their
  clear-sky values, temperature, dew point, humidity, pressure, wind, precipitable water,
  cloud type, solar zenith angle, albedo, aerosols) plus hour of day and day of year,
  fitted on the train + val hours; night hours (solar zenith angle >= 90 degrees) are set
  to zero. It reads the weather of the forecast hour, as the networks do, so it is the
  same upper bound.
- ``clearsky_persistence``: the standard stronger persistence in solar forecasting,
  yesterday's clear-sky index times today's clear-sky power. Clear-sky power is taken
  proportional to NSRDB's clear-sky GHI, so the forecast is y[t - 24] * csGHI[t] /
  csGHI[t - 24] (the same hour yesterday where csGHI[t - 24] is below 10 W/m^2).
- SARIMAX(1,0,1)x(1,0,1,24) with a constant and the five weather columns: the
  parameters are fitted once, by maximum likelihood, on the last ``--sarimax-fit-hours``
  hours of the training part (90 days by default: the full 6221 hours cost several
  minutes of CPU for no visible gain); each forecast filters the 14 days before its
  origin with those parameters, then forecasts 24 h with the future weather.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tsformers.data.windows import lead_future
from tsformers.datasets import info, load_dataset
from tsformers.estimators.gateformer import GateformerForecaster
from tsformers.estimators.pvclient import PVClientForecaster
from tsformers.metrics import mae, mse, nmae, nrmse

REPO = Path(__file__).resolve().parents[1]
DATASET = "pv_golden"
LOOKBACK, HORIZON = 48, 24
WEATHER = ["GHI", "DNI", "DHI", "Temperature", "Relative Humidity"]
SARIMAX_CONTEXT = 14 * 24
CLEARSKY_MIN = 10.0  # W/m^2: below it yesterday's clear-sky index is too noisy to carry over


def default_data_dir() -> str:
    return os.environ.get("TSFORMERS_DATA") or str(REPO.parent / "shared" / "datasets")


def load(data_dir: str):
    """The full frame with power in kW, the index where the test part starts, the val length, the capacity."""
    full = load_dataset(DATASET, data_dir=data_dir)
    parts = {s: len(load_dataset(DATASET, data_dir=data_dir, split=s)) for s in ("train", "val", "test")}
    target = info(DATASET)["target"]
    every_weather = [c for c in info(DATASET)["pv"]["weather"] if c not in WEATHER]
    frame = full[["timestamp", target, *WEATHER, *every_weather]].rename(columns={target: "power"})
    frame["power"] = frame["power"] / 1000.0                                  # W -> kW
    capacity = info(DATASET)["pv"]["capacity_kw"]
    return frame, parts["train"], parts["val"], capacity


# -- the models: each returns forecasts (n_origins, HORIZON) in kW --------------------------

def persistence(frame: pd.DataFrame, origins: np.ndarray, **_) -> np.ndarray:
    """The same hour yesterday: y[o + h] = y[o + h - 24], all known at the origin o."""
    y = frame["power"].to_numpy()
    return np.stack([y[o - 24:o - 24 + HORIZON] for o in origins])


def clearsky_persistence(frame: pd.DataFrame, origins: np.ndarray, **_) -> np.ndarray:
    """Yesterday's clear-sky index times today's clear-sky power (clear-sky power taken proportional to csGHI)."""
    y, clear = frame["power"].to_numpy(), frame["Clearsky GHI"].to_numpy()
    out = []
    for o in origins:
        t = np.arange(o, o + HORIZON)
        yesterday, clear_then, clear_now = y[t - 24], clear[t - 24], clear[t]
        ratio = np.divide(clear_now, clear_then, out=np.ones(HORIZON), where=clear_then >= CLEARSKY_MIN)
        out.append(np.where(clear_then >= CLEARSKY_MIN, yesterday * ratio, yesterday))
    return np.stack(out)


def gbm_features(frame: pd.DataFrame) -> np.ndarray:
    """Every weather column of the hour plus hour of day and day of year (the calendar of the local time)."""
    weather = [c for c in frame.columns if c not in ("timestamp", "power")]
    time = pd.to_datetime(frame["timestamp"])
    return np.column_stack([frame[weather].to_numpy(dtype=np.float64), time.dt.hour, time.dt.day_of_year])


def gbm(frame: pd.DataFrame, origins: np.ndarray, *, val_end: int, **_) -> np.ndarray:
    """``HistGradientBoostingRegressor`` of the hour's power on its weather and calendar; zero at night."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    x, y = gbm_features(frame), frame["power"].to_numpy()
    model = HistGradientBoostingRegressor(max_iter=500, learning_rate=0.05, random_state=0)
    model.fit(x[:val_end], y[:val_end])
    hourly = np.where(frame["Solar Zenith Angle"].to_numpy() >= 90.0, 0.0, model.predict(x))
    return np.stack([hourly[o:o + HORIZON] for o in origins])


def sarimax(frame: pd.DataFrame, origins: np.ndarray, *, train_end: int, fit_hours: int, **_) -> np.ndarray:
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    y, x = frame["power"].to_numpy(), frame[WEATHER].to_numpy()
    start = max(0, train_end - fit_hours)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter; the fit is checked by its test error
        fitted = SARIMAX(y[start:train_end], exog=x[start:train_end], order=(1, 0, 1),
                         seasonal_order=(1, 0, 1, 24), trend="c").fit(disp=False, maxiter=50)
        out = []
        for o in origins:
            applied = fitted.apply(y[o - SARIMAX_CONTEXT:o], exog=x[o - SARIMAX_CONTEXT:o])
            out.append(applied.forecast(HORIZON, exog=x[o:o + HORIZON]))
    return np.stack(out)


def network_forecasts(f, frame: pd.DataFrame, origins: np.ndarray) -> np.ndarray:
    """Every origin at once through the fitted network, as ``f.predict(history, future_df)`` would do one by one."""
    columns = f.schema_.variables
    n_future = len(f.schema_.future_covariates)
    scaled = f.scaler_.transform(frame[columns].to_numpy(dtype=np.float64)[None])           # (1, T, V)
    led = torch.from_numpy(lead_future(scaled, n_future, HORIZON).astype(np.float32))[0]     # (T, V)
    windows = led.unfold(0, f.lookback, 1).mT                                              # (T - L + 1, L, V)
    x = windows[torch.as_tensor(origins - f.lookback)]                                      # window ends at o - 1
    with torch.no_grad():
        out = torch.cat([f.network_(chunk)[..., :1] for chunk in x.split(512)])             # (n, H, 1)
    raw = out.double().numpy() * f.scaler_.scale[0, 0] + f.scaler_.mean[0, 0]             # power is variable 0
    return f._postprocess(raw)[..., 0]                                                     # (n, H)


def fit_network(estimator, frame: pd.DataFrame, val_end: int, val_steps: int):
    columns = ["timestamp", "power", *WEATHER]  # the networks read the five factors PV-Client was designed for
    return estimator.set_params(val_size=val_steps).fit(frame.iloc[:val_end][columns])


def pvclient(frame, origins, *, val_end, val_steps, capacity, max_epochs, seed, past_only=False, **_):
    roles = {"covariates": WEATHER} if past_only else {"future_covariates": WEATHER}
    # PV-Client's network defaults (n_heads 4, d_ff 128, 2 layers, dropout 0.1), Client's training defaults
    f = PVClientForecaster(horizon=HORIZON, lookback=LOOKBACK, target="power", capacity=capacity,
                           max_epochs=max_epochs, random_state=seed, **roles)
    f = fit_network(f, frame, val_end, val_steps)
    return network_forecasts(f, frame, origins), f


def gateformer(frame, origins, *, val_end, val_steps, capacity, max_epochs, seed, **_):
    # the estimator's defaults (the paper's ETTh1-96 setting: d_model 64, 4 heads, 1 layer, batch 8, lr 5e-4)
    f = GateformerForecaster(horizon=HORIZON, lookback=LOOKBACK, target="power", future_covariates=WEATHER,
                             max_epochs=max_epochs, random_state=seed)
    f = fit_network(f, frame, val_end, val_steps)
    return np.clip(network_forecasts(f, frame, origins), 0.0, capacity), f


MODELS = {
    "persistence": persistence,
    "clearsky_persistence": clearsky_persistence,
    "gbm": gbm,
    "sarimax": sarimax,
    "pvclient": pvclient,
    "pvclient_past_weather": lambda *a, **k: pvclient(*a, **k, past_only=True),
    "gateformer": gateformer,
}
TRAINED = {"pvclient", "pvclient_past_weather", "gateformer"}  # run once per seed; the others are deterministic


def per_lead_time(name: str, seed, forecast: np.ndarray, truth: np.ndarray, capacity: float, seconds: float,
                  epochs: int | None) -> list[dict]:
    rows = []
    for h in [*range(HORIZON), None]:
        sel = slice(None) if h is None else h
        t, p = truth[:, sel], forecast[:, sel]
        rows.append({"model": name, "seed": seed, "lead_hours": "all" if h is None else h + 1,
                     "mse": mse(t, p), "mae": mae(t, p), "nmae_pct": 100 * nmae(t, p, capacity),
                     "nrmse_pct": 100 * nrmse(t, p, capacity),
                     "n_windows": len(truth), "epochs": epochs, "cpu_seconds": round(seconds, 1)})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data-dir", default=default_data_dir(), help="folder with pv_golden_co_2020.csv")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--max-epochs", type=int, default=10, help="for the networks (Client's 10, patience 3)")
    p.add_argument("--stride", type=int, default=1, help="hours between test origins")
    p.add_argument("--sarimax-fit-hours", type=int, default=90 * 24)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="random_state of the trained models")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads; 0 keeps torch's default")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "pv.csv")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    frame, n_train, n_val, capacity = load(args.data_dir)
    val_end = n_train + n_val
    origins = np.arange(val_end, len(frame) - HORIZON + 1, args.stride)
    truth = np.stack([frame["power"].to_numpy()[o:o + HORIZON] for o in origins])
    print(f"{DATASET}: {len(frame)} h, train {n_train}, val {n_val}, {len(origins)} test origins, "
          f"lookback {LOOKBACK} h, horizon {HORIZON} h, capacity {capacity} kW, weather {WEATHER}")
    context = dict(train_end=n_train, val_end=val_end, val_steps=n_val, capacity=capacity,
                   max_epochs=args.max_epochs, fit_hours=args.sarimax_fit_hours)

    rows = []
    for name, seed in [(m, s) for m in args.models for s in (args.seeds if m in TRAINED else [None])]:
        start = time.process_time()
        result = MODELS[name](frame, origins, **context, seed=seed)
        forecast, fitted = result if isinstance(result, tuple) else (result, None)
        if fitted is not None:  # the batched evaluation is the estimator's own predict
            o = int(origins[len(origins) // 2])
            future = frame.iloc[o:o + HORIZON][["timestamp", *fitted.schema_.future_covariates]]
            one = fitted.predict(frame.iloc[:o][["timestamp", "power", *WEATHER]], future_df=future if fitted.schema_.future_covariates else None)
            one = np.clip(one["power"].to_numpy(), 0.0, capacity)
            np.testing.assert_allclose(forecast[len(origins) // 2], one, rtol=1e-4, atol=1e-5)
        forecast = np.clip(forecast, 0.0, capacity)
        seconds = time.process_time() - start
        epochs = None if fitted is None else len(fitted.training_log_)
        rows += per_lead_time(name, seed, forecast, truth, capacity, seconds, epochs)
        overall = rows[-1]
        trained = "" if epochs is None else f", seed {seed}, {epochs} epochs"
        print(f"  {name:22s} MSE {overall['mse']:.4f}  MAE {overall['mae']:.4f}  nMAE {overall['nmae_pct']:.2f} %  "
              f"nRMSE {overall['nrmse_pct']:.2f} %  ({seconds:.0f} s CPU{trained})", flush=True)

    table = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.exists() and args.out.stat().st_size:  # keep the rows of the models not rerun
        kept = pd.read_csv(args.out)
        kept = kept[~kept["model"].isin(args.models)]
        kept["lead_hours"] = kept["lead_hours"].astype(str)
        table["lead_hours"] = table["lead_hours"].astype(str)
        table = pd.concat([kept, table], ignore_index=True)
    table.to_csv(args.out, index=False, float_format="%.5g")
    table = table[table["model"].isin(args.models)]
    table["lead_hours"] = table["lead_hours"].map(lambda v: v if v == "all" else int(v))
    mean = table.groupby(["model", "lead_hours"], sort=False)["nrmse_pct"].mean().reset_index()
    wide = mean.pivot(index="lead_hours", columns="model", values="nrmse_pct")[args.models]
    shown = [h for h in (1, 2, 3, 6, 12, 18, 24, "all")]
    print(f"\nnRMSE (% of capacity) by lead time (hours), trained models averaged over seeds {args.seeds}:")
    print(wide.loc[shown].round(2).to_string())
    overall = table[table["lead_hours"] == "all"].groupby("model", sort=False)[["mse", "mae", "nmae_pct", "nrmse_pct"]]
    print("\nAll lead times, mean (std) over the runs:")
    print((overall.mean().round(4).astype(str) + " (" + overall.std().fillna(0).round(4).astype(str) + ")")
          .to_string())
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
