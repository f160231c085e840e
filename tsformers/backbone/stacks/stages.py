"""Token-reducing stages for multi-scale patch hierarchies: (B, N, D_in) -> (B, ceil(N/stride), D_out).

``resnas_stage``: Liao, Karaman and Sze, "Searching for Efficient Multi-Stage Vision
Transformers" (ViT-ResNAS), arXiv 2109.00642, 2021 (code yilunliao/vit-search): residual
spatial reduction between stages. ``qpool_stage``: Q-pooling attention of Hiera (Ryali et
al., "Hiera: A Hierarchical Vision Transformer without the Bells-and-Whistles", ICML 2023),
with optional mask-unit (local window) attention, as used by TurboViT (Wong, Abbasi and Nair,
"TurboViT: Generating Fast Vision Transformers via Generative Architecture Search", arXiv
2308.11421, 2023).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..blocks import PreNormBlock
from ..feedforward import FeedForward
from ..registry import register
from ..dropout import Dropout, attend

__all__ = ["QPoolStage", "ResNASStage", "avg_pool_tokens", "max_pool_tokens"]


def avg_pool_tokens(x: Tensor, stride: int) -> Tensor:
    """Mean over windows of ``stride`` tokens; the last, partial window averages what it has. (B, N, D) -> (B, ceil(N/s), D)."""
    b, n, d = x.shape
    m = math.ceil(n / stride)
    total = F.pad(x, (0, 0, 0, m * stride - n)).reshape(b, m, stride, d).sum(2)
    count = torch.clamp(n - torch.arange(m, device=x.device) * stride, max=stride).to(x.dtype)  # (M,)
    return total / count[:, None]


def max_pool_tokens(x: Tensor, stride: int) -> Tensor:
    """Max over windows of ``stride`` tokens (the last may be partial). (B, N, D) -> (B, ceil(N/s), D)."""
    return F.max_pool1d(x.transpose(1, 2), stride, stride, ceil_mode=True).transpose(1, 2)


@register("stage", "resnas_stage")
class ResNASStage(nn.Module):
    """ViT-ResNAS residual spatial reduction (Liao, Karaman & Sze, arXiv 2109.00642, 2021), then blocks.

    out = Linear(avgpool_s(x)) + Conv1d_s(LN(x)): a pooled and projected skip path plus a
    strided convolution (kernel ``kernel_size`` >= stride, left-padded so output j sees
    tokens up to j·s + s - 1 only), halving N (stride 2) and widening D_in -> D_out; then
    ``n_layers`` pre-LN blocks of ``mixer`` at D_out. Ordered (time) tokens only.
    Cost O(N·D_in·D_out·k/s) for the reduction plus the blocks at N/s tokens.
    x: (B, N, D_in) -> (B, ceil(N/stride), D_out).
    """

    def __init__(self, *, d_in: int, d_out: int, stride: int = 2, kernel_size: int | None = None, n_layers: int = 0,
                 n_heads: int = 4, d_ff: int | None = None, dropout: float = 0.0, mixer: str = "full",
                 mixer_kwargs: dict[str, Any] | None = None, causal: bool = False):
        super().__init__()
        self.stride, self.kernel_size = stride, kernel_size or stride
        assert self.kernel_size >= stride >= 1, (kernel_size, stride)
        self.skip = nn.Linear(d_in, d_out)
        self.norm = nn.LayerNorm(d_in)
        self.conv = nn.Conv1d(d_in, d_out, self.kernel_size, stride=stride)
        self.blocks = nn.ModuleList(
            PreNormBlock(d_out, n_heads=n_heads, d_ff=d_ff or 4 * d_out, dropout=dropout, mixer=mixer,
                         mixer_kwargs=mixer_kwargs, causal=causal)
            for _ in range(n_layers)
        )

    def skip_path(self, x: Tensor) -> Tensor:
        return self.skip(avg_pool_tokens(x, self.stride))                        # (B, M, D_out)

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[1]
        m = math.ceil(n / self.stride)
        h = self.norm(x).transpose(1, 2)                                         # (B, D_in, N)
        h = F.pad(h, (self.kernel_size - self.stride, m * self.stride - n))      # left context, right fill
        x = self.skip_path(x) + self.conv(h).transpose(1, 2)                     # (B, M, D_out)
        for block in self.blocks:
            x = block(x)
        return x


@register("stage", "qpool_stage")
class QPoolStage(nn.Module):
    """Hiera Q-pooling attention block (Ryali et al., ICML 2023; TurboViT, arXiv 2308.11421).

    h = LN(x); queries are max-pooled over ``stride`` tokens after projection, while keys
    and values stay at all N tokens; the residual is the max-pooled projection of h. Then
    x = pool(W h) + attn(pool(W_q h), W_k h, W_v h); x = x + FFN(LN(x)). With ``mask_unit``
    (a multiple of stride) every query attends only to the keys of its own unit of
    ``mask_unit`` tokens (mask-unit attention, early stages). ``causal=True``: pooled query j
    sees keys up to j·s + s - 1, the last token it pools.
    Cost O(N²·D_out / s) (O(N·mask_unit·D_out / s) with mask units) + O(N·D_in·D_out).
    x: (B, N, D_in) -> (B, ceil(N/stride), D_out).
    """

    def __init__(self, *, d_in: int, d_out: int, stride: int = 2, n_heads: int = 4, d_ff: int | None = None,
                 dropout: float = 0.0, mask_unit: int | None = None, causal: bool = False):
        super().__init__()
        assert d_out % n_heads == 0, (d_out, n_heads)
        assert mask_unit is None or mask_unit % stride == 0, "mask_unit must be a multiple of stride"
        self.stride, self.n_heads, self.mask_unit, self.causal, self.p = stride, n_heads, mask_unit, causal, dropout
        self.norm1 = nn.LayerNorm(d_in)
        self.proj = nn.Linear(d_in, d_out)
        self.to_q, self.to_k, self.to_v = (nn.Linear(d_in, d_out) for _ in range(3))
        self.to_out = nn.Linear(d_out, d_out)
        self.norm2 = nn.LayerNorm(d_out)
        self.ffn = FeedForward(d_out, d_ff=d_ff or 4 * d_out, dropout=dropout, activation="gelu")
        self.dropout = Dropout(dropout)

    def attention_mask(self, n: int, device=None) -> Tensor | None:
        """(M, N) True where pooled query j may attend key i, or None for all."""
        if self.mask_unit is None and not self.causal:
            return None
        m = math.ceil(n / self.stride)
        first = torch.arange(m, device=device)[:, None] * self.stride            # first token query j pools
        key = torch.arange(n, device=device)[None, :]
        allowed = torch.ones(m, n, dtype=torch.bool, device=device)
        if self.mask_unit is not None:
            allowed &= first // self.mask_unit == key // self.mask_unit
        if self.causal:
            allowed &= key < first + self.stride
        return allowed

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm1(x)                                                         # (B, N, D_in)
        q = max_pool_tokens(self.to_q(h), self.stride)                            # (B, M, D_out) pooled queries
        k, v = self.to_k(h), self.to_v(h)                                         # (B, N, D_out) full K, V
        q, k, v = (t.unflatten(-1, (self.n_heads, -1)).transpose(1, 2) for t in (q, k, v))
        a = attend(q, k, v, mask=self.attention_mask(x.shape[1], x.device),
                   dropout_p=self.p if self.training else 0.0)                    # (B, H, M, d_h)
        x = max_pool_tokens(self.proj(h), self.stride) + self.dropout(self.to_out(a.transpose(1, 2).flatten(-2)))
        return x + self.dropout(self.ffn(self.norm2(x)))                          # (B, M, D_out)
