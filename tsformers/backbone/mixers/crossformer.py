"""CrossFormer's cross-scale parts on time tokens: LSDA, the dynamic position bias, the cross-scale embedding.

Wang et al., "CrossFormer: A Versatile Vision Transformer Hinging on Cross-scale
Attention", ICLR 2022 (official code: github.com/cheerss/CrossFormer). The 2-D
groups of the paper become 1-D groups of time tokens (patches):

- SDA (short distance): groups of ``group_size`` adjacent tokens;
- LDA (long distance): tokens sampled every ``interval`` steps, group j = {j, j+I, j+2I, ...};
  with I = the period in patches, LDA links the same phase across periods;
- DPB: an MLP from the relative offset between two tokens of a group to a per-head
  bias, so the bias exists for any group size and any N;
- CEL: a patch embedding with several Conv1d kernels (P, 2P, 4P, ...) of the same
  stride P, their outputs concatenated (more dimensions to the small kernels).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..registry import register
from ._base import CAUSAL_SELF, SELF, check_causal, check_cross
from ._grouped import ceil_div, grouped_attention

__all__ = ["CrossScaleEmbedding", "DynamicPositionBias", "LongShortDistanceAttention", "lsda_groups"]


@register("position_bias", "dpb")
class DynamicPositionBias(nn.Module):
    """CrossFormer's dynamic position bias (Wang et al., ICLR 2022): relative offset -> per-head bias.

    An MLP ``Linear(n_dims, hidden) -> [LN -> ReLU -> Linear(hidden, hidden)] x 2 ->
    LN -> ReLU -> Linear(hidden, n_heads)`` on the offset (i - j) between two tokens,
    evaluated on the offsets that occur, so unlike a relative-position table it has no
    maximum distance and works at any group size or N. With ``residual=True`` the
    two middle layers are residual (the paper's ``residual`` option). The official
    code uses ``hidden = d_model // 16``; here ``hidden = max(8, d_model // 4)`` (a
    time-series model is much narrower than an image backbone). Cost O(W·hidden²)
    for the 2W - 1 offsets of a group of W tokens, independent of the batch.

    ``forward(offsets)``: (..., n_dims) float -> (..., n_heads).
    ``pairwise(w)``: the (n_heads, w, w) bias of a group of w tokens, entry (i, j) for offset i - j.
    """

    def __init__(self, n_heads: int, *, d_model: int = 64, hidden: int | None = None, n_dims: int = 1,
                 residual: bool = False):
        super().__init__()
        hidden = hidden or max(8, d_model // 4)
        self.n_dims = n_dims
        self.residual = residual
        self.proj = nn.Linear(n_dims, hidden)
        self.layers = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(hidden), nn.ReLU(), nn.Linear(hidden, hidden)) for _ in range(2)
        )
        self.head = nn.Sequential(nn.LayerNorm(hidden), nn.ReLU(), nn.Linear(hidden, n_heads))

    def forward(self, offsets: Tensor) -> Tensor:
        h = self.proj(offsets)                                          # (..., hidden)
        for layer in self.layers:
            h = h + layer(h) if self.residual else layer(h)
        return self.head(h)                                             # (..., n_heads)

    def pairwise(self, w: int) -> Tensor:
        device = self.proj.weight.device
        distinct = torch.arange(1 - w, w, device=device, dtype=self.proj.weight.dtype)  # (2w - 1,)
        table = self.forward(distinct[:, None].expand(-1, self.n_dims))                # (2w - 1, heads)
        pos = torch.arange(w, device=device)
        index = pos[:, None] - pos[None, :] + w - 1                                    # (w, w)
        return table[index].permute(2, 0, 1)                                           # (heads, w, w)


def lsda_groups(n: int, mode: str, group_size: int, interval: int, device=None) -> Tensor:
    """The token indices of each SDA or LDA group, -1 for padding: (G, W).

    ``short``: groups of ``group_size`` adjacent tokens, [0..G-1], [G..2G-1], ...;
    ``long``: ``interval`` groups, group j = {j, j + I, j + 2I, ...} (W = ceil(N / I)).
    """
    if mode == "short":
        padded = ceil_div(n, group_size) * group_size
        idx = torch.arange(padded, device=device).view(-1, group_size)          # (N'/G, G)
    else:
        padded = ceil_div(n, interval) * interval
        idx = torch.arange(padded, device=device).view(-1, interval).t()        # (I, N'/I)
    return torch.where(idx < n, idx, -1)


@register("mixer", "lsda")
class LongShortDistanceAttention(nn.Module):
    """CrossFormer's long short distance attention (Wang et al., ICLR 2022) on time tokens.

    ``mode="short"`` (SDA): softmax attention inside groups of ``group_size`` adjacent
    tokens, cost O(N·G·D). ``mode="long"`` (LDA): inside the ``interval`` groups of
    tokens sampled every I steps, group j = {j, j+I, ...}, cost O(N²/I·D). The paper
    alternates SDA and LDA blocks; build two mixers (or set ``mixer_kwargs`` per layer).
    Each group adds a dynamic position bias (:class:`DynamicPositionBias`) of the
    offset between the two tokens counted in group positions (as in the official code,
    so in LDA one step is I tokens). N need not be a multiple of G or I: the last
    group is padded and the padding masked. With ``causal=True`` a token sees only
    the members of its group that are not later than itself.

    Defaults are the paper's first-stage values (G = 7, I = 8); for time tokens set I
    to the season length in patches.
    """

    complexity = "O(N·G·D) short, O(N^2/I·D) long"
    patterns = frozenset({SELF, CAUSAL_SELF})
    requires_order = True
    mixes_tokens = True
    paper = "Wang et al., CrossFormer: A Versatile Vision Transformer Hinging on Cross-scale Attention, ICLR 2022"

    def __init__(self, d_model: int, *, n_heads: int = 8, dropout: float = 0.0, causal: bool = False,
                 mode: str = "short", group_size: int = 7, interval: int = 8, position_bias: bool = True):
        super().__init__()
        check_causal(type(self), causal)
        assert d_model % n_heads == 0, f"d_model={d_model} must be divisible by n_heads={n_heads}"
        if mode not in ("short", "long"):
            raise ValueError(f"mode must be 'short' (SDA) or 'long' (LDA), got {mode!r}")
        if group_size < 1 or interval < 1:
            raise ValueError(f"group_size and interval must be positive, got {group_size}, {interval}")
        self.n_heads, self.dropout, self.causal = n_heads, dropout, causal
        self.mode, self.group_size, self.interval = mode, group_size, interval
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.to_out = nn.Linear(d_model, d_model)
        self.position = DynamicPositionBias(n_heads, d_model=d_model) if position_bias else None

    def groups(self, n: int, device=None) -> Tensor:
        """(G, W) token indices of the groups for N = n, -1 for padding."""
        return lsda_groups(n, self.mode, self.group_size, self.interval, device)

    def forward(self, x: Tensor, kv: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        check_cross(self, kv)
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.n_heads)
        idx = self.groups(x.shape[1], x.device)                          # (G, W)
        bias = None if self.position is None else self.position.pairwise(idx.shape[1])[None, :, None]
        out = grouped_attention(q, k, v, idx, idx, causal=self.causal, bias=bias, mask=mask,
                                dropout=self.dropout, training=self.training)  # (B, h, N, d)
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))        # (B, N, D)


@register("embedding", "cel")
class CrossScaleEmbedding(nn.Module):
    """CrossFormer's cross-scale embedding layer (Wang et al., ICLR 2022) for series.

    Conv1d kernels of ``patch_len · m`` for m in ``kernel_mults`` (default P, 2P, 4P, 8P),
    all with stride P and centred on the same patch, so patch p is embedded from
    [pP - (k - P)/2, (p + 1)P + (k - P)/2) at every scale. Their outputs are
    concatenated along channels; kernel i gets D / 2^(i+1) dimensions and the last
    the remainder (D/2, D/4, D/8, D/8 for four kernels, as in the paper), then a
    LayerNorm. The series is zero-padded so that P = L // patch_len patches come out.
    Cost O(L·D·Σm / len(kernel_mults)) per channel.

    x: (B, C_in, L) -> (B, P, D).
    """

    def __init__(self, in_ch: int, d_model: int, *, patch_len: int, kernel_mults=(1, 2, 4, 8), norm: bool = True):
        super().__init__()
        mults = tuple(int(m) for m in kernel_mults)
        assert mults and all(m >= 1 for m in mults), f"kernel_mults must be positive integers, got {kernel_mults}"
        assert patch_len >= 1, f"patch_len must be positive, got {patch_len}"
        dims = [d_model // 2 ** (i + 1) for i in range(len(mults) - 1)]
        dims.append(d_model - sum(dims))
        assert min(dims) >= 1, f"d_model={d_model} is too small for {len(mults)} kernels"
        self.patch_len = patch_len
        self.kernels = [patch_len * m for m in mults]
        self.dims = dims
        self.projs = nn.ModuleList(nn.Conv1d(in_ch, dim, kernel_size=k, stride=patch_len)
                                   for k, dim in zip(self.kernels, dims))
        self.norm = nn.LayerNorm(d_model) if norm else nn.Identity()

    def n_patches(self, length: int) -> int:
        return length // self.patch_len

    def forward(self, x: Tensor) -> Tensor:
        assert x.shape[-1] >= self.patch_len, (
            f"a series of {x.shape[-1]} steps is shorter than patch_len={self.patch_len}")
        outs = []
        for k, proj in zip(self.kernels, self.projs):
            extra = k - self.patch_len
            padded = F.pad(x, (extra // 2, extra - extra // 2))           # (B, C_in, L + k - P)
            outs.append(proj(padded))                                    # (B, dim_i, P)
        return self.norm(torch.cat(outs, dim=1).transpose(1, 2))          # (B, P, D)
