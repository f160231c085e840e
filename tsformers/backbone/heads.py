"""Heads added around a network."""
from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn


def with_targets(y: Tensor, targets: Tensor) -> Tensor:
    """``y`` (B, H, C) with its first channels, the targets, replaced by ``targets`` (B, H, n_targets).

    The heads below correct only the target channels of a forecast; the channels after them
    (quantile offsets, auxiliary outputs) pass through untouched.
    """
    return torch.cat([targets, y[..., targets.shape[-1]:]], dim=-1)


class StaticResidual(nn.Module):
    """Give any forecasting network the series' static attributes, as a learned correction of its forecast.

    ``y = network(x) + W s`` on the first ``n_targets`` outputs, with ``W`` a
    Linear(n_static -> horizon * n_targets) initialised at zero, so the wrapped
    network starts exactly as it was. Instance-normalised networks cannot see
    attributes fed as constant input channels (normalisation removes them); a
    correction of the output reaches every architecture. A tsformers part, not
    from a paper; cost O(n_static * horizon * n_targets) per series.

    Streaming networks keep working: the attributes ride in the state under
    ``"static"`` (set by the caller after ``init_state``), and ``forecast`` adds
    the correction.
    """

    def __init__(self, network: nn.Module, *, n_static: int, horizon: int, n_targets: int):
        super().__init__()
        self.network, self.horizon, self.n_targets = network, horizon, n_targets
        self.correction = nn.Linear(n_static, horizon * n_targets)
        nn.init.zeros_(self.correction.weight)
        nn.init.zeros_(self.correction.bias)

    def corrected(self, y: Tensor, static: Tensor) -> Tensor:
        delta = self.correction(static).view(-1, self.horizon, self.n_targets)   # (B, H, n_targets)
        return with_targets(y, y[..., : self.n_targets] + delta)

    def forward(self, x: Tensor, static: Tensor) -> Tensor:
        return self.corrected(self.network(x), static)

    # the streaming protocol, passed through
    def init_state(self, batch_size: int) -> dict:
        return self.network.init_state(batch_size)

    def advance(self, state: dict, x: Tensor) -> dict:
        inner = self.network.advance({k: v for k, v in state.items() if k != "static"}, x)
        return {**inner, "static": state["static"]} if "static" in state else inner

    def forecast(self, state: dict, **inputs) -> Tensor:
        inner = self.network.forecast({k: v for k, v in state.items() if k != "static"}, **inputs)  # future=...
        return self.corrected(inner, state["static"])


class _Wrapper(nn.Module):
    """A module around ``self.network`` that answers the attribute names in ``PASSED`` with the network's."""

    PASSED: tuple[str, ...] = ()

    def _passes_to(self) -> nn.Module:
        """The module that answers the names in ``PASSED``."""
        return self._modules["network"]

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in type(self).PASSED:
                return getattr(self._passes_to(), name)
            raise


