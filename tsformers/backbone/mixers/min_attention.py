"""Minimal attention: merged W_QK, optionally symmetric, optionally without W_V and W_O."""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn

from ..registry import register
from ._base import ALL_PATTERNS, check_causal, check_cross
from ..dropout import Dropout

__all__ = ["MinimalAttention"]


@register("mixer", "min_attention")
class MinimalAttention(nn.Module):
    """Attention reduced to a minimum (Bermeitinger, Hrycej, Wagner, Handschuh, "Reducing the
    Transformer Architecture to a Minimum", KDIR 2024 / arXiv 2024).

    Per head h, on the head's slice x_h of the channels (d_head = D/H):
    score(i, j) = x_{h,i}ᵀ W_QK^h x_{h,j} / sqrt(d_head), one merged d_head×d_head matrix in
    place of W_Q W_Kᵀ. ``symmetric=True`` stores only its upper triangle (about half the
    parameters) so that score(i, j) = score(j, i). ``drop_vo=True`` (default) omits W_V and
    W_O: every output channel is a convex combination of the same channel of the inputs,
    so if all tokens equal v the output is v. The paper also drops the MLP; that is the
    block's business, not the mixer's. Cost O(N²·D) time, O(N²) memory per head.

    ``mask``: boolean, broadcastable to (B, H, N, M), True where a query may attend.
    """

    complexity = "O(N^2·D)"
    patterns = ALL_PATTERNS
    requires_order = False
    mixes_tokens = True
    paper = "Bermeitinger et al., Reducing the Transformer Architecture to a Minimum, KDIR 2024"

    def __init__(self, d_model: int, *, n_heads: int = 8, dropout: float = 0.0, causal: bool = False,
                 symmetric: bool = False, drop_vo: bool = True):
        super().__init__()
        check_causal(type(self), causal)
        assert d_model % n_heads == 0, f"d_model={d_model} must be divisible by n_heads={n_heads}"
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.causal, self.symmetric, self.drop_vo = causal, symmetric, drop_vo
        d = self.d_head
        std = 1.0 / math.sqrt(d)
        if symmetric:
            rows, cols = torch.triu_indices(d, d)
            self.register_buffer("_rows", rows, persistent=False)
            self.register_buffer("_cols", cols, persistent=False)
            self.w_qk = nn.Parameter(torch.randn(n_heads, rows.numel()) * std)  # (H, d(d+1)/2)
        else:
            self.w_qk = nn.Parameter(torch.randn(n_heads, d, d) * std)           # (H, d, d)
        self.to_v = None if drop_vo else nn.Linear(d_model, d_model)
        self.to_out = None if drop_vo else nn.Linear(d_model, d_model)
        self.attn_dropout = Dropout(dropout)

    def matrix(self) -> Tensor:
        """W_QK per head, (H, d_head, d_head); symmetric when built so."""
        if not self.symmetric:
            return self.w_qk
        d = self.d_head
        upper = self.w_qk.new_zeros(self.n_heads, d, d)
        upper[:, self._rows, self._cols] = self.w_qk
        return upper + upper.transpose(1, 2) - torch.diag_embed(upper.diagonal(dim1=1, dim2=2))

    def scores(self, x: Tensor, kv: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        """Pre-softmax scores (B, H, N, M), masked with -inf."""
        kv = x if kv is None else kv
        xq = rearrange(x, "b n (h d) -> b h n d", h=self.n_heads)                # (B, H, N, d)
        xk = rearrange(kv, "b m (h d) -> b h m d", h=self.n_heads)               # (B, H, M, d)
        scores = (xq @ self.matrix()[None]) @ xk.transpose(-1, -2) / math.sqrt(self.d_head)  # (B, H, N, M)
        if self.causal:
            causal = torch.ones(scores.shape[-2:], dtype=torch.bool, device=x.device).tril()
            mask = causal if mask is None else mask & causal
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return scores

    def forward(self, x: Tensor, kv: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        check_cross(self, kv)
        weights = self.attn_dropout(self.scores(x, kv, mask).softmax(dim=-1))   # (B, H, N, M)
        src = x if kv is None else kv
        values = src if self.to_v is None else self.to_v(src)                   # (B, M, D)
        out = weights @ rearrange(values, "b m (h d) -> b h m d", h=self.n_heads)
        out = rearrange(out, "b h n d -> b n (h d)")                             # (B, N, D)
        return out if self.to_out is None else self.to_out(out)
