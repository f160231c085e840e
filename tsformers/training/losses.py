"""Point-forecast losses selectable by name."""
from __future__ import annotations

from torch import nn

LOSSES = {"mse": nn.MSELoss, "mae": nn.L1Loss, "huber": nn.HuberLoss}


def make_loss(name: str) -> nn.Module:
    try:
        return LOSSES[name]()
    except KeyError:
        raise ValueError(f"unknown loss '{name}'; choose one of {sorted(LOSSES)}.") from None
