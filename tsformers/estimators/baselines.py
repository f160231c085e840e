"""The baselines every model must beat: the last value, the last season, and a ridge-fitted linear map.

Each is a full :class:`~tsformers.estimators.base.BaseForecaster` (the same frames, conformal intervals
with ``predict(level=...)``, backtests, ``score``, ``update``, saving, ONNX export, MLflow and the
command line); only how the network is fitted differs (:meth:`BaseForecaster._fit_network`): the two
naive forecasts have nothing to fit, the linear map is solved in closed form. They forecast every
target from its own past: covariates, known-future covariates and static attributes are not read
(those parameters are not taken), and gaps are interpolated or refused (``missing="mask"`` would
hand the forecast zeros where values are missing).
"""
from __future__ import annotations

import textwrap
from numbers import Integral, Real

import torch
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from tsformers.data.missing import MODES as MISSING_MODES
from tsformers.data.prepare import Prepared
from tsformers.estimators import networks
from tsformers.estimators._docs import CONFORMAL_ATTRIBUTES
from tsformers.estimators.base import BaseForecaster
from tsformers.estimators.ridge import ALPHA_GRID, fit_ridge_map

__all__ = ["ALPHA_GRID", "LinearForecaster", "NaiveForecaster", "SeasonalNaiveForecaster"]

_COMMON_PARAMETERS = """\
    target : str or list of str, optional
        Columns to forecast; by default every numeric column.
    time_col, id_col : str, optional
        The time column (detected: a datetime column, ``ds``/``date``/..., or a
        DatetimeIndex) and, for long frames, the series id (``unique_id`` is detected).
    val_size : float or int, default=0.1
        The final part of each series whose forecasts calibrate ``predict(level=...)``:
        a fraction or a number of steps."""

_MISSING_PARAMETERS = """\
    scaler : {"standard"} or None, default="standard"
        Per series and variable, fitted on the training part only.
    missing : {"error", "interpolate"}, default="error"
        Missing values (NaN) in the targets: refuse them, or interpolate gaps of at most
        ``max_gap`` steps linearly in time.
    max_gap : int, optional
        The longest gap ``missing="interpolate"`` fills; a longer one is refused, naming its
        length. None: 3 steps (``tsformers.data.missing.DEFAULT_MAX_GAP``), so filling a longer outage is a choice.
    fill_gaps : bool, default=False
        Insert the missing timestamps of the regular time grid as missing values (then handled by ``missing``)."""

_COMMON_ATTRIBUTES = """\
    schema_ : PanelSchema
        Column roles, layout and time step of the fit data.
    scaler_ : PanelScaler
        Scaling statistics, shape (n_series, n_vars).
    history_ : ndarray of shape (n_series, lookback, n_vars)
        The last window of each series (of the fit data and of every ``update`` since).
    report_ : dict
        Per series of the fit data: timestamps inserted by ``fill_gaps``, values interpolated.
""" + textwrap.indent(CONFORMAL_ATTRIBUTES, "    ")


def _docs(cls: type) -> type:
    cls.__doc__ = cls.__doc__.replace("    %(parameters)s", _COMMON_PARAMETERS + "\n" + _MISSING_PARAMETERS) \
        .replace("    %(attributes)s", _COMMON_ATTRIBUTES)
    return cls


class _TargetsOnly(BaseForecaster):
    """What the three baselines share: targets only, no gradient training, no masks."""

    # The data path reads these settings; a baseline forecasts each target from its own past alone, so
    # they are fixed here rather than taken as parameters that could only be refused.
    covariates = future_covariates = static = None
    unknown_static = "error"

    _parameter_constraints = {
        **BaseForecaster._parameter_constraints,
        # "mask" zeroes the gaps it marks; a forecast that repeats or maps raw values would read those zeros
        "missing": [StrOptions(set(MISSING_MODES) - {"mask"})],
    }

    def _fit_network(self, data: Prepared, n_vars: int) -> tuple[torch.nn.Module, list[dict]]:
        return self._build_network(n_vars), []

    def __init__(self, horizon=96, lookback=96, *, target=None, time_col=None, id_col=None, val_size=0.1,
                 scaler="standard", missing="error", max_gap=None, fill_gaps=False):
        self.horizon = horizon
        self.lookback = lookback
        self.target = target
        self.time_col = time_col
        self.id_col = id_col
        self.val_size = val_size
        self.scaler = scaler
        self.missing = missing
        self.max_gap = max_gap
        self.fill_gaps = fill_gaps


