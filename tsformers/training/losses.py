"""Training losses selectable by name, and the multi-quantile pinball loss of quantile heads."""
from __future__ import annotations

import torch
from torch import nn

LOSSES = {"mse": nn.MSELoss, "mae": nn.L1Loss, "huber": nn.HuberLoss}


class PinballLoss(nn.Module):
    """The multi-quantile pinball (quantile) loss, averaged over every element and level.

    For levels ``q_1..q_Q``, forecasts ``pred`` of shape ``(..., Q)`` and targets
    ``y`` of shape ``(...)``: ``mean over elements and k of max(q_k * e, (q_k - 1) * e)``
    with ``e = y - pred[..., k]``. Minimised, ``pred[..., k]`` is the ``q_k``
    quantile of ``y``; at ``q = 0.5`` it is half the absolute error.
    ``tsformers.metrics.pinball_loss`` computes the same number on arrays.
    """

    def __init__(self, quantiles):
        super().__init__()
        self.register_buffer("levels", torch.tensor([float(q) for q in quantiles]), persistent=False)

    def forward(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        error = y.unsqueeze(-1) - pred                                   # (..., Q)
        levels = self.levels.to(pred.dtype)
        return torch.maximum(levels * error, (levels - 1) * error).mean()


def make_loss(name: str, quantiles=None) -> nn.Module:
    """The loss called ``name``, or the pinball loss over ``quantiles`` when they are given."""
    if quantiles:
        return PinballLoss(quantiles)
    try:
        return LOSSES[name]()
    except KeyError:
        raise ValueError(f"unknown loss '{name}'; choose one of {sorted(LOSSES)}.") from None
