"""Time-series cross-validation whose test folds carry their lookback context, and the scorers of its folds."""
from __future__ import annotations

import numpy as np
import pandas as pd

from tsformers.data.frames import as_pandas, detect_time_column
from tsformers.estimators.evaluation import check_score_metric


class RollingOriginSplit:
    """Rolling-origin (expanding window) splits of a frame, by time, for ``GridSearchCV``.

    Fold ``k`` trains on every row up to its forecast origin and tests on the
    ``lookback`` rows before the origin plus the ``horizon`` rows after it, so
    that a forecaster's ``score`` can forecast the test horizon from the
    context it needs. (scikit-learn's ``TimeSeriesSplit`` test folds hold only
    the future rows.) Rows are selected by their timestamp, so long frames
    with several series interleaved work as well as wide ones.

    ``GridSearchCV`` ranks by the estimator's ``score`` (negative MSE) unless
    given ``scoring=``: pass a scorer of :func:`make_forecast_scorer` or
    :func:`forecast_scoring` (scikit-learn's own string scorers need a ``y``
    that forecasters do not have, and score NaN).

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


#: scikit-learn's scoring names that mean the same for a forecast, and this module's own, with their metric.
FORECAST_SCORING_NAMES = {
    "neg_mean_squared_error": "mse",
    "neg_mean_absolute_error": "mae",
    "neg_root_mean_squared_error": "rmse",
    "neg_mean_absolute_scaled_error": "mase",
    "neg_symmetric_mean_absolute_percentage_error": "smape",
    "neg_pinball_loss": "pinball",
}


class ForecastScorer:
    """A ``scoring=`` callable for scikit-learn's model selection that scores forecasts of the test fold.

    ``scorer(estimator, X, y=None)`` forecasts the last ``horizon`` steps of
    each series in the test fold ``X`` from the rows before them (the lookback
    context that :class:`RollingOriginSplit` puts in every test fold) and returns
    the negated ``metric``: higher is better. It is the estimator's
    ``score(X, metric=..., season=..., level=...)``, with two checks that the
    split follows time: the scored steps must come after the data the estimator
    was fitted on, and every series of ``X`` must be one it was fitted on.
    Otherwise it raises ``ValueError`` naming :class:`RollingOriginSplit`.
    Made by :func:`make_forecast_scorer`.

    Note that ``GridSearchCV`` turns an error raised while scoring into
    ``error_score`` (NaN by default) and a warning holding the message; pass
    ``error_score="raise"`` to have the error itself.
    """

    def __init__(self, metric: str, *, season: int = 1, level=None):
        check_score_metric(metric, season, level)
        self.metric, self.season, self.level = metric, season, level

    def __call__(self, estimator, X, y=None, **kwargs) -> float:
        score = getattr(estimator, "_score_last_horizon", None)
        if score is None:
            raise TypeError(f"a forecast scorer scores tsformers forecasters; got {type(estimator).__name__}.")
        if kwargs:
            raise TypeError(f"a forecast scorer takes no scoring parameters; got {sorted(kwargs)}.")
        return score(X, history=None, metric=self.metric, season=self.season, level=self.level, static_df=None,
                     held_out=True)

    def __repr__(self) -> str:
        extra = (f", season={self.season}" if self.season != 1 else "") + \
            (f", level={self.level!r}" if self.level is not None else "")
        return f"make_forecast_scorer({self.metric!r}{extra})"


def make_forecast_scorer(metric: str, *, season: int = 1, level=None) -> ForecastScorer:
    """A scorer of forecasts for ``GridSearchCV(..., cv=RollingOriginSplit(...), scoring=...)``.

    scikit-learn's own scorers (``scoring="neg_mean_absolute_error"`` and the
    other strings) compute ``metric(y, estimator.predict(X))``: they need a
    ``y`` and a ``predict`` that forecasts the rows of ``X``. A forecaster has
    neither (the targets are columns of the frame; ``predict(X)`` forecasts the
    steps *after* ``X``), so with those strings every fold scores NaN. The
    scorers made here forecast the last ``horizon`` steps of each test fold
    from the rows before them instead.

    Parameters
    ----------
    metric : {"mse", "mae", "rmse", "mase", "smape", "pinball", "coverage"}
        The loss the scorer negates (see ``BaseForecaster.score``): ``"mase"``
        is scale-free (each series and target weighs the same on a panel);
        ``"pinball"`` needs a model fitted with ``quantiles=``; ``"coverage"``
        is the calibration error ``|coverage - level / 100|`` of the conformal
        intervals, so the best score is 0.
    season : int, default=1
        The seasonal period of ``"mase"``, whose scale is the seasonal naive
        error over the test fold's context rows (``RollingOriginSplit``'s
        ``lookback``: it must exceed ``season``).
    level : float, optional
        The interval level in percent of ``"coverage"``.

    Returns
    -------
    ForecastScorer
        ``scorer(estimator, X, y=None) -> float``, higher is better.

    See Also
    --------
    forecast_scoring : the same from scikit-learn's scoring names, one or several.

    Examples
    --------
    >>> from sklearn.model_selection import GridSearchCV
    >>> from tsformers import RollingOriginSplit, SeasonalNaiveForecaster
    >>> from tsformers.datasets import make_demo
    >>> search = GridSearchCV(SeasonalNaiveForecaster(horizon=24, lookback=48, season_length=24),
    ...                       {"season_length": [7, 24]}, cv=RollingOriginSplit(n_splits=2, horizon=24, lookback=48),
    ...                       scoring=make_forecast_scorer("mase", season=24)).fit(make_demo(n_steps=400))
    >>> search.best_params_
    {'season_length': 24}
    """
    return ForecastScorer(metric, season=season, level=level)


def forecast_scoring(scoring):
    """Forecast scorers for ``scoring=`` from scikit-learn's scoring names: one name, a list of them, or a dict.

    The names of :data:`FORECAST_SCORING_NAMES`: ``"neg_mean_squared_error"``,
    ``"neg_mean_absolute_error"``, ``"neg_root_mean_squared_error"``,
    ``"neg_mean_absolute_scaled_error"`` (MASE, season 1),
    ``"neg_symmetric_mean_absolute_percentage_error"`` and ``"neg_pinball_loss"``,
    each as :func:`make_forecast_scorer` makes it; a dict may also map a name
    of your choosing to a scorer (kept as it is). For a seasonal MASE or
    interval coverage, call :func:`make_forecast_scorer`.

    Parameters
    ----------
    scoring : str, list of str or dict

    Returns
    -------
    ForecastScorer or dict
        One scorer for one name; otherwise ``{name: scorer}`` (multi-metric
        search: ``GridSearchCV(..., refit=<one of the names>)``).
    """
    def one(name):
        if callable(name):
            return name
        if name not in FORECAST_SCORING_NAMES:
            raise ValueError(f"no forecast scorer is named {name!r}; the names are {sorted(FORECAST_SCORING_NAMES)}, "
                             f"and make_forecast_scorer(metric, season=..., level=...) makes the others.")
        return make_forecast_scorer(FORECAST_SCORING_NAMES[name])

    if isinstance(scoring, str):
        return one(scoring)
    if isinstance(scoring, dict):
        return {key: one(value) for key, value in scoring.items()}
    if isinstance(scoring, (list, tuple, set)):
        return {name: one(name) for name in scoring}
    raise TypeError(f"scoring must be a name, a list of names or a dict; got {type(scoring).__name__}.")
