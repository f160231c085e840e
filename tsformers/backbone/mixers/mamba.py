"""Mamba: the selective state-space model as a token mixer, in pure PyTorch.

Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces", COLM 2024
(arXiv 2023; reference code state-spaces/mamba); surveyed in Qu et al., "A Survey of
Mamba", 2024. No fused kernel: the scan is a work-efficient parallel prefix scan over
the linear recurrence (training, any N), and ``step`` is the recurrence itself (streaming).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..registry import register
from ._base import CAUSAL_SELF, SELF, check_causal, check_cross
from ..dropout import Dropout

__all__ = ["Mamba", "selective_scan"]


def _linear_scan(a: Tensor, b: Tensor) -> Tensor:
    """h_t = a_t·h_{t-1} + b_t from h_{-1} = 0, along dim 1, by recursive pairing (O(N) work, O(log N) depth).

    Pairs (2i, 2i+1) combine into one step (a_{2i+1}a_{2i}, a_{2i+1}b_{2i} + b_{2i+1}); the
    half-length scan gives the odd positions, one multiply-add gives the even ones.
    """
    n = a.shape[1]
    if n == 1:
        return b
    if n % 2:  # pad one identity step (a=1, b=0) at the end
        a = torch.cat([a, torch.ones_like(a[:, :1])], dim=1)
        b = torch.cat([b, torch.zeros_like(b[:, :1])], dim=1)
    a_even, a_odd, b_even, b_odd = a[:, 0::2], a[:, 1::2], b[:, 0::2], b[:, 1::2]
    h_odd = _linear_scan(a_odd * a_even, a_odd * b_even + b_odd)                # h at 1, 3, 5, ...
    h_prev = torch.cat([torch.zeros_like(h_odd[:, :1]), h_odd[:, :-1]], dim=1)  # h at -1, 1, 3, ...
    h_even = a_even * h_prev + b_even                                           # h at 0, 2, 4, ...
    return torch.stack([h_even, h_odd], dim=2).flatten(1, 2)[:, :n]


def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor) -> Tensor:
    """y_t = C_t·h_t + D⊙u_t with h_t = exp(Δ_t A)⊙h_{t-1} + (Δ_t u_t) B_t, all t in parallel.

    u, delta: (B, N, E); A: (E, S); B, C: (B, N, S); D: (E,). Returns (B, N, E).
    Memory O(N·E·S): the state sequence is materialised (no fused kernel).
    """
    a = torch.exp(delta[..., None] * A)                                          # (B, N, E, S)
    b = (delta * u)[..., None] * B[:, :, None, :]                                # (B, N, E, S)
    h = _linear_scan(a, b)                                                       # (B, N, E, S)
    return torch.einsum("bnes,bns->bne", h, C) + D * u                           # (B, N, E)


class _Direction(nn.Module):
    """One scan direction: causal depthwise conv, input-dependent Δ, B, C and the selective SSM."""

    def __init__(self, d_inner: int, d_state: int, d_conv: int, dt_rank: int,
                 dt_min: float = 1e-3, dt_max: float = 0.1):
        super().__init__()
        self.d_state, self.d_conv, self.dt_rank = d_state, d_conv, dt_rank
        self.conv = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner)         # left-padded in forward
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, d_inner)
        # Δ starts log-uniform in [dt_min, dt_max]: bias = softplus⁻¹(Δ)
        dt = torch.exp(torch.rand(d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        # S4D-real initialisation A = -(1, 2, ..., S) per channel, kept as log(-A)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(d_inner, 1))
        self.D = nn.Parameter(torch.ones(d_inner))

    def _ssm_inputs(self, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        dt, B, C = self.x_proj(u).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        return F.softplus(self.dt_proj(dt)), B, C                                # Δ (.., E), B, C (.., S)

    def forward(self, u: Tensor) -> Tensor:                                     # (B, N, E)
        u = self.conv(F.pad(u.transpose(1, 2), (self.d_conv - 1, 0))).transpose(1, 2)
        u = F.silu(u)
        delta, B, C = self._ssm_inputs(u)
        return selective_scan(u, delta, -torch.exp(self.A_log), B, C, self.D)    # (B, N, E)

    def scan(self, u: Tensor, conv_state: Tensor, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """u (B, T, E) new inputs after conv_state (B, E, d_conv-1) and h (B, E, S): y (B, T, E), states."""
        window = torch.cat([conv_state, u.transpose(1, 2)], dim=-1)              # (B, E, d_conv-1+T)
        u = F.silu(self.conv(window).transpose(1, 2))                            # (B, T, E)
        delta, B, C = self._ssm_inputs(u)
        a = torch.exp(delta[..., None] * -torch.exp(self.A_log))                 # (B, T, E, S)
        b = (delta * u)[..., None] * B[:, :, None, :]                            # (B, T, E, S)
        b = torch.cat([b[:, :1] + a[:, :1] * h[:, None], b[:, 1:]], dim=1)       # h_0 = a_0 h_{-1} + b_0
        states = _linear_scan(a, b)                                              # (B, T, E, S)
        y = torch.einsum("bnes,bns->bne", states, C) + self.D * u                # (B, T, E)
        return y, window[..., window.shape[-1] - conv_state.shape[-1]:], states[:, -1]

    def step(self, u: Tensor, conv_state: Tensor, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """u (B, E) newest input; conv_state (B, E, d_conv-1) previous inputs; h (B, E, S)."""
        window = torch.cat([conv_state, u[..., None]], dim=-1)                   # (B, E, d_conv)
        u = F.silu((window * self.conv.weight[:, 0]).sum(-1) + self.conv.bias)   # (B, E)
        delta, B, C = self._ssm_inputs(u)
        h = torch.exp(delta[..., None] * -torch.exp(self.A_log)) * h + (delta * u)[..., None] * B[:, None]
        y = (h * C[:, None]).sum(-1) + self.D * u                                # (B, E)
        return y, window[..., 1:], h


@register("mixer", "mamba")
class Mamba(nn.Module):
    """Mamba selective SSM block as a mixer (Gu & Dao, COLM 2024; "A Survey of Mamba", Qu et al., 2024).

    in_proj -> (x, z); x -> causal depthwise Conv1d (``d_conv``) -> SiLU -> input-dependent
    Δ, B, C -> scan h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t x_t, y_t = C_t h_t + D x_t;
    y ⊙ SiLU(z) -> out_proj. Cost O(N·D·d_state) time and memory (O(1) state per step
    with ``step``); inner width E = expand·d_model. ``n_heads`` is accepted and unused.

    The forward scan is causal whatever ``causal`` says (a causal mixer is also a valid
    non-causal one). ``bidirectional=True`` adds a second scan over the reversed tokens
    with its own conv/Δ/B/C/A/D (Vision-Mamba style), summed before the gate: every
    token then sees every other, e.g. for variate tokens. It is still order-dependent
    (the recurrence decays with distance in the given order), so ``requires_order`` is
    True in both forms: variate tokens get an arbitrary but fixed order, not equivariance.
    """

    complexity = "O(N·D·d_state)"
    patterns = frozenset({SELF, CAUSAL_SELF})
    requires_order = True
    mixes_tokens = True
    paper = "Gu & Dao, Mamba: Linear-Time Sequence Modeling with Selective State Spaces, COLM 2024"

    def __init__(self, d_model: int, *, n_heads: int = 1, dropout: float = 0.0, causal: bool = False,
                 d_state: int = 16, d_conv: int = 4, expand: int = 2, dt_rank: int | None = None,
                 bidirectional: bool = False):
        super().__init__()
        check_causal(type(self), causal)
        if causal and bidirectional:
            raise ValueError("mamba: bidirectional=True reads the future; it has no causal form")
        self.causal, self.bidirectional = causal, bidirectional
        self.d_inner = expand * d_model
        dt_rank = dt_rank or math.ceil(d_model / 16)
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner)
        self.forward_scan = _Direction(self.d_inner, d_state, d_conv, dt_rank)
        self.backward_scan = _Direction(self.d_inner, d_state, d_conv, dt_rank) if bidirectional else None
        self.out_proj = nn.Linear(self.d_inner, d_model)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, kv: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        check_cross(self, kv)
        if mask is not None:
            raise ValueError("mamba takes no attention mask")
        u, z = self.in_proj(x).chunk(2, dim=-1)                                  # (B, N, E) each
        y = self.forward_scan(u)
        if self.backward_scan is not None:
            y = y + self.backward_scan(u.flip(1)).flip(1)
        return self.dropout(self.out_proj(y * F.silu(z)))                       # (B, N, D)

    def init_state(self, batch: int, device=None, dtype=None) -> tuple[Tensor, Tensor]:
        """Zero (conv_state (B, E, d_conv-1), h (B, E, d_state))."""
        scan = self.forward_scan
        return (torch.zeros(batch, self.d_inner, scan.d_conv - 1, device=device, dtype=dtype),
                torch.zeros(batch, self.d_inner, scan.d_state, device=device, dtype=dtype))

    def init_scan(self, rows: int) -> dict[str, Tensor]:
        """The zero state of ``scan`` for ``rows`` sequences, on the parameters' device and dtype."""
        conv_state, h = self.init_state(rows, self.out_proj.weight.device, self.out_proj.weight.dtype)
        return {"conv": conv_state, "h": h}

    def scan(self, x: Tensor, state: dict[str, Tensor] | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """The causal forward over T new tokens x (B, T, D) after ``state``: (y (B, T, D), new state).

        The parallel scan started from the state (``"conv"``: the last d_conv-1 inner inputs,
        ``"h"``: the SSM state), so a sequence fed in pieces gives ``forward`` over all of it.
        """
        if self.bidirectional:
            raise ValueError("mamba: scan() needs the unidirectional form (bidirectional=False)")
        state = self.init_scan(x.shape[0]) if state is None else state
        conv_state, h = state["conv"], state["h"]
        u, z = self.in_proj(x).chunk(2, dim=-1)                                  # (B, T, E) each
        y, conv_state, h = self.forward_scan.scan(u, conv_state, h)
        return self.dropout(self.out_proj(y * F.silu(z))), {"conv": conv_state, "h": h}

    def step(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """One recurrent step: x (B, D) the newest token -> (y (B, D), new state), O(E·d_state).

        Feeding tokens 0..N-1 from ``state=None`` gives ``forward`` of the unidirectional form.
        """
        if self.bidirectional:
            raise ValueError("mamba: step() needs the unidirectional form (bidirectional=False)")
        conv_state, h = self.init_state(x.shape[0], x.device, x.dtype) if state is None else state
        u, z = self.in_proj(x).chunk(2, dim=-1)                                  # (B, E) each
        y, conv_state, h = self.forward_scan.step(u, conv_state, h)
        return self.out_proj(y * F.silu(z)), (conv_state, h)
