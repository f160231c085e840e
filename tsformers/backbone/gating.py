"""Gating layers that replace a residual connection: ``g(x, y)`` merges the stream x with a sub-layer's output y.

Parisotto et al., "Stabilizing Transformers for Reinforcement Learning", ICML 2020
(arXiv 1910.06764), section 3.2. GTrXL puts one such layer after the attention and
one after the MLP of every block, in place of ``x + y``. Every layer here has the
call ``gate(x, y) -> (..., D)`` with x, y: (..., D), costs O(D^2) per token (at most
six D x D matrices, no token mixing), and is registered under the kind ``"gate"``:

========================  ==============================================================
name                      g(x, y)
========================  ==============================================================
``"residual"``            x + y                                     (no gate: TrXL-I)
``"input"``               sigmoid(W x) * x + y
``"output"``              x + sigmoid(W x - b) * y
``"highway"``             sigmoid(W x + b) * x + (1 - sigmoid(W x + b)) * y
``"sigmoid_tanh"``        x + sigmoid(W y - b) * tanh(U y)
``"gru"``                 (1 - z) * x + z * tanh(W_g y + U_g (r * x)),
                          r = sigmoid(W_r y + U_r x), z = sigmoid(W_z y + U_z x - b_g)
========================  ==============================================================

The gates with a bias ``b`` (``BIASED_GATES``) take ``bias`` (default 2, the paper's
b_g for the GRU gate); a positive value pushes each of them toward passing x through
unchanged, so that a block starts close to the identity map. The bias is a learned
vector initialised to ``bias``. Matrices have no bias terms, as in the paper.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .registry import register

__all__ = [
    "BIASED_GATES",
    "GATES",
    "GRUGate",
    "HighwayGate",
    "InputGate",
    "OutputGate",
    "ResidualGate",
    "SigmoidTanhGate",
]

GATES = ("gru", "input", "output", "highway", "sigmoid_tanh", "residual")
BIASED_GATES = frozenset({"gru", "output", "highway", "sigmoid_tanh"})  # these take `bias`


def _bias(d_model: int, value: float) -> nn.Parameter:
    return nn.Parameter(torch.full((d_model,), float(value)))


@register("gate", "residual")
class ResidualGate(nn.Module):
    """No gate: g(x, y) = x + y, the plain residual connection (TrXL-I when used in GTrXL's block).

    Cost O(D) per token, no parameters.
    """

    def __init__(self, d_model: int):  # d_model: accepted so that every gate builds alike
        super().__init__()

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return x + y


@register("gate", "input")
class InputGate(nn.Module):
    """Input gating: g(x, y) = sigmoid(W x) * x + y (Parisotto et al., ICML 2020).

    The stream is scaled by a gate read from itself; the sub-layer output is added
    in full. One D x D matrix, cost O(D^2) per token.
    """

    def __init__(self, d_model: int):
        super().__init__()
        self.w = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return torch.sigmoid(self.w(x)) * x + y


@register("gate", "output")
class OutputGate(nn.Module):
    """Output gating: g(x, y) = x + sigmoid(W x - b) * y (Parisotto et al., ICML 2020).

    The sub-layer output is let in through a gate read from the stream; ``bias`` > 0
    starts the gate nearly shut. One D x D matrix, cost O(D^2) per token.
    """

    def __init__(self, d_model: int, *, bias: float = 2.0):
        super().__init__()
        self.w = nn.Linear(d_model, d_model, bias=False)
        self.bias = _bias(d_model, bias)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return x + torch.sigmoid(self.w(x) - self.bias) * y


@register("gate", "highway")
class HighwayGate(nn.Module):
    """Highway connection: g(x, y) = s * x + (1 - s) * y, s = sigmoid(W x + b) (Parisotto et al., ICML 2020).

    A convex mix of stream and sub-layer output; ``bias`` > 0 starts it carrying the
    stream (Srivastava et al.'s highway networks). One D x D matrix, cost O(D^2) per token.
    """

    def __init__(self, d_model: int, *, bias: float = 2.0):
        super().__init__()
        self.w = nn.Linear(d_model, d_model, bias=False)
        self.bias = _bias(d_model, bias)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        carry = torch.sigmoid(self.w(x) + self.bias)
        return carry * x + (1 - carry) * y


@register("gate", "sigmoid_tanh")
class SigmoidTanhGate(nn.Module):
    """Sigmoid-tanh gating: g(x, y) = x + sigmoid(W y - b) * tanh(U y) (Parisotto et al., ICML 2020).

    A gated-activation update (as in WaveNet) read from the sub-layer output only,
    added to the stream. Two D x D matrices, cost O(D^2) per token.
    """

    def __init__(self, d_model: int, *, bias: float = 2.0):
        super().__init__()
        self.w = nn.Linear(d_model, d_model, bias=False)
        self.u = nn.Linear(d_model, d_model, bias=False)
        self.bias = _bias(d_model, bias)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return x + torch.sigmoid(self.w(y) - self.bias) * torch.tanh(self.u(y))


@register("gate", "gru")
class GRUGate(nn.Module):
    """GRU-type gating, GTrXL's choice (Parisotto et al., ICML 2020, eq. for g^GRU).

    With the stream x as the GRU's hidden state and the sub-layer output y as its input::

        r = sigmoid(W_r y + U_r x)                 reset gate
        z = sigmoid(W_z y + U_z x - b_g)           update gate, b_g = ``bias`` (2)
        h = tanh(W_g y + U_g (r * x))              candidate
        g(x, y) = (1 - z) * x + z * h

    With b_g = 2 the update gate starts near sigmoid(-2) = 0.12, so the layer
    starts close to passing x through: the paper finds this initialisation
    important for stable training. Six D x D matrices (stored as three fused
    ``nn.Linear``), cost O(D^2) per token.
    """

    def __init__(self, d_model: int, *, bias: float = 2.0):
        super().__init__()
        self.d_model = d_model
        self.w_rzg = nn.Linear(d_model, 3 * d_model, bias=False)  # [W_r; W_z; W_g] applied to y
        self.u_rz = nn.Linear(d_model, 2 * d_model, bias=False)   # [U_r; U_z] applied to x
        self.u_g = nn.Linear(d_model, d_model, bias=False)        # U_g applied to r * x
        self.bias = _bias(d_model, bias)                          # b_g

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        wr, wz, wg = self.w_rzg(y).chunk(3, dim=-1)              # (..., D) each
        ur, uz = self.u_rz(x).chunk(2, dim=-1)
        r = torch.sigmoid(wr + ur)
        z = torch.sigmoid(wz + uz - self.bias)
        h = torch.tanh(wg + self.u_g(r * x))
        return (1 - z) * x + z * h
