"""HAT's overlapping cross-attention and channel-attention branch, on time tokens.

Chen et al., "Activating More Pixels in Image Super-Resolution Transformer", CVPR 2023
(HAT; official code: github.com/XPixelGroup/HAT). HAT's hybrid attention block runs
window self-attention with a parallel channel-attention branch (conv -> GELU -> conv
-> squeeze-excitation) added with a small weight; its overlapping cross-attention
block (OCAB) takes queries from non-overlapping windows of M tokens and keys/values
from larger overlapping windows of (1 + γ)M tokens around them, so information
crosses window borders without shifted windows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..registry import register
from ._base import CAUSAL_SELF, SELF, check_causal, check_cross
from ._grouped import ceil_div, grouped_attention
from ..dropout import Dropout

__all__ = ["ChannelAttention", "OverlappingCrossAttention", "ocab_windows"]


def ocab_windows(n: int, window: int, overlap_ratio: float, device=None) -> tuple[Tensor, Tensor, int]:
    """Query windows (G, M), key windows (G, M_o) (-1 outside 0..n-1) and the left extension.

    M_o = M + int(γ·M); key window g covers [gM - left, gM - left + M_o) with
    left = (M_o - M) // 2, as HAT's ``nn.Unfold(kernel=M_o, stride=M, padding=left)``.
    """
    overlap = window + int(window * overlap_ratio)
    left = (overlap - window) // 2
    g = ceil_div(n, window)
    qi = torch.arange(g * window, device=device).view(g, window)        # (G, M)
    ki = torch.arange(g, device=device)[:, None] * window - left + torch.arange(overlap, device=device)  # (G, M_o)
    return torch.where(qi < n, qi, -1), torch.where((ki >= 0) & (ki < n), ki, -1), left


@register("mixer", "hat_ocab")
class OverlappingCrossAttention(nn.Module):
    """HAT's overlapping cross-attention (Chen et al., CVPR 2023) on time tokens.

    Queries from windows of ``window`` (M) adjacent tokens; keys and values from the
    overlapping window of M_o = M + int(``overlap_ratio``·M) tokens centred on it
    (γM/2 more on each side), plus a learned relative position bias over the
    M + M_o - 1 query-key offsets (HAT's table). Keys outside the sequence are
    masked (HAT zero-pads them). The output at t therefore depends on the tokens of
    its window and the γM/2 tokens either side, and on nothing beyond. ``causal=True``
    masks keys after the query. Cost O(N·M·(1 + γ)·D).
    """

    complexity = "O(N·M·(1+γ)·D)"
    patterns = frozenset({SELF, CAUSAL_SELF})
    requires_order = True
    mixes_tokens = True
    paper = "Chen et al., Activating More Pixels in Image Super-Resolution Transformer (HAT), CVPR 2023"

    def __init__(self, d_model: int, *, n_heads: int = 8, dropout: float = 0.0, causal: bool = False,
                 window: int = 8, overlap_ratio: float = 0.5):
        super().__init__()
        check_causal(type(self), causal)
        assert d_model % n_heads == 0, f"d_model={d_model} must be divisible by n_heads={n_heads}"
        assert window >= 1 and overlap_ratio >= 0, f"bad window={window} or overlap_ratio={overlap_ratio}"
        self.n_heads, self.dropout, self.causal = n_heads, dropout, causal
        self.window, self.overlap_ratio = window, overlap_ratio
        self.overlap = window + int(window * overlap_ratio)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.to_out = nn.Linear(d_model, d_model)
        self.relative_bias = nn.Parameter(torch.zeros(n_heads, window + self.overlap - 1))
        nn.init.trunc_normal_(self.relative_bias, std=0.02)
        offsets = torch.arange(window)[:, None] - torch.arange(self.overlap)[None, :] + self.overlap - 1
        self.register_buffer("bias_index", offsets, persistent=False)    # (M, M_o), into the table

    def forward(self, x: Tensor, kv: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        check_cross(self, kv)
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.n_heads)
        qi, ki, _ = ocab_windows(x.shape[1], self.window, self.overlap_ratio, x.device)
        bias = self.relative_bias[:, self.bias_index][None, :, None]    # (1, h, 1, M, M_o)
        out = grouped_attention(q, k, v, qi, ki, causal=self.causal, bias=bias, mask=mask,
                                dropout=self.dropout, training=self.training)  # (B, h, N, d)
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))        # (B, N, D)


@register("mixer", "channel_attention")
class ChannelAttention(nn.Module):
    """HAT's channel-attention branch (CAB; Chen et al., CVPR 2023) on time tokens.

    Conv1d(D -> D/``compress_ratio``, k) -> GELU -> Conv1d(-> D, k), then
    squeeze-excitation (Hu et al., CVPR 2018, via RCAN): the mean over tokens ->
    Linear(D -> D/``squeeze_factor``) -> ReLU -> Linear(-> D) -> sigmoid, scaling the
    channels of every token. HAT adds this branch, times ``conv_scale`` = 0.01, to a
    window attention; here it is a mixer of its own (compose it with a window mixer
    for the full hybrid block). It mixes tokens through the convs (a local receptive
    field of 2(k - 1) + 1 tokens) and through the global mean of the gate.
    ``causal=True``: look-back convs and a running (prefix) mean for the gate.
    ``n_heads`` is accepted for the common signature and unused. Cost O(N·D²/r).
    """

    complexity = "O(N·D^2/r)"
    patterns = frozenset({SELF, CAUSAL_SELF})
    requires_order = True
    mixes_tokens = True
    paper = "Chen et al., Activating More Pixels in Image Super-Resolution Transformer (HAT), CVPR 2023"

    def __init__(self, d_model: int, *, n_heads: int = 8, dropout: float = 0.0, causal: bool = False,
                 compress_ratio: int = 3, squeeze_factor: int = 30, kernel_size: int = 3):
        super().__init__()
        check_causal(type(self), causal)
        assert kernel_size >= 1, f"kernel_size must be positive, got {kernel_size}"
        hidden, squeezed = max(1, d_model // compress_ratio), max(1, d_model // squeeze_factor)
        self.causal, self.kernel_size = causal, kernel_size
        self.conv1 = nn.Conv1d(d_model, hidden, kernel_size)
        self.conv2 = nn.Conv1d(hidden, d_model, kernel_size)
        self.squeeze = nn.Linear(d_model, squeezed)
        self.excite = nn.Linear(squeezed, d_model)
        self.dropout = Dropout(dropout)

    def _pad(self, x: Tensor) -> Tensor:
        k = self.kernel_size
        left = k - 1 if self.causal else (k - 1) // 2
        return F.pad(x, (left, k - 1 - left))

    def features(self, x: Tensor) -> Tensor:
        """The conv path before the gate: (B, N, D) -> (B, N, D)."""
        h = F.gelu(self.conv1(self._pad(x.transpose(1, 2))))              # (B, D/r, N)
        return self.conv2(self._pad(h)).transpose(1, 2)                   # (B, N, D)

    def gate(self, f: Tensor) -> Tensor:
        """Squeeze-excitation weights of the conv features: (B, N, D) -> (B, N or 1, D) in (0, 1)."""
        if self.causal:
            counts = torch.arange(1, f.shape[1] + 1, device=f.device, dtype=f.dtype)[:, None]
            pooled = f.cumsum(1) / counts                                 # (B, N, D) prefix means
        else:
            pooled = f.mean(1, keepdim=True)                              # (B, 1, D)
        return torch.sigmoid(self.excite(F.relu(self.squeeze(pooled))))

    def forward(self, x: Tensor, kv: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        check_cross(self, kv)
        if mask is not None:
            raise ValueError("channel_attention has no attention weights to mask; call it with mask=None")
        f = self.features(x)
        return self.dropout(f * self.gate(f))                             # (B, N, D)
