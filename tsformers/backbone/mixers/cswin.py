"""CSWin's cross-shaped window attention and its locally-enhanced positional encoding (LePE).

Dong et al., "CSWin Transformer: A General Vision Transformer Backbone with
Cross-Shaped Windows", CVPR 2022 (official code: github.com/microsoft/CSWin-Transformer).
Half of the heads attend inside horizontal stripes of width sw, half inside vertical
stripes, so one layer covers a cross around every token; LePE adds a depthwise conv
of V, computed inside the same stripe, to the attention output, so positions enter
through V and not through Q·K.

On time series the grid is variates × time patches (N = C·P tokens, variate-major:
token c·P + p): "time stripes" are sw variates × all patches, "variate stripes" all
variates × sw patches, giving joint time-and-variate attention in one layer. When the
variates are an unordered set (the columns of a frame), ``unordered_variates`` makes the
time stripes one variate wide and LePE's kernel one variate tall, so nothing reads the
order of the variates.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..registry import register
from ._base import CAUSAL_SELF, SELF, check_causal, check_cross
from ._grouped import ceil_div, gather_tokens, grouped_attention, scatter_tokens

__all__ = ["CrossShapedWindowAttention", "LePEWindowAttention", "stripe_groups"]


def stripe_groups(n_variates: int, n_patches: int, width: int, along: str, device=None) -> tuple[Tensor, int, int]:
    """Token indices (variate-major, c·P + p) of each stripe, -1 for padding, and the stripe's (rows, cols).

    ``along="time"``: stripes of ``width`` variates × all patches (layout (width, P));
    ``along="variates"``: stripes of all variates × ``width`` patches (layout (C, width)).
    Returns ``(idx (G, rows·cols), rows, cols)``; rows are variates and cols patches.
    """
    c, p = n_variates, n_patches
    if along == "time":
        cp = ceil_div(c, width) * width
        row, col = torch.meshgrid(torch.arange(cp, device=device), torch.arange(p, device=device), indexing="ij")
        grid = torch.where(row < c, row * p + col, -1)                   # (C', P)
        return grid.reshape(cp // width, width * p), width, p
    pp = ceil_div(p, width) * width
    row, col = torch.meshgrid(torch.arange(c, device=device), torch.arange(pp, device=device), indexing="ij")
    grid = torch.where(col < p, row * p + col, -1)                       # (C, P')
    grid = grid.view(c, pp // width, width).permute(1, 0, 2)             # (P'/w, C, w)
    return grid.reshape(pp // width, c * width), c, width


def _lepe(v: Tensor, idx: Tensor, rows: int, cols: int, conv: nn.Conv2d, causal: bool) -> Tensor:
    """LePE: a depthwise conv of V over the (rows, cols) layout of each stripe, zero outside it.

    v: (B, h, N, d) -> (B, h, G, rows·cols, d). Causal: the conv looks back in time (cols) only.
    """
    b, h, _, d = v.shape
    kr, kc = conv.kernel_size
    vg = gather_tokens(v, idx)                                            # (B, h, G, W, d), 0 at padding
    g = idx.shape[0]
    grid = rearrange(vg, "b h g (r c) d -> (b g) (h d) r c", r=rows, c=cols)
    left = kc - 1 if causal else (kc - 1) // 2
    grid = F.pad(grid, (left, kc - 1 - left, (kr - 1) // 2, kr - 1 - (kr - 1) // 2))
    out = conv(grid)                                                      # (B·G, h·d, rows, cols)
    return rearrange(out, "(b g) (h d) r c -> b h g (r c) d", b=b, g=g, h=h, d=d)


def _stripe_attention(q, k, v, idx, rows, cols, conv, *, causal, time_index, mask, dropout, training) -> Tensor:
    """Attention inside the groups ``idx`` plus LePE when ``conv`` is given: (B, h, N, d)."""
    out = grouped_attention(q, k, v, idx, idx, causal=causal, time_index=time_index, mask=mask,
                            dropout=dropout, training=training, scatter=False)  # (B, h, G, W, d)
    if conv is not None:
        out = out + _lepe(v, idx, rows, cols, conv, causal)
    return scatter_tokens(out, idx, q.shape[2])


def _depthwise(channels: int, kernel: tuple[int, int]) -> nn.Conv2d | None:
    if channels == 0 or min(kernel) <= 0:
        return None
    return nn.Conv2d(channels, channels, kernel_size=kernel, groups=channels)


@register("mixer", "cswin")
class CrossShapedWindowAttention(nn.Module):
    """CSWin's cross-shaped window self-attention with LePE (Dong et al., CVPR 2022) on variates × patches.

    ``forward(x, kv=None, mask=None, grid=None)``: x (B, C·P, D), tokens variate-major
    (token c·P + p); ``grid=(C, P)``. The first ``n_heads // 2`` heads (and their
    channels) attend inside time stripes (``stripe_width`` variates × all P patches),
    the others inside variate stripes (all C variates × ``stripe_width`` patches).
    Each branch adds LePE: a depthwise ``lepe_kernel`` × ``lepe_kernel`` conv of V over
    the stripe (zero-padded at its border, so nothing leaks across stripes). A token
    therefore sees exactly the tokens of its two stripes. Grids whose sides are not
    multiples of the stripe width are padded and the padding masked. (With
    ``n_heads=1`` there is no time-stripe head: the one head uses variate stripes.)

    Without ``grid`` the tokens are one variate's time patches, grid (1, N): the time
    stripe is then the whole sequence and the variate stripes are windows of
    ``stripe_width`` patches, i.e. half the heads global, half windowed.

    ``unordered_variates=True`` treats the variates as a set: time stripes are one variate
    wide (its own row of P patches), variate stripes stay all C variates × ``stripe_width``
    patches, and LePE's kernel is 1 × ``lepe_kernel`` (along time only). The layer is then
    permutation-equivariant over the variates while every token still sees a cross: its
    variate's whole row and every variate over its nearby patches. With ``variates=C`` the
    mixer takes the channel-independent layout of a per-variate encoder, x (B·C, P, D),
    rows variate-minor, and runs over each sample's (C, P) grid (no ``grid`` then): a
    stack of such mixers encodes the variates jointly without changing its tokens' shape.

    ``causal=True`` is causal in time: token (c, p) sees tokens (c', p') with p' <= p
    of its stripes, and LePE looks back in time only (variate-major order is time
    order when C = 1). Cost O(N·sw·(C + P)·D).
    """

    complexity = "O(N·sw·(C+P)·D)"
    patterns = frozenset({SELF, CAUSAL_SELF})
    requires_order = True
    # its stripes are rows and columns of a variates × patches grid (``grid``); over a plain sequence it is
    # only half global, half windowed attention, so a slot that cannot hand it that grid refuses it
    reads_grid = True
    mixes_tokens = True
    paper = ("Dong et al., CSWin Transformer: A General Vision Transformer Backbone with Cross-Shaped Windows, "
             "CVPR 2022")

    def __init__(self, d_model: int, *, n_heads: int = 8, dropout: float = 0.0, causal: bool = False,
                 stripe_width: int = 2, lepe_kernel: int = 3, variates: int | None = None,
                 unordered_variates: bool = False):
        super().__init__()
        check_causal(type(self), causal)
        assert d_model % n_heads == 0, f"d_model={d_model} must be divisible by n_heads={n_heads}"
        assert stripe_width >= 1, f"stripe_width must be positive, got {stripe_width}"
        assert variates is None or variates >= 1, f"variates must be positive or None, got {variates}"
        self.n_heads, self.dropout, self.causal = n_heads, dropout, causal
        self.stripe_width, self.variates, self.unordered_variates = stripe_width, variates, unordered_variates
        self.heads_time = n_heads // 2                                   # time stripes; the rest: variate stripes
        head_dim = d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.to_out = nn.Linear(d_model, d_model)
        # over unordered variates the conv must not weigh a neighbouring row: kernel 1 along the variates
        kernel = (1 if unordered_variates else lepe_kernel, lepe_kernel)
        self.lepe_time = _depthwise(self.heads_time * head_dim, kernel)
        self.lepe_variates = _depthwise((n_heads - self.heads_time) * head_dim, kernel)

    def forward(self, x: Tensor, kv: Tensor | None = None, mask: Tensor | None = None,
                grid: tuple[int, int] | None = None) -> Tensor:
        check_cross(self, kv)
        if self.variates is not None:
            return self._channel_independent(x, mask, grid)
        return self._cross(x, mask, grid)

    def _cross(self, x: Tensor, mask: Tensor | None, grid: tuple[int, int] | None) -> Tensor:
        """Both stripe branches over x (B, C·P, D), variate-major, with their LePE: (B, C·P, D)."""
        n = x.shape[1]
        c, p = (1, n) if grid is None else grid
        if c * p != n:
            raise ValueError(f"grid={grid} holds {c * p} tokens but x has {n}")
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.n_heads)
        time_index = torch.arange(n, device=x.device) % p                 # the patch of each token
        kw = dict(causal=self.causal, time_index=time_index, mask=mask, dropout=self.dropout, training=self.training)
        outs, ht = [], self.heads_time
        if ht > 0:
            rows_per_stripe = 1 if self.unordered_variates else min(self.stripe_width, c)
            idx, rows, cols = stripe_groups(c, p, rows_per_stripe, "time", x.device)
            if mask is not None and mask.dim() >= 3 and mask.shape[-3] == self.n_heads:
                kw["mask"] = mask[..., :ht, :, :]
            outs.append(_stripe_attention(q[:, :ht], k[:, :ht], v[:, :ht], idx, rows, cols, self.lepe_time, **kw))
        idx, rows, cols = stripe_groups(c, p, min(self.stripe_width, p), "variates", x.device)
        if mask is not None and mask.dim() >= 3 and mask.shape[-3] == self.n_heads:
            kw["mask"] = mask[..., ht:, :, :]
        outs.append(_stripe_attention(q[:, ht:], k[:, ht:], v[:, ht:], idx, rows, cols, self.lepe_variates, **kw))
        out = torch.cat(outs, dim=1)                                      # (B, h, N, d)
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))        # (B, N, D)

    def _channel_independent(self, x: Tensor, mask: Tensor | None, grid: tuple[int, int] | None) -> Tensor:
        """x (B·C, P, D), one variate's patches a row -> the same, each sample's (C, P) grid attended at once."""
        c = self.variates
        if grid is not None or mask is not None:
            raise ValueError(f"built with variates={c}, the mixer makes each sample's (C, P) grid from its "
                             f"(B·C, P, D) rows itself; it takes no grid= or mask=")
        if x.shape[0] % c:
            raise ValueError(f"built with variates={c}, the mixer takes rows (B·{c}, P, D), variate-minor, "
                             f"got {x.shape[0]} rows")
        p = x.shape[1]
        out = self._cross(rearrange(x, "(b c) p d -> b (c p) d", c=c), None, (c, p))  # (B, C·P, D), variate-major
        return rearrange(out, "b (c p) d -> (b c) p d", c=c)              # (B·C, P, D)


@register("mixer", "lepe")
class LePEWindowAttention(nn.Module):
    """Windowed attention with CSWin's locally-enhanced positional encoding (Dong et al., CVPR 2022), 1-D.

    Softmax attention inside windows of ``window`` adjacent tokens (``window=None``:
    one window, i.e. global attention), plus LePE: a depthwise Conv1d of V of
    ``lepe_kernel`` taps inside each window, added to the attention output. The conv
    is the only place positions enter, so with ``lepe_kernel=0`` and one window the
    mixer is permutation-equivariant, and with LePE it is not. ``causal=True``:
    causal mask inside windows and a look-back conv. Cost O(N·W·D) (O(N²·D) global).
    """

    complexity = "O(N·W·D)"
    patterns = frozenset({SELF, CAUSAL_SELF})
    requires_order = True
    mixes_tokens = True
    paper = ("Dong et al., CSWin Transformer: A General Vision Transformer Backbone with Cross-Shaped Windows, "
             "CVPR 2022")

    def __init__(self, d_model: int, *, n_heads: int = 8, dropout: float = 0.0, causal: bool = False,
                 window: int | None = 8, lepe_kernel: int = 3):
        super().__init__()
        check_causal(type(self), causal)
        assert d_model % n_heads == 0, f"d_model={d_model} must be divisible by n_heads={n_heads}"
        assert window is None or window >= 1, f"window must be positive or None, got {window}"
        self.n_heads, self.dropout, self.causal, self.window = n_heads, dropout, causal, window
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.to_out = nn.Linear(d_model, d_model)
        self.lepe = _depthwise(d_model, (1, lepe_kernel))

    def forward(self, x: Tensor, kv: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        check_cross(self, kv)
        n = x.shape[1]
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.n_heads)
        idx, rows, cols = stripe_groups(1, n, min(self.window or n, n), "variates", x.device)  # windows (1, W)
        out = _stripe_attention(q, k, v, idx, rows, cols, self.lepe, causal=self.causal, time_index=None,
                                mask=mask, dropout=self.dropout, training=self.training)  # (B, h, N, d)
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))        # (B, N, D)
