"""Heads added around a network."""
from __future__ import annotations

import torch
from torch import Tensor, nn


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
        return torch.cat([y[..., : self.n_targets] + delta, y[..., self.n_targets:]], dim=-1)

    def forward(self, x: Tensor, static: Tensor) -> Tensor:
        return self.corrected(self.network(x), static)

    # the streaming protocol, passed through
    def init_state(self, batch_size: int) -> dict:
        return self.network.init_state(batch_size)

    def advance(self, state: dict, x: Tensor) -> dict:
        inner = self.network.advance({k: v for k, v in state.items() if k != "static"}, x)
        return {**inner, "static": state["static"]} if "static" in state else inner

    def forecast(self, state: dict) -> Tensor:
        inner = self.network.forecast({k: v for k, v in state.items() if k != "static"})
        return self.corrected(inner, state["static"])


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

    def forecast(self, state: dict) -> Tensor:
        return self.quantiles_of(self.network.forecast(state))
