"""Token mixers built on attention.

Every mixer follows one interface (backbone-catalog.md, section 0):
``Mixer(d_model, *, n_heads, dropout=0.0, causal=False, ...)`` and
``forward(x, kv=None, mask=None) -> (B, N, D)``: self-attention over x when
``kv`` is None, cross-attention from x to the tokens ``kv`` (B, M, D) otherwise.
Class attributes describe the mixer for the shared tests and benchmarks:
``complexity``, ``patterns`` (of the four CAB patterns), ``requires_order``,
``mixes_tokens``, ``paper``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .registry import register

__all__ = ["FullAttention"]

# The four CAB patterns ("CAB: Comprehensive Attention Benchmarking on Long Sequence Modeling", ICML 2023).
SELF, CAUSAL_SELF, CROSS, CAUSAL_CROSS = "self", "causal_self", "cross", "causal_cross"


@register("mixer", "full")
class FullAttention(nn.Module):
    """Multi-head softmax attention (Vaswani et al., "Attention Is All You Need", NeurIPS 2017).

    softmax(Q K^T / sqrt(d_head)) V per head, with biased q, k, v and output
    projections; dropout on the attention weights in training only. With
    ``causal=True`` query i sees keys 0..i. Cost O(N^2·D) time, O(N^2) memory per head
    (O(N·M) for cross-attention over M key/value tokens).

    ``mask``: boolean, broadcastable to (B, n_heads, N, M), True where a query may
    attend (the ``scaled_dot_product_attention`` convention, the opposite of
    ``nn.MultiheadAttention``'s ``attn_mask``).
    """

    complexity = "O(N^2)"
    patterns = frozenset({SELF, CAUSAL_SELF, CROSS, CAUSAL_CROSS})
    requires_order = False
    mixes_tokens = True
    paper = "Vaswani et al., Attention Is All You Need, NeurIPS 2017"

    def __init__(self, d_model: int, *, n_heads: int = 8, dropout: float = 0.0, causal: bool = False):
        super().__init__()
        assert d_model % n_heads == 0, f"d_model={d_model} must be divisible by n_heads={n_heads}"
        self.n_heads = n_heads
        self.dropout = dropout
        self.causal = causal
        self.to_q = nn.Linear(d_model, d_model)
        self.to_k = nn.Linear(d_model, d_model)
        self.to_v = nn.Linear(d_model, d_model)
        self.to_out = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor, kv: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        kv = x if kv is None else kv                            # (B, M, D)
        q, k, v = (
            rearrange(proj(t), "b n (h d) -> b h n d", h=self.n_heads)
            for proj, t in ((self.to_q, x), (self.to_k, kv), (self.to_v, kv))
        )
        is_causal = self.causal and mask is None
        if self.causal and mask is not None:
            # same top-left alignment as scaled_dot_product_attention(is_causal=True)
            mask = mask & torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=x.device).tril()
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0, is_causal=is_causal
        )                                                                      # (B, h, N, d)
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))            # (B, N, D)
