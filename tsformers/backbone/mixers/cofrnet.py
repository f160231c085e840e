"""CoFrGeNet's continued-fraction feed-forward network (``cofrnet``, kind "ffn").

Dhurandhar, Chenthamarakshan, Wei, Pedapati, Natesan Ramamurthy, Nair, "CoFrGeNet:
Continued Fraction Architectures for Language Generation", arXiv 2601.21766, 2026
(code not released), after Puri et al., "CoFrNets: Interpretable Neural Architecture
Inspired by Continued Fractions", NeurIPS 2021. Only the FFN replacement (Cffn) is here;
the paper's attention replacements (CAttnU/CAttnM) are not.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..registry import register
from ..dropout import Dropout

__all__ = ["ContinuedFraction", "ContinuedFractionFFN", "continued_fraction", "continuants"]


def continuants(a: Tensor) -> Tensor:
    """Suffix continuants P_m = K(a_{d-m+1}, ..., a_d), m = 0..d, of coefficients a (d, ...) -> (d+1, ...).

    P_0 = 1, P_1 = a_d, P_m = a_{d-m+1}·P_{m-1} + P_{m-2}; P_d = K(a_1..a_d) and
    1/(a_1 + 1/(a_2 + … + 1/a_d)) = P_{d-1}/P_d (one division).
    """
    d = a.shape[0]
    ps = [torch.ones_like(a[0]), a[d - 1]]
    for m in range(2, d + 1):
        ps.append(a[d - m] * ps[m - 1] + ps[m - 2])
    return torch.stack(ps)


def _guard(den: Tensor, eps: float) -> Tensor:
    """Keep |den| >= eps, away from the poles of the fraction (sign kept, 0 -> +eps)."""
    if eps <= 0:
        return den
    sign = torch.where(den < 0, -1.0, 1.0).to(den.dtype)
    return sign * den.abs().clamp_min(eps)


class ContinuedFraction(torch.autograd.Function):
    """f(a) = 1/(a_1 + 1/(a_2 + … + 1/a_d)) elementwise, a: (d, ...) -> (...), with the paper's backward.

    Backward (CoFrGeNet, Proposition 1): ∂f/∂a_k = (−1)^k·(K(a_{k+1}..a_d)/K(a_1..a_d))²,
    the suffix continuants reused from the forward and a single reciprocal of K_d.
    Where |K_d| < eps the denominator is held at ±eps (a pole guard) and the same
    formula is used with it (exact only away from poles).
    """

    @staticmethod
    def forward(ctx, a: Tensor, eps: float) -> Tensor:
        p = continuants(a)                                                       # (d+1, ...)
        inv = 1.0 / _guard(p[-1], eps)
        ctx.save_for_backward(p, inv)
        return p[-2] * inv

    @staticmethod
    def backward(ctx, grad: Tensor):
        p, inv = ctx.saved_tensors
        d = p.shape[0] - 1
        # k = 1..d needs P_{d-k} = p[d-1], ..., p[0]; sign (−1)^k
        suffix = p[:d].flip(0)                                                   # (d, ...): P_{d-1}..P_0
        sign = torch.tensor([(-1.0) ** k for k in range(1, d + 1)], dtype=p.dtype, device=p.device)
        sign = sign.view(d, *([1] * (p.dim() - 1)))
        return grad * sign * (suffix * inv) ** 2, None


def continued_fraction(a: Tensor, eps: float = 0.0) -> Tensor:
    """1/(a_1 + 1/(a_2 + … + 1/a_d)) over dim 0 of a (d, ...), by continuants, custom backward."""
    return ContinuedFraction.apply(a, eps)


@register("ffn", "cofrnet")
class ContinuedFractionFFN(nn.Module):
    """Continued-fraction FFN, Cffn (Dhurandhar et al., "CoFrGeNet", arXiv 2026).

    x̂ = σ(G x) ⊙ x; ladder j = 1..L evaluates, channel by channel, the continued fraction
    z_j = 1/(a_{j,1} + 1/(a_{j,2} + … + 1/a_{j,d})) with a_{j,k} = w_{j,k} ⊙ x̂ + b_{j,k};
    y = U x + Σ_j V_j z_j. ``combine="dense"``: V_j are D×D matrices, (2+L)·D² parameters
    (the catalog's reading); ``combine="diagonal"``: V_j are per-channel vectors,
    2·D² + L·(d+1)·D parameters (the count the third-party re-implementation reports).
    The biases b (init 1, with small w) start every ladder away from its poles, and
    ``eps`` guards |K_d| >= eps after that. Cost O(N·(2+L)·D²), no token mixing.
    ``d_ff`` and ``activation`` are accepted for a drop-in with ``FeedForward`` and unused.
    """

    requires_order = False  # token by token
    complexity = "O(N·L·D^2)"
    paper = "Dhurandhar et al., CoFrGeNet: Continued Fraction Architectures for Language Generation, arXiv 2026"

    def __init__(self, d_model: int, *, n_ladders: int = 3, depth: int = 3, eps: float = 1e-2,
                 combine: str = "dense", dropout: float = 0.0, d_ff: int | None = None,
                 activation: str | None = None):
        super().__init__()
        assert n_ladders >= 1 and depth >= 1
        assert combine in ("dense", "diagonal"), f"combine must be 'dense' or 'diagonal', got {combine!r}"
        self.n_ladders, self.depth, self.eps, self.combine = n_ladders, depth, eps, combine
        self.direct = nn.Linear(d_model, d_model)                                # U
        self.gate = nn.Linear(d_model, d_model)                                  # G
        self.coef_weight = nn.Parameter(torch.empty(depth, n_ladders, d_model).uniform_(-0.5, 0.5))
        self.coef_bias = nn.Parameter(torch.ones(depth, n_ladders, d_model))
        if combine == "dense":
            self.mix = nn.Linear(n_ladders * d_model, d_model, bias=False)      # [V_1 … V_L]
        else:
            self.mix = nn.Parameter(torch.randn(n_ladders, d_model) / n_ladders)
        self.dropout = Dropout(dropout)

    def ladders(self, x: Tensor) -> Tensor:
        """z (..., L, D): the L continued fractions of each channel."""
        gated = torch.sigmoid(self.gate(x)) * x                                  # (..., D)
        shape = (self.depth, *([1] * (x.dim() - 1)), self.n_ladders, x.shape[-1])
        a = self.coef_weight.view(shape) * gated[..., None, :] + self.coef_bias.view(shape)  # (d, ..., L, D)
        return continued_fraction(a, self.eps)                                   # (..., L, D)

    def forward(self, x: Tensor) -> Tensor:                                      # (..., D)
        z = self.ladders(x)                                                      # (..., L, D)
        mixed = self.mix(z.flatten(-2)) if self.combine == "dense" else (z * self.mix).sum(-2)
        return self.dropout(self.direct(x) + mixed)                              # (..., D)
