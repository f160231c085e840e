"""Runs inside the anchors virtual environment (``benchmarks/.venv-anchors``), started by ``anchors.py``.

It imports neither tsformers nor torch, only numpy, pandas, statsforecast, mlforecast and lightgbm. It reads
one JSON spec (a file given as the only argument) and an ``.npz`` with the scaled series (``values``
``(T, N)``: every row up to the end of the test split, scaled by the caller with the train split's
statistics; ``times``: their timestamps in ns, or their positions where the rows are integer steps), writes
its forecasts ``(W, H, N)`` (one per requested cutoff) to ``spec["out"]`` (``.npy``) and prints one JSON line
prefixed with ``RESULT`` on stdout. Scoring is the caller's (``baselines.scored_in_chunks``), so both sides of a
table share it.

A *cutoff* ``c`` is the row of a window's first target: the window forecasts rows ``[c, c + H)``.

Tasks:

* ``"statsforecast"`` (``AutoETS`` / ``AutoTheta``, ``season_length`` from the spec): per series, one
  ``fit`` on the training rows ``[0, train_end)``, then for every cutoff ``model.forward(y=y[:c], h=H)``:
  the parameters stay those of the fit (ETS: the chosen components, smoothing parameters and initial
  states; Theta: the chosen model type, alpha, theta and initial level) and the states are run over the
  history up to the cutoff. That is what ``StatsForecast.cross_validation(refit=False, input_size=None)``
  does after its one fit (it calls ``forward`` on the whole history per window), except that its fit
  would read every row before the first test cutoff (train + val) where ours reads the train rows only.
  ``AutoTheta.forward`` re-runs its seasonality test and classical decomposition on the history it is
  given, as statsforecast implements it.
* ``"mlforecast"``: ``MLForecast`` with ``lightgbm.LGBMRegressor`` (one thread), lags ``1..lookback`` and
  the calendar features hour and day of week (none with ``spec["calendar"]`` False: the rows are integer steps,
  ``times`` their positions, ``freq`` 1), one global model over the series, fitted on the training
  rows; forecasts are *recursive* (mlforecast's default: one model, each step's forecast fed back as a
  lag). Every window is predicted from its own ``lookback`` rows only: ``predict(h, new_df=...)`` with one
  series id per (window, variable), all windows in one call. The configuration is chosen from
  ``spec["grid"]`` by the MSE on the validation cutoffs (``spec["val_cutoffs"]``); the chosen model, fitted
  on the training rows only (it is not refitted on train + val), then forecasts the test cutoffs.

``cpu_s`` is the CPU time of the task after the libraries are imported: every fit (the whole grid for
mlforecast), the validation forecasts and the test forecasts (numba's first-call compilation included).
"""
from __future__ import annotations

import json
import sys
import time

from _worker_io import emit, peak_rss_mib, quiet  # this folder is the script's: sys.path[0]


def _quiet():
    quiet("statsforecast", "mlforecast", "lightgbm", "numba")


def statsforecast_task(spec: dict, values, times) -> tuple:
    import numpy as np
    from statsforecast.models import AutoETS, AutoTheta

    models = {"autoets": AutoETS, "autotheta": AutoTheta}
    cls = models[spec["model"]]
    horizon, train_end, cutoffs = spec["horizon"], spec["train_end"], spec["cutoffs"]
    preds = np.full((len(cutoffs), horizon, values.shape[1]), np.nan)
    chosen = []
    for j in range(values.shape[1]):
        y = np.ascontiguousarray(values[:, j])
        model = cls(season_length=spec["season"]).fit(y[:train_end])
        fitted = model.model_
        chosen.append(str(fitted.get("method", fitted.get("modeltype", ""))))
        for w, cutoff in enumerate(cutoffs):
            preds[w, :, j] = model.forward(y=y[:cutoff], h=horizon)["mean"]
    return preds, {"chosen": chosen}


def _long_frame(values, times, ids, starts, length, calendar: bool = True):
    """One long frame with a series per (start, variable): rows ``[start, start + length)`` of that variable.

    ``times``: int64 nanoseconds of timestamps (``calendar``), or integer steps, which stay integers."""
    import numpy as np
    import pandas as pd

    n_vars = values.shape[1]
    starts = np.asarray(starts)
    rows = starts[:, None] + np.arange(length)[None, :]              # (S, length)
    y = values[rows]                                                   # (S, length, N)
    ds = times[rows]                                                   # (S, length)
    return pd.DataFrame({
        "unique_id": np.repeat(ids, length),                          # ids: (S * N,), start-major
        "ds": (pd.to_datetime if calendar else np.asarray)(np.repeat(ds[:, None, :], n_vars, axis=1).reshape(-1)),
        "y": y.transpose(0, 2, 1).reshape(-1),
    })