class LinearBase(_Wrapper):
    """Forecast with a fitted linear map of the window, corrected by any network through a gate per horizon step.

    On the first ``n_targets`` outputs, for a window x (B, T, C) whose last ``lookback`` steps of the
    targets are w (B, L, n_targets) with last value w_L::

        base = w_L + W (w - w_L) + b                      the NLinear map, one per horizon step, every target
        y    = base + share * gate * (network(x) - w_L)    gate (horizon,), learned, ``gate_init`` at the start

    ``W`` (horizon, lookback) and ``b`` (horizon,) are buffers, not trained: the estimator sets them to
    the closed-form ridge map of the training windows before training
    (:func:`tsformers.estimators.ridge.fit_ridge_map`, the map of ``LinearForecaster``). The network
    then learns what the linear map leaves, as a change from the last value. The gate starts small
    (``gate_init=0.1``), so training starts near the linear forecast while the network's gradients
    flow: on half-sine bumps (``tests/test_linear_base.py``) the correction then reached a validation
    loss of 0.091 against 0.110 from an open gate (1.0), and a shut one (0.0) never left the map;
    on ETTh2 a shut start beat the map's validation loss after one epoch where an open one did not.
    After training, the
    fit sets ``share`` (a buffer, 1 during training) to the part of the trained correction that
    scores best on the validation windows, of 0 (the map alone, :meth:`drop_network`), 1/4, 1/2,
    3/4 and all of it (``fit_network(linear_base=...)``), so the forecast is never worse than the
    linear map there, nor than the best epoch: where the network and the map err differently, a
    share between them can beat both.
    A tsformers part, not from a paper (a linear model plus a learned residual, as in hybrid
    ARIMA-network forecasters); cost O(horizon * lookback * n_targets) per forecast on top of the
    network's. Outputs past the targets (covariates a network forecasts) are the network's.

    Shifting the window by a constant shifts ``base`` by it (last-value normalisation), so with a
    shift-equivariant network (the streaming ones with ``normalize="last_value"``) so does ``y``.
    A window shorter than ``lookback`` reads as if the missing older steps equalled the last value.
    """

    #: what an estimator or the trainer reads from the wrapped network, passed through
    PASSED = ("auxiliary_loss", "after_training", "mean_depth", "depth_stacks", "at_depth", "needs_static",
              "onnx_unsupported")

    def __init__(self, network: nn.Module, *, lookback: int, horizon: int, n_targets: int, gate_init: float = 0.1):
        super().__init__()
        self.network, self.lookback, self.horizon, self.n_targets = network, lookback, horizon, n_targets
        self.register_buffer("weight", torch.zeros(horizon, lookback))   # the last value until fitted
        self.register_buffer("bias", torch.zeros(horizon))
        self.gate = nn.Parameter(torch.full((horizon,), float(gate_init)))
        self.register_buffer("share", torch.ones(()))                    # of the correction; chosen after training

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # models saved before ``share`` existed kept all of the correction (or shut the gate itself)
        state_dict.setdefault(prefix + "share", torch.ones(()))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def set_map(self, weight: Tensor, bias: Tensor) -> None:
        """Set the linear map: ``weight`` (horizon, lookback), ``bias`` (horizon,)."""
        with torch.no_grad():
            self.weight.copy_(weight)
            self.bias.copy_(bias)

    @contextlib.contextmanager
    def alone(self):
        """The linear map alone (share 0) inside the ``with`` block, to evaluate it; the share is kept."""
        share = float(self.share)
        self.drop_network()
        try:
            yield self
        finally:
            self.keep_share(share)

    def keep_share(self, share: float) -> None:
        """Keep ``share`` (0 to 1) of the network's gated correction in the forecast."""
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"share={share} is not a part of the correction: pick a value from 0 to 1")
        self.share.fill_(share)

    def drop_network(self) -> None:
        """Share 0: the forecast is the linear map's."""
        self.keep_share(0.0)

    @property
    def network_used(self) -> bool:
        """Whether the network contributes (a share of an open gate): False where the fit kept the linear map alone."""
        return bool(self.share > 0 and self.gate.detach().abs().max() > 0)

    def base(self, window: Tensor, seen: Tensor | None = None) -> Tensor:
        """The linear forecast of ``window`` (B, L, n_targets): (B, H, n_targets); ``seen`` (B, L, 1) marks
        the observed steps (None: all), the others counting as the last value."""
        last = window[:, -1:]                                                          # (B, 1, n_targets)
        change = window - last if seen is None else (window - last) * seen             # (B, L, n_targets)
        return last + torch.einsum("bln,hl->bhn", change, self.weight) + self.bias[:, None]

    def combine(self, y: Tensor, base: Tensor, last: Tensor) -> Tensor:
        """The network's forecast ``y`` (B, H, >= n_targets) as a gated correction of ``base``."""
        gate = self.share * self.gate                                                 # (H,)
        corrected = base + gate[:, None] * (y[..., : self.n_targets] - last)          # (B, H, n_targets)
        return with_targets(y, corrected)

    @contextlib.contextmanager
    def reusing_network_output(self):
        """Inside the ``with`` block, a forward of the very same input tensors as the previous one reuses the
        wrapped network's output: scoring several shares of one batch runs the network once. Only for
        evaluation (no gradients, the weights unchanged inside the block); the output is the same as without."""
        self._reused = {}
        try:
            yield self
        finally:
            self._reused = None

    def _network_output(self, x: Tensor, args: tuple, kwargs: dict) -> Tensor:
        reused = getattr(self, "_reused", None)
        if reused is None:
            return self.network(x, *args, **kwargs)
        names, inputs = tuple(kwargs), (x, *args, *kwargs.values())
        same = (reused.get("names") == names and len(reused["inputs"]) == len(inputs)
                and all(a is b for a, b in zip(reused["inputs"], inputs)))
        if not same:
            reused.update(names=names, inputs=inputs, output=self.network(x, *args, **kwargs))
        return reused["output"]

    def forward(self, x: Tensor, *args, **kwargs) -> Tensor:
        window = x[:, -self.lookback:, : self.n_targets]                               # (B, <= L, n_targets)
        missing = self.lookback - window.shape[1]
        if missing:  # the older steps a short window lacks count as the last value: no change
            window = torch.cat([window[:, -1:].expand(-1, missing, -1), window], dim=1)
        return self.combine(self._network_output(x, args, kwargs), self.base(window), window[:, -1:])


