"""Padding-free packed batches: series of different lengths without padding to the longest.

ByteTransformer (Zhai et al., "ByteTransformer: A High-Performance Transformer
Boosted for Variable-Length Inputs", IPDPS 2023), as catalog section D reads it:
the valid tokens of all sequences lie in one ``(ΣN_i, D)`` buffer with cumulative
offsets ``cu_seqlens``; token-wise layers (Linear, LayerNorm, FFN) run on that
buffer once, attention runs per sequence, and the result unpacks to the padded
layout. Attention costs O(ΣN_i²·D) instead of O(B·max N²·D), and token-wise
layers O(ΣN_i) instead of O(B·max N).

Attention per sequence, two ways (``packed_attention(mode=...)``):

- ``"grouped"`` (default): sequences of equal length run together as one batch
  (a panel's series often share lengths), one mixer call per distinct length;
  works for any mixer ``(B, N, D) -> (B, N, D)``.
- ``"block_diagonal"``: one call over the whole buffer with a block-diagonal
  boolean mask (mixers that take ``mask``, e.g. ``"full"``); memory O((ΣN_i)²), for
  many short sequences.

The reference is the padded batch with a key mask (``masked_forward``): at every
valid position the packed outputs equal it (tested to 1e-5).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from tsformers.backbone.blocks import PostNormBlock, PreNormBlock, TransformerEncoder

__all__ = ["PackedBatch", "PackedEncoder", "masked_forward", "pack", "packed_attention", "unpack"]


@dataclass
class PackedBatch:
    """Valid tokens of B sequences in one buffer: ``tokens`` (ΣN_i, D), ``cu_seqlens`` (B + 1,) offsets."""

    tokens: Tensor
    cu_seqlens: Tensor

    @property
    def lengths(self) -> Tensor:
        return self.cu_seqlens[1:] - self.cu_seqlens[:-1]

    @property
    def max_len(self) -> int:
        return int(self.lengths.max()) if len(self.lengths) else 0

    def with_tokens(self, tokens: Tensor) -> PackedBatch:
        return PackedBatch(tokens, self.cu_seqlens)

    def sequences(self) -> list[Tensor]:
        """Each sequence's tokens, (N_i, D) views of the buffer."""
        return list(self.tokens.split(self.lengths.tolist()))


def pack(x, lengths=None) -> PackedBatch:
    """Pack a list of (N_i, D) tensors, or a padded (B, N, D) batch whose sequence i is ``x[i, :lengths[i]]``."""
    if isinstance(x, (list, tuple)):
        parts = list(x)
    else:
        assert lengths is not None, "a padded batch needs its lengths"
        parts = [x[i, :int(n)] for i, n in enumerate(lengths)]
    sizes = torch.tensor([p.shape[0] for p in parts], dtype=torch.long)
    cu = torch.zeros(len(parts) + 1, dtype=torch.long)
    cu[1:] = sizes.cumsum(0)
    return PackedBatch(torch.cat(parts) if parts else torch.empty(0), cu)


def unpack(packed: PackedBatch, pad_value: float = 0.0) -> tuple[Tensor, Tensor]:
    """The padded batch (B, max N, D) and its mask (B, max N), True on valid tokens."""
    lengths = packed.lengths
    mask = torch.arange(packed.max_len)[None, :] < lengths[:, None]
    out = packed.tokens.new_full((len(lengths), packed.max_len, *packed.tokens.shape[1:]), pad_value)
    out[mask] = packed.tokens
    return out, mask


def _block_diagonal(packed: PackedBatch) -> Tensor:
    seq = torch.repeat_interleave(torch.arange(len(packed.lengths)), packed.lengths)
    return seq[:, None] == seq[None, :]                                      # (ΣN, ΣN)


def packed_attention(mixer: nn.Module, packed: PackedBatch, mode: str = "grouped") -> PackedBatch:
    """Run a token mixer on every sequence of ``packed`` on its own; returns the packed outputs."""
    if mode == "block_diagonal":
        mask = _block_diagonal(packed)
        if getattr(mixer, "causal", False):  # causal inside each sequence: the global order is the same
            mask = mask & torch.ones_like(mask).tril()
            return packed.with_tokens(_causal_free(mixer, packed.tokens[None], mask)[0])
        return packed.with_tokens(mixer(packed.tokens[None], mask=mask)[0])
    assert mode == "grouped", f"mode must be 'grouped' or 'block_diagonal', got {mode!r}"
    out = torch.empty_like(packed.tokens)
    lengths = packed.lengths
    starts = packed.cu_seqlens[:-1]
    for n in torch.unique(lengths).tolist():
        rows = torch.nonzero(lengths == n).flatten()
        index = starts[rows, None] + torch.arange(n)[None, :]                # (G, n)
        out[index] = mixer(packed.tokens[index])                             # (G, n, D)
    return packed.with_tokens(out)


def _causal_free(mixer: nn.Module, x: Tensor, mask: Tensor) -> Tensor:
    """A causal mixer given an explicit mask that already holds the causal part."""
    causal = mixer.causal
    mixer.causal = False
    try:
        return mixer(x, mask=mask)
    finally:
        mixer.causal = causal


def _layers(encoder: nn.Module):
    assert isinstance(encoder, TransformerEncoder), (
        f"packed runs a standard stack (TransformerEncoder), got {type(encoder).__name__}")
    for layer in encoder.layers:
        assert isinstance(layer, (PreNormBlock, PostNormBlock)), f"unknown block {type(layer).__name__}"
        yield layer


class PackedEncoder(nn.Module):
    """A standard encoder stack run on a packed batch: token-wise parts on the buffer, attention per sequence.

    Wraps (shares the weights of) a :class:`~tsformers.backbone.TransformerEncoder`
    with pre- or post-norm blocks; ``forward(packed) -> packed``. Cost O(ΣN_i·D·d_ff)
    for the token-wise parts and the mixer's cost per sequence, O(ΣN_i²·D) for full attention.
    """

    def __init__(self, encoder: TransformerEncoder, mode: str = "grouped"):
        super().__init__()
        self.encoder, self.mode = encoder, mode

    def forward(self, packed: PackedBatch) -> PackedBatch:
        x = packed.tokens                                                     # (ΣN, D)
        for layer in _layers(self.encoder):
            attend = lambda t: packed_attention(layer.mixer, packed.with_tokens(t), self.mode).tokens  # noqa: E731
            if isinstance(layer, PreNormBlock):
                x = x + layer.dropout1(attend(layer.norm1(x)))
                x = x + layer.dropout2(layer.ffn(layer.norm2(x)))
            else:
                x = layer.norm1(x + layer.dropout1(attend(x)))
                x = layer.norm2(x + layer.dropout2(layer.ffn(x)))
        return packed.with_tokens(self.encoder.norm(x))


def masked_forward(encoder: TransformerEncoder, x: Tensor, mask: Tensor) -> Tensor:
    """The padded reference: the stack over x (B, N, D) where only keys with ``mask`` (B, N) True are attended."""
    key_mask = mask[:, None, None, :]                                         # (B, 1, 1, N)
    for layer in _layers(encoder):
        if isinstance(layer, PreNormBlock):
            x = x + layer.dropout1(layer.mixer(layer.norm1(x), mask=key_mask))
            x = x + layer.dropout2(layer.ffn(layer.norm2(x)))
        else:
            x = layer.norm1(x + layer.dropout1(layer.mixer(x, mask=key_mask)))
            x = layer.norm2(x + layer.dropout2(layer.ffn(x)))
    return encoder.norm(x)
