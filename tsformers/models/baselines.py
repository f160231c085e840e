"""The baseline networks: the last value, the last season, a linear map of the window, exponential smoothing.

Each maps a window ``(batch, lookback, n_vars)`` to ``(batch, horizon, n_vars)`` and treats every
variable apart (channel independence). They hold no learned state (``Naive``, ``SeasonalNaive``),
one linear map fitted in closed form (``Linear``, see :class:`tsformers.LinearForecaster`) or the
smoothing parameters statsmodels selected per series and variable (``ETS``, see
:class:`tsformers.ETSForecaster`), so prediction, saving and ONNX export go through the same path
as the deep networks'.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["ETS", "Linear", "Naive", "SeasonalNaive", "initial_state_map"]


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


def _run(x0: np.ndarray, y: np.ndarray, alpha: float, beta: float, gamma: float, phi: float, m: int) -> np.ndarray:
    """The one-step forecasts ``(n, L)`` of the recursion (:class:`ETS`) from states ``x0`` ``(n, 2 + m)`` over rows
    ``y`` ``(n, L)``, float64: the reference the network's initial-state maps are built from."""
    level, trend, seasons = x0[:, 0].copy(), x0[:, 1].copy(), x0[:, 2:].copy()
    forecasts = np.empty_like(y)
    for t in range(y.shape[1]):
        season = seasons[:, t % m] if m else 0.0
        forecasts[:, t] = level + phi * trend + season
        error = y[:, t] - forecasts[:, t]
        level, trend = level + phi * trend + alpha * error, phi * trend + beta * error
        if m:
            seasons[:, t % m] = season + gamma * error
    return forecasts


def initial_state_map(lookback: int, season_length: int, *, alpha: float, beta: float = 0.0, gamma: float = 0.0,
                      phi: float = 1.0, has_trend: bool = False, has_seasonal: bool = False) -> np.ndarray:
    """The linear map ``(2 + m, lookback)`` from a window to the state before its first row that minimises the
    squared one-step errors of the recursion over the window (``m = season_length``, none when it is 1).

    With the smoothing parameters fixed, the one-step errors are affine in the initial state ``x0``:
    ``e = E y - Phi x0`` (``E y`` the errors from a zero state, ``Phi`` the forecasts a state alone makes), so
    the least-squares state is ``pinv(Phi) E y``, what statsmodels' ``ETSModel`` estimates (maximum likelihood
    of the initial states, Gaussian errors) over the window with the same smoothing parameters. A form without
    trend starts at ``b = 0``; the seasonal terms sum to 0 (their mean is the level's).
    """
    m = season_length if season_length > 1 else 0
    n_state = 2 + m
    basis = [np.eye(n_state)[0]] + ([np.eye(n_state)[1]] if has_trend else [])
    if has_seasonal and m:
        basis += [np.eye(n_state)[2 + k] - np.eye(n_state)[1 + m] for k in range(m - 1)]
    basis = np.stack(basis, axis=1)                                                   # (2 + m, free)
    params = dict(alpha=alpha, beta=beta, gamma=gamma, phi=phi, m=m)
    responses = _run(basis.T, np.zeros((basis.shape[1], lookback)), **params).T       # (L, free): Phi
    zero_state = np.eye(lookback) - _run(np.zeros((lookback, n_state)), np.eye(lookback), **params).T   # (L, L): E
    return basis @ np.linalg.pinv(responses) @ zero_state


