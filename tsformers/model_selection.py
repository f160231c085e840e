"""Time-series cross-validation whose test folds carry their lookback context."""
from __future__ import annotations

import numpy as np
import pandas as pd

from tsformers.data.frames import as_pandas, detect_time_column


class RollingOriginSplit:
    """Rolling-origin (expanding window) splits of a frame, by time, for ``GridSearchCV``.

    Fold ``k`` trains on every row up to its forecast origin and tests on the
    ``lookback`` rows before the origin plus the ``horizon`` rows after it, so
    that a forecaster's ``score`` can forecast the test horizon from the
    context it needs. (scikit-learn's ``TimeSeriesSplit`` test folds hold only
    the future rows.) Rows are selected by their timestamp, so long frames
    with several series interleaved work as well as wide ones.

    Parameters
    ----------
    n_splits : int, default=3
        Number of forecast origins.
    horizon : int
        Steps forecast in each test fold (the estimator's ``horizon``).
    lookback : int
        Context steps in each test fold (at least the estimator's ``lookback``).
    step : int, optional
        Steps between consecutive origins; ``horizon`` by default.
    time_col : str, optional
        The time column; detected as the estimators detect it.

    Examples
    --------
    >>> from tsformers.datasets import make_demo
    >>> cv = RollingOriginSplit(n_splits=2, horizon=24, lookback=96)
    >>> [(len(tr), len(te)) for tr, te in cv.split(make_demo(n_steps=500))]
    [(452, 120), (476, 120)]
    """

    def __init__(self, n_splits: int = 3, *, horizon: int, lookback: int, step: int | None = None,
                 time_col: str | None = None):
        self.n_splits, self.horizon, self.lookback = n_splits, horizon, lookback
        self.step, self.time_col = step, time_col

    def get_n_splits(self, X=None, y=None, groups=None) -> int:
        return self.n_splits

    def split(self, X, y=None, groups=None):
        """Yield ``(train_rows, test_rows)`` positional indices, oldest origin first."""
        frame, _ = as_pandas(X)
        if self.time_col is not None:
            times = frame[self.time_col].to_numpy()
        else:
            name, in_index = detect_time_column(frame, exclude={"unique_id"})
            times = frame.index.to_numpy() if in_index else frame[name].to_numpy()
        grid = pd.unique(times)
        grid.sort()
        step = self.step or self.horizon
        first_origin = len(grid) - self.horizon - (self.n_splits - 1) * step
        if first_origin < self.lookback:
            raise ValueError(
                f"{len(grid)} time steps are too few for {self.n_splits} folds of lookback={self.lookback}, "
                f"horizon={self.horizon} and step={step}; lower n_splits or pass more history."
            )
        position = np.searchsorted(grid, times)  # each row's place on the time grid
        for k in range(self.n_splits):
            origin = first_origin + k * step
            train = np.flatnonzero(position < origin)
            test = np.flatnonzero((position >= origin - self.lookback) & (position < origin + self.horizon))
            yield train, test
