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
        scores = (_validation_mses(gram, cross, val, lookback, horizon) if val is not None
                  else _leave_one_out_mses(gram, cross, train, lookback, horizon))
        if not np.isfinite(scores).any():
            raise ValueError(
                f"{who} chooses the ridge penalty on validation windows, or without them by leaving out one "
                f"training window at a time, but the series ({data.panel.values.shape[1]} rows) leave neither at "
                f"val_size={val_size} (a window needs lookback={lookback} + horizon={horizon} rows). Pass {remedy}"
                f"or a longer history.")
        alpha = ALPHA_GRID[int(np.nanargmin(scores))]                 # the first of equal scores: the smaller
    return _ridge(gram, cross, float(alpha)), float(alpha)


def _windows(part: tuple, lookback: int, horizon: int):
    """The (inputs, targets) windows of a part of :meth:`Prepared.split`, float64 rows ``(windows * targets, L + 1)``
    (the last-value-normalised window, then 1 for the intercept) and ``(windows * targets, H)``, a chunk at a time;
    rows whose targets hold a gap (NaN) are left out."""
    inputs, targets, *spans = part
    n_targets = targets.shape[-1]
    windows = WindowDataset(inputs, lookback, horizon, n_targets, targets=targets, spans=spans[0] if spans else None)
    for start in range(0, len(windows), _WINDOW_CHUNK):
        x, y = windows.__getitems__(range(start, min(start + _WINDOW_CHUNK, len(windows))))
        x, y = x[..., :n_targets].double().numpy(), y.double().numpy()   # (B, L, T), (B, H, T)
        last = x[:, -1:]
        design = np.empty((len(x), n_targets, lookback + 1))              # every target of every window a row
        np.subtract(x, last, out=design[..., :lookback].transpose(0, 2, 1))
        design[..., lookback] = 1.0
        design = design.reshape(-1, lookback + 1)
        out = (y - last).transpose(0, 2, 1).reshape(-1, horizon)
        keep = np.isfinite(out).all(axis=1) & np.isfinite(design).all(axis=1)
        yield (design, out) if keep.all() else (design[keep], out[keep])


def _normal_equations(part: tuple, lookback: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    gram = np.zeros((lookback + 1, lookback + 1))      # + 1: the intercept
    cross = np.zeros((lookback + 1, horizon))
    for design, out in _windows(part, lookback, horizon):
        gram += design.T @ design
        cross += design.T @ out
    return gram, cross


def _validation_mses(gram: np.ndarray, cross: np.ndarray, part: tuple, lookback: int, horizon: int) -> list[float]:
    """The mean squared error on ``part``'s windows of the map under each penalty of :data:`ALPHA_GRID`, in one pass
    over the windows (inf where there are none)."""
    maps = [_ridge(gram, cross, alpha) for alpha in ALPHA_GRID]
    totals, count = [0.0] * len(maps), 0
    for design, out in _windows(part, lookback, horizon):
        for i, weights in enumerate(maps):
            totals[i] += float(((design @ weights - out) ** 2).sum())
        count += out.size
    return [total / count if count else float("inf") for total in totals]


def _leave_one_out_mses(gram: np.ndarray, cross: np.ndarray, part: tuple, lookback: int, horizon: int) -> list[float]:
    """For each penalty of :data:`ALPHA_GRID`, the mean squared error of each training row predicted by the map
    fitted without it: its residual over ``1 - leverage`` (exact for a fixed penalty), in one pass over the windows.
    A row of leverage 1 (a lone training window, which the unpenalised intercept fits exactly) says nothing when
    left out and is skipped; NaN where every row is."""
    inverses = [np.linalg.inv(gram + _penalty(len(gram), alpha)) for alpha in ALPHA_GRID]
    maps = [inverse @ cross for inverse in inverses]
    totals, counts = [0.0] * len(maps), [0] * len(maps)
    for design, out in _windows(part, lookback, horizon):
        for i, (inverse, weights) in enumerate(zip(inverses, maps)):
            leverage = ((design @ inverse) * design).sum(axis=1)        # x_i (G + P)^-1 x_i, one matrix product
            kept = leverage < 1 - 1e-9
            residual = (out[kept] - design[kept] @ weights) / (1 - leverage[kept])[:, None]
            totals[i] += float((residual ** 2).sum())
            counts[i] += residual.size
    return [total / count if count else float("nan") for total, count in zip(totals, counts)]


def _penalty(size: int, alpha: float) -> np.ndarray:
    """``alpha`` times the identity but for the intercept (last), which is not penalised."""
    penalty = alpha * np.eye(size)
    penalty[-1, -1] = 0.0
    return penalty


def _ridge(gram: np.ndarray, cross: np.ndarray, alpha: float) -> np.ndarray:
    """The ridge solution ``(gram + alpha I') w = cross``, with ``I'`` the identity but for the intercept (last)."""
    return np.linalg.solve(gram + _penalty(len(gram), alpha), cross)
