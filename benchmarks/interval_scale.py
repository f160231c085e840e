"""How the conformal errors are scaled: by the series alone, by the window's spread, or half-way (the default).

Fits Gateformer's defaults (seed 0) on each data set under the long-horizon protocol, then forecasts every
stride-1 window of the validation part and of the test part once (the network's errors on the scaled data,
the seasonal cycle out, as ``_protocol.evaluate_windows`` scores them). Each rule divides a window's absolute
errors by its scale before the conformal quantile and multiplies the quantile back by the forecast window's:

* ``series``: 1 (the series' scale alone; the scaled data's is 1): the rule before the window's scale;
* ``window spread``: each target's standard deviation over the window's ``lookback`` steps (floored as below);
* ``half-way``: its square root, :func:`tsformers.estimators.evaluation.window_scale_factor`, the default.

**Choice** (``split=validation``): calibrated on the first half of the validation windows, scored on the windows
whose forecast steps all come after the calibration windows'. **Check** (``split=test``): calibrated on every
validation window, scored on every test window, read once. Per level, the coverage, the mean width and the
interval score (Winkler: width plus 2 / (1 - level) times the distance outside the interval; lower is better)
on the scaled data. Rows go to ``benchmarks/results/interval_scale.csv``.

    .venv/bin/python benchmarks/interval_scale.py --dataset ETTh1 ETTh2 ETTm1 ETTm2 exchange
"""
from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _protocol import (_window_errors, _windows, append_rows, cpu_name, load_protocol_data,  # noqa: E402
                       network_values, window_spread)
from long_horizon import default_data_dir, git_rev  # noqa: E402

from tsformers import GateformerForecaster  # noqa: E402
from tsformers.estimators.evaluation import SPREAD_FLOOR, conformal_radius, window_scale_factor  # noqa: E402

LEVELS = (80, 95)
RULES = {
    "series": lambda spread: np.ones_like(spread),
    "window spread": lambda spread: np.maximum(spread, SPREAD_FLOOR),
    "half-way": window_scale_factor,
}
FIELDS = ["timestamp", "dataset", "horizon", "lookback", "seed", "split", "rule", "level", "coverage", "width",
          "interval_score", "n_calibration", "n_scored", "fit_cpu_s", "git_rev", "cpu"]


def errors_and_spreads(estimator, frame, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """The network's errors ``(W, H, T)`` and each target's spread over the window ``(W, T)``, every stride-1
    window of ``frame``, on the scaled data less the cycle."""
    windows = _windows(estimator, network_values(estimator, frame))
    estimator.network_.eval()
    errs, spreads = [], []
    with torch.inference_mode():
        for start in range(0, windows.shape[0], batch_size):
            err, x = _window_errors(estimator, windows[start:start + batch_size])
            errs.append(err.numpy())
            spreads.append(window_spread(estimator, x))
    return np.concatenate(errs), np.concatenate(spreads)


def scores(cal_err, cal_factor, err, factor, level: float) -> dict:
    """Coverage, mean width and interval score of the ``level`` intervals over ``err``: the conformal radius of
    the calibration errors over their windows' factors, times each scored window's factor."""
    radius = conformal_radius(np.sort(np.abs(cal_err) / cal_factor[:, None, :], axis=0), level)[None] \
        * factor[:, None, :]
    outside = np.maximum(np.abs(err) - radius, 0.0)
    return {"coverage": float((np.abs(err) <= radius).mean()), "width": float(2 * radius.mean()),
            "interval_score": float((2 * radius + 2 / (1 - level / 100) * outside).mean())}


def run_dataset(name: str, data_dir, seed: int, rev: str, lookback: int = 96, horizon: int = 96) -> list[dict]:
    data = load_protocol_data(name, data_dir, lookback)
    torch.set_num_threads(1)
    start = time.process_time()
    model = GateformerForecaster(horizon=horizon, lookback=lookback, val_size=data.val_steps,
                                 random_state=seed).fit(data.fit_frame)
    fit_cpu = time.process_time() - start
    val_err, val_spread = errors_and_spreads(model, data.fit_frame.iloc[-(data.val_steps + lookback):])
    test_err, test_spread = errors_and_spreads(model, data.test_frame)
    half = len(val_err) // 2
    later = slice(half + horizon, None)        # forecasts that start after the calibration windows' last step
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    common = dict(timestamp=stamp, dataset=name, horizon=horizon, lookback=lookback, seed=seed,
                  fit_cpu_s=fit_cpu, git_rev=rev, cpu=cpu_name())
    rows = []
    for rule, factor_of in RULES.items():
        for level in LEVELS:
            choice = scores(val_err[:half], factor_of(val_spread[:half]), val_err[later],
                            factor_of(val_spread[later]), level)
            check = scores(val_err, factor_of(val_spread), test_err, factor_of(test_spread), level)
            rows.append({**common, "split": "validation", "rule": rule, "level": level, **choice,
                         "n_calibration": half, "n_scored": len(val_err[later])})
            rows.append({**common, "split": "test", "rule": rule, "level": level, **check,
                         "n_calibration": len(val_err), "n_scored": len(test_err)})
            print(f"{name} {rule:13s} {level}%: validation coverage {choice['coverage']:.3f} score "
                  f"{choice['interval_score']:.3f} | test coverage {check['coverage']:.3f} score "
                  f"{check['interval_score']:.3f}", flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", nargs="+", default=["ETTh1", "ETTh2", "ETTm1", "ETTm2", "exchange"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=default_data_dir())
    p.add_argument("--out", type=Path, default=HERE / "results" / "interval_scale.csv")
    args = p.parse_args(argv)
    rev = git_rev()   # the code this process runs, read before any fit
    for name in args.dataset:
        append_rows(args.out, run_dataset(name, args.data_dir, args.seed, rev), FIELDS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
