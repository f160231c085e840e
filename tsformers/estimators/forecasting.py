"""The forecast path of a fitted model, without torch or scikit-learn: frame in, forecast frame out.

:class:`ForecastPath` holds the steps every forecaster takes to forecast after
its data, once: read and validate the frame against the fitted schema
(:meth:`~ForecastPath.prepare`, the data path of :mod:`tsformers.data.prepare`),
the known-future covariates, the network's output back in the data's units
(:meth:`~ForecastPath._to_original`, quantiles and physical constraints), the
conformal intervals (:class:`~tsformers.estimators.evaluation.EvaluationMixin`)
and the output frame (:meth:`~ForecastPath.predict`). Only how the network is
run differs: :class:`~tsformers.estimators.base.BaseForecaster` runs its torch
network (``_network_output``), :class:`tsformers.estimators.onnx.OnnxForecaster`
an exported graph on ONNX Runtime, so that ``tsformers forecast --engine onnx``
imports neither torch, Lightning nor scikit-learn.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from tsformers.data.frames import Panel, PanelSchema, as_pandas, frame_to_panel, future_values, output_columns, \
    panel_to_frame, tails_panel
from tsformers.data.missing import MissingPolicy
from tsformers.data.cycle import SeasonalCycle
from tsformers.data.prepare import Prepared, cycle_for, network_channels, panel_calendar, prepare, scaler_for
from tsformers.data.scaling import PanelScaler
from tsformers.data.static import StaticEncoder, static_table
from tsformers.data.time import future_times_of
from tsformers.estimators.evaluation import EvaluationMixin, check_levels, check_quantiles

__all__ = ["CHUNK", "CONSTRAINTS", "FORECAST_SETTINGS", "ForecastAfter", "ForecastPath", "SavedForecaster",
           "advance_panel", "fitted_data", "pv_power_limits"]

#: Windows per network call when forecasting.
CHUNK = 1024


class ForecastAfter(NamedTuple):
    """A forecast after the end of the data: what ``predict`` and ``plot`` draw from."""

    data: Prepared            # the history, readied
    ends: list                # each series' last timestamp
    times: list               # each series' forecast timestamps
    point: np.ndarray         # (n_series, horizon, n_targets), the data's units
    quantiles: np.ndarray | None   # (n_series, horizon, n_targets, Q)
    intervals: dict           # {"_lo80": (n_series, horizon, n_targets), ...}

class ForecastPath(EvaluationMixin):
    """The forecast of a fitted model after the end of a frame, in the frame's units (not used directly).

    A subclass holds the fitted attributes (``schema_``, ``scaler_``,
    ``static_encoder_``, ``static_``, ``horizon``, ``lookback`` and the
    ``missing``, ``max_gap``, ``fill_gaps``, ``scaler``, ``unknown_static``,
    ``quantiles`` settings) and implements ``_network_output``: the network's
    scaled output after each series of a :class:`~tsformers.data.prepare.Prepared`.
    """

    def _check_fitted(self) -> None:
        """Refuse an estimator that was not fitted (or loaded)."""
        if not hasattr(self, "network_"):
            raise ValueError(f"this {type(self).__name__} is not fitted yet; call fit (or load a saved model) "
                             f"first.")

    def _network_output(self, data: Prepared, future: np.ndarray | None, from_state: bool):
        """The network's scaled output after the end of each series of ``data`` (an array or a tensor)."""
        raise NotImplementedError

    # -- the data path ----------------------------------------------------------------------

    def _missing_policy(self) -> MissingPolicy:
        return MissingPolicy(self.missing, self.max_gap)

    def _read(self, frame, schema: PanelSchema, *, fitting: bool, static_df=None) -> Panel:
        """The validated panel of a frame, with gaps let through only where ``missing`` says what to do.

        After fit, the panel also carries the encoded static attributes of its
        series: the fitted ones, or for a new series its own from ``frame`` or ``static_df``.
        """
        panel = frame_to_panel(frame, schema, fitting=fitting, allow_nan=self._missing_policy().allows_gaps,
                               fill_gaps=self.fill_gaps)
        if schema.static and not fitting:
            known = {key: i for i, key in enumerate(schema.series)}
            new = [key for key in panel.series if key not in known]
            codes = {key: self.static_[i] for key, i in known.items()}
            if new:
                table = static_table(frame, schema.id_col, schema.static, new,
                                     None if static_df is None else as_pandas(static_df)[0])
                codes.update(zip(new, self.static_encoder_.transform(table, self.unknown_static)))
            panel.static = np.stack([codes[key] for key in panel.series])
        return panel

    def _prepare(self, raw: Panel, *, unknown_last: int = 0) -> Prepared:
        """``raw`` readied with the fitted policy and statistics (a series unseen in fit by its own history).

        ``unknown_last``: the last steps of each series, not yet known at the first forecast origin (a
        backtest's); a series unseen in fit is scaled by its history without them, as ``predict`` there would.
        """
        def statistics(panel: Panel):
            return scaler_for(panel.drop_last(unknown_last) if unknown_last else panel, self.scaler_,
                              self.schema_.series, self.scaler)

        def cycle(data: Prepared):
            return cycle_for(data, getattr(self, "cycle_", None), self.schema_.series, unknown_last)

        return prepare(raw, self.schema_, self._missing_policy(), statistics, lookback=self.lookback,
                       horizon=self.horizon, cycle=cycle)

    def prepare(self, df, static_df=None, *, min_rows: int | None = None, action: str = "predict") -> Prepared:
        """Read ``df`` and ready it for the fitted network, as ``predict``, ``update`` and ``score`` do.

        The data path of :mod:`tsformers.data.prepare` with this model's fitted
        schema, missing policy and scaling statistics (a series unseen in fit is
        scaled by its own history); :mod:`tsformers.compress` reads its
        calibration and fine-tuning frames through it.

        Parameters
        ----------
        df : pandas.DataFrame or polars.DataFrame
            Rows with the columns of the fit data.
        static_df : DataFrame, optional
            Static attributes of series not seen in fit, when they are not columns of ``df``.
        min_rows : int, optional
            Refuse a series with fewer rows, saying "too short to {action}".
        action : str, default="predict"
            What the rows are for, in that message.

        Returns
        -------
        tsformers.data.prepare.Prepared
        """
        self._check_fitted()
        frame, _ = as_pandas(df)
        raw = self._read(frame, self.schema_, fitting=False, static_df=static_df)
        if min_rows is not None:
            self._check_length(raw, min_rows, action)
        return self._prepare(raw)

    def _channels(self, scaled: np.ndarray, times: pd.Index) -> np.ndarray:
        """The network's input channels (float32) of scaled observations ``(n_series, n_time, n_vars)`` at
        ``times``, as a streaming network reads them (the calendar features of each row, led by the horizon as
        in training, come from its time)."""
        inputs = network_channels(scaled, self.schema_, self._missing_policy(), self.horizon,
                                  calendar=panel_calendar(times, self.schema_, self.horizon))
        return inputs.astype(np.float32)

    def _stored_panel(self) -> Panel:
        """The end of the training data (and of the updates since), as predict() without data sees it.

        Each series' last ``lookback`` rows end at its own last timestamp, on the fitted time grid: one
        aligned window when the series end together (the usual panel), else a ragged panel over the grid
        from the earliest start to the latest end.
        """
        return tails_panel(self.history_, self.ends_, self.schema_.step, self.schema_.series, self.static_)

    # -- predict ---------------------------------------------------------------------------

    def predict(self, df=None, future_df=None, static_df=None, level=None):
        """Forecast the next ``horizon`` steps.

        Parameters
        ----------
        df : pandas.DataFrame or polars.DataFrame, optional
            New history with the columns of the fit data (at least ``lookback``
            rows per series): the forecast starts after its end. Without it,
            the forecast follows the end of the training data and of every
            :meth:`update` since.
        future_df : pandas.DataFrame or polars.DataFrame, optional
            The known-future covariates (``future_covariates``) at every step of
            the horizon: the time column (and id column of a long frame) and
            those columns. Required when the model has future covariates.
        static_df : DataFrame, optional
            Static attributes of series not seen in fit, when they are not columns of ``df``.
        level : float or list of float, optional
            Conformal prediction intervals to add, in percent (``level=[80, 95]``).

        Returns
        -------
        DataFrame
            In the library and layout of the input (of the fit data when
            ``df`` is None): the future timestamps and one column per target,
            followed by ``{target}_q{q}`` per quantile (``quantiles=``) and
            ``{target}_lo{level}``/``{target}_hi{level}`` per interval (see
            :mod:`tsformers.estimators.evaluation`).
        """
        self._check_fitted()
        levels = check_levels(level)
        output_columns(self.schema_, quantiles=self._quantile_levels() or (), levels=levels)
        backend = self.schema_.backend if df is None else as_pandas(df)[1]
        done = self._forecast_after(df, future_df, static_df, levels)
        extra = self._extra_columns(done.quantiles, done.intervals)
        return panel_to_frame(done.point, done.times, done.data.panel.series, self.schema_, backend, extra=extra)

    def _forecast_after(self, df, future_df, static_df, levels: list[float]) -> ForecastAfter:
        """The forecast after the end of ``df`` (of the training data and updates when None), for predict and plot."""
        if df is None:
            data, ends = self._prepare(self._stored_panel()), self.ends_
        else:
            data = self.prepare(df, static_df, min_rows=self.lookback, action="predict")
            ends = data.panel.ends
        times = future_times_of(ends, self.schema_.step, self.horizon)
        future = self._future_values(future_df, data.panel.series, times)
        point, quantiles, scale = self._forecast(data, future, from_state=df is None)
        if levels:
            scale = self._interval_scale(data, np.arange(len(data.panel.series)), data.panel.last + 1, scale)
        return ForecastAfter(data=data, ends=ends, times=times, point=point, quantiles=quantiles,
                             intervals=self._intervals(point, scale, levels))
    def _forecast(self, data: Prepared, future: np.ndarray | None = None, from_state: bool = False):
        """The forecast after the end of each series of ``data``, in the data's units.

        Returns the point forecast ``(n_series, horizon, n_targets)``, the
        quantiles ``(n_series, horizon, n_targets, Q)`` (None without
        ``quantiles``) and the targets' scale per series ``(n_series, n_targets)``.
        ``from_state``: the data is the stored end of the training data and updates.
        """
        out = self._network_output(data, future, from_state)
        out = data.restore_cycle(out, np.arange(len(data.panel.series)), data.panel.last + 1)
        point, quantiles = self._to_original(out, data.scaler)
        return point, quantiles, data.scaler.scale[:, : len(self.schema_.targets)]
    # -- network outputs in the data's units -------------------------------------------------

    def _quantile_levels(self) -> list[float] | None:
        return check_quantiles(getattr(self, "quantiles", None))

    def _to_original(self, out, scaler: PanelScaler) -> tuple[np.ndarray, np.ndarray | None]:
        """Point forecasts ``(n, H, T)`` and quantiles ``(n, H, T, Q)`` (or None) in the data's units.

        ``out`` is the network's scaled output: ``(n, H, >= T)``, or ``(n, H, T, Q)`` from a quantile head.
        """
        n_targets = len(self.schema_.targets)
        values = np.asarray(out, dtype=np.float64)
        if values.ndim == 3:
            return self._postprocess(scaler.inverse(values[..., :n_targets], n_targets)), None
        levels = self._quantile_levels()
        quantiles = np.stack([self._postprocess(scaler.inverse(values[..., k], n_targets))
                              for k in range(values.shape[-1])], axis=-1)
        quantiles = np.sort(quantiles, axis=-1)  # a no-op for the head's output; guards custom _postprocess hooks
        point = quantiles[..., levels.index(0.5)] if 0.5 in levels else quantiles.mean(axis=-1)
        return point, quantiles

    def _postprocess(self, forecast: np.ndarray) -> np.ndarray:
        """Hook for physical constraints on the forecast ``(n_series, horizon, n_targets)``, original units."""
        return forecast

    def _future_values(self, future_df, series: list, times: list) -> np.ndarray | None:
        names = self.schema_.future_covariates
        if not names:
            if future_df is not None:
                raise ValueError("future_df was given, but the model was fitted without future_covariates; "
                                 "refit with future_covariates=[...] to use known-future values.")
            return None
        if future_df is None:
            raise ValueError(
                f"the model was fitted with future_covariates {names}: pass their values for the {self.horizon} "
                f"steps from {times[0][0]} to {times[0][-1]} as future_df= (the time column and those columns)."
            )
        return future_values(future_df, self.schema_, series, times)
    def _check_length(self, panel: Panel, needed: int, action: str) -> None:
        n_time = int(panel.lengths.min())
        if n_time < needed:
            what = "lookback + horizon" if needed == self.lookback + self.horizon else "lookback"
            who = "the frame has" if panel.series == [None] else \
                f"series '{panel.series[int(np.argmin(panel.lengths))]}' has"
            hint = " Pass a longer history or lower lookback."
            if action == "score":
                hint = (" Pass a longer frame, or the rows before it as history=. In model selection: the test "
                        "folds of scikit-learn's TimeSeriesSplit and KFold hold only the rows to forecast, without "
                        "the lookback rows before them; use cv=tsformers.RollingOriginSplit(horizon=..., "
                        "lookback=...), whose test folds carry them.")
            raise ValueError(
                f"too short to {action}: {who} {n_time} rows, but {what} = {needed} rows are needed "
                f"(lookback={self.lookback}, horizon={self.horizon}).{hint}"
            )