@_docs
class NaiveForecaster(_TargetsOnly):
    """The last-value forecast: every step of the horizon repeats the window's last observation.

    The forecast of a random walk, and the first thing a model must beat: on
    near-random-walk data (exchange rates, prices) it is hard to beat at all. Nothing
    is trained (``_tags["trainable"] = False``); ``fit`` reads the data's schema,
    scaling and the conformal calibration of ``predict(level=...)``.

    Parameters
    ----------
    horizon : int, default=96
        Number of steps to forecast.
    lookback : int, default=1
        Rows of history a forecast needs (only the last is read); a longer window
        changes nothing but what ``predict`` and ``score`` require.
    %(parameters)s

    Attributes
    ----------
    network_ : torch.nn.Module
        A :class:`~tsformers.models.baselines.Naive`, which has no weights.
    %(attributes)s

    See Also
    --------
    SeasonalNaiveForecaster, LinearForecaster

    Examples
    --------
    >>> from tsformers import NaiveForecaster
    >>> from tsformers.datasets import make_demo
    >>> df = make_demo(n_steps=600)
    >>> f = NaiveForecaster(horizon=24).fit(df)
    >>> import numpy as np
    >>> np.allclose(f.predict().iloc[:, 1:], df.iloc[-1, 1:].to_numpy(float))   # to float32 precision
    True
    """

    _tags = {**BaseForecaster._tags, "trainable": False}

    def __init__(self, horizon=96, lookback=1, *, target=None, time_col=None, id_col=None, val_size=0.1,
                 scaler="standard", missing="error", max_gap=None, fill_gaps=False):
        super().__init__(horizon, lookback, target=target, time_col=time_col, id_col=id_col, val_size=val_size,
                         scaler=scaler, missing=missing, max_gap=max_gap, fill_gaps=fill_gaps)

    def _build_network(self, n_vars: int) -> torch.nn.Module:
        return networks.naive(self, n_vars)


@_docs
class SeasonalNaiveForecaster(_TargetsOnly):
    """The seasonal-naive forecast: step ``h`` repeats the value one season (or a whole number of seasons) before it.

    Step ``h`` (1-based) after the window's end repeats the value ``season_length * k`` steps
    earlier, with the smallest ``k`` that lands inside the window: the last observed season,
    tiled over horizons longer than a season. The baseline for strongly periodic data (a
    day of hourly load, a week of daily sales). Nothing is trained (``_tags["trainable"] = False``).

    Parameters
    ----------
    horizon : int, default=96
        Number of steps to forecast.
    lookback : int, default=96
        Rows of history a forecast needs; at least ``season_length``.
    season_length : int
        The period in steps (24 for a daily cycle of hourly data, 7 for a weekly one of daily data).
    %(parameters)s

    Attributes
    ----------
    network_ : torch.nn.Module
        A :class:`~tsformers.models.baselines.SeasonalNaive`, which has no weights.
    %(attributes)s

    See Also
    --------
    NaiveForecaster, LinearForecaster

    Examples
    --------
    >>> from tsformers import SeasonalNaiveForecaster
    >>> from tsformers.datasets import make_demo
    >>> df = make_demo(n_steps=600)
    >>> f = SeasonalNaiveForecaster(horizon=48, lookback=24, season_length=24).fit(df)
    >>> import numpy as np
    >>> np.allclose(f.predict().iloc[24:, 1:], df.iloc[-24:, 1:].to_numpy(float))   # the last day, again
    True
    """

    _tags = {**BaseForecaster._tags, "trainable": False}
    _parameter_constraints = {**_TargetsOnly._parameter_constraints,
                              "season_length": [Interval(Integral, 1, None, closed="left")]}

    def __init__(self, horizon=96, lookback=96, *, season_length, target=None, time_col=None, id_col=None,
                 val_size=0.1, scaler="standard", missing="error", max_gap=None, fill_gaps=False):
        super().__init__(horizon, lookback, target=target, time_col=time_col, id_col=id_col, val_size=val_size,
                         scaler=scaler, missing=missing, max_gap=max_gap, fill_gaps=fill_gaps)
        self.season_length = season_length

    def fit(self, df, y=None, static_df=None):
        self._validate_params()
        if self.season_length > self.lookback:  # before reading any data: the settings alone are wrong
            raise ValueError(f"season_length={self.season_length} is longer than lookback={self.lookback}: the "
                             f"window must hold a whole season to repeat it. Pass lookback >= {self.season_length}.")
        return super().fit(df, y, static_df)

    fit.__doc__ = BaseForecaster.fit.__doc__

    def _build_network(self, n_vars: int) -> torch.nn.Module:
        return networks.seasonal_naive(self, n_vars)

    @classmethod
    def get_test_params(cls) -> dict:
        return {"season_length": 12}


