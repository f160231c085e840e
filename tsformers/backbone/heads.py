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
