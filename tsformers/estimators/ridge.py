"""The closed-form ridge map of a last-value-normalised window: ``LinearForecaster``'s fit and the linear base.

``y[t + h] = x[t] + sum_j W[h, j] (x[t - lookback + 1 + j] - x[t]) + b[h]`` for every target of every
window (channel independence), on the scaled data. ``W`` and ``b`` minimise the squared error over the
training windows plus ``alpha * ||W||^2`` (the intercept is not penalised), solved from the Gram matrix
accumulated over chunks of windows; with ``alpha=None`` the penalty is the one of :data:`ALPHA_GRID` with
the lowest mean squared error on the validation windows.
"""
from __future__ import annotations

import numpy as np

from tsformers.data.prepare import Prepared
from tsformers.data.windows import WindowDataset

__all__ = ["ALPHA_GRID", "fit_ridge_map"]

#: The ridge penalties chosen from on the validation windows when none is given: 1e-2 ... 1e7.
ALPHA_GRID = tuple(float(10.0 ** k) for k in range(-2, 8))

#: Windows per chunk when accumulating the Gram matrix.
_WINDOW_CHUNK = 4096


def fit_ridge_map(data: Prepared, *, lookback: int, horizon: int, val_size, alpha: float | None = None,
                  who: str = "alpha=None", remedy: str = "alpha= (e.g. alpha=1.0), ") -> tuple[np.ndarray, float]:
    """The ridge map of ``data``'s training windows: weights ``(lookback + 1, horizon)`` (the map, then the
    intercept) and the penalty used (``alpha``, or the validation windows' choice when None).

    ``who`` (what chooses the penalty) and ``remedy`` (a first fix) word the error raised when ``alpha=None``
    finds no validation windows.
    """
    train, val = data.split(val_size)
    if alpha is None and val is None:
        raise ValueError(
            f"{who} chooses the ridge penalty on validation windows, but the series "
            f"({data.panel.values.shape[1]} rows) leave none at val_size={val_size} (a validation part "
            f"needs horizon={horizon} rows besides lookback + horizon for training). Pass {remedy}"
            f"a larger val_size or a longer history.")
    gram, cross = _normal_equations(train, lookback, horizon)
    if alpha is None:
        scores = [_mse(_ridge(gram, cross, a), val, lookback, horizon) for a in ALPHA_GRID]
        alpha = ALPHA_GRID[int(np.argmin(scores))]                    # the first of equal scores: the smaller
    return _ridge(gram, cross, float(alpha)), float(alpha)


def _windows(part: tuple, lookback: int, horizon: int):
    """The (inputs, targets) windows of a part of :meth:`Prepared.split`, float64 rows ``(windows * targets, L or H)``,
    a chunk at a time; rows whose targets hold a gap (NaN) are left out."""
    inputs, targets, *spans = part
    n_targets = targets.shape[-1]
    windows = WindowDataset(inputs, lookback, horizon, n_targets, targets=targets, spans=spans[0] if spans else None)
    for start in range(0, len(windows), _WINDOW_CHUNK):
        x, y = windows.__getitems__(range(start, min(start + _WINDOW_CHUNK, len(windows))))
        x, y = x[..., :n_targets].double().numpy(), y.double().numpy()   # (B, L, T), (B, H, T)
        last = x[:, -1:]
        rows = (x - last).transpose(0, 2, 1).reshape(-1, lookback)        # every target of every window a row
        out = (y - last).transpose(0, 2, 1).reshape(-1, horizon)
        keep = np.isfinite(out).all(axis=1) & np.isfinite(rows).all(axis=1)
        yield np.hstack([rows, np.ones((len(rows), 1))])[keep], out[keep]


def _normal_equations(part: tuple, lookback: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    gram = np.zeros((lookback + 1, lookback + 1))      # + 1: the intercept
    cross = np.zeros((lookback + 1, horizon))
    for design, out in _windows(part, lookback, horizon):
        gram += design.T @ design
        cross += design.T @ out
    return gram, cross


def _mse(weights: np.ndarray, part: tuple, lookback: int, horizon: int) -> float:
    total, count = 0.0, 0
    for design, out in _windows(part, lookback, horizon):
        total += float(((design @ weights - out) ** 2).sum())
        count += out.size
    return total / count if count else float("inf")


def _ridge(gram: np.ndarray, cross: np.ndarray, alpha: float) -> np.ndarray:
    """The ridge solution ``(gram + alpha I') w = cross``, with ``I'`` the identity but for the intercept (last)."""
    penalty = alpha * np.eye(len(gram))
    penalty[-1, -1] = 0.0
    return np.linalg.solve(gram + penalty, cross)