def _mlf_forecast(fcst, values, times, cutoffs, lookback, horizon, calendar: bool = True):
    """Recursive forecasts ``(W, H, N)`` of every cutoff, each from its own ``lookback`` rows."""
    import numpy as np

    n_vars = values.shape[1]
    ids = np.arange(len(cutoffs) * n_vars)                            # id = window * N + variable
    new_df = _long_frame(values, times, ids, np.asarray(cutoffs) - lookback, lookback, calendar)
    out = fcst.predict(h=horizon, new_df=new_df)
    out = out.sort_values(["unique_id", "ds"])
    assert len(out) == len(ids) * horizon
    pred = out["lgbm"].to_numpy(np.float64).reshape(len(cutoffs), n_vars, horizon)
    return pred.transpose(0, 2, 1)


def mlforecast_task(spec: dict, values, times) -> tuple:
    import lightgbm as lgb
    import numpy as np
    import pandas as pd
    from mlforecast import MLForecast
    from mlforecast.target_transforms import Differences

    lookback, horizon, train_end = spec["lookback"], spec["horizon"], spec["train_end"]
    n_vars = values.shape[1]
    calendar = spec.get("calendar", True)  # False: integer steps (freq 1), no calendar features
    train = _long_frame(values, times, np.arange(n_vars), [0], train_end, calendar)
    val_cutoffs = spec["val_cutoffs"]
    truth = np.stack([values[c:c + horizon] for c in val_cutoffs])     # (V, H, N)

    def build(config):
        transforms = [Differences([1])] if config["differences"] else None
        model = lgb.LGBMRegressor(n_estimators=config["n_estimators"], learning_rate=config.get("learning_rate", 0.1),
                                  num_leaves=config.get("num_leaves", 31), n_jobs=1, verbosity=-1,
                                  random_state=0)
        fcst = MLForecast(models={"lgbm": model}, freq=spec["freq"], lags=list(range(1, lookback + 1)),
                          date_features=["hour", "dayofweek"] if calendar else [], target_transforms=transforms)
        return fcst.fit(train, static_features=[])

    val_mse, fitted = [], None
    best = None
    for config in spec["grid"]:
        fcst = build(config)
        forecast = _mlf_forecast(fcst, values, times, val_cutoffs, lookback, horizon, calendar)
        mse = float(np.mean((forecast - truth) ** 2))
        val_mse.append(mse)
        print(f"grid {config}: validation MSE {mse:.4f}", flush=True)
        if best is None or mse < best:
            best, fitted, chosen = mse, fcst, config
    preds = _mlf_forecast(fitted, values, times, spec["cutoffs"], lookback, horizon, calendar)
    return preds, {"chosen": chosen, "val_mse": val_mse, "grid": spec["grid"]}


TASKS = {"statsforecast": statsforecast_task, "mlforecast": mlforecast_task}


def main() -> int:
    with open(sys.argv[1]) as fh:
        spec = json.load(fh)
    _quiet()
    t_import = time.perf_counter()
    import numpy as np

    __import__({"statsforecast": "statsforecast.models", "mlforecast": "mlforecast"}[spec["task"]])
    if spec["task"] == "mlforecast":
        import lightgbm  # noqa: F401
    import_s = time.perf_counter() - t_import
    data = np.load(spec["data"])
    values, times = data["values"], data["times"]
    t0, c0 = time.perf_counter(), time.process_time()
    preds, extra = TASKS[spec["task"]](spec, values, times)
    wall_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    np.save(spec["out"], preds)
    versions = {}
    for lib in ("statsforecast", "mlforecast", "lightgbm"):
        try:
            versions[lib] = __import__(lib).__version__
        except ImportError:
            pass
    emit({"task": spec["task"], "model": spec["model"], "wall_s": wall_s, "cpu_s": cpu_s, "import_s": import_s,
           "n_windows": len(spec["cutoffs"]), "peak_rss_mib": peak_rss_mib(), "versions": versions, **extra})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