class ETS(nn.Module):
    """Additive exponential smoothing run over the window, with parameters per series and variable.

    The state-space form ETS(A, T, S), T in {N, A, Ad}, S in {N, A} (Hyndman et al. 2008; statsmodels'
    ``ETSModel`` with ``error="add"``): with the one-step error ``e_t = y_t - (l + phi b + s_(t-m))``,

    ``l_t = l_(t-1) + phi b_(t-1) + alpha e_t``, ``b_t = phi b_(t-1) + beta e_t``, ``s_t = s_(t-m) + gamma e_t``,

    and the forecast ``y_(T+h) = l_T + (phi + ... + phi^h) b_T + s_(T+h-m*ceil(h/m))``. A form without trend
    has ``b = 0``, one without season ``s = 0``, an undamped trend ``phi = 1``. The state before the window's
    first row is the one with the least squared one-step errors over the window (:func:`initial_state_map`,
    kept per parameter row in the ``initial_maps`` buffer, rebuilt from the parameters whenever they are
    loaded); the recursion then runs over the whole window. For fixed parameters the forecast is a linear
    function of the window.

    The parameters are buffers of shape ``(n_series + 1, n_vars)``: row ``i`` for the ``i``-th series of the
    fit, the last row for windows of series not seen in fit. Which row a window reads comes in
    ``static`` ``(batch, 1)``: the series' position in fit, or -1 (or no ``static`` at all) for the last row.
    Until fitted every row is the last-value forecast (``alpha = 1``, no trend, no season).

    Parameters
    ----------
    horizon, lookback : int
    season_length : int
        The period ``m`` of the seasonal forms (1: none); ``season_length <= lookback``.
    n_series, n_vars : int
        The series of the fit, the variables of each.
    """

    def __init__(self, *, horizon: int, lookback: int, season_length: int, n_series: int, n_vars: int):
        super().__init__()
        if season_length > lookback:
            raise ValueError(f"season_length={season_length} needs a window at least that long, got "
                             f"lookback={lookback}.")
        self.horizon, self.lookback, self.season_length, self.n_series = horizon, lookback, season_length, n_series
        shape = (n_series + 1, n_vars)
        self.register_buffer("smoothing_level", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("smoothing_trend", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("smoothing_seasonal", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("damping_trend", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("has_trend", torch.zeros(shape, dtype=torch.bool))
        self.register_buffer("damped", torch.zeros(shape, dtype=torch.bool))
        self.register_buffer("has_seasonal", torch.zeros(shape, dtype=torch.bool))
        self.register_buffer("aicc", torch.full(shape, float("nan"), dtype=torch.float64))
        # per variable, the fitted series whose parameters the last row copies (-1: none yet)
        self.register_buffer("new_series_from", torch.full((n_vars,), -1, dtype=torch.int64))
        n_state = 2 + (season_length if season_length > 1 else 0)
        # derived from the parameters, so not saved with them (persistent=False): refresh() rebuilds it
        self.register_buffer("initial_maps", torch.zeros(*shape, n_state, lookback), persistent=False)
        # zero maps suit the unfitted parameters: with alpha = 1 and no trend or season the state is forgotten
        self.register_load_state_dict_post_hook(lambda module, incompatible: module.refresh())

    def refresh(self) -> None:
        """Rebuild the initial-state maps from the parameters (after fitting them, or loading them)."""
        maps = np.stack([np.stack([
            initial_state_map(self.lookback, self.season_length, alpha=float(self.smoothing_level[r, v]),
                              beta=float(self.smoothing_trend[r, v]), gamma=float(self.smoothing_seasonal[r, v]),
                              phi=float(self.damping_trend[r, v]), has_trend=bool(self.has_trend[r, v]),
                              has_seasonal=bool(self.has_seasonal[r, v]))
            for v in range(self.smoothing_level.shape[1])]) for r in range(self.smoothing_level.shape[0])])
        with torch.no_grad():
            self.initial_maps.copy_(torch.from_numpy(maps))

    def rows(self, static: Tensor | None, x: Tensor) -> Tensor:
        """The parameter row of each window ``(batch,)``: its series' position in fit, else the last row."""
        last = torch.zeros_like(x[:, 0, 0], dtype=torch.long) + self.n_series
        if static is None:
            return last
        code = static[:, 0].round().long()
        return torch.where((code < 0) | (code >= self.n_series), last, code)

    def initial_states(self, x: Tensor, static: Tensor | None = None) -> Tensor:
        """The state before each window's first row, ``(batch, n_vars, 2 + m)``: level, trend, ``s_0 ... s_(m-1)``
        (``s_k`` the seasonal term of the rows ``t = k (mod m)``)."""
        maps = self.initial_maps[self.rows(static, x)].to(x.dtype)                  # (B, N, K, L)
        return torch.einsum("bnkl,bln->bnk", maps, x)

    def forward(self, x: Tensor, static: Tensor | None = None) -> Tensor:    # x: (B, L, N)
        rows = self.rows(static, x)
        alpha, beta, gamma, phi = (p[rows].to(x.dtype) for p in (self.smoothing_level, self.smoothing_trend,
                                                                 self.smoothing_seasonal, self.damping_trend))
        states = self.initial_states(x, static)
        level, trend = states[..., 0], states[..., 1]
        seasons = list(states[..., 2:].unbind(-1))          # seasons[k]: the seasonal term of the rows t = k (mod m)
        m = len(seasons)
        for t in range(x.shape[1]):
            season = seasons[t % m] if m else 0.0
            error = x[:, t, :] - (level + phi * trend + season)
            level = level + phi * trend + alpha * error
            trend = phi * trend + beta * error
            if m:
                seasons[t % m] = season + gamma * error
        steps = torch.arange(1, self.horizon + 1, dtype=x.dtype, device=x.device)
        damping = torch.cumsum(phi[..., None] ** steps, dim=-1)                     # (B, N, H): phi + ... + phi^h
        out = level[..., None] + damping * trend[..., None]
        if m:
            last = x.shape[1] - 1
            out = out + torch.stack([seasons[(last + h) % m] for h in range(1, self.horizon + 1)], dim=-1)
        return out.transpose(1, 2)                                                  # (B, H, N)