#: The settings of the forecast path, and their defaults in every estimator that takes them.
FORECAST_SETTINGS = {"missing": "error", "max_gap": None, "fill_gaps": False, "scaler": "standard",
                     "unknown_static": "error", "quantiles": None}


def pv_power_limits(forecast: np.ndarray, params: dict) -> np.ndarray:
    """PV physics on a forecast of power: no negative power, none above ``params["capacity"]``; nothing with
    ``params["clip"]`` False (PV-Client's parameters)."""
    if not params.get("clip", True):
        return forecast
    capacity = params.get("capacity")
    return np.clip(forecast, 0.0, np.inf if capacity is None else float(capacity))


#: The physical constraint (``_postprocess``) of the estimators that have one, by class name, as
#: ``f(forecast, params)``: the estimator applies it with its parameters, a saved model's reader with the saved ones.
CONSTRAINTS = {"PVClientForecaster": pv_power_limits}


def fitted_data(config: dict) -> dict:
    """What a saved model's ``config.json`` holds of its fitted data, as the estimator's attributes: the schema,
    the scaling statistics, the targets' seasonal cycle (None in models saved without one), the static
    attributes' encoder and codes."""
    static = config.get("static") or {"encoder": {"numeric": {}, "categories": {}}, "codes": None}
    return {"schema_": PanelSchema.from_dict(config["schema"]), "scaler_": PanelScaler.from_dict(config["scaler"]),
            "cycle_": SeasonalCycle.from_dict(config["cycle"]) if config.get("cycle") else None,
            "static_encoder_": StaticEncoder.from_dict(static["encoder"]),
            "static_": None if static["codes"] is None else np.asarray(static["codes"], dtype=np.float64)}


