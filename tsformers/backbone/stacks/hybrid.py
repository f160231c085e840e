"""SSM-attention hybrid stack: Mamba and attention blocks interleaved by a pattern string.

Interleaving as in Lieber et al., "Jamba: A Hybrid Transformer-Mamba Language Model",
arXiv 2403.19887, 2024, and Waleffe et al., "An Empirical Study of Mamba-based Language
Models", arXiv 2406.07887, 2024 (Mamba layers: linear cost and a constant streaming state;
a few attention layers: exact recall).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..blocks import PreNormBlock
from ..mixers.full import FullAttention
from ..registry import register

__all__ = ["Hybrid", "expand_pattern"]


def expand_pattern(pattern: str, n_layers: int, letters: str) -> str:
    """The layer types: ``pattern`` repeated ``n_layers`` times, checked against the allowed ``letters``."""
    pattern = pattern.upper()
    assert pattern and set(pattern) <= set(letters), f"pattern must use the letters {letters!r}, got {pattern!r}"
    assert n_layers >= 1, n_layers
    return pattern * n_layers


@register("stack", "hybrid")
class Hybrid(nn.Module):
    """Mamba ("M") and attention ("A") pre-LN blocks in the order of ``pattern`` (Jamba-style hybrids).

    Layer types are ``pattern`` repeated ``n_layers`` times (default "MMMA": three Mamba
    blocks per attention block; ``n_layers=2`` gives 8 blocks). An M block is a PreNormBlock
    with the registered ``mamba`` mixer (``mamba_kwargs``, e.g. ``bidirectional=True`` for
    variate tokens) and an FFN; an A block is a PreNormBlock with ``mixer``. ``layer_types``
    holds the string. With ``causal=True`` and ``mixer="full"``, ``step(x_t, state)``
    streams one token at a time: Mamba layers carry their recurrent state and attention
    layers a KV cache, so streaming equals the causal forward exactly.

    Cost per M block O(N·D·d_state) + FFN; per A block the mixer's (O(N²·D) for full
    attention) + FFN. x: (B, N, D) -> (B, N, D).
    """

    requires_order = True  # the Mamba blocks scan the tokens in order

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
        pattern: str = "MMMA",
        mamba_kwargs: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.layer_types = expand_pattern(pattern, n_layers, "MA")
        self.causal = causal

        def block(kind: str) -> PreNormBlock:
            name, kwargs = ("mamba", mamba_kwargs) if kind == "M" else (mixer, mixer_kwargs)
            return PreNormBlock(d_model, n_heads=n_heads, d_ff=d_ff, dropout=dropout, mixer=name,
                                mixer_kwargs=kwargs, causal=causal)

        self.layers = nn.ModuleList(block(kind) for kind in self.layer_types)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def step(self, x: Tensor, state: list | None = None) -> tuple[Tensor, list]:
        """One streaming step: the newest token x (B, D) -> (output (B, D), new state).

        Needs ``causal=True`` and full attention in the A layers; run in eval mode. The state
        is one entry per layer: the Mamba (conv, h) state, or the attention layer's (K, V)
        cache (B, H, t, d_h) each. Cost per step: O(D·d_state) per M layer, O(t·D) per A layer.
        """
        if not self.causal:
            raise ValueError("hybrid.step streams a causal model; build it with causal=True")
        state = [None] * len(self.layers) if state is None else list(state)
        for i, (kind, layer) in enumerate(zip(self.layer_types, self.layers)):
            h = layer.norm1(x)
            if kind == "M":
                y, state[i] = layer.mixer.step(h, state[i])
            else:
                y, state[i] = self._attend_cached(layer.mixer, h, state[i])
            x = x + y
            x = x + layer.ffn(layer.norm2(x))
        return x, state

    @staticmethod
    def _attend_cached(attn: nn.Module, h: Tensor, cache: tuple[Tensor, Tensor] | None):
        if not isinstance(attn, FullAttention):
            raise ValueError("hybrid.step needs mixer='full' in the attention layers (a KV cache)")
        n_heads = attn.n_heads
        q, k, v = (proj(h).unflatten(-1, (n_heads, -1))[:, :, None] for proj in (attn.to_q, attn.to_k, attn.to_v))
        if cache is not None:                                                  # (B, H, t, d_h)
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        out = F.scaled_dot_product_attention(q, k, v)                          # (B, H, 1, d_h), sees all cached
        return attn.to_out(out.flatten(1)), (k, v)
