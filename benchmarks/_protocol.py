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

from tsformers.data.cycle import step_index
from tsformers.datasets import info, load_dataset, split_bounds

from _csvfile import rewrite


@dataclass
class ProtocolData:
    """The frames one (dataset, lookback) pair needs."""

    name: str
    fit_frame: pd.DataFrame   # rows [0, val_end): train + val
    test_frame: pd.DataFrame  # the test rows with `lookback` rows of context before them
    val_steps: int            # val_end - train_end: the estimator's val_size
    bounds: dict              # {"train": (a, b), "val": ..., "test": ...}
    n_rows: int

    def recalibration_stream(self, lookback: int) -> pd.DataFrame:
        """The validation rows with ``lookback`` rows of context, then the test rows: the rows
        :func:`recalibrated_intervals` reads (its ``calibration_steps`` is ``val_steps``)."""
        test_start, test_end = self.bounds["test"]
        test_rows = self.test_frame.iloc[len(self.test_frame) - (test_end - test_start):]
        return pd.concat([self.fit_frame.iloc[-(self.val_steps + lookback):], test_rows], ignore_index=True)


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


def network_values(estimator, frame: pd.DataFrame, scaled: np.ndarray | None = None) -> np.ndarray:
    """:func:`scaled_values` (``scaled``, where already computed) less the targets' seasonal cycle
    (``estimator.cycle_``, where it has one): the values its network reads and forecasts. The forecast adds the
    cycle back onto the output, and the same cycle lies in the truth, so the network's error on these values is
    the forecast's on the scaled data. Without a cycle, ``scaled`` itself."""
    values = scaled_values(estimator, frame) if scaled is None else scaled
    cycle = getattr(estimator, "cycle_", None)
    if cycle is not None:
        schema = estimator.schema_
        first = step_index(frame[schema.time_col].iloc[0], schema.step)
        values = values.copy()
        values[:, :len(schema.targets)] -= cycle.at(first, len(frame))[0]
    return values


def mase_scale(train_values: np.ndarray) -> np.ndarray:
    """Per variable, the mean absolute one-step change over the training rows ``(T, N)``: MASE's denominator.

    The non-seasonal scale (the in-sample error of the last-value forecast, Hyndman & Koehler 2006), so that a
    MASE below 1 reads "smaller errors than a one-step random walk makes in sample" on every data set alike.
    """
    return np.abs(np.diff(train_values, axis=0)).mean(axis=0)


INTERVAL_LEVELS = (80, 95)
# the conformal levels whose interval ends are the quantiles 0.05, 0.10, ..., 0.95 the CRPS is computed from
CRPS_LEVELS = tuple(range(10, 100, 10))
_CRPS_Q = torch.tensor([(100 - level) / 200 for level in CRPS_LEVELS], dtype=torch.float64)[:, None, None, None]


def _windows(estimator, values: np.ndarray) -> torch.Tensor:
    """Every stride-1 window of ``values`` ``(T, N)`` (:func:`network_values` or :func:`scaled_values` of a frame):
    ``(W, N, lookback + horizon)``, a view."""
    return torch.from_numpy(values).unfold(0, estimator.lookback + estimator.horizon, 1)


