"""Probabilistic forecasts, conformal intervals, backtests and plots: what every forecaster shares.

**Probabilistic forecasting.** Every estimator takes ``quantiles`` and every ``predict`` takes ``level``; both
behave the same for all of them.

**Quantiles** (``quantiles=[0.1, 0.5, 0.9]``, any distinct levels in (0, 1)).
The network is wrapped in :class:`tsformers.backbone.QuantileHead`: its own
forecast becomes the requested level closest to 0.5, and the others lie at
cumulative sums of positive (softplus) gaps above and below it, so quantiles
never cross. Training minimises the multi-quantile pinball loss
(:class:`tsformers.training.losses.PinballLoss`; the ``loss`` parameter is then
not used). The forecast frame holds one column per target and level,
``{target}_q{level}`` (``load_q0.1``; in a long frame ``y_q0.1``), right after
the target's point column. The point column is the 0.5 quantile when 0.5 is
requested; otherwise it is the **mean of the requested quantiles**, the
midpoint rule for the mean ``E[Y] = integral of q(tau) over (0, 1)``: a good
estimate of the mean for evenly spaced levels, at least a central value for
others. Physical constraints (``_postprocess``, e.g. PV clipping) apply to
every quantile; being monotone, they keep the order.

**Conformal intervals** (``predict(df, level=[80, 95])``), for any model,
point- or quantile-trained. At the end of ``fit`` the model forecasts
rolling origins (one step apart) over the tail of each training series (the
validation part, ``val_size``, which training did not fit; without one, the
last ``max(2 * horizon, 10%)`` steps, in-sample, which makes intervals too
narrow) and keeps the absolute errors of its point forecast, each divided by
its window's scale ``s``, per horizon step and target: at most 1000 windows, pooled over
series (origins further apart when there would be more; streaming models, which
advance their state from origin to origin, at most 200 origins). A ``level`` interval at step ``h`` is
``point +- s * r``, with ``s`` the forecast window's scale and ``r`` the ``ceil((n + 1) * level / 100)``-th
smallest of the ``n`` errors at step ``h`` (split conformal prediction, Vovk et al. 2005; Lei et al. 2018);
over exchangeable windows it covers at least ``level`` percent, whatever the scale. The scale is
locally weighted (Lei et al. 2018, locally weighted conformal inference): the series' scale times the square root of the
target's standard deviation over the ``lookback`` rows before the origin, in that series' scale and
less its seasonal cycle (:func:`window_scale_factor`), so an interval widens after a volatile stretch
and narrows after a calm one. The square root (half-way, in logs, between the window's spread and the
series') was chosen on the validation windows of the ETT data sets and Exchange against the series'
scale alone and the window's spread alone (``benchmarks/interval_scale.py``). Models saved before it
(model format 2 and older) scaled their errors by the series' scale alone (``conformal_scale_ == "series"``)
and still do; ``calibrate`` moves a model to the window's scale. Columns ``{target}_lo{level}`` and
``{target}_hi{level}``.
The errors are saved with the model (``weights.pt``, a tensor).

**Backtests and plots.** :meth:`EvaluationMixin.backtest` forecasts ``n_windows`` origins per series in
batches and returns a tidy frame; :meth:`EvaluationMixin.plot` draws the
forecast (matplotlib, imported only then); :mod:`tsformers.plotting` draws a backtest.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from tsformers import metrics
from tsformers.data.frames import as_pandas, format_level, infer_schema, output_times, restore_ids, series_rows
from tsformers.data.prepare import Prepared
from tsformers.data.time import times_before

#: At most this many windows are forecast at fit for the conformal calibration.
MAX_CALIBRATION_WINDOWS = 1000
#: A window flatter than this (a target's standard deviation over it, in its series' scale) counts as this flat,
#: so that no interval has zero width: a constant stretch (a sensor's flat line, nights of PV power) still
#: gets an interval a little over a fifth (its square root) of the series' scale's.
SPREAD_FLOOR = 0.05
#: How a model's conformal errors are scaled (``conformal_scale_``): the series' scale alone (models saved
#: before the window's scale) or times :func:`window_scale_factor` of the forecast window.
CONFORMAL_SCALES = ("series", "window")


def window_scale_factor(spread: np.ndarray) -> np.ndarray:
    """The factor of a window's scale over its series': ``sqrt(max(spread, SPREAD_FLOOR))`` of each target's
    standard deviation over the window (:meth:`~tsformers.data.prepare.Prepared.target_spread`), 1 where the
    window holds no observed value of the target."""
    spread = np.asarray(spread, dtype=np.float64)
    return np.where(np.isfinite(spread), np.sqrt(np.maximum(spread, SPREAD_FLOOR)), 1.0)


def check_quantiles(quantiles) -> list[float] | None:
    """The sorted levels of a ``quantiles`` parameter, or None; refuses levels outside (0, 1) and repeats."""
    if quantiles is None:
        return None
    levels = [float(q) for q in quantiles]
    if not levels:
        raise ValueError("quantiles must hold at least one level in (0, 1), e.g. [0.1, 0.5, 0.9], or be None.")
    bad = [q for q in levels if not 0 < q < 1]
    if bad:
        raise ValueError(f"quantiles must lie strictly between 0 and 1, got {bad}; e.g. quantiles=[0.1, 0.5, 0.9].")
    if len(set(levels)) != len(levels):
        raise ValueError(f"quantiles {list(quantiles)} repeat a level; list each once.")
    return sorted(levels)


def check_levels(level) -> list[float]:
    """The interval levels of ``predict(level=...)``: percentages in (1, 100)."""
    if level is None:
        return []
    levels = [float(v) for v in (level if isinstance(level, (list, tuple, np.ndarray)) else [level])]
    bad = [v for v in levels if not 1 < v < 100]
    if bad:
        raise ValueError(f"level holds interval coverages in percent, strictly between 1 and 100 (e.g. "
                         f"level=[80, 95]), got {bad}.")
    return sorted(set(levels))


#: The metrics of ``score`` and of :func:`tsformers.model_selection.make_forecast_scorer`.
SCORE_METRICS = ("mse", "mae", "rmse", "mase", "smape", "pinball", "coverage")


def check_score_metric(metric, season, level) -> list[float]:
    """Refuse a ``score`` metric, ``season`` or ``level`` that does not fit; the interval levels it needs."""
    if metric not in SCORE_METRICS:
        raise ValueError(f"metric must be one of {list(SCORE_METRICS)}, got {metric!r}.")
    if isinstance(season, bool) or not isinstance(season, (int, np.integer)) or season < 1:
        raise ValueError(f"season must be a positive integer (the seasonal period of MASE), got {season!r}.")
    if metric == "coverage":
        if level is None or isinstance(level, (list, tuple, np.ndarray)):
            raise ValueError("metric='coverage' scores the conformal intervals of one level: pass level= in "
                             f"percent, e.g. level=80; got {level!r}.")
        return check_levels(level)
    if level is not None:
        raise ValueError(f"level is the interval level of metric='coverage'; metric={metric!r} does not use it.")
    return []


def conformal_radius(scores: np.ndarray, level: float) -> np.ndarray:
    """The split-conformal radius ``(horizon, n_targets)`` at ``level`` percent from sorted scores ``(n, H, T)``.

    The ``ceil((n + 1) * level / 100)``-th smallest finite score per step and
    target (NaN scores, from missing targets, are left out); where ``n`` is too
    small for ``level``, the largest, with a warning.
    """
    n = np.isfinite(scores).sum(axis=0)                                    # (H, T)
    k = np.ceil((n + 1) * level / 100.0).astype(np.int64)
    if (k > n).any():
        warnings.warn(f"only {int(n.min())} calibration errors per step: too few for a {level:g}% interval, "
                      f"which is widened to the largest error; fit on longer series (or a larger val_size).",
                      UserWarning, stacklevel=3)
    k = np.clip(k, 1, np.maximum(n, 1))
    radius = np.take_along_axis(scores, (k - 1)[None], axis=0)[0].astype(np.float64)
    return np.where(n > 0, radius, np.nan)


class EvaluationMixin:
    """Conformal intervals, backtests and plots for :class:`~tsformers.estimators.base.BaseForecaster`.

    Every forecast here comes from the estimator's own data path and forecasting methods: the rows before
    each origin (``_rolling_forecasts``, the calibration and the backtest) and the forecast after the data
    (``_forecast_after``, as ``predict`` makes it).
    """

    # -- conformal intervals -----------------------------------------------------------------

    def _interval_scale(self, data: Prepared, rows: np.ndarray, origins: np.ndarray,
                        series_scale: np.ndarray) -> np.ndarray:
        """``(n, T)``: the scale of the windows forecasting from ``origins`` of series ``rows``, whose targets'
        scales are ``series_scale`` ``(n, T)``: times :func:`window_scale_factor` of each window (the model's
        errors were scaled so, ``conformal_scale_ == "window"``), else the series' scale alone."""
        if getattr(self, "conformal_scale_", "series") != "window":
            return series_scale
        return series_scale * window_scale_factor(data.target_spread(rows, origins))

    def _intervals(self, point: np.ndarray, scale: np.ndarray, levels: list[float]) -> dict:
        """``{"_lo80": lower, "_hi80": upper, ...}`` around ``point`` ``(n, H, T)``; ``scale`` is each forecast
        window's ``(n, T)`` (:meth:`_interval_scale`)."""
        if not levels:
            return {}
        scores = getattr(self, "conformal_", None)
        if scores is None:
            raise ValueError("this model has no conformal calibration: its series were too short for a "
                             "calibration window (lookback + horizon steps in the tail), or it was saved by an "
                             "older tsformers. Refit it to get intervals (level=...).")
        out = {}
        for level in levels:
            radius = conformal_radius(scores, level)[None] * scale[:, None, :]   # (n, H, T)
            out[f"_lo{format_level(level)}"] = self._postprocess(point - radius)
            out[f"_hi{format_level(level)}"] = self._postprocess(point + radius)
        return out

    def _extra_columns(self, quantiles: np.ndarray | None, intervals: dict) -> dict:
        """The column suffixes and blocks that follow the point forecast: quantiles, then intervals."""
        extra = {}
        if quantiles is not None:
            for k, q in enumerate(self._quantile_levels()):
                extra[f"_q{format_level(q)}"] = quantiles[..., k]
        extra.update(intervals)
        return extra

    def calibrate(self, df, *, last_steps: int | None = None, static_df=None):
        """Recompute the conformal errors behind ``predict(level=...)`` from recent rows, the network unchanged.

        ``fit`` calibrates the intervals on the tail of the fit data. When the errors
        of the deployed model drift from those (a calmer or a stormier period), call
        this on the latest observations, as often as they arrive: the intervals
        then follow the recent errors (rolling split-conformal calibration) without
        refitting. The forecast windows are those of :meth:`backtest`; nothing else
        changes (point forecasts, the history ``predict()`` reads, the state).

        Parameters
        ----------
        df : pandas.DataFrame or polars.DataFrame
            Rows with the columns of the fit data; the calibration windows are
            those whose forecast steps lie in the last ``last_steps`` rows of each
            series (each window also reads the ``lookback`` rows before it).
            Series not seen in fit are scaled by their own history, as in ``predict``.
        last_steps : int, optional
            How many final rows of each series the calibration windows forecast, at
            least ``horizon``. Default: as many as the fit's validation part
            (``val_size``).
        static_df : DataFrame, optional
            Static attributes of series not seen in fit, when they are not columns of ``df``.

        Returns
        -------
        self
        """
        self._check_fitted()
        if last_steps is not None and (isinstance(last_steps, bool) or not isinstance(last_steps, (int, np.integer))
                                       or last_steps < self.horizon):
            raise ValueError(f"last_steps must be an integer of at least horizon={self.horizon} (the rows one "
                             f"calibration window forecasts), got {last_steps!r}.")
        data = self.prepare(df, static_df, min_rows=self.lookback + self.horizon, action="calibrate")
        steps = data.validation_steps(self.val_size) if last_steps is None else int(last_steps)
        earlier = getattr(self, "conformal_scale_", "series")
        self.conformal_scale_ = "window"   # a model saved with the series' scale alone moves to the window's
        scores = self._calibrate(data, steps)  # by default the windows fit calibrates on, at the end of df
        if scores is None:
            self.conformal_scale_ = earlier
            raise ValueError(f"no calibration window fits in the last {steps} rows with lookback + horizon = "
                             f"{self.lookback + self.horizon} rows each. Pass more rows or a larger last_steps.")
        self.conformal_ = scores
        return self

    def _calibrate(self, data: Prepared, val_steps: int) -> np.ndarray | None:
        """The sorted scaled absolute errors ``(n, H, T)`` of the point forecast over the tail of the fit data."""
        lookback, horizon = self.lookback, self.horizon
        shortest = int(data.raw.lengths.min())
        tail = val_steps if val_steps >= horizon else max(2 * horizon, int(round(0.1 * shortest)))
        possible = min(tail - horizon + 1, shortest - lookback - horizon + 1)
        if possible < 1:
            return None
        n_series = len(data.raw.series)
        if n_series > MAX_CALIBRATION_WINDOWS:  # an evenly spread subset of the series, one window each
            keep = np.unique(np.linspace(0, n_series - 1, MAX_CALIBRATION_WINDOWS).round().astype(np.int64))
            data = data.select(keep)
            n_series = len(keep)
        step = max(1, math.ceil(n_series * possible / MAX_CALIBRATION_WINDOWS))
        most = self._calibration_origins_at_most(data.raw.aligned)
        if most is not None:
            step = max(step, math.ceil(possible / most))
        n_windows = (possible - 1) // step + 1
        done = self._rolling_forecasts(data, n_windows, step, intervals=True)
        scores = np.abs(done["truth"] - done["point"]) / done["scale"][:, None, :]
        return np.sort(scores, axis=0).astype(np.float32)   # NaN (missing targets) last

    # -- score ------------------------------------------------------------------------------

    def _window_loss(self, data: Prepared, done: dict, metric: str, season: int, levels: list[float]) -> float:
        """The ``metric`` loss of one forecast window per series (``_rolling_forecasts`` output ``done``) over
        its observed values; ``data`` holds the rows before each window (the MASE scale)."""
        truth, point = done["truth"], done["point"]                      # (S, H, T)
        observed = ~np.isnan(truth)
        if not observed.any():
            raise ValueError("no target value is observed in the scored steps (the last horizon of each series); "
                             "nothing to score.")
        if metric in ("mse", "mae", "rmse", "smape"):
            return getattr(metrics, metric)(truth[observed], point[observed])
        if metric == "pinball":
            if done["quantiles"] is None:
                raise ValueError("metric='pinball' scores quantile forecasts: fit the model with quantiles=[...] "
                                 "(e.g. [0.1, 0.5, 0.9]).")
            return metrics.pinball_loss(truth[observed], done["quantiles"][observed], self._quantile_levels())
        if metric == "coverage":
            intervals = self._intervals(point, done["scale"], levels)
            name = format_level(levels[0])
            share = metrics.coverage(truth[observed], intervals[f"_lo{name}"][observed],
                                     intervals[f"_hi{name}"][observed])
            return abs(share - levels[0] / 100)
        return self._panel_mase(data, done, season)

    def _panel_mase(self, data: Prepared, done: dict, season: int) -> float:
        """MASE per series and target (scaled by the seasonal naive error of the rows before the window),
        averaged with each series and target weighing the same."""
        raw, n_targets = data.raw, len(self.schema_.targets)
        values = raw.span_values()
        ratios = []
        for s, (row, origin) in enumerate(zip(done["rows"], done["origins"])):
            before = values[row, raw.first[row]: origin, :n_targets]                    # (n, T)
            naive = np.abs(before[season:] - before[:-season]) if len(before) > season else before[:0]
            for t, target in enumerate(self.schema_.targets):
                errors = np.abs(done["truth"][s, :, t] - done["point"][s, :, t])
                if np.isnan(errors).all():
                    continue
                scale = np.nanmean(naive[:, t]) if np.isfinite(naive[:, t]).any() else np.nan
                if not scale > 0:
                    key = raw.series[row]
                    who = f"target '{target}'" + ("" if key is None else f" of series '{key}'")
                    raise ValueError(
                        f"MASE cannot scale {who}: the {len(before)} rows before the scored steps have no "
                        f"{'nonzero ' if scale == 0 else ''}seasonal naive error for season={season} (a constant "
                        f"or too short history). Pass more rows before the scored steps (history=, or a "
                        f"larger lookback in RollingOriginSplit), or score another metric.")
                ratios.append(np.nanmean(errors) / scale)
        return float(np.mean(ratios))

    # -- backtest ---------------------------------------------------------------------------

    def backtest(self, df, n_windows: int = 3, step: int | None = None, refit: bool = False, level=None,
                 static_df=None):
        """Rolling-origin evaluation: forecast ``n_windows`` origins per series and line them up with the truth.

        The last window of each series forecasts its final ``horizon`` steps;
        the earlier ones start ``step`` steps apart before it. Every window
        reads only the data before its origin (its *cutoff* is the last
        timestamp seen). Forecasts are computed in batches: windowed networks
        read the ``lookback`` rows before each origin, streaming ones run their
        recurrence over the history before each origin, in one pass. With
        ``missing="interpolate"``, a gap that runs up to an origin is held at
        the last value observed before it, since interpolating it would read
        values after the origin. A series not seen in fit is scaled by its
        history before the first origin (``predict`` at a later origin would
        also read the steps up to it, so its forecasts there may differ
        slightly, for a network that is not scale-free such as the linear base).

        Parameters
        ----------
        df : pandas.DataFrame or polars.DataFrame
            History with the columns of the fit data; known-future covariates are read from it.
        n_windows : int, default=3
            Forecast origins per series.
        step : int, optional
            Steps between origins; ``horizon`` by default (windows side by side).
        refit : bool, default=False
            False: one model forecasts every window; a fitted forecaster is used
            as it is, an unfitted one is first fitted (once) on the data before
            the first window. True: a clone is fitted on the data before each
            window's origin (the forecaster itself is left as it is).
        level : float or list of float, optional
            Conformal interval levels in percent, as in :meth:`predict`.
        static_df : DataFrame, optional
            Static attributes that are not columns of ``df`` (for fitting and for new series).

        Returns
        -------
        DataFrame
            One row per window, target and horizon step, in the library of
            ``df``: ``window`` (0 for the earliest origin to ``n_windows - 1`` for
            the one that forecasts the final steps), the id column (long frames),
            ``target``, ``cutoff``, the time column, ``h`` (1 to horizon),
            ``actual``, ``forecast``, then
            ``q{level}`` per quantile and ``lo{level}``/``hi{level}`` per interval.
            :func:`tsformers.metrics.evaluate` summarises it;
            :func:`tsformers.plotting.plot_backtest` draws it.
        """
        if isinstance(n_windows, bool) or not isinstance(n_windows, (int, np.integer)) or n_windows < 1:
            raise ValueError(f"n_windows must be a positive integer, got {n_windows!r}.")
        step = self.horizon if step is None else step
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 1:
            raise ValueError(f"step must be a positive integer (steps between origins), got {step!r}.")
        levels = check_levels(level)
        frame, backend = as_pandas(df)
        static = {} if static_df is None else {"static_df": static_df}
        if refit:
            from sklearn.base import clone

            parts = []
            for k in range(n_windows):
                later = (n_windows - 1 - k) * step
                model = clone(self).fit(self._drop_last_steps(frame, backend, self.horizon + later, static_df),
                                        **static)
                parts.append(model._backtest_part(frame, 1, step, levels, static_df, window_offset=k,
                                                  drop=later))
            out = pd.concat(parts, ignore_index=True)
        else:
            try:
                self._check_fitted()
            except Exception:  # noqa: BLE001 - NotFittedError: fit once, before the first window
                self.fit(self._drop_last_steps(frame, backend, self.horizon + (n_windows - 1) * step, static_df),
                         **static)
            out = self._backtest_part(frame, n_windows, step, levels, static_df)
        if backend == "polars":
            import polars as pl

            return pl.from_pandas(out)
        return out

    def _drop_last_steps(self, frame: pd.DataFrame, backend: str, n: int, static_df=None) -> pd.DataFrame:
        """``frame`` without the last ``n`` time steps of each series (the history before an origin), its rows in
        their order."""
        if not n:
            return frame
        schema = getattr(self, "schema_", None) or infer_schema(
            frame, backend, time_col=self.time_col, id_col=self.id_col, target=self.target,
            covariates=self.covariates, future_covariates=self.future_covariates, static=self.static,
            static_df=None if static_df is None else as_pandas(static_df)[0])
        kept = [rows[: len(rows) - n] for rows in series_rows(frame, schema).values()]  # rows in any order
        return frame.iloc[np.sort(np.concatenate(kept))]

    def _backtest_part(self, frame: pd.DataFrame, n_windows: int, step: int, levels: list, static_df,
                       window_offset: int = 0, drop: int = 0) -> pd.DataFrame:
        """The tidy backtest rows of ``n_windows`` windows ending ``drop`` steps before each series' end."""
        schema = self.schema_
        raw = self._read(frame, schema, fitting=False, static_df=static_df)
        if drop:
            raw = raw.drop_last(drop)
        # a series unseen in fit is scaled by what is known at the first origin: no window reads a later step
        done = self._rolling_forecasts(self._prepare(raw, unknown_last=self.horizon + (n_windows - 1) * step),
                                       n_windows, step, intervals=bool(levels))
        intervals = self._intervals(done["point"], done["scale"], levels)
        extra = {k.lstrip("_"): v for k, v in self._extra_columns(done["quantiles"], intervals).items()}
        rows, origins, horizon = done["rows"], done["origins"], self.horizon
        n, _, n_targets = done["point"].shape
        times = output_times(raw.times, schema)
        shape = (n, n_targets, horizon)                          # window, target, step: the row order

        def spread(block):                                       # (n, H, T) -> rows
            return np.moveaxis(block, 2, 1).reshape(-1)

        index = (origins[:, None, None] + np.arange(horizon)[None, None, :]) + np.zeros(shape, dtype=np.int64)
        out = {}
        if schema.layout == "long":
            ids = np.empty(len(raw.series), dtype=object)
            ids[:] = raw.series
            out[schema.id_col] = np.broadcast_to(ids[rows][:, None, None], shape).reshape(-1)
        out["target"] = np.broadcast_to(np.array(schema.targets, dtype=object)[None, :, None], shape).reshape(-1)
        out["cutoff"] = times[np.broadcast_to((origins - 1)[:, None, None], shape).reshape(-1)]
        out[schema.time_col] = times[index.reshape(-1)]
        out["h"] = np.broadcast_to(np.arange(1, horizon + 1)[None, None, :], shape).reshape(-1)
        out["actual"] = spread(done["truth"])
        out["forecast"] = spread(done["point"])
        for name, block in extra.items():
            out[name] = spread(block)
        result = pd.DataFrame(out)
        if schema.layout == "long":  # ids keep their type (bool, int, float, text), as in predict
            result[schema.id_col] = restore_ids(result[schema.id_col].to_numpy(dtype=object), raw.series)
        result.insert(0, "window", np.repeat(np.tile(np.arange(n_windows), len(raw.series)) + window_offset,
                                             n_targets * horizon))
        return result

    # -- plot -------------------------------------------------------------------------------

    def plot(self, df=None, series=None, max_series: int = 4, level=None, future_df=None, static_df=None,
             n_history: int | None = None):
        """Draw the forecast after ``df`` (or after the training data): history tail, forecast and bands.

        One panel per series (a long frame's id, a wide frame's target column;
        each target of a multi-target long frame gets its own), with the last
        ``n_history`` observed steps, the point forecast (its line starts at the
        last observed value, so that it continues the history), a shaded band per
        pair of quantiles (outermost lightest) and per conformal interval. When
        ``max_series`` leaves series out, the figure's title says how many and which.

        Parameters
        ----------
        df : DataFrame, optional
            New history, as for :meth:`predict`; by default the end of the training data.
        series : list, optional
            The series ids (long) or target columns (wide) to draw; by default the first ``max_series``.
        max_series : int, default=4
            At most this many panels.
        level : float or list of float, optional
            Conformal intervals to draw, in percent.
        future_df, static_df : DataFrame, optional
            As for :meth:`predict`.
        n_history : int, optional
            Observed steps before the forecast; ``lookback`` by default.

        Returns
        -------
        matplotlib.figure.Figure
            Not attached to pyplot (no global state); it displays itself in a notebook.
        """
        try:
            from tsformers.plotting import draw_forecast_panels
        except ImportError as err:
            raise ImportError(f"plotting needs matplotlib ({err}): pip install 'tsformers[plot]'.") from None

        self._check_fitted()
        done = self._forecast_after(df, future_df, static_df, check_levels(level))
        panel = done.data.panel
        n_hist = min(self.lookback if n_history is None else int(n_history), self.lookback if df is None else
                     int(panel.lengths.min()))
        history = panel.tail(n_hist)[..., : len(self.schema_.targets)]
        hist_times = [times_before(end, self.schema_.step, n_hist) for end in done.ends]
        return draw_forecast_panels(
            schema=self.schema_, series_keys=list(panel.series), history=history, history_times=hist_times,
            point=done.point, forecast_times=done.times, quantiles=done.quantiles, levels_q=self._quantile_levels(),
            intervals=done.intervals, select=series, max_series=max_series,
            title=f"{type(self).__name__}: {self.horizon}-step forecast")