class SavedForecaster(ForecastPath):
    """A saved model forecasting from a history without its estimator class (not used directly).

    The engines of ``tsformers forecast`` (:class:`tsformers.estimators.onnx.OnnxForecaster`,
    :mod:`tsformers.estimators.saved`) read a model directory's ``config.json`` into one:
    the saved parameters become attributes (as the estimator has them), with the fitted
    schema, scaling statistics and static attributes; ``predict(df, future_df=None,
    static_df=None)`` reads, validates, scales and writes frames as the estimator does.
    It forecasts from a history only: ``predict()`` without data, ``update``, conformal
    intervals (``level=``), ``score`` and backtests need the estimator itself
    (``BaseForecaster.load``). A subclass sets ``network_`` and ``_network_output``.

    Attributes
    ----------
    estimator : str
        The name of the saved estimator's class.
    params : dict
        Its saved parameters.
    schema_, scaler_, static_encoder_, static_ :
        The fitted data schema, scaling statistics and static attributes.
    horizon, lookback : int
    """

    #: How the engine is named in messages, and how to load the estimator whole instead.
    engine, load_whole = "this engine", "{estimator}.load(path)"

    def __init__(self, estimator: str, params: dict, config: dict):
        self.estimator, self.params = estimator, params
        for name, default in FORECAST_SETTINGS.items():
            setattr(self, name, params.get(name, default))
        self.horizon, self.lookback = params["horizon"], params["lookback"]
        for name, value in fitted_data(config).items():
            setattr(self, name, value)
        self.conformal_ = None
        self._constraint = CONSTRAINTS.get(estimator)

    def _stored_panel(self):
        raise ValueError(f"{self.engine} forecasts from a history: pass it, predict(df). Forecasting after the "
                         f"training data needs the estimator: {self.load_whole.format(estimator=self.estimator)}.")

    def _intervals(self, point: np.ndarray, scale: np.ndarray, levels: list[float]) -> dict:
        if levels:
            raise ValueError(f"{self.engine} gives point forecasts and quantiles; for conformal intervals "
                             f"(level=) load the estimator: {self.load_whole.format(estimator=self.estimator)}.")
        return {}

    def _postprocess(self, forecast: np.ndarray) -> np.ndarray:
        return forecast if self._constraint is None else self._constraint(forecast, self.params)


