"""Exponential smoothing (ETS) with automatic selection by AICc, per series and variable, as a full estimator.

statsmodels fits the candidate forms on each series' training part; the selected smoothing
parameters then drive :class:`~tsformers.models.baselines.ETS`, a torch network that runs the same
recursion over the forecast window, so every other part of the estimator (frames, intervals,
backtests, saving, ONNX export, MLflow, the command line) is the other baselines'.
"""
from __future__ import annotations

import warnings
from numbers import Integral

import numpy as np
import pandas as pd
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from tsformers.data.frames import Panel
from tsformers.data.prepare import Prepared
from tsformers.data.windows import split_spans, split_train_val
from tsformers.estimators.base import BaseForecaster
from tsformers.estimators.baselines import _docs, _TargetsOnly
from tsformers.models.baselines import ETS

__all__ = ["ETSForecaster"]

#: The statsmodels parameters of the selected forms, in the columns of ``selected_``.
PARAMETERS = ("smoothing_level", "smoothing_trend", "smoothing_seasonal", "damping_trend")


def form_name(has_trend: bool, damped: bool, has_seasonal: bool) -> str:
    """The form in Hyndman's notation: ``ETS(A,N,N)``, ``ETS(A,A,N)``, ``ETS(A,Ad,A)``..."""
    return f"ETS(A,{'Ad' if damped else 'A' if has_trend else 'N'},{'A' if has_seasonal else 'N'})"


