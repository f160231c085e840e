"""MetaFormer: the generic block, with PoolFormer's pooling mixer and two trivial baselines.

Yu et al., "MetaFormer Is Actually What You Need for Vision", CVPR 2022 (repo sail-sg/poolformer).
The claim is that the block x + Mixer(Norm(x)), x + MLP(Norm(x)) matters more than the
mixer, so the mixers here are deliberately simple: ``pool`` (time tokens), ``identity``
and ``mean`` (order-free baselines for variate tokens).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..feedforward import FeedForward
from ..registry import build, build_mixer, register
from ._base import CAUSAL_SELF, CROSS, SELF, check_causal, check_cross
from ..dropout import Dropout

__all__ = ["IdentityMixer", "MeanMixer", "MetaFormerBlock", "PoolMixer"]

_PAPER = "Yu et al., MetaFormer Is Actually What You Need for Vision, CVPR 2022"


def window_mean(x: Tensor, left: int, right: int) -> Tensor:
    """Mean of x (B, N, D) over tokens t-left..t+right that exist (padding not counted)."""
    n = x.shape[1]
    size = left + right + 1
    padded = F.pad(x.transpose(1, 2), (left, right))                             # (B, D, N + size - 1)
    sums = F.avg_pool1d(padded, size, stride=1) * size                           # (B, D, N)
    ones = F.pad(torch.ones(1, 1, n, dtype=x.dtype, device=x.device), (left, right))
    counts = F.avg_pool1d(ones, size, stride=1) * size                           # (1, 1, N)
    return (sums / counts).transpose(1, 2)                                       # (B, N, D)


@register("mixer", "pool")
class PoolMixer(nn.Module):
    """PoolFormer token mixer (Yu et al., CVPR 2022): AvgPool(pool_size, stride 1, same padding) − x.

    The average excludes the padding (``count_include_pad=False``), so a constant sequence
    gives zero; the −x is there because the block adds x back. Output t depends on
    tokens t−(k−1)//2 .. t+k−1−(k−1)//2 only (t±k//2 for odd k). ``causal=True``
    averages the last k tokens t−k+1..t instead. No parameters; cost O(N·D·k).
    """

    complexity = "O(N·D·k)"
    patterns = frozenset({SELF, CAUSAL_SELF})
    requires_order = True
    mixes_tokens = True
    paper = _PAPER

    def __init__(self, d_model: int, *, n_heads: int = 1, dropout: float = 0.0, causal: bool = False,
                 pool_size: int = 3):
        super().__init__()
        check_causal(type(self), causal)
        assert pool_size >= 1
        self.causal, self.pool_size = causal, pool_size

    def forward(self, x: Tensor, kv: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        check_cross(self, kv)
        if mask is not None:
            raise ValueError("pool takes no attention mask")
        k = self.pool_size
        left = k - 1 if self.causal else (k - 1) // 2
        return window_mean(x, left, k - 1 - left) - x                            # (B, N, D)


@register("mixer", "identity")
class IdentityMixer(nn.Module):
    """Identity token mixer, the MetaFormer baseline (Yu et al., CVPR 2022): returns x. Cost O(1)."""

    complexity = "O(1)"
    patterns = frozenset({SELF, CAUSAL_SELF})
    requires_order = False
    mixes_tokens = False
    paper = _PAPER

    def __init__(self, d_model: int, *, n_heads: int = 1, dropout: float = 0.0, causal: bool = False):
        super().__init__()
        check_causal(type(self), causal)
        self.causal = causal

    def forward(self, x: Tensor, kv: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        check_cross(self, kv)
        return x

    def init_scan(self, rows: int) -> dict[str, Tensor]:
        """No state: the identity reads no token but the current one."""
        return {}

    def scan(self, x: Tensor, state: dict[str, Tensor] | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """The streaming form (a recurrent slot's interface): x unchanged, and still no state. In LMUFormer's
        ``memory`` slot it leaves the block's convolutions as its only token mixing: the memory's ablation."""
        return x, {}


@register("mixer", "mean")
class MeanMixer(nn.Module):
    """Token-mean mixer, an order-free MetaFormer-style baseline (after Yu et al., CVPR 2022).

    Every output is the mean of the tokens (of ``kv`` for cross-attention); ``causal=True``
    gives the running mean over tokens 0..t. ``mask``: boolean (B, M) or broadcastable to
    (B, 1, 1, M), True for the tokens to average. No parameters; cost O(N·D).
    """

    complexity = "O(N·D)"
    patterns = frozenset({SELF, CAUSAL_SELF, CROSS})
    requires_order = False
    mixes_tokens = True
    paper = _PAPER

    def __init__(self, d_model: int, *, n_heads: int = 1, dropout: float = 0.0, causal: bool = False):
        super().__init__()
        check_causal(type(self), causal)
        self.causal = causal

    def forward(self, x: Tensor, kv: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        check_cross(self, kv)
        src = x if kv is None else kv                                            # (B, M, D)
        weight = torch.ones(src.shape[:2] + (1,), dtype=src.dtype, device=src.device)
        if mask is not None:
            weight = weight * mask.reshape(mask.shape[0], -1)[..., None].to(src.dtype)
        if self.causal:
            return (src * weight).cumsum(1) / weight.cumsum(1).clamp_min(1)      # (B, N, D)
        mean = (src * weight).sum(1, keepdim=True) / weight.sum(1, keepdim=True).clamp_min(1)
        return mean.expand(x.shape[0], x.shape[1], -1)                            # (B, N, D)


class LayerScale(nn.Module):
    """Per-channel learnable scale, init ``init`` (Touvron et al., CaiT, ICCV 2021; used by PoolFormer)."""

    def __init__(self, d_model: int, init: float):
        super().__init__()
        self.scale = nn.Parameter(torch.full((d_model,), float(init)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


@register("block", "metaformer")
class MetaFormerBlock(nn.Module):
    """The MetaFormer block (Yu et al., CVPR 2022), with any registered mixer by name.

    x = x + LayerScale(Mixer(Norm(x))); x = x + LayerScale(MLP(Norm(x))). ``norm`` is
    "layernorm" or any name registered under kind "norm" (e.g. "prepbn");
    ``layer_scale_init=None`` turns layer scale off (PoolFormer: 1e-5). Same keyword
    arguments as the pre-norm block, so stacks can swap it in. Cost: the mixer's plus
    O(N·D·d_ff). x: (B, N, D) -> (B, N, D). The standard stack repeats it as ``block="metaformer"``.
    """

    block_slots = frozenset({"norm"})  # the MLP is the paper's, fixed: no ffn slot

    def __init__(self, d_model: int, *, n_heads: int = 1, d_ff: int | None = None, dropout: float = 0.0,
                 activation: str = "gelu", mixer: str = "pool", mixer_kwargs: dict[str, Any] | None = None,
                 causal: bool = False, norm: str = "layernorm", norm_kwargs: dict[str, Any] | None = None,
                 layer_scale_init: float | None = 1e-5):
        super().__init__()

        def make_norm() -> nn.Module:
            if norm == "layernorm":
                return nn.LayerNorm(d_model)
            return build("norm", norm, d_model=d_model, **(norm_kwargs or {}))

        self.norm1, self.norm2 = make_norm(), make_norm()
        self.mixer = build_mixer(mixer, d_model=d_model, n_heads=n_heads, dropout=dropout, causal=causal,
                                 mixer_kwargs=mixer_kwargs)
        self.ffn = FeedForward(d_model, d_ff=d_ff or 4 * d_model, dropout=dropout, activation=activation)
        scale = (lambda: LayerScale(d_model, layer_scale_init)) if layer_scale_init is not None else nn.Identity
        self.scale1, self.scale2 = scale(), scale()
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.dropout(self.scale1(self.mixer(self.norm1(x))))
        return x + self.dropout(self.scale2(self.ffn(self.norm2(x))))