def advance_panel(scaled: Panel, state: dict | None, init_state, channels, advance, chunk: int = CHUNK) -> dict:
    """Advance a streaming state of every series by its own span of ``scaled`` (from ``init_state`` when None).

    The one recurrence over a panel, for the torch networks and the ONNX graphs, in two steps:
    ``channels(values, times)``, the network's input channels (float32) of scaled values
    ``(rows, n_time, n_vars)`` at ``times`` (the calendar features of each step come from its time),
    then ``advance(state, inputs)``, that state after the channels ``(rows, n_time, n_channels)``.
    ``init_state(rows)`` is the fresh state of some series (a dict of arrays or tensors, one row per series).

    An aligned panel advances in one call. A ragged one advances in packed calls without padding
    (:func:`_packed_schedule`): every streaming network's advance splits exactly (advancing by ``x[:, :a]``
    then ``x[:, a:]`` equals advancing by ``x``), so each series' history is cut into chunks, and chunks of
    the same length from different series, at different positions of their histories, share a call.
    That takes O(log max length) calls (plus one per ``chunk`` steps of the longest series) instead of one
    per distinct span. Each series' channels come from its own rows and times first, so rows of one call
    may come from different times.
    """
    if scaled.aligned:
        state = init_state(np.arange(len(scaled.series))) if state is None else state
        return advance(state, channels(scaled.values, scaled.times))
    inputs, starts = _packed_channels(scaled, channels)                     # (sum of lengths, C), (S,)
    everyone = np.arange(len(scaled.series))
    pool = [(everyone, init_state(everyone) if state is None else state)]
    done = np.zeros(len(everyone), dtype=np.int64)
    for size, takes in _packed_schedule(scaled.lengths, chunk):
        moving, staying = [], []
        for rows, part in pool:
            for pick, to in ((np.flatnonzero(takes[rows]), moving), (np.flatnonzero(~takes[rows]), staying)):
                if len(pick) == len(rows):
                    to.append((rows, part))
                elif len(pick):
                    to.append((rows[pick], {k: v[pick] for k, v in part.items()}))
        for rows, part in _by_signature(moving):
            steps = (starts[rows] + done[rows])[:, None] + np.arange(size)  # (rows, size): each row's own steps
            staying.append((rows, advance(part, inputs[steps])))
        done[takes] += size
        pool = _by_signature(staying)
    if len(pool) != 1:
        raise ValueError(f"the streaming states of the series differ in shape at the end of their histories "
                         f"({[_signature(part) for _, part in pool]}); forecast the series apart.")
    rows, final = pool[0]
    order = np.argsort(rows)
    return {k: v[order] for k, v in final.items()}