@_docs
class ETSForecaster(_TargetsOnly):
    """Exponential smoothing, its form chosen by AICc for each series and variable (statsmodels' ``ETSModel``).

    For every series and target variable, ``fit`` fits statsmodels'
    :class:`~statsmodels.tsa.exponential_smoothing.ets.ETSModel` (maximum likelihood, initial states
    estimated) to the scaled training part (the part before ``val_size``) in each candidate form
    and keeps the one with the least AICc, as statsforecast's ``AutoETS`` and R's ``ets`` do. The
    candidates are the additive forms: additive error; trend none, additive or additive damped;
    season none or additive with period ``season_length``, the seasonal forms only for a series
    whose training part holds two full seasons. Multiplicative error, trend and season are left
    out: the scaled data are centred near 0, where they are undefined.

    The forecast runs the selected recursion over the ``lookback`` rows before the forecast origin
    (:class:`~tsformers.models.baselines.ETS`), started from the state before the window that
    minimises the squared one-step errors over the window (what statsmodels estimates as the initial
    states, given the smoothing parameters; a linear map of the window), then projects the final
    state ``horizon`` steps ahead (the trend damped by ``phi + ... + phi^h``). The forecast is thus
    a fixed linear function of the window, and it is statsmodels' forecast of the selected model
    refitted to the window with the smoothing parameters held (tested to 1e-3 of the data's scale).
    Smoothing that forgets slowly (small ``alpha``) reads the whole window, not only its end.

    Each fitted series forecasts with its own parameters. A series not seen in fit (``predict`` on
    new ids) forecasts, per variable, with the parameters of one fitted series: among those whose
    selected form is the most common (ties: the simpler form), the one whose parameters lie
    closest to their median (``new_series_``).

    Parameters
    ----------
    horizon : int, default=96
        Number of steps to forecast.
    lookback : int, default=96
        The rows the recursion runs over; at least ``season_length`` when seasonal forms are
        candidates. A longer window brings the forecast closer to statsmodels' from the whole
        history (96 rows are four days of hourly data).
    season_length : int, optional
        The period of the seasonal forms in steps (24 for a daily cycle of hourly data, 7 for a
        weekly one of daily data). None or 1: no seasonal forms (statsforecast's default of 1).
    trend : {"auto", "add"} or None, default="auto"
        "auto": forms with and without an additive trend compete; "add": a trend always; None: never.
    damped : "auto" or bool, default="auto"
        For trend forms: "auto" lets damped and undamped compete; True or False fixes it.
    seasonal : {"auto", "add"} or None, default="auto"
        "auto": forms with and without an additive season compete (where ``season_length`` is
        set and the training part holds two seasons); "add": a season always (a series shorter
        than two seasons is refused); None: never.
    %(parameters)s

    Attributes
    ----------
    network_ : torch.nn.Module
        The fitted :class:`~tsformers.models.baselines.ETS`, which holds the selected parameters.
    selected_ : pandas.DataFrame
        One row per fitted series and target: the series (long frames), ``target``, ``model`` (the
        form, e.g. ``ETS(A,Ad,A)``), the statsmodels parameters ``smoothing_level`` (alpha),
        ``smoothing_trend`` (beta), ``smoothing_seasonal`` (gamma), ``damping_trend`` (phi), NaN
        where the form has none, and ``aicc``. They refer to the scaled data (each series and
        variable standardised on its training part).
    new_series_ : pandas.DataFrame
        One row per target: the parameters that forecast series not seen in fit and ``from_series``,
        the fitted series they are taken from.
    %(attributes)s

    See Also
    --------
    NaiveForecaster, SeasonalNaiveForecaster, LinearForecaster

    References
    ----------
    Hyndman, Koehler, Ord & Snyder, *Forecasting with Exponential Smoothing: The State Space
    Approach*, Springer 2008. Hyndman & Athanasopoulos, *Forecasting: Principles and Practice*,
    chapter 8.

    Examples
    --------
    >>> from tsformers import ETSForecaster
    >>> from tsformers.datasets import make_demo
    >>> df = make_demo(n_steps=600)
    >>> f = ETSForecaster(horizon=24, lookback=96, season_length=24).fit(df)
    >>> list(f.selected_.columns)
    ['target', 'model', 'smoothing_level', 'smoothing_trend', 'smoothing_seasonal', 'damping_trend', 'aicc']
    >>> f.predict().shape
    (24, 4)
    """

    _parameter_constraints = {
        **_TargetsOnly._parameter_constraints,
        "season_length": [Interval(Integral, 1, None, closed="left"), None],
        "trend": [StrOptions({"auto", "add"}), None],
        "damped": [StrOptions({"auto"}), "boolean"],
        "seasonal": [StrOptions({"auto", "add"}), None],
    }

    def __init__(self, horizon=96, lookback=96, *, season_length=None, trend="auto", damped="auto",
                 seasonal="auto", target=None, time_col=None, id_col=None, val_size=0.1, scaler="standard",
                 missing="error", max_gap=None, fill_gaps=False):
        super().__init__(horizon, lookback, target=target, time_col=time_col, id_col=id_col, val_size=val_size,
                         scaler=scaler, missing=missing, max_gap=max_gap, fill_gaps=fill_gaps)
        self.season_length = season_length
        self.trend = trend
        self.damped = damped
        self.seasonal = seasonal

    def fit(self, df, y=None, static_df=None):
        self._validate_params()
        self._check_settings()  # before reading any data: the settings alone are wrong
        return super().fit(df, y, static_df)

    fit.__doc__ = BaseForecaster.fit.__doc__

    @classmethod
    def get_test_params(cls) -> dict:
        return {"season_length": 24}

    # -- settings -----------------------------------------------------------------------------

    def _period(self) -> int:
        """The seasonal period the network is built for: 1 when no seasonal form is a candidate."""
        if self.seasonal is None or self.season_length is None:
            return 1
        return int(self.season_length)

    def _check_settings(self) -> None:
        if self.seasonal == "add" and (self.season_length or 1) == 1:
            raise ValueError(f"seasonal='add' needs the period: got season_length={self.season_length}. Pass "
                             f"season_length= (e.g. 24 for a daily cycle of hourly data), or seasonal='auto'.")
        if self._period() > self.lookback:
            raise ValueError(f"season_length={self.season_length} is longer than lookback={self.lookback}: the "
                             f"forecast estimates the seasonal terms it starts from on the window, which must hold "
                             f"a whole season. Pass lookback >= {self.season_length} (several seasons forget that "
                             f"start better), or seasonal=None.")
        if self.trend is None and self.damped is True:
            raise ValueError("damped=True damps a trend, but trend=None fits none. Pass trend='add' or "
                             "trend='auto', or damped='auto'.")

    def _candidates(self, n_rows: int, where: str) -> list[tuple[bool, bool, bool]]:
        """The forms ``(has_trend, damped, has_seasonal)`` that compete on a training part of ``n_rows`` rows,
        simplest first (the first of equal AICc wins)."""
        trends = [(False, False)] if self.trend is None else []
        if self.trend in ("auto", "add"):
            trends = ([(False, False)] if self.trend == "auto" else []) + \
                [(True, d) for d in ((False, True) if self.damped == "auto" else (bool(self.damped),))]
        m = self._period()
        seasonal = [False]
        if m > 1:
            if n_rows >= 2 * m:
                seasonal = [False, True] if self.seasonal == "auto" else [True]
            elif self.seasonal == "add":
                raise ValueError(f"seasonal='add' needs two full seasons ({2 * m} rows) in the training part, but "
                                 f"{where} has {n_rows}. Pass a longer history, a smaller val_size, or "
                                 f"seasonal='auto' (seasonal forms only where two seasons fit).")
        return [(t, d, s) for s in seasonal for t, d in trends]

    # -- fit -----------------------------------------------------------------------------------

    def _build_network(self, n_vars: int) -> torch.nn.Module:
        return ETS(horizon=self.horizon, lookback=self.lookback, season_length=self._period(),
                   n_series=len(self.schema_.series), n_vars=n_vars)

    def _fit_network(self, data: Prepared, n_vars: int) -> tuple[torch.nn.Module, list[dict]]:
        panel = data.panel
        val_steps = data.validation_steps(self.val_size)
        train = split_train_val(data.scaled, self.lookback, val_steps)[0]
        first, last = split_spans(panel.first, panel.last, panel.values.shape[1], self.lookback, val_steps)[0]
        network = self._build_network(n_vars)
        fits = {}
        for s, key in enumerate(panel.series):
            for v, name in enumerate(data.schema.targets):
                where = f"target '{name}'" + ("" if key is None else f" of series '{key}'")
                fits[s, v] = self._select(train[s, first[s]: last[s] + 1, v], where)
        with torch.no_grad():
            for (s, v), (form, params, aicc) in fits.items():
                _store(network, s, v, form, params, aicc)
            for v in range(n_vars):
                source = _new_series_source([fits[s, v] for s in range(len(panel.series))])
                form, params, aicc = fits[source, v]
                _store(network, len(panel.series), v, form, params, aicc)
                network.new_series_from[v] = source
        network.refresh()
        self._mark_series(data)  # the conformal calibration after fit forecasts each series with its own parameters
        return network, []   # no epochs: training_log_ counts epochs wherever it is read (CLI, MLflow)

    def _select(self, y: np.ndarray, where: str) -> tuple[tuple[bool, bool, bool], dict, float]:
        """The form with the least AICc on ``y`` (scaled, float64), its parameters and AICc."""
        from statsmodels.tools.sm_exceptions import ConvergenceWarning
        from statsmodels.tsa.exponential_smoothing.ets import ETSModel  # statsmodels only to fit

        if not np.isfinite(y).all():
            raise ValueError(f"{where} holds missing values in the training part; pass missing='interpolate' "
                             f"(with max_gap=) to fill them before exponential smoothing.")
        best = None
        for form in self._candidates(len(y), where):
            has_trend, damped, has_seasonal = form
            model = ETSModel(y, error="add", trend="add" if has_trend else None, damped_trend=damped,
                             seasonal="add" if has_seasonal else None,
                             seasonal_periods=self._period() if has_seasonal else None)
            # a candidate whose optimiser stops early or overflows on the way is judged by its AICc all the
            # same: comparing them is what the selection is for, so their warnings say nothing to the user
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore", ConvergenceWarning)
                warnings.simplefilter("ignore", RuntimeWarning)
                try:
                    result = model.fit(disp=False)
                except (ValueError, np.linalg.LinAlgError):   # too few rows for this form's parameters
                    continue
            aicc = float(result.aicc)
            if np.isnan(aicc):
                continue
            if best is None or aicc < best[2]:   # strictly less: the simpler form wins a tie (a perfect fit's -inf)
                best = (form, dict(zip(model.param_names, np.asarray(result.params, dtype=float))), aicc)
        if best is None:
            raise ValueError(f"no exponential smoothing form could be fitted to {where} ({len(y)} training rows). "
                             f"Pass a longer history, or restrict the forms (trend=None, seasonal=None).")
        return best

    # -- series identity -------------------------------------------------------------------------

    def _mark_series(self, data: Prepared) -> Prepared:
        """Give each series of ``data`` its position in fit (-1: unseen) as the network's ``static`` input.

        The baselines take no static attributes, so this input is free to say which parameter row of
        :class:`~tsformers.models.baselines.ETS` a window reads; every forecast path (predict, score,
        backtest, the conformal calibration) passes it per window as it passes static attributes.
        """
        known = {key: i for i, key in enumerate(self.schema_.series)}
        data.panel.static = np.array([[known.get(key, -1)] for key in data.panel.series], dtype=np.float64)
        return data

    def _prepare(self, raw: Panel, *, unknown_last: int = 0) -> Prepared:
        return self._mark_series(super()._prepare(raw, unknown_last=unknown_last))

    def _network_static_width(self) -> int:
        return 1

    # -- what was selected -----------------------------------------------------------------------

    @property
    def selected_(self) -> pd.DataFrame:
        """The selected form, parameters and AICc per fitted series and target (saved with the weights)."""
        check_is_fitted(self, "network_")
        buffers = self._network_buffers()
        n_series, n_targets = len(self.schema_.series), len(self.schema_.targets)
        frame = pd.DataFrame([_describe(buffers, s, v, self.schema_.targets[v])
                              for s in range(n_series) for v in range(n_targets)])
        if self.schema_.layout == "long":
            keys = np.empty(n_series, dtype=object)
            keys[:] = self.schema_.series
            frame.insert(0, self.schema_.id_col, np.repeat(keys, n_targets))
        return frame

    @property
    def new_series_(self) -> pd.DataFrame:
        """Per target, the parameters that forecast a series not seen in fit, and the fitted series they come from."""
        check_is_fitted(self, "network_")
        buffers = self._network_buffers()
        n_series = len(self.schema_.series)
        frame = pd.DataFrame([_describe(buffers, n_series, v, name) for v, name in enumerate(self.schema_.targets)])
        frame["from_series"] = [self.schema_.series[int(s)] for s in buffers["new_series_from"]]
        return frame

    def _network_buffers(self) -> dict:
        if not isinstance(self.network_, ETS):
            raise AttributeError("the selected forms are read from the torch network; this forecaster runs on "
                                 "ONNX Runtime: load it with engine='torch' to read selected_ and new_series_.")
        return {name: tensor.numpy() for name, tensor in self.network_.state_dict().items()}