class StreamingLinearBase(LinearBase):
    """:class:`LinearBase` around a streaming network: the state keeps the last ``lookback`` target values.

    ``forecast(advance(init_state(B), x)) == forward(x)`` whenever the wrapped network streams exactly;
    the state's shapes are fixed (``base.window`` (B, L, n_targets), ``base.seen`` (B, 1, 1), the
    number of steps read up to L), so a stream graph can hold them.
    """

    def init_state(self, batch_size: int) -> dict:
        like = self.weight
        return {**self.network.init_state(batch_size),
                "base.window": like.new_zeros(batch_size, self.lookback, self.n_targets),
                "base.seen": like.new_zeros(batch_size, 1, 1)}

    def advance(self, state: dict, x: Tensor) -> dict:
        inner = self.network.advance(self._inner(state), x)
        window = torch.cat([state["base.window"], x[..., : self.n_targets]], dim=1)[:, -self.lookback:]
        seen = (state["base.seen"] + x.shape[1]).clamp(max=self.lookback)
        return {**inner, "base.window": window, "base.seen": seen}

    def forecast(self, state: dict) -> Tensor:
        window, seen = state["base.window"], state["base.seen"]                       # (B, L, n_targets), (B, 1, 1)
        steps = torch.arange(self.lookback, device=window.device, dtype=seen.dtype)
        observed = (steps[None, :, None] >= self.lookback - seen).to(window.dtype)     # (B, L, 1)
        return self.combine(self.network.forecast(self._inner(state)), self.base(window, observed),
                            window[:, -1:])

    @property
    def receptive_field(self) -> int | None:
        """The wrapped network's, or ``lookback`` where that is longer (None: the whole history)."""
        inner = self._modules["network"].receptive_field   # AttributeError where it has none: not "receptive"
        return None if inner is None else max(inner, self.lookback)

    @staticmethod
    def _inner(state: dict) -> dict:
        return {k: v for k, v in state.items() if not k.startswith("base.")}


