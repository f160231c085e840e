"""Running a torch network along the forecast path: building it, windows in, a state advanced, forecasts out.

:class:`NetworkForecastPath` is what every torch forecaster adds to
:class:`~tsformers.estimators.forecasting.ForecastPath`: its network built from
``_build_network`` (behind the linear base, the static residual and the quantile head
its settings ask for) and run on the last window of each series;
:class:`StreamingNetworkPath` advances a recurrent state over the whole history
instead. Both need torch and no scikit-learn, so the estimators
(:class:`~tsformers.estimators.base.BaseForecaster`,
:class:`~tsformers.estimators.streaming.StreamingForecaster`) and a saved model read
without them (:mod:`tsformers.estimators.saved`, ``tsformers forecast``) run their
networks through the same code.
"""
from __future__ import annotations

import numpy as np
import torch

from tsformers.backbone.heads import (KnownFutureHead, LinearBase, QuantileHead, SeedEnsemble, StaticResidual,
                                     StreamingLinearBase)
from tsformers.data.frames import Panel
from tsformers.data.prepare import Prepared, known_future_channels
from tsformers.estimators.forecasting import CHUNK, ForecastPath, advance_panel
from tsformers.seeding import member_seeds, seeded_apart

__all__ = ["NetworkForecastPath", "StreamingNetworkPath"]


class NetworkForecastPath(ForecastPath):
    """The forecast path of a torch network that reads the last window of each series (not used directly).

    A subclass implements ``_build_network(n_vars)`` and holds, besides what
    :class:`~tsformers.estimators.forecasting.ForecastPath` reads, ``network_``,
    ``_tags["static"]`` (the network reads static attributes itself) and the
    parameters the builder reads.
    """

    def _build_network(self, n_vars: int) -> torch.nn.Module:
        """The untrained network for ``n_vars`` input variables (targets first)."""
        raise NotImplementedError

    def _network(self, n_vars: int) -> torch.nn.Module:
        """The estimator's network: with ``ensemble_size`` > 1, a :class:`~tsformers.backbone.SeedEnsemble` of that
        many, each built under its member's seed (:func:`~tsformers.seeding.member_seeds`), the first drawing on
        the generator as it is (the caller seeds it: an ensemble's first member is the plain fit's network), the
        others on their own, leaving the generator to the caller as the first left it."""
        size = getattr(self, "ensemble_size", 1)  # a forecaster without the parameter fits one network
        if size == 1:
            return self._member_network(n_vars)
        _, *others = member_seeds(self.random_state, size)   # the first: the caller's seed, already drawn on
        return SeedEnsemble([self._member_network(n_vars)]
                            + [seeded_apart(seed, self._member_network, n_vars) for seed in others])

    def _member_network(self, n_vars: int) -> torch.nn.Module:
        """One network; with static attributes and no static input of its own, behind a static residual."""
        network = self._core_network(n_vars)
        n_static = self.static_encoder_.n_channels
        if n_static and not self._tags["static"]:
            network = StaticResidual(network, n_static=n_static, horizon=self.horizon,
                                     n_targets=len(self.schema_.targets))
        levels = self._quantile_levels()
        if levels:  # any network's (B, H, N) forecast becomes non-crossing quantiles (B, H, n_targets, Q)
            network = QuantileHead(network, quantiles=levels, horizon=self.horizon,
                                   n_targets=len(self.schema_.targets))
        return network

    def _core_network(self, n_vars: int) -> torch.nn.Module:
        """The estimator's network for ``n_vars`` channels, behind its linear base (``linear_base=True``)."""
        network = self._build_network(n_vars)
        if getattr(self, "linear_base", False):  # a forecaster without the parameter has no linear base
            wrapper = StreamingLinearBase if hasattr(network, "advance") else LinearBase
            network = wrapper(network, lookback=self.lookback, horizon=self.horizon,
                              n_targets=len(self.schema_.targets))
        return network

    def _forecast(self, data: Prepared, future: np.ndarray | None = None, from_state: bool = False):
        with torch.no_grad():  # not inference_mode: a memory may take gradient steps at test time
            return super()._forecast(data, future, from_state)

    def _network_output(self, data: Prepared, future: np.ndarray | None, from_state: bool) -> torch.Tensor:
        """The network's scaled output after the end of each series: a windowed network reads the last window."""
        x = torch.from_numpy(data.last_windows(future).astype(np.float32))
        return self._run_network(x, data.static_tensor())

    def _run_network(self, x: torch.Tensor, static: torch.Tensor | None) -> torch.Tensor:
        """The network on windows ``(n, lookback, n_channels)``, in chunks, with their static attributes."""
        if static is None:
            return torch.cat([self.network_(chunk) for chunk in x.split(CHUNK)])
        return torch.cat([self.network_(chunk, static=s) for chunk, s in zip(x.split(CHUNK), static.split(CHUNK))])


class StreamingNetworkPath(NetworkForecastPath):
    """The forecast path of a network that carries a recurrent state (not used directly): ``init_state``,
    ``advance`` over new steps and ``forecast`` from the state (see :mod:`tsformers.estimators.streaming`)."""

    def _core_network(self, n_vars: int) -> torch.nn.Module:
        """With known-future covariates, the network (and its linear base) without their channels, behind a
        :class:`~tsformers.backbone.KnownFutureHead` that adds them to the forecast step by step."""
        n_future = len(self.schema_.future_covariates)
        if not n_future:
            return super()._core_network(n_vars)
        start, stop = known_future_channels(self.schema_, n_vars)
        return KnownFutureHead(super()._core_network(n_vars - n_future), start=start, stop=stop,
                               horizon=self.horizon, n_targets=len(self.schema_.targets))

    def _network_output(self, data: Prepared, future: np.ndarray | None, from_state: bool) -> torch.Tensor:
        """From the stored state (``from_state``), or from the recurrence over the whole of ``data``."""
        state = self.state_ if from_state else self._advance_panel(None, data.scaled_panel())
        return self._forecast_from(state, data.scaled_future(future))

    def _forecast_from(self, state: dict, future: np.ndarray | None) -> torch.Tensor:
        """The network's forecast from ``state``; ``future``: the scaled known-future covariates of the horizon
        ``(rows, horizon, n_future)``, which a model fitted with ``future_covariates`` reads."""
        if not self.schema_.future_covariates:
            return self.network_.forecast(state)
        return self.network_.forecast(state, future=torch.from_numpy(np.ascontiguousarray(future, np.float32)))

    def _advance(self, state: dict, inputs: np.ndarray) -> dict:
        """The state after the network's input channels ``(rows, n_time, n_channels)`` (see ``_channels``)."""
        with torch.no_grad():
            return self.network_.advance(state, torch.from_numpy(inputs))

    def _advance_panel(self, state: dict | None, scaled: Panel) -> dict:
        """Advance the state of every series by its own span of ``scaled`` (from ``init_state`` when None).

        An aligned panel advances in one call, a ragged one in packed calls without padding
        (:func:`~tsformers.estimators.forecasting.advance_panel`).
        """
        return advance_panel(scaled, state, lambda rows: self._init_state(scaled, rows), self._channels,
                             self._advance)

    def _init_state(self, panel: Panel, rows) -> dict:
        """A fresh state for some series of ``panel``, carrying their static attributes where the network needs them."""
        state = self.network_.init_state(len(rows))
        if isinstance(self.network_, StaticResidual) or getattr(self.network_, "needs_static", False):
            state["static"] = torch.from_numpy(panel.static[rows].astype(np.float32))
        return state
