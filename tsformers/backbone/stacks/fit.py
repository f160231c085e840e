"""FIT: far-reaching interleaved transformer (local groups, per-group latents, global latent layers).

Chen & Li, "FIT: Far-reaching Interleaved Transformers", arXiv 2305.12689, 2023.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..blocks import PreNormBlock
from ..feedforward import FeedForward
from ..mixers.full import FullAttention
from ..registry import register
from ..dropout import Dropout

__all__ = ["FIT"]


class _CrossBlock(nn.Module):
    """q + attn(LN(q), LN(kv)) (+ FFN): one side of the group <-> latent exchange. Cost O(N_q·N_kv·D)."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int | None, dropout: float):
        super().__init__()
        self.norm_q, self.norm_kv = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = FullAttention(d_model, n_heads=n_heads, dropout=dropout)
        self.dropout = Dropout(dropout)
        self.ffn = None if d_ff is None else nn.Sequential(nn.LayerNorm(d_model),
                                                             FeedForward(d_model, d_ff=d_ff, dropout=dropout))

    def forward(self, q: Tensor, kv: Tensor, mask: Tensor | None = None) -> Tensor:
        q = q + self.dropout(self.attn(self.norm_q(q), self.norm_kv(kv), mask=mask))
        return q if self.ffn is None else q + self.dropout(self.ffn(q))


def _local(block: PreNormBlock, x: Tensor, b: int, g: int, last: int) -> Tensor:
    """Run ``block`` inside every group of x (B·G, n, D); the last group holds only ``last`` real tokens.

    The padded tail is never shown to the mixer (the last group runs on its own, unpadded),
    so any registered mixer works without an attention mask.
    """
    size = x.shape[1]
    if last == size:
        return block(x)
    x = x.reshape(b, g, size, -1)
    head = block(x[:, :-1].flatten(0, 1)).reshape(b, g - 1, size, -1)           # full groups
    tail = block(x[:, -1, :last])                                                 # (B, last, D)
    tail = torch.cat([tail, x[:, -1, last:]], dim=1)[:, None]                     # padding kept as is
    return torch.cat([head, tail], dim=1).flatten(0, 1)                           # (B·G, n, D)


@register("stack", "fit")
class FIT(nn.Module):
    """Far-reaching interleaved transformer (Chen & Li, arXiv 2305.12689, 2023).

    Tokens are split into G = ceil(N / n) contiguous groups of ``group_size`` n (a short
    last group is zero-padded; the padding is masked in the cross-attention and never
    reaches the local mixer, which runs that group unpadded), and each group owns m = ``latents_per_group``
    latent tokens (one learned initial set shared by all groups). Each of the
    ``n_layers`` units runs: ``n_local`` blocks of the mixer inside every group ->
    the group's latents cross-attend to its tokens -> ``n_global`` blocks of the mixer
    over all G·m latents -> every token cross-attends to its group's latents. For time
    tokens, groups are periods (days, weeks) of a long lookback and the latents carry
    context across periods. With ``n_global=0`` the groups never exchange information.

    ``causal=True``: local and global blocks are causal, and the tokens of group g read
    the latents of group g-1 (group 0 reads the initial latents), so no token sees a
    later one. Cost per unit O(N·n·D + N·m·D + (N·m/n)²·D), plus the FFNs.
    x: (B, N, D) -> (B, N, D).
    """

    requires_order = True  # tokens are grouped by position into contiguous local groups

    def __init__(
        self,
        *,
        d_model: int,
        n_heads: int,
        d_ff: int,
        n_layers: int,
        dropout: float = 0.0,
        mixer: str = "full",
        mixer_kwargs: dict[str, Any] | None = None,
        causal: bool = False,
        group_size: int = 4,
        latents_per_group: int = 2,
        n_local: int = 1,
        n_global: int = 1,
    ):
        super().__init__()
        assert group_size >= 1 and latents_per_group >= 1 and n_layers >= 1
        self.group_size, self.m, self.causal = group_size, latents_per_group, causal

        def block() -> PreNormBlock:
            return PreNormBlock(d_model, n_heads=n_heads, d_ff=d_ff, dropout=dropout, mixer=mixer,
                                mixer_kwargs=mixer_kwargs, causal=causal)

        self.latents = nn.Parameter(torch.randn(latents_per_group, d_model) * 0.02)  # (m, D)
        self.local = nn.ModuleList(nn.ModuleList(block() for _ in range(n_local)) for _ in range(n_layers))
        self.read = nn.ModuleList(_CrossBlock(d_model, n_heads, d_ff, dropout) for _ in range(n_layers))
        self.glob = nn.ModuleList(nn.ModuleList(block() for _ in range(n_global)) for _ in range(n_layers))
        self.write = nn.ModuleList(_CrossBlock(d_model, n_heads, None, dropout) for _ in range(n_layers))

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        size = min(self.group_size, n)
        g = math.ceil(n / size)
        pad = g * size - n
        x = F.pad(x, (0, 0, 0, pad)).reshape(b * g, size, d)                    # (B·G, n, D)
        mask = None
        if pad:                                                                  # hide the padded tokens
            valid = (torch.arange(g * size, device=x.device) < n).reshape(1, g, 1, 1, size)
            mask = valid.expand(b, g, 1, 1, size).reshape(b * g, 1, 1, size)     # (B·G, 1, 1, n)
        init = self.latents.expand(b * g, -1, -1)                                # (B·G, m, D)
        lat = init
        for local, read, glob, write in zip(self.local, self.read, self.glob, self.write):
            for layer in local:
                x = _local(layer, x, b, g, n - (g - 1) * size)
            lat = read(lat, x, mask)                                             # latents <- own group's tokens
            lat = lat.reshape(b, g * self.m, d)                                  # (B, G·m, D)
            for layer in glob:
                lat = layer(lat)
            lat = lat.reshape(b * g, self.m, d)                                  # (B·G, m, D)
            source = lat
            if self.causal:                                                      # group g reads group g-1
                source = torch.cat([init.reshape(b, g, self.m, d)[:, :1],
                                    lat.reshape(b, g, self.m, d)[:, :-1]], dim=1).reshape(b * g, self.m, d)
            x = write(x, source)                                                 # tokens <- latents
        return x.reshape(b, g * size, d)[:, :n]                                  # (B, N, D)
