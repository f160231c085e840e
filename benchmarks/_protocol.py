"""The long-horizon protocol of the literature (Time-Series-Library / iTransformer), as helpers.

* Splits: ETTh 12/4/4 months, ETTm the same in 15-minute steps, the others
  70/10/20 by time (``tsformers.datasets.split_bounds``).
* Fit on rows ``[0, val_end)`` with ``val_size = val_end - train_end`` steps: the
  estimator fits its standard scaler on the train rows only and early-stops on
  the validation windows (given their ``lookback`` rows of context).
* Test: every window of the test split with stride 1, the first input window
  starting ``lookback`` rows before the test split; MSE and MAE over all
  windows, horizon steps and variables, on the scaled data.

Nothing here knows a particular model: any fitted ``BaseForecaster`` (it has
``network_``, ``scaler_``, ``schema_``, ``lookback`` and ``horizon``) can be evaluated.
"""
from __future__ import annotations

import csv
import resource
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tsformers.datasets import info, load_dataset, split_bounds


@dataclass
class ProtocolData:
    """The frames one (dataset, lookback) pair needs."""

    name: str
    fit_frame: pd.DataFrame   # rows [0, val_end): train + val
    test_frame: pd.DataFrame  # the test rows with `lookback` rows of context before them
    val_steps: int            # val_end - train_end: the estimator's val_size
    bounds: dict              # {"train": (a, b), "val": ..., "test": ...}
    n_rows: int


def load_protocol_data(name: str, data_dir, lookback: int) -> ProtocolData:
    """Load ``name`` and cut it into the fit part (train + val) and the test part with its context."""
    full = load_dataset(name, data_dir=data_dir)
    bounds = split_bounds(name, len(full))
    (train_start, train_end), (val_start, val_end) = bounds["train"], bounds["val"]
    assert train_start == 0 and val_start == train_end, bounds
    fit_frame = full.iloc[:val_end].reset_index(drop=True)
    test_frame = load_dataset(name, data_dir=data_dir, split="test", context=lookback)
    test_start, test_end = bounds["test"]
    time_col = info(name)["time_col"]
    times = full[time_col]
    if times.duplicated().any() or not times.is_monotonic_increasing:
        # The literature's loaders treat rows as steps (weather.csv repeats one timestamp); the estimators
        # reject duplicate times, so the rows' positions become the (integer) time axis instead.
        fit_frame[time_col] = np.arange(len(fit_frame))
        first = max(0, test_start - lookback)
        test_frame[time_col] = np.arange(first, first + len(test_frame))
    assert len(test_frame) == test_end - max(0, test_start - lookback), (len(test_frame), bounds)
    return ProtocolData(name=name, fit_frame=fit_frame, test_frame=test_frame, val_steps=val_end - train_end,
                        bounds=bounds, n_rows=len(full))


def scaled_values(estimator, frame: pd.DataFrame) -> np.ndarray:
    """The frame's variables, in the fitted order, scaled with the fitted statistics: ``(n_time, n_vars)``."""
    columns = list(estimator.schema_.variables)
    raw = frame[columns].to_numpy(dtype=np.float64)[None]          # (1, T, N): one series
    return estimator.scaler_.transform(raw)[0]


def mase_scale(train_values: np.ndarray) -> np.ndarray:
    """Per variable, the mean absolute one-step change over the training rows ``(T, N)``: MASE's denominator.

    The non-seasonal scale (the in-sample error of the last-value forecast, Hyndman & Koehler 2006), so that a
    MASE below 1 reads "smaller errors than a one-step random walk makes in sample" on every data set alike.
    """
    return np.abs(np.diff(train_values, axis=0)).mean(axis=0)


INTERVAL_LEVELS = (80, 95)
# the conformal levels whose interval ends are the quantiles 0.05, 0.10, ..., 0.95 the CRPS is computed from
CRPS_LEVELS = tuple(range(10, 100, 10))


