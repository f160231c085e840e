"""Wide vs. deep attention at a fixed total number of heads (the model's aspect ratio).

Brown, Zhao, Shumailov and Mullins, "Wide Attention Is The Way Forward For
Transformers?", NeurIPS 2022 workshop "All Things Attention" (arXiv 2210.00640).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..feedforward import FeedForward
from ..mixers.full import FullAttention
from ..registry import build_mixer, mixer_dropout, register
from ..dropout import Dropout

__all__ = ["DeepAttention", "WideAttention", "build_attention"]


class _Projected(nn.Module):
    """Any mixer run at an inner width: Linear(D -> H·d_h) -> mixer -> Linear(H·d_h -> D)."""

    def __init__(self, d_model: int, inner: int, mixer: nn.Module):
        super().__init__()
        self.proj_in, self.mixer, self.proj_out = nn.Linear(d_model, inner), mixer, nn.Linear(inner, d_model)
        self.n_heads = getattr(mixer, "n_heads", None)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj_out(self.mixer(self.proj_in(x)))      # (B, N, D) -> (B, N, H·d_h) -> (B, N, D)


def build_attention(d_model: int, n_heads: int, head_dim: int, *, mixer: str = "full", dropout: float = 0.0,
                    causal: bool = False, mixer_kwargs: dict[str, Any] | None = None) -> nn.Module:
    """A mixer with ``n_heads`` heads of width ``head_dim`` on D-wide tokens.

    When n_heads·head_dim == D it is the registered mixer itself. Otherwise, for ``"full"``,
    full attention whose q/k/v project D -> H·d_h and whose output projects back (4·D·H·d_h
    weights, the paper's fixed attention computation); any other mixer runs at width H·d_h
    between two projections.
    """
    inner = n_heads * head_dim
    if inner == d_model:
        return build_mixer(mixer, d_model=d_model, n_heads=n_heads, dropout=dropout, causal=causal,
                           mixer_kwargs=mixer_kwargs)
    attention_dropout, options = mixer_dropout(dropout, mixer_kwargs)  # its own dropout is no other option
    if mixer == "full" and not options:
        attn = FullAttention(inner, n_heads=n_heads, dropout=attention_dropout, causal=causal)
        attn.to_q, attn.to_k, attn.to_v = (nn.Linear(d_model, inner) for _ in range(3))
        attn.to_out = nn.Linear(inner, d_model)
        return attn
    inner_mixer = build_mixer(mixer, d_model=inner, n_heads=n_heads, dropout=dropout, causal=causal,
                              mixer_kwargs=mixer_kwargs)
    return _Projected(d_model, inner, inner_mixer)


class _Block(nn.Module):
    """Pre-LN block around a given mixer: x + mixer(LN(x)), then x + FFN(LN(x))."""

    def __init__(self, d_model: int, mixer: nn.Module, d_ff: int, dropout: float):
        super().__init__()
        self.norm1, self.mixer, self.norm2 = nn.LayerNorm(d_model), mixer, nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, d_ff=d_ff, dropout=dropout)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.dropout(self.mixer(self.norm1(x)))
        return x + self.dropout(self.ffn(self.norm2(x)))


class _AspectRatio(nn.Module):
    """``layers`` pre-LN blocks sharing ``total_heads`` heads of width ``head_dim`` equally."""

    def __init__(self, *, d_model: int, d_ff: int, layers: int, total_heads: int, head_dim: int,
                 dropout: float, mixer: str, mixer_kwargs: dict[str, Any] | None, causal: bool):
        super().__init__()
        assert total_heads % layers == 0, f"total_heads={total_heads} must split evenly over {layers} layers"
        self.total_heads, self.head_dim = total_heads, head_dim
        self.layers = nn.ModuleList(
            _Block(d_model, build_attention(d_model, total_heads // layers, head_dim, mixer=mixer, dropout=dropout,
                                            causal=causal, mixer_kwargs=mixer_kwargs), d_ff, dropout)
            for _ in range(layers)
        )

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


def _defaults(d_model: int, n_heads: int, n_layers: int, total_heads: int | None, head_dim: int | None):
    total = n_heads * n_layers if total_heads is None else total_heads
    assert head_dim is not None or d_model % n_heads == 0, (d_model, n_heads)
    return total, d_model // n_heads if head_dim is None else head_dim


@register("stack", "wide")
class WideAttention(_AspectRatio):
    """Wide preset: the heads of an ``n_layers``-deep model placed side by side in ``wide_layers`` (1) block.

    Brown et al., "Wide Attention Is The Way Forward For Transformers?", NeurIPS 2022
    workshop (arXiv 2210.00640). The aspect ratio layers : heads-per-layer changes while the
    total number of heads (``total_heads``, default n_heads·n_layers) and the head width
    (``head_dim``, default D / n_heads) stay fixed, so the attention computation equals the
    ``deep`` preset's and the model drops n_layers - 1 FFNs: fewer parameters and a lower
    CPU latency (one wide matmul instead of a chain). Suits small variate-token models.
    Cost O(N²·H·d_h) + O(N·D·H·d_h) for the attention plus one FFN O(N·D·d_ff).
    x: (B, N, D) -> (B, N, D).
    """

    requires_order = False  # its heads and projections act per token: order comes only from the mixer

    def __init__(self, *, d_model: int, n_heads: int, d_ff: int, n_layers: int, dropout: float = 0.0,
                 mixer: str = "full", mixer_kwargs: dict[str, Any] | None = None, causal: bool = False,
                 total_heads: int | None = None, head_dim: int | None = None, wide_layers: int = 1):
        total, dh = _defaults(d_model, n_heads, n_layers, total_heads, head_dim)
        super().__init__(d_model=d_model, d_ff=d_ff, layers=wide_layers, total_heads=total, head_dim=dh,
                         dropout=dropout, mixer=mixer, mixer_kwargs=mixer_kwargs, causal=causal)


@register("stack", "deep")
class DeepAttention(_AspectRatio):
    """Deep preset, the ``wide`` preset's counterpart: ``total_heads`` spread over ``n_layers`` blocks.

    Brown et al., NeurIPS 2022 workshop (arXiv 2210.00640). With the defaults
    (total_heads = n_heads·n_layers, head_dim = D / n_heads) it is the standard pre-LN stack;
    build ``wide`` and ``deep`` with the same (n_heads, n_layers, total_heads, head_dim) to
    compare aspect ratios at an equal attention computation. Cost: n_layers times
    (O(N²·D) + O(N·D·d_ff)) at the defaults. x: (B, N, D) -> (B, N, D).
    """

    requires_order = False  # its heads and projections act per token: order comes only from the mixer

    def __init__(self, *, d_model: int, n_heads: int, d_ff: int, n_layers: int, dropout: float = 0.0,
                 mixer: str = "full", mixer_kwargs: dict[str, Any] | None = None, causal: bool = False,
                 total_heads: int | None = None, head_dim: int | None = None):
        total, dh = _defaults(d_model, n_heads, n_layers, total_heads, head_dim)
        super().__init__(d_model=d_model, d_ff=d_ff, layers=n_layers, total_heads=total, head_dim=dh,
                         dropout=dropout, mixer=mixer, mixer_kwargs=mixer_kwargs, causal=causal)
