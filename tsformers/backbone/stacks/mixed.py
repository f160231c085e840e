"""Mixed softmax / linear-attention stack: the per-layer choice of a NAS over efficient transformers.

Liu, Li, Lu, Qin, Sun, Xu and Zhong, "Neural Architecture Search on Efficient Transformers and
Beyond", arXiv 2207.13955, 2022: searched alone, linear attention (cosFormer) loses accuracy, so
the search space picks softmax or linear attention per layer. Here the linear layers use ``sla``.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..blocks import PreNormBlock
from ..registry import register
from .hybrid import expand_pattern

__all__ = ["Mixed"]


@register("stack", "mixed")
class Mixed(nn.Module):
    """Softmax ("S") and linear ("L") attention pre-LN blocks in the order of ``pattern``.

    NAS on efficient transformers (Liu et al., arXiv 2207.13955, 2022). Layer types are
    ``pattern`` repeated ``n_layers`` times (default "SLLS"); an S block uses ``mixer``
    (default ``full`` softmax attention) with ``mixer_kwargs``, an L block the linear mixer
    ``linear`` (default ``sla``) with ``linear_kwargs``. The search itself (compress/) picks
    the pattern. Cost: O(N²·D) per S block, O(N·D·d_head) per L block, plus O(N·D·d_ff)
    per FFN. x: (B, N, D) -> (B, N, D).
    """

    requires_order = True  # the linear blocks' mixer (``sla``) runs a convolution over positions

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
        pattern: str = "SLLS",
        linear: str = "sla",
        linear_kwargs: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.layer_types = expand_pattern(pattern, n_layers, "SL")
        self.mixer_names = {"S": mixer, "L": linear}

        def block(kind: str) -> PreNormBlock:
            name, kwargs = (mixer, mixer_kwargs) if kind == "S" else (linear, linear_kwargs)
            return PreNormBlock(d_model, n_heads=n_heads, d_ff=d_ff, dropout=dropout, mixer=name,
                                mixer_kwargs=kwargs, causal=causal)

        self.layers = nn.ModuleList(block(kind) for kind in self.layer_types)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x