def _window_errors(estimator, chunk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The network's forecast error and the inputs of a chunk of windows: ``(B, H, n_targets)``, ``(B, L, N)``."""
    lookback, n_targets = estimator.lookback, len(estimator.schema_.targets)
    x = chunk[:, :, :lookback].mT                                  # (B, L, N) float64
    y = chunk[:, :n_targets, lookback:].mT                         # (B, H, n_targets)
    return estimator.network_(x.float().contiguous())[..., :n_targets].double() - y, x


def _radii(scores: np.ndarray, levels, n_targets: int) -> torch.Tensor:
    """The conformal radii ``(len(levels), H, n_targets)`` of sorted scores, by the estimators' own rule."""
    from tsformers.estimators.evaluation import conformal_radius
    return torch.stack([torch.as_tensor(conformal_radius(scores, level)[:, :n_targets]) for level in levels])


def window_spread(estimator, x: torch.Tensor) -> np.ndarray:
    """``(B, n_targets)``: each target's standard deviation over the window's network values ``x`` ``(B, L, N)``,
    what ``Prepared.target_spread`` gives the estimator for the same windows."""
    return x[:, :, :len(estimator.schema_.targets)].double().std(dim=1, correction=0).numpy()


def _window_factor(estimator, x: torch.Tensor) -> torch.Tensor:
    """``(B, 1, n_targets)``: what each window's conformal radius is multiplied by, as the estimator's intervals
    do (:func:`tsformers.estimators.evaluation.window_scale_factor` of :func:`window_spread`); 1 for a model whose
    errors have its series' scale alone."""
    if getattr(estimator, "conformal_scale_", "series") != "window":
        return torch.ones(x.shape[0], 1, len(estimator.schema_.targets), dtype=torch.float64)
    from tsformers.estimators.evaluation import window_scale_factor
    return torch.as_tensor(window_scale_factor(window_spread(estimator, x)))[:, None, :]


def _interval_sums(err: torch.Tensor, radii: torch.Tensor, crps_radii: torch.Tensor) -> tuple[list[float], float]:
    """Per interval level, how many errors ``(B, H, T)`` lie within its radius (``radii`` ``(levels, B, H, T)``,
    or ``(levels, 1, H, T)`` where every window has the same); and the summed pinball loss of the conformal
    distribution's quantiles 0.05, ..., 0.95 (the interval ends at :data:`CRPS_LEVELS` around the point
    forecast, the point forecast the median; ``crps_radii`` as ``radii``)."""
    covered = [float((err.abs() <= radius).sum()) for radius in radii]
    # forecast - actual = err, so actual - lower end = radius - err and actual - upper end = -err - radius
    below = crps_radii - err                                        # (K, B, H, T)
    above = -err - crps_radii
    pinball = float(torch.maximum(_CRPS_Q * below, (_CRPS_Q - 1) * below).sum()
                    + torch.maximum((1 - _CRPS_Q) * above, -_CRPS_Q * above).sum() + 0.5 * err.abs().sum())
    return covered, pinball


def _interval_scores(covered: list[float], pinball: float, radius_sum: torch.Tensor, count: int,
                     prefix: str = "") -> dict:
    """``coverage_L``/``width_L`` per level and ``crps`` (twice the mean pinball loss over the 19 quantiles)."""
    out = {}
    for level, hits, width in zip(INTERVAL_LEVELS, covered, radius_sum):
        out[f"{prefix}coverage_{level}"] = hits / count
        out[f"{prefix}width_{level}"] = float(2 * width)
    out[f"{prefix}crps"] = 2.0 * pinball / (count * (2 * len(CRPS_LEVELS) + 1))
    return out


def evaluate_windows(estimator, test_frame: pd.DataFrame, *, batch_size: int = 256,
                     scale: np.ndarray | None = None) -> dict:
    """MSE/MAE of the network and of the last-value forecast over every stride-1 test window, scaled data
    (the network's on the values less the seasonal cycle, the same errors: :func:`network_values`).

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
    horizon, n_targets = estimator.horizon, len(estimator.schema_.targets)
    data = scaled_values(estimator, test_frame)
    windows = _windows(estimator, network_values(estimator, test_frame, data))
    scaled = _windows(estimator, data)                             # the last value forecasts the data, no cycle out
    n_windows = windows.shape[0]
    estimator.network_.eval()
    sq = ab = naive_sq = naive_ab = scaled_ab = pinball = 0.0
    calibration = getattr(estimator, "conformal_", None)
    if calibration is not None:
        radii = _radii(calibration, INTERVAL_LEVELS, n_targets)    # (2, H, n_targets)
        crps_radii = _radii(calibration, CRPS_LEVELS, n_targets)   # (K, H, n_targets)
        covered = [0.0] * len(INTERVAL_LEVELS)
        radius_sum = torch.zeros(len(INTERVAL_LEVELS), dtype=torch.float64)
    per_variable = None if scale is None else torch.as_tensor(np.asarray(scale, dtype=np.float64)[:n_targets])
    with torch.inference_mode():
        for start in range(0, n_windows, batch_size):
            chunk = windows[start:start + batch_size]
            err, x = _window_errors(estimator, chunk)
            sq += float((err ** 2).sum())
            ab += float(err.abs().sum())
            if per_variable is not None:
                scaled_ab += float((err.abs() / per_variable).sum())
            if calibration is not None:
                factor = _window_factor(estimator, x)                  # (B, 1, T)
                hits, loss = _interval_sums(err, radii[:, None] * factor, crps_radii[:, None] * factor)
                covered = [c + h for c, h in zip(covered, hits)]
                pinball += loss
                radius_sum += (radii[:, None] * factor).mean(dim=(2, 3)).sum(dim=1)
            plain = scaled[start:start + batch_size]
            naive_err = plain[:, :n_targets, estimator.lookback - 1:estimator.lookback].mT \
                - plain[:, :n_targets, estimator.lookback:].mT                                # last value, over H
            naive_sq += float((naive_err ** 2).sum())
            naive_ab += float(naive_err.abs().sum())
    count = n_windows * horizon * n_targets
    out = {"mse": sq / count, "mae": ab / count, "naive_mse": naive_sq / count, "naive_mae": naive_ab / count,
           "n_windows": n_windows}
    if per_variable is not None:
        out["mase"] = scaled_ab / count
    if calibration is not None:
        out.update(_interval_scores(covered, pinball, radius_sum / n_windows, count))
    return out


def recalibrated_intervals(estimator, stream: pd.DataFrame, calibration_steps: int, *, every: int | None = None,
                           batch_size: int = 256) -> dict:
    """Interval coverage, width and CRPS over the test windows when the intervals are recalibrated as they go.

    ``stream`` holds the calibration rows and then the test rows: its first test window forecasts from row
    ``lookback + calibration_steps`` on. Every ``every`` steps (default: the horizon), before forecasting, the
    conformal errors are recomputed from the windows whose forecast steps lie in the last
    ``calibration_steps`` rows before the origin, every stride-1 window there: what
    ``estimator.calibrate(rows so far, last_steps=calibration_steps)`` does on a schedule (its windows
    are fit's, at most 1,000 evenly spread; all of them here). The first recalibration uses exactly the
    calibration rows, so the first block's intervals are those of a fit-time calibration on them; the
    test values enter the calibration only once they are observed. The network is unchanged.

    Returns
    -------
    dict
        ``recal_coverage_L``/``recal_width_L`` per level L in :data:`INTERVAL_LEVELS`, ``recal_crps`` and
        ``recal_every``.
    """
    lookback, horizon, n_targets = estimator.lookback, estimator.horizon, len(estimator.schema_.targets)
    every = horizon if every is None else int(every)
    windows = _windows(estimator, network_values(estimator, stream))  # window j forecasts rows [j + L, j + L + H)
    pool = calibration_steps - horizon + 1                         # the windows within calibration_steps rows
    if calibration_steps < horizon or windows.shape[0] <= calibration_steps:
        raise ValueError(f"the stream needs {calibration_steps} >= horizon calibration rows and test rows after "
                         f"them; it has {len(stream)} rows for lookback {lookback}, horizon {horizon}.")
    estimator.network_.eval()
    errors, factors = [], []
    with torch.inference_mode():
        for start in range(0, windows.shape[0], batch_size):
            err, x = _window_errors(estimator, windows[start:start + batch_size])
            errors.append(err.float())
            factors.append(_window_factor(estimator, x))
    errors, factors = torch.cat(errors), torch.cat(factors)        # (W, H, T), (W, 1, T)
    first, n_windows = calibration_steps, windows.shape[0]        # the first test window, by its index
    covered, pinball, radius_sum = [0.0] * len(INTERVAL_LEVELS), 0.0, torch.zeros(len(INTERVAL_LEVELS),
                                                                                   dtype=torch.float64)
    for block in range(first, n_windows, every):
        # windows observed by origin `block + lookback`: forecast steps end at or before it, within the last
        # calibration_steps rows: indices [block - calibration_steps, block - horizon]
        seen = slice(block - calibration_steps, block - horizon + 1)
        scores = (errors[seen].double().abs() / factors[seen]).sort(dim=0).values.numpy()
        assert scores.shape[0] == pool
        radii, crps_radii = _radii(scores, INTERVAL_LEVELS, n_targets), _radii(scores, CRPS_LEVELS, n_targets)
        err, factor = errors[block:block + every].double(), factors[block:block + every]
        hits, loss = _interval_sums(err, radii[:, None] * factor, crps_radii[:, None] * factor)
        covered = [c + h for c, h in zip(covered, hits)]
        pinball += loss
        radius_sum += (radii[:, None] * factor).mean(dim=(2, 3)).sum(dim=1)
    n_test = n_windows - first
    out = _interval_scores(covered, pinball, radius_sum / n_test, n_test * horizon * n_targets, prefix="recal_")
    return out | {"recal_every": every}


def n_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB (never decreases: later runs include earlier ones)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def cpu_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The processor and its widest vector extension torch's CPU kernels use (``AMD EPYC, AVX2``), recorded with every
    row: speed ratios of one run hold on that machine only, and our fits are the same to the bit on one processor,
    not across processors, since the float kernels differ by instruction set."""
    import platform

    name, flags = platform.processor() or platform.machine(), set()
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break  # the first processor's entry says it for all
    widest = (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("asimd", "NEON"))
    isa = next((label for flag, label in widest if flag in flags), None)
    return f"{name}, {isa}" if isa else name


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
            rewrite(path, fields, old)
    with open(path, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        if new:
            writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
