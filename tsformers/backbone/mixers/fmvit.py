"""FMViT's multi-frequency mixing on time tokens: a local conv path and attention over pooled tokens.

Tan, Geng and Xie, "FMViT: A multiple-frequency mixing Vision Transformer", arXiv
2311.05707, 2023 (code: github.com/tany0699/FMViT, not consulted: the mixer follows
the paper's description). FMViT blends high-frequency features (convolutions over a
small neighbourhood: local detail) with low-frequency ones (a lightweight multi-head
self-attention whose keys and values come from a downsampled feature map: global
structure), concatenated and fused. On time tokens: a depthwise Conv1d and attention
from every token to the tokens average-pooled by ``pool_ratio``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..registry import register
from ._base import CAUSAL_SELF, SELF, check_causal, check_cross
from ._grouped import ceil_div, grouped_attention

__all__ = ["FrequencyMixing", "pool_tokens"]


def pool_tokens(x: Tensor, ratio: int) -> Tensor:
    """Means of consecutive windows of ``ratio`` tokens, the last over the tokens it has: (B, N, D) -> (B, ceil(N/r), D)."""
    n = x.shape[1]
    m = ceil_div(n, ratio)
    sums = F.pad(x, (0, 0, 0, m * ratio - n)).view(x.shape[0], m, ratio, x.shape[2]).sum(2)  # (B, M, D)
    counts = (n - torch.arange(m, device=x.device) * ratio).clamp(max=ratio).to(x.dtype)    # (M,)
    return sums / counts[:, None]


@register("mixer", "fm_mix")
class FrequencyMixing(nn.Module):
    """FMViT's high/low-frequency mixing (Tan et al., arXiv 2023) for time tokens.

    high = depthwise Conv1d(``kernel_size``) of x (local, high frequency);
    low = multi-head attention with queries from all N tokens and keys/values from the
    M = ceil(N / ``pool_ratio``) window means of x (global, low frequency): the score
    matrix is N × N/r (:meth:`low_frequency_scores`);
    out = Linear(2D -> D)([high, low]).
    ``causal=True``: a look-back conv, and a token attends only to the complete pooled
    windows that have ended at or before it (the first r - 1 tokens, with none, get a
    zero low-frequency part), so outputs do not change as the sequence grows. Cost O(N·(N/r)·D + N·k·D + N·D²).
    ``mask`` is not supported (the keys are pooled windows, not tokens).
    """

    complexity = "O(N^2/r·D)"
    patterns = frozenset({SELF, CAUSAL_SELF})
    requires_order = True
    mixes_tokens = True
    paper = "Tan, Geng and Xie, FMViT: A multiple-frequency mixing Vision Transformer, arXiv 2311.05707, 2023"

    def __init__(self, d_model: int, *, n_heads: int = 8, dropout: float = 0.0, causal: bool = False,
                 pool_ratio: int = 2, kernel_size: int = 3):
        super().__init__()
        check_causal(type(self), causal)
        assert d_model % n_heads == 0, f"d_model={d_model} must be divisible by n_heads={n_heads}"
        if pool_ratio < 1 or kernel_size < 1:
            raise ValueError(f"pool_ratio and kernel_size must be positive, got {pool_ratio}, {kernel_size}")
        self.n_heads, self.dropout, self.causal = n_heads, dropout, causal
        self.pool_ratio, self.kernel_size = pool_ratio, kernel_size
        self.local = nn.Conv1d(d_model, d_model, kernel_size, groups=d_model)
        self.to_q = nn.Linear(d_model, d_model)
        self.to_kv = nn.Linear(d_model, 2 * d_model)
        self.to_out = nn.Linear(2 * d_model, d_model)

    def high_frequency(self, x: Tensor) -> Tensor:
        """The depthwise-conv path: (B, N, D) -> (B, N, D)."""
        k = self.kernel_size
        left = k - 1 if self.causal else (k - 1) // 2
        return self.local(F.pad(x.transpose(1, 2), (left, k - 1 - left))).transpose(1, 2)

    def _qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        q = rearrange(self.to_q(x), "b n (h d) -> b h n d", h=self.n_heads)             # (B, h, N, d)
        k, v = rearrange(self.to_kv(pool_tokens(x, self.pool_ratio)), "b m (two h d) -> two b h m d",
                         two=2, h=self.n_heads)                                          # (B, h, M, d)
        return q, k, v

    def _allowed(self, n: int, device) -> Tensor | None:
        """Causal: query t may read window j once it is complete, (j + 1)·r - 1 <= t.

        A partial last window is never read, so the output at t does not depend on N.
        """
        if not self.causal:
            return None
        m = ceil_div(n, self.pool_ratio)
        last = (torch.arange(m, device=device) + 1) * self.pool_ratio - 1                # (M,)
        return last[None, :] <= torch.arange(n, device=device)[:, None]                   # (N, M)

    def low_frequency_scores(self, x: Tensor) -> Tensor:
        """Pre-softmax scores of the low-frequency attention: (B, N, D) -> (B, h, N, ceil(N/r))."""
        q, k, _ = self._qkv(x)
        return (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5

    def low_frequency(self, x: Tensor) -> Tensor:
        """The pooled-attention path: (B, N, D) -> (B, N, D)."""
        n = x.shape[1]
        q, k, v = self._qkv(x)
        qi = torch.arange(n, device=x.device)[None]                        # (1, N): one group of all queries
        ki = torch.arange(k.shape[2], device=x.device)[None]               # (1, M): every pooled window
        out = grouped_attention(q, k, v, qi, ki, mask=self._allowed(n, x.device), dropout=self.dropout,
                                training=self.training)                     # (B, h, N, d)
        return rearrange(out, "b h n d -> b n (h d)")

    def forward(self, x: Tensor, kv: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        check_cross(self, kv)
        if mask is not None:
            raise ValueError("fm_mix attends to pooled windows, so a token-level mask does not apply; use mask=None")
        return self.to_out(torch.cat([self.high_frequency(x), self.low_frequency(x)], dim=-1))  # (B, N, D)
