"""The position-wise feed-forward network, the default part of a block's ``ffn`` slot.

Its own module, below the blocks and the mixers: the blocks, the stacks, MetaFormer's block and the memory
layers all build it, and the blocks import the mixers package (to register every mixer).
"""

from __future__ import annotations

from torch import Tensor, nn

from .registry import register
from .dropout import Dropout

__all__ = ["FeedForward"]

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}


@register("ffn", "mlp")
class FeedForward(nn.Module):
    """Position-wise FFN, Linear(D -> d_ff) -> activation -> dropout -> Linear(d_ff -> D).

    Vaswani et al., NeurIPS 2017; the default of the ``ffn`` slot. Cost O(N·D·d_ff), no token mixing.
    """

    requires_order = False  # token by token
    complexity = "O(N·D·d_ff)"
    paper = "Vaswani et al., Attention Is All You Need, NeurIPS 2017"

    def __init__(self, d_model: int, *, d_ff: int, dropout: float = 0.0, activation: str = "relu"):
        super().__init__()
        assert activation in _ACTIVATIONS, f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}"
        self.fc1 = nn.Linear(d_model, d_ff)
        self.act = _ACTIVATIONS[activation]()
        self.dropout = Dropout(dropout)
        self.fc2 = nn.Linear(d_ff, d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.dropout(self.act(self.fc1(x))))  # (..., D) -> (..., d_ff) -> (..., D)
