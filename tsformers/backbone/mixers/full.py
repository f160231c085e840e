"""Full softmax attention, the reference every other mixer is measured against.

The mixer interface (``forward(x, kv=None, mask=None)``, the class attributes) is
described in ``_base``.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from ..registry import register
from ..dropout import attend
from ._base import ALL_PATTERNS

__all__ = ["FullAttention"]



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
    patterns = ALL_PATTERNS
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
        out = attend(q, k, v, mask=mask, dropout_p=self.dropout if self.training else 0.0,
                     is_causal=is_causal)                                      # (B, h, N, d)
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))            # (B, N, D)
