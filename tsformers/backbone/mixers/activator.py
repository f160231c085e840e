"""Activator: a gated channel MLP in place of attention (repo Abdullah-88/Activator)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..registry import register
from ._base import CAUSAL_SELF, SELF, check_causal, check_cross
from ..dropout import Dropout

__all__ = ["Activator"]


@register("mixer", "activator")
class Activator(nn.Module):
    """Activator gating unit (Abdullah et al., "Activator: GLU Activation Function as the Core
    Component of a Vision Transformer", arXiv 2024).

    u = LN(GELU(W₁x)), v = LN(W₂x), out = W₃(u ⊙ v), one LayerNorm over d_hidden shared by
    both branches as in the official code. It acts on each token's channels only, so it
    mixes no tokens (block-diagonal Jacobian) and is trivially causal; on time tokens it
    needs another mixer, on variate tokens it is a per-variate MLP forecaster.
    ``n_heads`` is accepted and unused. Cost O(N·D·d_hidden) (default d_hidden = 2·D).
    """

    complexity = "O(N·D·d_hidden)"
    patterns = frozenset({SELF, CAUSAL_SELF})
    requires_order = False
    mixes_tokens = False
    paper = "Abdullah et al., Activator: GLU Activation Function as the Core Component of a Vision " \
            "Transformer, arXiv 2024"

    def __init__(self, d_model: int, *, n_heads: int = 1, dropout: float = 0.0, causal: bool = False,
                 d_hidden: int | None = None):
        super().__init__()
        check_causal(type(self), causal)
        self.causal = causal
        d_hidden = d_hidden or 2 * d_model
        self.proj_u = nn.Linear(d_model, d_hidden)
        self.proj_v = nn.Linear(d_model, d_hidden)
        self.norm = nn.LayerNorm(d_hidden)
        self.proj_out = nn.Linear(d_hidden, d_model)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, kv: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        check_cross(self, kv)
        u = self.norm(F.gelu(self.proj_u(x)))                                    # (B, N, d_hidden)
        v = self.norm(self.proj_v(x))                                            # (B, N, d_hidden)
        return self.proj_out(self.dropout(u * v))                                # (B, N, D)
