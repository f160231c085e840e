"""Transformer-XL segment memory: each layer's most recent inputs, cached with gradients stopped.

Dai et al., "Transformer-XL: Attentive Language Models Beyond a Fixed-Length
Context", ACL 2019, section 3.2; GTrXL (Parisotto et al., ICML 2020) keeps it as is.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..registry import register

__all__ = ["SegmentMemory"]


@register("memory", "segment")
class SegmentMemory(nn.Module):
    """The per-layer cache of Transformer-XL: M^(l) = the last ``mem_len`` inputs to layer l, detached.

    After each segment, layer l's memory becomes the last ``mem_len`` rows of
    [M^(l); E^(l)], where E^(l) is the segment's input to layer l, and gradients
    are stopped there (StopGrad in the paper): training through a stream of
    segments is backpropagation truncated at segment boundaries. The memory of a
    stream that has seen fewer than ``mem_len`` tokens is shorter. Updating costs
    O((mem_len + S)·D) per layer for a segment of S tokens, whatever the stream's
    length. No parameters.

    The memories travel in a flat dict of tensors (a streaming network's state):
    ``"memory.<l>"`` -> (B, m, D), m <= mem_len.
    """

    def __init__(self, *, n_layers: int, mem_len: int, d_model: int):
        super().__init__()
        assert n_layers >= 1, f"n_layers must be at least 1, got {n_layers}"
        assert mem_len >= 0, f"mem_len must be >= 0, got {mem_len}"
        self.n_layers, self.mem_len, self.d_model = n_layers, mem_len, d_model

    @staticmethod
    def key(layer: int) -> str:
        return f"memory.{layer}"

    def init(self, batch_size: int, *, device=None, dtype=None) -> dict[str, Tensor]:
        """Empty memories, (B, 0, D) per layer."""
        return {self.key(i): torch.zeros(batch_size, 0, self.d_model, device=device, dtype=dtype)
                for i in range(self.n_layers)}

    def read(self, state: dict[str, Tensor], layer: int) -> Tensor:
        """Layer ``layer``'s memory, detached: (B, m, D)."""
        return state[self.key(layer)].detach()

    def update(self, memory: Tensor, hidden: Tensor) -> Tensor:
        """The new memory: the last ``mem_len`` rows of [memory; hidden], detached and copied.

        memory: (B, m, D), hidden: (B, S, D) -> (B, min(m + S, mem_len), D).
        """
        if self.mem_len == 0:
            return hidden.new_zeros(hidden.shape[0], 0, hidden.shape[-1])
        keep = torch.cat([memory.detach(), hidden.detach()], dim=1)[:, -self.mem_len:]
        return keep.clone()  # own storage: no reference to the segment's activations survives

    def extra_repr(self) -> str:
        return f"n_layers={self.n_layers}, mem_len={self.mem_len}, d_model={self.d_model}"