def evaluate_windows(estimator, test_frame: pd.DataFrame, *, batch_size: int = 256,
                     scale: np.ndarray | None = None) -> dict:
    """MSE/MAE of the network and of the last-value forecast over every stride-1 test window, scaled data.

    With ``scale`` (:func:`mase_scale` of the training rows, one per target) also the MASE: each absolute
    error divided by its variable's scale, averaged like the MAE. For a model with a conformal calibration
    (``conformal_``), the empirical coverage of its split-conformal intervals at :data:`INTERVAL_LEVELS`
    (the share of test values within the point forecast ± the radius ``predict(level=...)`` uses) and their
    mean width, on the same scaled data, and the CRPS of the conformal predictive distribution: the ends
    of the intervals at :data:`CRPS_LEVELS` and the point forecast are its quantiles 0.05, 0.10, ..., 0.95
    (:func:`tsformers.metrics.crps`).

    Returns
    -------
    dict
        ``mse``, ``mae``, ``naive_mse``, ``naive_mae``, ``n_windows``, ``mase`` with ``scale``, and
        ``coverage_L``/``width_L`` per level L and ``crps`` with a calibration.
    """
    from tsformers.estimators.evaluation import conformal_radius
    lookback, horizon = estimator.lookback, estimator.horizon
    n_targets = len(estimator.schema_.targets)
    values = torch.from_numpy(scaled_values(estimator, test_frame))  # (T, N) float64
    windows = values.unfold(0, lookback + horizon, 1)                 # (W, N, L + H), a view
    n_windows = windows.shape[0]
    network = estimator.network_
    network.eval()
    sq = ab = naive_sq = naive_ab = scaled_ab = 0.0
    calibration = getattr(estimator, "conformal_", None)
    radii = {} if calibration is None else {
        level: torch.as_tensor(conformal_radius(calibration, level)[:, :n_targets]) for level in INTERVAL_LEVELS}
    covered = dict.fromkeys(radii, 0.0)
    crps_radii = None if calibration is None else torch.stack([  # (K, H, n_targets), K = len(CRPS_LEVELS)
        torch.as_tensor(conformal_radius(calibration, level)[:, :n_targets]) for level in CRPS_LEVELS])
    crps_levels = torch.tensor([(100 - level) / 200 for level in CRPS_LEVELS], dtype=torch.float64)
    pinball = 0.0
    per_variable = None if scale is None else torch.as_tensor(np.asarray(scale, dtype=np.float64)[:n_targets])
    with torch.inference_mode():
        for start in range(0, n_windows, batch_size):
            chunk = windows[start:start + batch_size]
            x = chunk[:, :, :lookback].mT                               # (B, L, N) float64
            y = chunk[:, :n_targets, lookback:].mT                      # (B, H, n_targets)
            pred = network(x.float().contiguous())[..., :n_targets].double()
            err = pred - y
            sq += float((err ** 2).sum())
            ab += float(err.abs().sum())
            if per_variable is not None:
                scaled_ab += float((err.abs() / per_variable).sum())
            for level, radius in radii.items():                          # radius: (H, n_targets)
                covered[level] += float((err.abs() <= radius).sum())
            if crps_radii is not None:  # lower end: quantile q = (1 - L) / 2; upper end: 1 - q; the point: 0.5
                q = crps_levels[:, None, None, None]                      # (K, 1, 1, 1)
                below = y - (pred - crps_radii[:, None])                  # (K, B, H, n_targets)
                above = y - (pred + crps_radii[:, None])
                pinball += float(torch.maximum(q * below, (q - 1) * below).sum()
                                 + torch.maximum((1 - q) * above, -q * above).sum()
                                 + 0.5 * err.abs().sum())
            naive_err = x[:, -1:, :n_targets] - y                        # last value, repeated over H
            naive_sq += float((naive_err ** 2).sum())
            naive_ab += float(naive_err.abs().sum())
    count = n_windows * horizon * n_targets
    out = {"mse": sq / count, "mae": ab / count, "naive_mse": naive_sq / count, "naive_mae": naive_ab / count,
           "n_windows": n_windows}
    if per_variable is not None:
        out["mase"] = scaled_ab / count
    for level, radius in radii.items():
        out[f"coverage_{level}"] = covered[level] / count
        out[f"width_{level}"] = float(2 * radius.mean())
    if crps_radii is not None:  # twice the mean pinball loss over the 19 levels
        out["crps"] = 2.0 * pinball / (count * (2 * len(CRPS_LEVELS) + 1))
    return out


def n_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB (never decreases: later runs include earlier ones)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def append_rows(path: Path, rows: list[dict], fields: list[str]) -> None:
    """Append ``rows`` to the CSV at ``path`` (header first when new); floats to 6 significant digits.

    A file written with other columns (before a column was added to ``fields``) is rewritten once with
    ``fields`` and its own extra columns, its earlier rows kept (empty in the new columns).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or not path.stat().st_size
    if not new:
        with open(path, newline="") as fh:
            header = next(csv.reader(fh), [])
            fh.seek(0)
            old = list(csv.DictReader(fh))
        if header != list(fields):
            fields = list(fields) + [c for c in header if c not in fields]
            tmp = path.with_name(f".{path.name}.tmp")
            with open(tmp, "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=fields)
                writer.writeheader()
                writer.writerows(old)
            tmp.replace(path)
    with open(path, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        if new:
            writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
