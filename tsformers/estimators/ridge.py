"""The closed-form ridge map of a last-value-normalised window: ``LinearForecaster``'s fit and the linear base.

``y[t + h] = x[t] + sum_j W[h, j] (x[t - lookback + 1 + j] - x[t]) + b[h]`` for every target of every
window (channel independence), on the scaled data. ``W`` and ``b`` minimise the squared error over the
training windows plus ``alpha * ||W||^2`` (the intercept is not penalised), solved from the Gram matrix
accumulated over chunks of windows; with ``alpha=None`` the penalty is the one of :data:`ALPHA_GRID` with
the lowest mean squared error on the validation windows, or, where the series leave no validation part
(``val_size=0``, or too short a history), the lowest leave-one-out error over the training windows
(exact for ridge, from each row's leverage, as scikit-learn's ``RidgeCV`` computes it). Neighbouring
windows overlap, so a window left out still has near copies in the fit: leave-one-out leans towards
smaller penalties than a held-out part would.
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
    intercept) and the penalty used (``alpha``, or when None the validation windows' choice, else
    leave-one-out's over the training windows).

    ``who`` (what chooses the penalty) and ``remedy`` (a first fix) word the error raised when ``alpha=None``
    finds neither validation windows nor two training windows to leave out in turn.
    """
    train, val = data.split(val_size)
    gram, cross = _normal_equations(train, lookback, horizon)
    if alpha is None:
        if val is not None:
            scores = [_mse(_ridge(gram, cross, a), val, lookback, horizon) for a in ALPHA_GRID]
        else:
            scores = [_leave_one_out_mse(gram, cross, a, train, lookback, horizon) for a in ALPHA_GRID]
        if not np.isfinite(scores).any():
            raise ValueError(
                f"{who} chooses the ridge penalty on validation windows, or without them by leaving out one "
                f"training window at a time, but the series ({data.panel.values.shape[1]} rows) leave neither at "
                f"val_size={val_size} (a window needs lookback={lookback} + horizon={horizon} rows). Pass {remedy}"
                f"or a longer history.")
        alpha = ALPHA_GRID[int(np.nanargmin(scores))]                 # the first of equal scores: the smaller
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


def _leave_one_out_mse(gram: np.ndarray, cross: np.ndarray, alpha: float, part: tuple, lookback: int,
                       horizon: int) -> float:
    """The mean squared error of each training row predicted by the map fitted without it: its residual over
    ``1 - leverage`` (exact for a fixed penalty). A row of leverage 1 (a lone training window, which the
    unpenalised intercept fits exactly) says nothing when left out and is skipped; NaN where every row is."""
    inverse = np.linalg.inv(gram + _penalty(len(gram), alpha))
    weights = inverse @ cross
    total, count = 0.0, 0
    for design, out in _windows(part, lookback, horizon):
        leverage = ((design @ inverse) * design).sum(axis=1)            # x_i (G + P)^-1 x_i, one matrix product
        kept = leverage < 1 - 1e-9
        residual = (out[kept] - design[kept] @ weights) / (1 - leverage[kept])[:, None]
        total += float((residual ** 2).sum())
        count += residual.size
    return total / count if count else float("nan")


def _penalty(size: int, alpha: float) -> np.ndarray:
    """``alpha`` times the identity but for the intercept (last), which is not penalised."""
    penalty = alpha * np.eye(size)
    penalty[-1, -1] = 0.0
    return penalty


def _ridge(gram: np.ndarray, cross: np.ndarray, alpha: float) -> np.ndarray:
    """The ridge solution ``(gram + alpha I') w = cross``, with ``I'`` the identity but for the intercept (last)."""
    return np.linalg.solve(gram + _penalty(len(gram), alpha), cross)
