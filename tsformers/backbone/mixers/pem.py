"""PEM's prototype-based cross-attention: each query reads the single most similar token per head.

Cavagnero, Rosi, Cuttano, Pistilli, Ciccone, Averta, Cermelli, "PEM: Prototype-based
Efficient MaskFormer for Image Segmentation", CVPR 2024 (official code:
NiccoloCavagnero/PEM, ``PEM_CA``). For every query and head, the token with the highest
cosine similarity (argmax over the N tokens, optionally masked) is the prototype; the
query is updated from it without any softmax over N:
out = normalize(Linear(prototype ⊙ query)) · alpha + prototype, then Linear, plus residual.

Transfer: K learned horizon or regime queries read from time or variate tokens,
reducing (B, N, D) to (B, K, D); order-free.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..registry import register
from ..dropout import Dropout

__all__ = ["PrototypeCrossAttention"]


@register("reducer", "pem_xattn")
class PrototypeCrossAttention(nn.Module):
    """Prototype cross-attention (Cavagnero et al., "PEM", CVPR 2024) with K learned queries, as a reducer.

    tokens t = LN -> Linear(x), queries k = LN -> Linear(Q), both L2-normalised per head;
    per query and head, the prototype is t[argmax_n cos(k, t_n)] (B, K, D after the heads
    are joined); out = Q + Linear(normalize(Linear(p ⊙ k)) · alpha + p), then a pre-norm
    FFN. Gradient reaches the input only through the selected tokens. Departures from
    the official code: tokens pass LN + Linear instead of its BatchNorm + 3x3 depthwise
    conv (no grid, and the reducer must be order-free), and the normalisation of
    Linear(p ⊙ k) is over channels per query (the code normalises over the query axis).
    Cost O(N·K·D) similarity, O(K·D²) update.

    ``forward(x, mask=None, return_index=False)``: x (B, N, D), mask (B, N) boolean, True
    where a token may be chosen -> (B, K, D), and the chosen indices (B, n_heads, K) when asked.
    """

    complexity = "O(N·K·D)"
    paper = "Cavagnero et al., PEM: Prototype-based Efficient MaskFormer for Image Segmentation, CVPR 2024"

    def __init__(self, d_model: int, *, n_heads: int = 8, n_queries: int = 8, d_ff: int | None = None,
                 dropout: float = 0.0):
        super().__init__()
        assert d_model % n_heads == 0, f"d_model={d_model} must be divisible by n_heads={n_heads}"
        self.n_heads = n_heads
        self.queries = nn.Parameter(torch.randn(n_queries, d_model))                 # (K, D)
        self.to_token = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, d_model))
        self.to_key = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, d_model))
        self.proj = nn.Linear(d_model, d_model)
        self.final = nn.Linear(d_model, d_model)
        self.alpha = nn.Parameter(torch.ones(d_model))
        self.norm_ffn = nn.LayerNorm(d_model)
        d_ff = d_ff or 2 * d_model
        self.ffn = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), Dropout(dropout), nn.Linear(d_ff, d_model))
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None = None,
                return_index: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        b, n, d = x.shape
        q = self.queries.expand(b, -1, -1)                                           # (B, K, D)
        tokens = F.normalize(rearrange(self.to_token(x), "b n (h c) -> b h n c", h=self.n_heads), dim=-1)
        keys = F.normalize(rearrange(self.to_key(q), "b k (h c) -> b h k c", h=self.n_heads), dim=-1)
        sim = keys @ tokens.transpose(-2, -1)                                        # cosine, (B, h, K, N)
        if mask is not None:
            assert mask.shape == (b, n), f"mask must be (B, N) = {(b, n)}, got {tuple(mask.shape)}"
            sim = sim.masked_fill(~mask[:, None, None, :], float("-inf"))
        index = sim.argmax(dim=-1)                                                   # (B, h, K)
        proto = torch.gather(tokens, 2, index[..., None].expand(-1, -1, -1, tokens.shape[-1]))  # (B, h, K, c)
        proto = rearrange(proto, "b h k c -> b k (h c)")                             # (B, K, D)
        keys = rearrange(keys, "b h k c -> b k (h c)")
        out = F.normalize(self.proj(proto * keys), dim=-1) * self.alpha + proto
        out = q + self.dropout(self.final(out))                                      # (B, K, D)
        out = out + self.dropout(self.ffn(self.norm_ffn(out)))
        return (out, index) if return_index else out