@_docs
class LinearForecaster(_TargetsOnly):
    """A linear map from the window to the horizon, shared by every variable, fitted by ridge regression.

    Each window is normalised by its last value (NLinear / RLinear style) and one map of
    ``lookback`` inputs to ``horizon`` outputs with an intercept serves every variable
    of every series (channel independence):
    ``y[t + h] = x[t] + sum_j W[h, j] (x[t - lookback + 1 + j] - x[t]) + b[h]``, on the scaled
    data. ``W`` and ``b`` minimise the squared error over the training windows plus
    ``alpha * ||W||^2`` (the intercept is not penalised), solved in closed form from the
    Gram matrix accumulated over chunks of windows: no gradient training, a fit of seconds
    on the long-horizon benchmarks. With ``alpha=None`` the penalty is chosen from
    ``ALPHA_GRID`` (1e-2 ... 1e7) by the mean squared error on the validation windows
    (``val_size``), or by the leave-one-out error over the training windows where there are
    none (``val_size=0``, or a history too short for a validation part); the map is then
    solved on the training windows with that penalty.

    A strong baseline for long horizons: linear maps of this kind match or beat many
    Transformers on the standard benchmarks (Zeng et al. 2023).

    Parameters
    ----------
    horizon : int, default=96
        Number of steps to forecast.
    lookback : int, default=96
        Number of past steps the map reads.
    alpha : float or None, default=None
        The ridge penalty (> 0); None chooses it on the validation windows (a ``val_size`` part of
        at least ``horizon`` steps besides a training window), else by leaving out one training
        window at a time (exact for ridge, as scikit-learn's ``RidgeCV``; overlapping windows make
        it lean towards smaller penalties than a held-out part).
    cycle : "auto", int or None, default=None
        The targets' seasonal cycle, taken out of the scaled values before the map reads them and
        added back onto its forecast, as :class:`~tsformers.GateformerForecaster` does by default
        (see its ``cycle`` and :mod:`tsformers.data.cycle`). None: the plain map, the literature's
        linear baseline.
    %(parameters)s

    Attributes
    ----------
    network_ : torch.nn.Module
        The fitted :class:`~tsformers.models.baselines.Linear`.
    alpha_ : float
        The penalty of the fitted map: ``alpha``, or the one chosen on the validation windows.
    cycle_ : SeasonalCycle or None
        The targets' phase means and their period; None without a cycle.
    %(attributes)s

    References
    ----------
    Zeng, Chen, Zhang & Xu, "Are Transformers Effective for Time Series Forecasting?", AAAI 2023.
    Li, Qi, Li & Xu, "Revisiting Long-term Time Series Forecasting: An Investigation on Linear
    Mapping", arXiv 2305.10721, 2023.

    See Also
    --------
    NaiveForecaster, SeasonalNaiveForecaster

    Examples
    --------
    >>> from tsformers import LinearForecaster
    >>> from tsformers.datasets import make_demo
    >>> df = make_demo(n_steps=600)
    >>> f = LinearForecaster(horizon=24, lookback=96).fit(df)
    >>> from tsformers.estimators.baselines import ALPHA_GRID
    >>> f.alpha_ in ALPHA_GRID
    True
    """

    _parameter_constraints = {**_TargetsOnly._parameter_constraints,
                              "alpha": [Interval(Real, 0, None, closed="neither"), None]}

    def __init__(self, horizon=96, lookback=96, *, alpha=None, cycle=None, target=None, time_col=None, id_col=None,
                 val_size=0.1, scaler="standard", missing="error", max_gap=None, fill_gaps=False):
        super().__init__(horizon, lookback, target=target, time_col=time_col, id_col=id_col, val_size=val_size,
                         scaler=scaler, missing=missing, max_gap=max_gap, fill_gaps=fill_gaps)
        self.alpha = alpha
        self.cycle = cycle

    @property
    def alpha_(self) -> float:
        """The ridge penalty of the fitted map (kept in the network, so it is saved with the weights)."""
        check_is_fitted(self, "network_")
        return float(self.network_.alpha)

    def _build_network(self, n_vars: int) -> torch.nn.Module:
        return networks.linear(self, n_vars)

    def _fit_network(self, data: Prepared, n_vars: int) -> tuple[torch.nn.Module, list[dict]]:
        weights, alpha = fit_ridge_map(data, lookback=self.lookback, horizon=self.horizon, val_size=self.val_size,
                                       alpha=self.alpha)                  # (L + 1, H): the map, then the intercept
        network = self._build_network(n_vars)
        with torch.no_grad():
            network.map.weight.copy_(torch.from_numpy(weights[:-1].T))
            network.map.bias.copy_(torch.from_numpy(weights[-1]))
            network.alpha.fill_(alpha)
        return network, []   # no epochs: training_log_ counts epochs wherever it is read (CLI, MLflow)
