"""DuoFormer's scale-wise (local) and patch-wise (global) attention, on multi-scale time patches.

Tang et al., "DuoFormer: Leveraging Hierarchical Visual Representations by Local and
Global Attention", arXiv 2024 (official code: github.com/xiaoyatang/DuoFormer). Each
image patch carries S tokens from different scales (CNN stages); scale attention
mixes the S tokens of one patch, patch attention mixes the patches. On time series
the S tokens of a patch come from multi-resolution views of the same span (e.g.
patch lengths 8/16/32 pooled onto one grid), laid out patch-major: x (B, P·S, D),
token p·S + s.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from ..registry import register
from ._base import CAUSAL_SELF, SELF, check_causal, check_cross
from ._grouped import ceil_div, grouped_attention

__all__ = ["DuoScaleAttention", "duo_groups"]


def duo_groups(n: int, n_scales: int, device=None) -> tuple[Tensor, Tensor]:
    """Scale groups (P, S) (the S tokens of each patch) and patch groups (S, P) (one scale across patches).

    Token p·S + s; -1 where the last patch is incomplete.
    """
    p = ceil_div(n, n_scales)
    idx = torch.arange(p * n_scales, device=device).view(p, n_scales)    # (P, S)
    idx = torch.where(idx < n, idx, -1)
    return idx, idx.t().contiguous()


class _Attention(nn.Module):
    """q, k, v and output projections around :func:`grouped_attention` over given groups."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.to_out = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor, idx: Tensor, **kw) -> Tensor:
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.n_heads)
        out = grouped_attention(q, k, v, idx, idx, **kw)                  # (B, h, N, d)
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))        # (B, N, D)


@register("mixer", "duo_scale")
class DuoScaleAttention(nn.Module):
    """DuoFormer's scale-wise then patch-wise attention (Tang et al., arXiv 2024).

    x: (B, P·S, D), patch-major (token p·S + s), ``n_scales`` = S. Scale-wise attention
    over the S tokens of each patch, then patch-wise attention over the P patches of
    each scale, as two residual sub-layers folded into one mixer::

        u = scale_attn(x);  out = u + patch_attn(x + u)

    (so the block's own residual completes x + u + patch_attn(x + u)). DuoFormer
    feeds its patch attention the first (class) token of each patch; here every scale
    takes part, which keeps the (B, P·S, D) shape and gives the catalog's cost.
    ``patch_wise=False`` keeps the scale-wise attention only (patches isolated).
    A last patch with fewer than S tokens is padded and the padding masked.
    ``causal=True``: both attentions are causal in token order p·S + s, so token
    (p, s) depends on the tokens (p', s') with p' <= p and s' <= s only.
    Cost O(P·S²·D + S·P²·D).
    """

    complexity = "O(P·S^2·D + S·P^2·D)"
    patterns = frozenset({SELF, CAUSAL_SELF})
    requires_order = True
    mixes_tokens = True
    paper = ("Tang et al., DuoFormer: Leveraging Hierarchical Visual Representations by Local and Global "
             "Attention, arXiv 2024")

    def __init__(self, d_model: int, *, n_heads: int = 8, dropout: float = 0.0, causal: bool = False,
                 n_scales: int = 3, patch_wise: bool = True):
        super().__init__()
        check_causal(type(self), causal)
        assert d_model % n_heads == 0, f"d_model={d_model} must be divisible by n_heads={n_heads}"
        if n_scales < 1:
            raise ValueError(f"n_scales must be positive, got {n_scales}")
        self.n_heads, self.dropout, self.causal = n_heads, dropout, causal
        self.n_scales, self.patch_wise = n_scales, patch_wise
        self.scale_attn = _Attention(d_model, n_heads)
        self.patch_attn = _Attention(d_model, n_heads) if patch_wise else None

    def forward(self, x: Tensor, kv: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        check_cross(self, kv)
        by_patch, by_scale = duo_groups(x.shape[1], self.n_scales, x.device)  # (P, S), (S, P)
        kw = dict(causal=self.causal, mask=mask, dropout=self.dropout, training=self.training)
        u = self.scale_attn(x, by_patch, **kw)                            # (B, N, D), within patches
        if self.patch_attn is None:
            return u
        return u + self.patch_attn(x + u, by_scale, **kw)                  # (B, N, D), across patches