def _packed_schedule(lengths: np.ndarray, chunk: int) -> list[tuple[int, np.ndarray]]:
    """The calls of a packed advance: ``(steps, which series take them)``, in order.

    First every series takes the same first steps (the shortest length, at most ``chunk``), so that its
    state leaves the fresh shape (a GTrXL memory fills) before series at different positions meet; then
    whole ``chunk``s while any series has that many left; then, largest first, every power of two below
    ``chunk``, taken by the series whose remaining length has that bit: no series ever takes a step past
    its end, so nothing is padded.
    """
    first = min(int(lengths.min()), chunk)
    calls = [(first, np.ones(len(lengths), dtype=bool))]
    remaining = lengths - first
    while (takes := remaining >= chunk).any():
        calls.append((chunk, takes))
        remaining = remaining - chunk * takes
    size = 1 << (int(remaining.max()).bit_length() - 1) if remaining.max() > 0 else 0
    while size:  # remaining < 2 * size here
        takes = remaining >= size
        if takes.any():
            calls.append((size, takes))
            remaining = remaining - size * takes
        size >>= 1
    return calls


def _packed_channels(scaled: Panel, channels) -> tuple[np.ndarray, np.ndarray]:
    """Every series' channels over its own span, one after the other ``(sum of lengths, n_channels)``, and
    where each series starts in that buffer ``(n_series,)``: one ``channels`` call per distinct span."""
    lengths = scaled.lengths
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    inputs = None
    for (first, last), rows in _spans(scaled).items():
        part = channels(scaled.values[rows, first: last + 1], scaled.times[first: last + 1])   # (rows, L, C)
        if inputs is None:
            inputs = np.empty((int(lengths.sum()), part.shape[-1]), dtype=part.dtype)
        inputs[starts[rows, None] + np.arange(last + 1 - first)] = part
    return inputs, starts


