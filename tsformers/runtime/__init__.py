"""Inference and runtime tools for trained networks (catalog section D), beside ``compress``.

- :mod:`~tsformers.runtime.packed`: padding-free packed batches for series of different lengths.
- :mod:`~tsformers.runtime.sparse_kv`: a sparse-window KV cache for streaming attention.
- :mod:`~tsformers.runtime.stream`: O(1)-per-step streaming state for recurrent mixers.
- :mod:`~tsformers.runtime.onnx`: ONNX export and an ONNX Runtime engine (imported on use:
  it needs ``tsformers[onnx]``); :mod:`~tsformers.runtime.ort` runs an exported graph on
  numpy arrays, without torch.

They are tools that run a network, not parts that fill a slot, so they are not in the backbone
registry (``tsformers.backbone.available()`` lists only parts the backbone defines, whatever was
imported).

The names below are imported on first use (PEP 562), so that ``tsformers.runtime.ort``
loads without torch.
"""
import importlib

_EXPORTS = {
    "PackedBatch": "packed", "PackedEncoder": "packed", "pack": "packed", "packed_attention": "packed",
    "unpack": "packed", "SparseKVAttention": "sparse_kv", "SparseKVCache": "sparse_kv", "Stream": "stream",
}

__all__ = ["PackedBatch", "PackedEncoder", "SparseKVAttention", "SparseKVCache", "Stream", "pack",
           "packed_attention", "unpack"]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