def _describe(buffers: dict, row: int, v: int, target: str) -> dict:
    """One selected model of the network's buffers: parameter row ``row``, variable ``v``."""
    has_trend, damped, has_seasonal = (bool(buffers[k][row, v]) for k in ("has_trend", "damped", "has_seasonal"))
    used = {"smoothing_level": True, "smoothing_trend": has_trend, "smoothing_seasonal": has_seasonal,
            "damping_trend": damped}
    return {"target": target, "model": form_name(has_trend, damped, has_seasonal),
            **{k: float(buffers[k][row, v]) if used[k] else np.nan for k in PARAMETERS},
            "aicc": float(buffers["aicc"][row, v])}


def _store(network: ETS, row: int, v: int, form: tuple[bool, bool, bool], params: dict, aicc: float) -> None:
    """Write one selected model into the network's parameter row ``row`` of variable ``v``."""
    has_trend, damped, has_seasonal = form
    network.has_trend[row, v], network.damped[row, v], network.has_seasonal[row, v] = has_trend, damped, has_seasonal
    network.smoothing_level[row, v] = params["smoothing_level"]
    network.smoothing_trend[row, v] = params.get("smoothing_trend", 0.0)
    network.smoothing_seasonal[row, v] = params.get("smoothing_seasonal", 0.0)
    network.damping_trend[row, v] = params.get("damping_trend", 1.0)   # an undamped trend, or none (b = 0)
    network.aicc[row, v] = aicc


def _new_series_source(fits: list) -> int:
    """The fitted series whose model forecasts unseen series: of those with the most common form (ties: the
    simpler, earlier candidate), the one whose parameters lie closest to their median."""
    forms = [form for form, _, _ in fits]
    order = sorted(set(forms), key=lambda f: (-forms.count(f), f[2], f[0], f[1]))
    members = [s for s, f in enumerate(forms) if f == order[0]]
    vectors = np.array([[fits[s][1].get(k, 0.0) for k in PARAMETERS] for s in members])
    distance = np.linalg.norm(vectors - np.median(vectors, axis=0), axis=1)
    return members[int(np.argmin(distance))]