def _spans(scaled: Panel) -> dict:
    """The series of each distinct span ``(first, last)``: ``{span: row indices}``."""
    spans = {}
    for s, span in enumerate(zip(scaled.first.tolist(), scaled.last.tolist())):
        spans.setdefault(span, []).append(s)
    return {span: np.asarray(rows) for span, rows in spans.items()}


def _signature(state: dict) -> tuple:
    """What rows must share to advance in one call: every entry's shape past the batch axis and dtype.

    States change shape as they fill (a GTrXL memory grows to ``mem_len`` steps; an ONNX receptive graph
    keeps the last steps it read), so series at different positions may not stack.
    """
    return tuple((k, tuple(v.shape[1:]), str(v.dtype)) for k, v in sorted(state.items()))


def _by_signature(groups: list) -> list:
    """``(rows, state)`` groups merged where their states have the same signature."""
    merged = {}
    for rows, part in groups:
        merged.setdefault(_signature(part), []).append((rows, part))
    return [(np.concatenate([rows for rows, _ in same]),
             {k: _cat([part[k] for _, part in same]) for k in same[0][1]}) if len(same) > 1 else same[0]
            for same in merged.values()]


def _cat(parts: list):
    """numpy arrays or torch tensors stacked along their first axis."""
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)
    import torch  # only a torch state gets here; the ONNX engine's is numpy

    return torch.cat(parts)


def _advance_spans(scaled: Panel, state: dict | None, init_state, channels, advance) -> dict:
    """The reference of :func:`advance_panel`: one call per distinct span of a ragged panel, the series that
    span the same rows together (tests and ``benchmarks/packed_panel.py`` compare the packed advance with it)."""
    if scaled.aligned:
        return advance_panel(scaled, state, init_state, channels, advance)
    out = None
    for (first, last), rows in _spans(scaled).items():
        start = init_state(rows) if state is None else {k: v[rows] for k, v in state.items()}
        part = advance(start, channels(scaled.values[rows, first: last + 1], scaled.times[first: last + 1]))
        if out is None:
            out = {k: _zeros(v, len(scaled.series)) for k, v in part.items()}
        for k, v in part.items():
            out[k][rows] = v
    return out


def _zeros(like, rows: int):
    """Zeros of ``rows`` rows shaped and typed as ``like`` (a numpy array or a torch tensor) past its first axis."""
    if isinstance(like, np.ndarray):
        return np.zeros((rows, *like.shape[1:]), dtype=like.dtype)
    return like.new_zeros((rows, *like.shape[1:]))
