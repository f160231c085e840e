"""Inference and runtime tools for trained networks (catalog section D), beside ``compress``.

- :mod:`~tsformers.runtime.packed`: padding-free packed batches for series of different lengths.
- :mod:`~tsformers.runtime.sparse_kv`: a sparse-window KV cache for streaming attention.
- :mod:`~tsformers.runtime.stream`: O(1)-per-step streaming state for recurrent mixers.
- :mod:`~tsformers.runtime.onnx`: ONNX export and an ONNX Runtime engine (imported on use:
  it needs ``tsformers[onnx]``).

They are tools that run a network, not parts that fill a slot, so they are not in the backbone
registry (``tsformers.backbone.available()`` lists only parts the backbone defines, whatever was
imported).
"""
from .packed import PackedBatch, PackedEncoder, pack, packed_attention, unpack
from .sparse_kv import SparseKVAttention, SparseKVCache
from .stream import Stream

__all__ = ["PackedBatch", "PackedEncoder", "SparseKVAttention", "SparseKVCache", "Stream", "pack",
           "packed_attention", "unpack"]
