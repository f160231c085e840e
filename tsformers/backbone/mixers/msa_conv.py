"""TiC's MSA-Conv: multi-head self-attention inside a convolution's receptive field, on time tokens.

Zhang et al., "TiC: Exploring Vision Transformer in Convolution", arXiv 2310.04134,
2023 (official code: github.com/StriveZs/MSA-Conv, a CUDA op). Where a convolution
takes a fixed weighted sum of the k tokens its kernel covers, MSA-Conv takes a
softmax-attention-weighted sum: each token attends only to the tokens of its
(possibly dilated) kernel window. Having no weights tied to positions, it runs on
any length (a model trained on a lookback of 96 runs on 336).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from ..registry import register
from ._base import CAUSAL_SELF, SELF, check_causal, check_cross
from ._grouped import grouped_attention

__all__ = ["MSAConv", "kernel_offsets"]


def kernel_offsets(kernel_size: int, dilation: int, shift: int, causal: bool) -> list[int]:
    """The offsets (key - query) of the kernel window: centred, or ending at the query when causal."""
    if causal:
        return [shift - dilation * (kernel_size - 1 - j) for j in range(kernel_size)]
    centre = (kernel_size - 1) // 2
    return [shift + dilation * (j - centre) for j in range(kernel_size)]


@register("mixer", "msa_conv")
class MSAConv(nn.Module):
    """TiC's MSA-Conv (Zhang et al., arXiv 2023): attention restricted to a 1-D kernel window.

    Query t attends, per head, to the ``kernel_size`` keys t + ``shift`` + d·(j - c),
    j = 0..k-1, c = (k - 1) // 2, d = ``dilation`` (``causal=True``: t + shift - d·j,
    so the window ends at t; ``shift`` must then be <= 0). Keys outside the sequence
    are masked (the official op zero-pads them). The paper widens the reach of
    stacked blocks with cyclic shifts of the feature map; on a time axis a cyclic
    shift would wrap the end of the lookback onto its start, so here ``shift`` offsets
    the window instead (vary it, or the dilation, from block to block). Cost
    O(N·k·D), linear in N, and no parameter depends on N.
    """

    complexity = "O(N·k·D)"
    patterns = frozenset({SELF, CAUSAL_SELF})
    requires_order = True
    mixes_tokens = True
    paper = "Zhang et al., TiC: Exploring Vision Transformer in Convolution, arXiv 2310.04134, 2023"

    def __init__(self, d_model: int, *, n_heads: int = 8, dropout: float = 0.0, causal: bool = False,
                 kernel_size: int = 3, dilation: int = 1, shift: int = 0):
        super().__init__()
        check_causal(type(self), causal)
        assert d_model % n_heads == 0, f"d_model={d_model} must be divisible by n_heads={n_heads}"
        if kernel_size < 1 or dilation < 1:
            raise ValueError(f"kernel_size and dilation must be positive, got {kernel_size}, {dilation}")
        if causal and shift > 0:
            raise ValueError(f"a causal MSA-Conv cannot look {shift} steps ahead: use shift <= 0")
        self.n_heads, self.dropout, self.causal = n_heads, dropout, causal
        self.kernel_size, self.dilation, self.shift = kernel_size, dilation, shift
        self.offsets = kernel_offsets(kernel_size, dilation, shift, causal)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.to_out = nn.Linear(d_model, d_model)

    def windows(self, n: int, device=None) -> tuple[Tensor, Tensor]:
        """Query indices (N, 1) and their kernel's key indices (N, k), -1 outside 0..n-1."""
        qi = torch.arange(n, device=device)[:, None]                     # (N, 1)
        ki = qi + torch.tensor(self.offsets, device=device)[None, :]      # (N, k)
        return qi, torch.where((ki >= 0) & (ki < n), ki, -1)

    def forward(self, x: Tensor, kv: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        check_cross(self, kv)
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.n_heads)
        qi, ki = self.windows(x.shape[1], x.device)
        out = grouped_attention(q, k, v, qi, ki, mask=mask, dropout=self.dropout,
                                training=self.training)                   # (B, h, N, d)
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))        # (B, N, D)