class KnownFutureHead(_Wrapper):
    """Give a streaming network known-future covariates: the recurrence never reads them, the forecast does.

    The estimator's channels hold the known-future covariates led by ``horizon`` steps
    (channels ``start:stop``; row t holds their values at t + horizon), so the last ``horizon``
    rows of a window hold their values over its forecast horizon. The wrapped network reads the
    other channels only, and a pathway shared by the horizon steps maps each step's covariates
    to a correction of that step's forecast::

        y[:, h] = network(x without them)[:, h] + MLP(f[:, h])        on the first n_targets outputs

    with the MLP's last layer starting at zero (training starts from the network's forecast).
    The streaming state is the wrapped network's, advanced by the other channels only, so it
    stays exact whatever the led rows after the data hold; ``forecast(state, future)`` takes the
    covariates of the horizon, ``future`` (B, horizon, n_future), scaled. A tsformers part, not
    from a paper (the per-step pathway of PV-Client, for any streaming network); cost
    O(horizon * n_future * d_hidden) per forecast.
    """

    #: the stream graph of :mod:`tsformers.runtime.onnx` has no input for the horizon's covariates
    onnx_unsupported = ("its forecast reads the known-future covariates of the horizon (future_df), which the "
                        "ONNX stream graph has no input for. Use the torch engine.")
    #: what an estimator or the trainer reads from the wrapped network, passed through
    PASSED = ("auxiliary_loss", "after_training", "mean_depth", "needs_static")

    def __init__(self, network: nn.Module, *, start: int, stop: int, horizon: int, n_targets: int,
                 d_hidden: int = 32):
        super().__init__()
        self.network, self.start, self.stop, self.horizon, self.n_targets = network, start, stop, horizon, n_targets
        self.pathway = nn.Sequential(nn.Linear(stop - start, d_hidden), nn.GELU(), nn.Linear(d_hidden, n_targets))
        nn.init.zeros_(self.pathway[-1].weight)
        nn.init.zeros_(self.pathway[-1].bias)

    def without_future(self, x: Tensor) -> Tensor:
        """x (B, T, C) without the known-future channels: what the wrapped network reads."""
        return torch.cat([x[..., : self.start], x[..., self.stop:]], dim=-1)

    def corrected(self, y: Tensor, future: Tensor) -> Tensor:
        """The network's forecast ``y`` (B, H, >= n_targets) corrected by the covariates ``future`` (B, H, n_future)."""
        correction = self.pathway(future)                                              # (B, H, n_targets)
        return with_targets(y, y[..., : self.n_targets] + correction)

    def forward(self, x: Tensor, *args, **kwargs) -> Tensor:
        future = x[:, -self.horizon:, self.start: self.stop]                           # (B, H, n_future)
        return self.corrected(self.network(self.without_future(x), *args, **kwargs), future)

    def init_state(self, batch_size: int) -> dict:
        return self.network.init_state(batch_size)

    def advance(self, state: dict, x: Tensor) -> dict:
        return self.network.advance(state, self.without_future(x))

    def forecast(self, state: dict, future: Tensor | None = None) -> Tensor:
        if future is None:
            raise ValueError("this network forecasts with known-future covariates: pass their values over the "
                             "horizon, forecast(state, future) with future (batch, horizon, n_future)")
        return self.corrected(self.network.forecast(state), future)


def linear_base_of(network: nn.Module) -> LinearBase | None:
    """The :class:`LinearBase` inside ``network``'s wrappers (each holds the next as ``.network``), or None.

    A :class:`SeedEnsemble` holds one per member: :func:`linear_bases_of` finds them all."""
    while isinstance(network, nn.Module):
        if isinstance(network, LinearBase):
            return network
        network = network._modules.get("network")
    return None


def linear_bases_of(network: nn.Module) -> list[LinearBase]:
    """The :class:`LinearBase` of ``network``, or of each member of a :class:`SeedEnsemble` (empty: none)."""
    members = network.members if isinstance(network, SeedEnsemble) else [network]
    return [base for base in map(linear_base_of, members) if base is not None]


class SeedEnsemble(_Wrapper):
    """The mean forecast of networks of one architecture, each trained on its own from its own seed.

    ``forward(x, *args, **kwargs)`` is the mean of ``member(x, *args, **kwargs)`` over the members: (B, L, C) ->
    the members' output shape (point forecasts, or quantiles, whose mean over members keeps their order). A deep
    ensemble (Lakshminarayanan et al., NeurIPS 2017) of point forecasters: members that differ only in their
    initial weights, batch order and dropout draws err partly apart, and the mean's squared error is at most the
    members' mean squared error (the difference is the members' spread about their mean). Cost: the members'
    together, in training and in every forecast. A window network only (a streaming network's state is its
    own); the estimators build it with ``ensemble_size`` > 1.
    """

    #: what the ONNX export and the estimators read from a network, the same in every member
    PASSED = ("onnx_unsupported", "needs_static")

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        self.members = nn.ModuleList(members)

    def _passes_to(self) -> nn.Module:
        return self._modules["members"][0]

    @property
    def mean_depth(self) -> float | None:
        """The members' mean depth (adaptive-depth stacks), or None where they have none."""
        depths = [getattr(member, "mean_depth", None) for member in self.members]
        return None if any(d is None for d in depths) else sum(depths) / len(depths)

    def forward(self, x: Tensor, *args, **kwargs) -> Tensor:
        return torch.stack([member(x, *args, **kwargs) for member in self.members]).mean(0)


