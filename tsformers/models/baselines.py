"""The baseline networks: the last value, the last season, and a linear map of the window.

Each maps a window ``(batch, lookback, n_vars)`` to ``(batch, horizon, n_vars)`` and treats every
variable alike and apart (channel independence). They hold no learned state (``Naive``,
``SeasonalNaive``) or one linear map fitted in closed form (``Linear``, see
:class:`tsformers.LinearForecaster`), so prediction, saving and ONNX export go through the same
path as the deep networks'.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["Linear", "Naive", "SeasonalNaive"]


class Naive(nn.Module):
    """Every step of the horizon repeats the window's last value.

    Parameters
    ----------
    horizon : int
    """

    def __init__(self, *, horizon: int):
        super().__init__()
        self.horizon = horizon

    def forward(self, x: Tensor) -> Tensor:       # x: (B, L, N)
        return x[:, -1:, :].repeat(1, self.horizon, 1)   # (B, H, N)


class SeasonalNaive(nn.Module):
    """Step ``h`` repeats the value ``season_length * k`` steps before it, the smallest ``k`` inside the window.

    Over horizons longer than a season, the last observed season is tiled.

    Parameters
    ----------
    horizon, lookback, season_length : int
        ``season_length <= lookback``.
    """

    def __init__(self, *, horizon: int, lookback: int, season_length: int):
        super().__init__()
        if season_length > lookback:
            raise ValueError(f"season_length={season_length} needs a window at least that long, got "
                             f"lookback={lookback}.")
        steps = torch.arange(horizon)
        # rebuilt from the parameters, so not saved with the weights (persistent=False)
        self.register_buffer("index", lookback - (season_length - steps % season_length), persistent=False)

    def forward(self, x: Tensor) -> Tensor:       # x: (B, L, N)
        return x[:, self.index, :]                # (B, H, N)


class Linear(nn.Module):
    """A linear map from the window to the horizon, shared by every variable, on last-value-normalised windows.

    ``y[:, :, n] = x[:, -1, n] + W (x[:, :, n] - x[:, -1, n]) + b`` (NLinear, Zeng et al. 2023; RLinear,
    Li et al. 2023, without the affine part). ``W`` ``(horizon, lookback)`` and ``b`` ``(horizon,)`` are
    set by :class:`tsformers.LinearForecaster` from a ridge regression; the penalty it used is kept in
    the ``alpha`` buffer, saved with the weights.

    Parameters
    ----------
    horizon, lookback : int
    """

    def __init__(self, *, horizon: int, lookback: int):
        super().__init__()
        self.map = nn.Linear(lookback, horizon)
        nn.init.zeros_(self.map.weight)           # the last value until fitted
        nn.init.zeros_(self.map.bias)
        self.register_buffer("alpha", torch.tensor(float("nan"), dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:       # x: (B, L, N)
        last = x[:, -1:, :]                                       # (B, 1, N)
        out = self.map((x - last).transpose(1, 2))                # (B, N, H)
        return out.transpose(1, 2) + last                         # (B, H, N)
