"""Sparse Query Attention (``sqa``) and its presets ``ssqa`` (symmetric) and ``xsqa`` (extreme).

Filipek, "Sparse Query Attention (SQA): A Computationally Efficient Attention Mechanism
with Query Heads Reduction", arXiv 2025 (reference implementation in RxAI-dev/RxNN).
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn

from ..registry import register
from ._base import ALL_PATTERNS, check_causal, check_cross
from ..dropout import Dropout

__all__ = ["ExtremeSparseQueryAttention", "SparseQueryAttention", "SymmetricSparseQueryAttention"]


@register("mixer", "sqa")
class SparseQueryAttention(nn.Module):
    """Sparse query attention (Filipek, arXiv 2025): fewer query heads than the reference MHA.

    The reference is H = ``n_heads`` heads of ``head_dim`` (default d_model/H). SQA keeps
    H_q = ``n_query_heads`` < H query heads and H_kv = ``n_kv_heads`` (dividing H_q)
    key/value heads shared GQA-style, so the N×M score tensor has H_q heads and the
    attention FLOPs scale by H_q/H; the output projection maps H_q·head_dim -> d_model.
    Defaults: H_q = H/2, H_kv = H/4 (at least 1). Cost O(N²·D·H_q/H) (O(N·M·D·H_q/H) cross).

    ``mask``: boolean, broadcastable to (B, H_q, N, M), True where a query may attend.
    With H_q = H_kv = H this is multi-head attention, parameter for parameter the same as
    ``full`` (same names ``to_q``, ``to_k``, ``to_v``, ``to_out``).
    """

    complexity = "O(N^2·D·H_q/H)"
    patterns = ALL_PATTERNS
    requires_order = False
    mixes_tokens = True
    paper = "Filipek, Sparse Query Attention (SQA): A Computationally Efficient Attention Mechanism with " \
            "Query Heads Reduction, arXiv 2025"

    def __init__(self, d_model: int, *, n_heads: int = 8, dropout: float = 0.0, causal: bool = False,
                 n_query_heads: int | None = None, n_kv_heads: int | None = None, head_dim: int | None = None):
        super().__init__()
        check_causal(type(self), causal)
        h_q, h_kv = self.default_heads(n_heads)
        self.n_query_heads = h_q if n_query_heads is None else n_query_heads
        self.n_kv_heads = min(h_kv, self.n_query_heads) if n_kv_heads is None else n_kv_heads
        assert self.n_query_heads % self.n_kv_heads == 0, \
            f"n_kv_heads={self.n_kv_heads} must divide n_query_heads={self.n_query_heads}"
        if head_dim is None:
            assert d_model % n_heads == 0, f"d_model={d_model} must be divisible by n_heads={n_heads}"
            head_dim = d_model // n_heads
        self.n_heads, self.head_dim, self.causal = n_heads, head_dim, causal
        self.to_q = nn.Linear(d_model, self.n_query_heads * head_dim)
        self.to_k = nn.Linear(d_model, self.n_kv_heads * head_dim)
        self.to_v = nn.Linear(d_model, self.n_kv_heads * head_dim)
        self.to_out = nn.Linear(self.n_query_heads * head_dim, d_model)
        self.attn_dropout = Dropout(dropout)

    @staticmethod
    def default_heads(n_heads: int) -> tuple[int, int]:
        """(H_q, H_kv) when not given: SQA's H/2 query and H/4 key/value heads."""
        return max(1, n_heads // 2), max(1, n_heads // 4)

    def scores(self, x: Tensor, kv: Tensor | None = None, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Pre-softmax scores (B, H_q, N, M), masked with -inf, and the values (B, H_q, M, head_dim)."""
        kv = x if kv is None else kv                                              # (B, M, D)
        q = rearrange(self.to_q(x), "b n (h d) -> b h n d", h=self.n_query_heads)  # (B, H_q, N, d)
        k, v = (rearrange(p(kv), "b m (h d) -> b h m d", h=self.n_kv_heads) for p in (self.to_k, self.to_v))
        group = self.n_query_heads // self.n_kv_heads
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)  # (B, H_q, M, d)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)            # (B, H_q, N, M)
        if self.causal:
            # top-left alignment, as scaled_dot_product_attention(is_causal=True)
            causal = torch.ones(scores.shape[-2:], dtype=torch.bool, device=x.device).tril()
            mask = causal if mask is None else mask & causal
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return scores, v

    def forward(self, x: Tensor, kv: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        check_cross(self, kv)
        scores, v = self.scores(x, kv, mask)
        out = self.attn_dropout(scores.softmax(dim=-1)) @ v                      # (B, H_q, N, d)
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))               # (B, N, D)


@register("mixer", "ssqa")
class SymmetricSparseQueryAttention(SparseQueryAttention):
    """Symmetric SQA preset (sSQA; Filipek, arXiv 2025): H_q = H_kv = H/2. Cost O(N²·D/2)."""

    complexity = "O(N^2·D/2)"

    @staticmethod
    def default_heads(n_heads: int) -> tuple[int, int]:
        return max(1, n_heads // 2), max(1, n_heads // 2)


@register("mixer", "xsqa")
class ExtremeSparseQueryAttention(SparseQueryAttention):
    """Extreme SQA preset (xSQA; Filipek, arXiv 2025): H_q = H_kv = H/4. Cost O(N²·D/4)."""

    complexity = "O(N^2·D/4)"

    @staticmethod
    def default_heads(n_heads: int) -> tuple[int, int]:
        return max(1, n_heads // 4), max(1, n_heads // 4)
