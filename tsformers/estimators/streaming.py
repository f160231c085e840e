"""StreamingForecaster: the forecasters that carry a recurrent state (LMUFormer, GTrXL, ATLAS).

A streaming network trains on windows like any other, but forecasts from a
state: ``init_state(batch_size)``, ``advance(state, x)`` over the channels of
new steps ``(B, T, n_channels)`` and ``forecast(state) -> (B, horizon, ...)``.
What that changes, and only that, lives here:

- ``fit`` ends by running the recurrence over the whole training history
  (``state_``); :meth:`~StreamingForecaster.update` advances it by new rows
  only, so ``predict()`` after updates costs what one step costs;
- ``predict(df)`` runs the recurrence over all of ``df`` (not its last window);
- backtests and conformal calibration advance the state from origin to origin
  (at most :data:`MAX_STREAMING_ORIGINS` calibration origins; on a ragged
  panel every origin replays its series from the start, at most
  :data:`MAX_RAGGED_STREAMING_ORIGINS`);
- known-future covariates (``future_covariates=``) never enter the recurrence, whose state
  holds no values after its end: a :class:`~tsformers.backbone.KnownFutureHead` adds them to
  the forecast step by step (``predict(future_df=...)``; backtests read them from the data), so
  the state stays exact. Calendar features (``calendar=``), computed from each step's
  timestamp, enter every step of the recurrence led by the horizon, as in training.
- the targets' seasonal cycle (``cycle=``, off by default here) is taken out of every step the
  recurrence reads, each row at the phase of its own timestamp (an update's rows too), and added
  back onto every forecast, so the state stays exact.
"""
from __future__ import annotations

import numpy as np
import torch

from sklearn.utils._param_validation import StrOptions

from tsformers.data.frames import Panel
from tsformers.data.prepare import Prepared
from tsformers.estimators.base import BaseForecaster
from tsformers.estimators.network_path import StreamingNetworkPath

#: The causal normalisations of the streaming networks, one meaning in each (a tsformers extension):
#: "last_value" feeds the network each step's change from the step before and adds its forecast onto
#: the last observed value, so the forecast moves with the series' level and the state stays exact;
#: "none" feeds the values, as the papers do.
NORMALIZE = ("last_value", "none")

#: Calibration origins per series at most: each costs a call that advances the state to it.
MAX_STREAMING_ORIGINS = 200
#: On a ragged panel each origin replays the whole history: at most this many there.
MAX_RAGGED_STREAMING_ORIGINS = 8


class StreamingForecaster(StreamingNetworkPath, BaseForecaster):
    """Base class of the forecasters whose network carries a recurrent state (not used directly).

    Subclasses build a network with ``init_state``, ``advance`` and
    ``forecast`` (see the module). The fitted ``state_`` holds, per series, the
    network's state after the training data and every :meth:`update` since.
    Every subclass takes ``normalize`` (:data:`NORMALIZE`) and ``linear_base`` (a
    :class:`~tsformers.backbone.StreamingLinearBase` around the network, see ``BaseForecaster._core_network``).
    """

    _parameter_constraints = {**BaseForecaster._parameter_constraints, "normalize": [StrOptions(set(NORMALIZE))],
                              "linear_base": ["boolean"]}

    # -- what fit and update carry besides the history ----------------------------------------

    def _after_training(self, data: Prepared) -> None:
        self.state_ = self._advance_panel(None, data.scaled_panel())

    def _advance_state(self, new: Prepared) -> None:
        self.state_ = self._advance_panel(self.state_, new.scaled_panel())

    def refresh(self, data: Prepared) -> None:
        """Recompute the state (from ``data``, which must hold the fitted series) and the conformal errors.

        ``predict()`` without data then forecasts after the end of ``data``.
        """
        if list(data.panel.series) != list(self.schema_.series):
            raise ValueError("a streaming estimator is compressed with a frame of its fitted series (its state "
                             "is recomputed from it); pass the training frame.")
        self.state_ = self._advance_panel(None, data.scaled_panel())
        self.history_ = data.panel.tail(self.lookback).copy()
        self.ends_ = data.panel.ends
        self.last_time_ = max(self.ends_)
        super().refresh(data)

    # -- forecasts from a state ----------------------------------------------------------------

    def _future_after(self, data: Prepared, origins: np.ndarray) -> np.ndarray | None:
        """The scaled known-future covariates of the ``horizon`` rows from each series' origin ``(n_series,)``
        on: ``(n_series, horizon, n_future)`` (None without them)."""
        n_future = len(self.schema_.future_covariates)
        if not n_future:
            return None
        rows = np.asarray(origins)[:, None] + np.arange(self.horizon)                      # (S, H)
        return data.scaled[np.arange(len(rows))[:, None], rows][..., -n_future:]

    def _origin_forecasts(self, data: Prepared, rows: np.ndarray, origins: np.ndarray,
                          held: np.ndarray | None) -> torch.Tensor:
        """The forecasts at every origin, ``(S * K, H, ...)`` series-major, from the state before each.

        On an aligned panel the state advances from origin to origin in one
        pass; on a ragged one, or when ``held`` (gaps held at an origin, as in
        ``Prepared.windows_before``) changes the history per origin, each
        origin's state is rebuilt from the start.
        """
        panel = data.panel
        n_series = len(panel.series)
        starts = origins.reshape(n_series, -1)                                   # (S, K)
        offsets = panel.last[0] + 1 - starts[0]                                  # steps before each series' end
        outs = []
        if held is not None:
            held = held.reshape(n_series, len(offsets), -1)
            for k, offset in enumerate(offsets):
                history = Panel(values=data.held_history(held[:, k]), times=panel.times, series=panel.series,
                                static=panel.static, first=panel.first, last=panel.last - offset)
                outs.append(self._forecast_from(self._advance_panel(None, history),
                                                self._future_after(data, panel.last + 1 - offset)))
            return torch.stack(outs, dim=1).flatten(0, 1)
        scaled = data.scaled
        if panel.aligned:
            state, done = None, 0
            for origin in starts[0]:
                chunk = Panel(values=scaled[:, done:origin], times=panel.times[done:origin], series=panel.series,
                              static=panel.static)
                state, done = self._advance_panel(state, chunk), int(origin)
                outs.append(self._forecast_from(state, self._future_after(data, np.full(n_series, origin))))
        else:
            for offset in offsets:
                history = Panel(values=scaled, times=panel.times, series=panel.series, static=panel.static,
                                first=panel.first, last=panel.last - offset)
                outs.append(self._forecast_from(self._advance_panel(None, history),
                                                self._future_after(data, panel.last + 1 - offset)))
        return torch.stack(outs, dim=1).flatten(0, 1)

    def _calibration_origins_at_most(self, aligned: bool) -> int:
        return MAX_STREAMING_ORIGINS if aligned else MAX_RAGGED_STREAMING_ORIGINS
