"""The data path: a panel as read, made ready for a network, in one place for every caller.

``fit``, ``predict``, ``update``, ``score``, ``backtest``, ``plot`` and
:mod:`tsformers.compress` all ready their data here, in this order:

1. **read**: the frame becomes a :class:`~tsformers.data.frames.Panel`
   (:func:`~tsformers.data.frames.frame_to_panel`), gaps let through where the
   :class:`~tsformers.data.missing.MissingPolicy` allows them;
2. **gaps**: the policy fills them (``missing="interpolate"``) or keeps them;
3. **scale**: each series by its own statistics (:func:`fit_scaler` on the
   training part at fit, :func:`scaler_for` afterwards), then its targets'
   seasonal cycle taken out (``cycle=``, :mod:`tsformers.data.cycle`; added
   back onto the forecast by :meth:`Prepared.restore_cycle`);
4. **channels**: targets and past covariates, their observed masks
   (``missing="mask"``), then known-future covariates led by the horizon
   (:func:`~tsformers.data.windows.lead_future`), then the calendar features
   (``calendar=``) of the timestamps the horizon ahead
   (:func:`~tsformers.data.calendar.calendar_channels`), never scaled;
5. **windows**: :meth:`Prepared.split` for training,
   :meth:`Prepared.last_windows` for a forecast after the data,
   :meth:`Prepared.windows_before` for forecasts from earlier origins.

Steps 2 to 5 are :func:`prepare` and the :class:`Prepared` it returns; shapes
are ``(n_series, n_time, n_vars)`` for values, ``(n_series, n_time, n_channels)``
for the network's channels.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd

from tsformers.data.calendar import calendar_channels
from tsformers.data.cycle import SeasonalCycle, step_index
from tsformers.data.frames import Panel, PanelSchema
from tsformers.data.missing import MissingPolicy, hold_trailing_gaps
from tsformers.data.scaling import PanelScaler
from tsformers.data.windows import lead_future, split_spans, split_train_val, validation_steps, windows_before

if TYPE_CHECKING:  # torch is imported where tensors are made: the forecast path reads numpy
    import torch


def fit_scaler(values: np.ndarray, kind: str | None) -> PanelScaler:
    """The statistics of ``values`` ``(n_series, n_time, n_vars)`` for a ``scaler=`` choice ("standard" or None)."""
    if kind is None:
        return PanelScaler.identity(values.shape[0], values.shape[2])
    return PanelScaler.fit(values)


def scaler_for(panel: Panel, fitted: PanelScaler, fitted_series: list, kind: str | None) -> PanelScaler:
    """The fitted statistics of each series of ``panel``; a series unseen in fit is scaled by its own history."""
    known = {key: i for i, key in enumerate(fitted_series)}
    rows = [known.get(key) for key in panel.series]
    if all(r is not None for r in rows):
        return fitted.select(np.asarray(rows))
    own = fit_scaler(panel.span_values(), kind)
    for i, r in enumerate(rows):
        if r is not None:
            own.mean[i], own.scale[i] = fitted.mean[r], fitted.scale[r]
    return own


def network_channels(scaled: np.ndarray, schema: PanelSchema, policy: MissingPolicy, horizon: int,
                     future: np.ndarray | None = None, calendar: np.ndarray | None = None) -> np.ndarray:
    """The network's channels of scaled values ``(n_series, n_time, n_vars)``, in order: targets and past
    covariates, their observed masks (``missing="mask"``), known-future covariates led by ``horizon``, then
    the calendar features (``schema.calendar``, a sine and a cosine each).

    ``future`` ``(n_series, horizon, n_future)``, scaled, fills the rows where the led covariates run past the
    data (NaN without it: no training window reads them). ``calendar`` ``(n_series or 1, n_time, 2 * n_calendar)``
    holds the calendar channels of the same rows (:func:`~tsformers.data.calendar.calendar_channels`); it is
    required exactly when the schema has calendar features.
    """
    n_gappy = len(schema.targets) + len(schema.covariates)
    channels = lead_future(policy.with_masks(scaled, n_gappy), len(schema.future_covariates), horizon, future)
    if (calendar is None) != (not schema.calendar):
        raise ValueError(f"the schema's calendar features are {schema.calendar}, but calendar channels were "
                         f"{'not ' if calendar is None else ''}given.")
    if calendar is None:
        return channels
    calendar = np.broadcast_to(calendar, (*channels.shape[:2], calendar.shape[-1]))
    return np.concatenate([channels, calendar.astype(channels.dtype, copy=False)], axis=-1)


def known_future_channels(schema: PanelSchema, n_channels: int) -> tuple[int, int]:
    """Where :func:`network_channels` puts the known-future covariates among its ``n_channels``: ``(start, stop)``
    (just before the calendar's sine and cosine pairs)."""
    stop = n_channels - 2 * len(schema.calendar or ())
    return stop - len(schema.future_covariates), stop


def panel_calendar(times: pd.Index, schema: PanelSchema, horizon: int) -> np.ndarray | None:
    """The calendar channels ``(1, n_time, 2 * n_calendar)`` of the rows of a time axis, or None without calendar."""
    if not schema.calendar:
        return None
    return calendar_channels(times, schema.step, schema.calendar, horizon)[None]


@dataclass
class Prepared:
    """A panel made ready for the network: gaps handled, scaled, cut into the network's channels and windows.

    Made by :func:`prepare`. ``raw`` is the panel as read (gaps NaN: the truth
    a forecast is scored against), ``panel`` the same after the missing policy,
    ``scaler`` the statistics of each of its series, ``cycle`` the seasonal
    cycle of its targets (None: none). The scaled values and the channels are
    computed on first use, over the whole panel.
    """

    raw: Panel
    panel: Panel
    scaler: PanelScaler
    schema: PanelSchema
    policy: MissingPolicy
    lookback: int
    horizon: int
    cycle: SeasonalCycle | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def n_targets(self) -> int:
        return len(self.schema.targets)

    @property
    def n_gappy(self) -> int:
        """The variables that may hold gaps: targets and past covariates (the first ones)."""
        return len(self.schema.targets) + len(self.schema.covariates)

    @property
    def first_phase(self) -> int:
        """The steps from the cycles' origin to the panel's first row (:func:`~tsformers.data.cycle.step_index`;
        computed once: at monthly or business-day steps it counts the steps since 1970)."""
        if "first_phase" not in self._cache:
            self._cache["first_phase"] = step_index(self.panel.times[0], self.schema.step)
        return self._cache["first_phase"]

    @property
    def scaled(self) -> np.ndarray:
        """``(n_series, n_time, n_vars)``: the panel's values in each series' scale, its targets less their
        seasonal cycle; gaps stay NaN."""
        if "scaled" not in self._cache:
            scaled = self.scaler.transform(self.panel.values)
            if self.cycle is not None:
                scaled[..., : self.n_targets] -= self.cycle.at(self.first_phase, scaled.shape[1])
            self._cache["scaled"] = scaled
        return self._cache["scaled"]

    def restore_cycle(self, out, rows: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """The network's scaled output ``(n, horizon, >= n_targets)`` or ``(n, horizon, n_targets, Q)`` for series
        ``rows`` from grid rows ``starts`` on, with the targets' seasonal cycle added back (float64)."""
        values = np.array(out.detach().cpu().numpy() if hasattr(out, "detach") else out, dtype=np.float64)
        if self.cycle is None:
            return values
        profile = self.cycle.from_starts(self.first_phase, rows, starts, values.shape[1])   # (n, H, T)
        if values.ndim == 4:
            values += profile[..., None]
        else:
            values[..., : self.n_targets] += profile
        return values

    @property
    def inputs(self) -> np.ndarray:
        """``(n_series, n_time, n_channels)``: the network's channels over the whole panel."""
        if "inputs" not in self._cache:
            self._cache["inputs"] = self.channels(self.scaled)
        return self._cache["inputs"]

    @property
    def calendar(self) -> np.ndarray | None:
        """``(1, n_time, 2 * n_calendar)``: the calendar channels of the panel's rows (None without calendar)."""
        if "calendar" not in self._cache:
            self._cache["calendar"] = panel_calendar(self.panel.times, self.schema, self.horizon)
        return self._cache["calendar"]

    def channels(self, scaled: np.ndarray, future: np.ndarray | None = None,
                 calendar: np.ndarray | None = None) -> np.ndarray:
        """The network's channels of scaled values over the panel's rows (:func:`network_channels`); ``calendar``
        for other rows than the panel's."""
        return network_channels(scaled, self.schema, self.policy, self.horizon, future,
                                self.calendar if calendar is None else calendar)

    def static_array(self, rows: np.ndarray | None = None) -> np.ndarray | None:
        """The encoded static attributes ``(n_series, n_static)`` (of ``rows``) as float32, or None."""
        static = self.panel.static
        if static is None:
            return None
        return (static if rows is None else static[rows]).astype(np.float32)

    def static_tensor(self, rows: np.ndarray | None = None) -> torch.Tensor | None:
        """:meth:`static_array` as a torch tensor, or None."""
        static = self.static_array(rows)
        if static is None:
            return None
        import torch

        return torch.from_numpy(static)

    def scaled_panel(self) -> Panel:
        """The scaled values as a panel (spans and static attributes kept), for a recurrence over the history."""
        panel = self.panel
        return Panel(values=self.scaled, times=panel.times, series=panel.series, first=panel.first,
                     last=panel.last, static=panel.static)

    # -- training ------------------------------------------------------------------------------

    def validation_steps(self, val_size: float | int) -> int:
        """How many final steps of the panel form the validation part (0: none; :func:`validation_steps`)."""
        return validation_steps(int(self.panel.lengths.max()), self.lookback, self.horizon, val_size)

    def split(self, val_size: float | int) -> tuple[tuple, tuple | None]:
        """The training and validation parts as :func:`tsformers.training.fit_network` takes them.

        Each part is ``(inputs, targets)`` float32 tensors ``(n_series, n_time, n_channels)`` and
        ``(n_series, n_time, n_targets)`` (missing targets NaN, left out of the loss), plus the spans
        ``(first, last)`` on a ragged panel, so that only windows inside each series are drawn. The
        validation part is None when the series are too short for one.
        """
        import torch

        val_steps = self.validation_steps(val_size)
        inputs = torch.from_numpy(self.inputs.astype(np.float32))
        targets = torch.from_numpy(self.scaled[..., : self.n_targets].astype(np.float32))
        train = tuple(split_train_val(t, self.lookback, val_steps)[0] for t in (inputs, targets))
        val = None if val_steps == 0 else tuple(split_train_val(t, self.lookback, val_steps)[1]
                                                for t in (inputs, targets))
        panel = self.panel
        if not panel.aligned:
            train_spans, val_spans = split_spans(panel.first, panel.last, panel.values.shape[1], self.lookback,
                                                 val_steps)
            train, val = (*train, train_spans), None if val is None else (*val, val_spans)
        return train, val

    # -- forecasting ---------------------------------------------------------------------------

    def scaled_future(self, future: np.ndarray | None) -> np.ndarray | None:
        """Known-future covariates ``(n_series, horizon, n_future)`` in the data's units, in each series' scale."""
        n_future = len(self.schema.future_covariates)
        if not n_future or future is None:
            return future
        return (future - self.scaler.mean[:, None, -n_future:]) / self.scaler.scale[:, None, -n_future:]

    def last_windows(self, future: np.ndarray | None = None) -> np.ndarray:
        """``(n_series, lookback, n_channels)``: the window that ends each series, as the network reads it.

        ``future`` ``(n_series, horizon, n_future)``, in the data's units, holds the known-future covariates
        after each series' end; they are scaled here with each series' statistics.
        """
        panel = self.panel
        tail = windows_before(panel.values, np.arange(len(panel.series)), panel.last + 1, self.lookback)
        future = self.scaled_future(future)
        calendar = None
        if self.calendar is not None:  # each series' window ends at its own last row
            calendar = windows_before(np.broadcast_to(self.calendar, (len(panel.series), *self.calendar.shape[1:])),
                                      np.arange(len(panel.series)), panel.last + 1, self.lookback)
        scaled = self.scaler.transform(tail)
        if self.cycle is not None:
            series = np.arange(len(panel.series))
            scaled[..., : self.n_targets] -= self.cycle.from_starts(self.first_phase, series,
                                                                    panel.last + 1 - self.lookback, self.lookback)
        return self.channels(scaled, future, calendar)

    def last_observed_before(self, rows: np.ndarray, origins: np.ndarray) -> np.ndarray | None:
        """Where the missing policy holds a gap at a forecast origin: the last observed row before each origin
        ``(n, n_gappy)``, else None (:meth:`MissingPolicy.last_observed_before`)."""
        return self.policy.last_observed_before(self.raw.values, rows, origins, self.n_gappy)

    def target_spread(self, rows: np.ndarray, origins: np.ndarray) -> np.ndarray:
        """``(n, n_targets)``: each target's standard deviation over the ``lookback`` rows before each origin, in
        its series' scale and less its seasonal cycle (the values the network reads); NaN where the window holds
        no observed value of the target."""
        window = windows_before(self.scaled[..., : self.n_targets], rows, origins, self.lookback)
        with warnings.catch_warnings():   # a window without an observed value is NaN, as said, not a warning
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanstd(window, axis=1)

    def windows_before(self, rows: np.ndarray, origins: np.ndarray, held: np.ndarray | None = None) -> np.ndarray:
        """``(n, lookback, n_channels)``: the channels of the ``lookback`` rows before each origin.

        Window ``i`` reads series ``rows[i]`` up to row ``origins[i] - 1``. ``held`` (from
        :meth:`last_observed_before`) holds the gaps that run up to an origin at their last observed value.
        """
        window = windows_before(self.inputs, rows, origins, self.lookback)
        if held is not None:
            positions = origins[:, None] - self.lookback + np.arange(self.lookback)           # (n, L)
            window[..., : self.n_gappy] = hold_trailing_gaps(window[..., : self.n_gappy], positions, held,
                                                             self.scaled, rows)
        return window

    def held_history(self, held: np.ndarray) -> np.ndarray:
        """The scaled values ``(n_series, n_time, n_vars)`` with each series' gaps after ``held`` ``(n_series,
        n_gappy)`` held at their last observed value: the history a recurrence reads up to one origin per series."""
        values = self.scaled.copy()
        n_series, n_time = values.shape[:2]
        positions = np.broadcast_to(np.arange(n_time), (n_series, n_time))
        values[..., : self.n_gappy] = hold_trailing_gaps(values[..., : self.n_gappy], positions, held, self.scaled,
                                                         np.arange(n_series))
        return values

    def select(self, rows: np.ndarray) -> Prepared:
        """The same data for the series ``rows`` only."""
        def part(panel: Panel) -> Panel:
            return Panel(values=panel.values[rows], times=panel.times, series=[panel.series[i] for i in rows],
                         inserted=[panel.inserted[i] for i in rows] if panel.inserted else [],
                         static=None if panel.static is None else panel.static[rows], first=panel.first[rows],
                         last=panel.last[rows])

        return Prepared(raw=part(self.raw), panel=part(self.panel), scaler=self.scaler.select(rows),
                        schema=self.schema, policy=self.policy, lookback=self.lookback, horizon=self.horizon,
                        cycle=None if self.cycle is None else self.cycle.select(rows))

    def missing_report(self) -> dict:
        """What the missing policy did, per series (:meth:`MissingPolicy.report`)."""
        return self.policy.report(self.raw, self.panel)


def prepare(raw: Panel, schema: PanelSchema, policy: MissingPolicy,
            scaler: PanelScaler | Callable[[Panel], PanelScaler], *, lookback: int, horizon: int,
            cycle: SeasonalCycle | Callable[[Prepared], SeasonalCycle | None] | None = None) -> Prepared:
    """Ready a panel as read for the network: its gaps handled by ``policy``, scaled, cut into channels.

    Parameters
    ----------
    raw : Panel
        The panel as read (:func:`~tsformers.data.frames.frame_to_panel`), gaps NaN.
    schema : PanelSchema
        The column roles (targets, past and known-future covariates).
    policy : MissingPolicy
        What ``missing=`` means.
    scaler : PanelScaler or callable
        The statistics of each series of ``raw``, or a function that computes them from the panel with
        its gaps handled (at fit: :func:`fit_scaler` on the training part; afterwards :func:`scaler_for`).
    lookback, horizon : int
        The window lengths.
    cycle : SeasonalCycle, callable or None
        The seasonal cycle of the targets of each series, or a function that computes it from the data scaled
        without one (at fit: :meth:`~tsformers.estimators.base.BaseForecaster._training_cycle` on the training
        part; afterwards :func:`cycle_for`); None: no cycle.

    Returns
    -------
    Prepared
    """
    panel = policy.fill(raw, schema.variables)
    data = Prepared(raw=raw, panel=panel, scaler=scaler(panel) if callable(scaler) else scaler, schema=schema,
                    policy=policy, lookback=lookback, horizon=horizon)
    data.cycle = cycle(data) if callable(cycle) else cycle
    data._cache.clear()                  # the scaled values, if the cycle function read them, were without it
    return data


def cycle_for(data: Prepared, fitted: SeasonalCycle | None, fitted_series: list,
              unknown_last: int = 0) -> SeasonalCycle | None:
    """The fitted cycle of each series of ``data`` (scaled without a cycle); a series unseen in fit gets the phase
    means of its own history, without its last ``unknown_last`` steps (as :func:`scaler_for` leaves them out)."""
    if fitted is None:
        return None
    known = {key: i for i, key in enumerate(fitted_series)}
    rows = [known.get(key) for key in data.panel.series]
    if all(r is not None for r in rows):
        return fitted.select(np.asarray(rows))
    history = data.scaled[..., : data.n_targets].copy()
    if unknown_last:
        history[np.arange(history.shape[1]) > (data.panel.last - unknown_last)[:, None]] = np.nan
    own = SeasonalCycle.fit(history, data.first_phase, fitted.period)
    for i, r in enumerate(rows):
        if r is not None:
            own.profile[i] = fitted.profile[r]
    return own