class QuantileHead(nn.Module):
    """Give any forecasting network quantile outputs that never cross: (B, H, N) -> (B, H, n_targets, Q).

    The wrapped network's forecast of the first ``n_targets`` variables becomes
    the *anchor* quantile (the requested level closest to 0.5); the others sit
    at cumulative sums of positive gaps above and below it,

    ``q_k = y + C_k - C_a``,  ``C_0 = 0``,  ``C_{k+1} = C_k + softplus(b + w * y + v * |y|)_k``,

    with one bias, slope and level-slope per horizon step, target and gap, so
    the spread may depend on the forecast level (PV power, say, is more
    uncertain around noon than at night). Strictly increasing in ``k`` by
    construction, so quantiles never cross. The gaps start at those of a
    standard normal (the data are standardised), the slopes at zero. The bias
    is stored divided by ``bias_gain`` (10): each bias gets the gradient of
    its own few outputs only, and this lets an Adam-type optimiser move it ten
    times as far per step, so that the spread settles within a few epochs
    (from 1.28 standard deviations to the noise's 0.45 on a test signal: about
    150 steps at learning rate 1e-3 instead of 1500). Trained
    with the multi-quantile pinball loss (``tsformers.training.losses``).
    A tsformers part, not from a paper (the non-crossing sum of positive
    increments is common practice); cost O(horizon * n_targets * Q) per series.

    The streaming protocol (``init_state``/``advance``/``forecast``) passes
    through, so recurrent networks keep their ``update``.
    """

    def __init__(self, network: nn.Module, *, quantiles, horizon: int, n_targets: int):
        super().__init__()
        levels = [float(q) for q in quantiles]
        if not levels or sorted(set(levels)) != levels or not all(0 < q < 1 for q in levels):
            raise ValueError(f"quantiles must be distinct increasing levels in (0, 1), got {quantiles!r}")
        self.network, self.horizon, self.n_targets = network, horizon, n_targets
        self.quantiles = levels
        self.anchor = min(range(len(levels)), key=lambda k: (abs(levels[k] - 0.5), levels[k]))
        normal = torch.distributions.Normal(0.0, 1.0)
        z = normal.icdf(torch.tensor(levels, dtype=torch.float64))
        gaps = (z[1:] - z[:-1]).clamp_min(1e-3).float()                          # (Q - 1,)
        start = gaps + torch.log(-torch.expm1(-gaps))                            # softplus^-1(gaps)
        shape = (horizon, n_targets, len(levels) - 1)
        self.bias_gain = 10.0
        self.gap_bias = nn.Parameter(start.expand(shape).clone() / self.bias_gain)
        self.gap_slope = nn.Parameter(torch.zeros(shape))
        self.gap_level = nn.Parameter(torch.zeros(shape))

    def quantiles_of(self, y: Tensor) -> Tensor:
        """The quantiles around a point output ``y`` (B, H, >= n_targets): (B, H, n_targets, Q)."""
        y = y[..., : self.n_targets]
        base = y.unsqueeze(-1)                                                   # (B, H, T, 1)
        if len(self.quantiles) == 1:
            return base
        gaps = nn.functional.softplus(self.bias_gain * self.gap_bias + self.gap_slope * base
                                      + self.gap_level * base.abs())
        cumulative = torch.cat([torch.zeros_like(base), gaps.cumsum(-1)], dim=-1)  # (B, H, T, Q)
        return base + cumulative - cumulative[..., self.anchor: self.anchor + 1]

    def forward(self, x: Tensor, static: Tensor | None = None) -> Tensor:
        return self.quantiles_of(self.network(x) if static is None else self.network(x, static=static))

    @property
    def needs_static(self) -> bool:
        """Whether the wrapped network's streaming state carries static attributes (see StaticResidual)."""
        return isinstance(self.network, StaticResidual) or bool(getattr(self.network, "needs_static", False))

    # the streaming protocol, passed through
    def init_state(self, batch_size: int) -> dict:
        return self.network.init_state(batch_size)

    def advance(self, state: dict, x: Tensor) -> dict:
        return self.network.advance(state, x)

    def forecast(self, state: dict, **inputs) -> Tensor:
        return self.quantiles_of(self.network.forecast(state, **inputs))  # future=... for KnownFutureHead
