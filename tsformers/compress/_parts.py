"""The attention/FFN blocks of a network, and function-preserving surgery on them.

Shared by ``supernet``, ``simq_nas``, ``ot_fusion`` and ``scalekd``. A *block*
here is a :class:`~tsformers.backbone.blocks.PreNormBlock` or ``PostNormBlock``
whose mixer is full attention (``FullAttention``: ``to_q/to_k/to_v/to_out``)
and whose FFN is a ``FeedForward`` (``fc1/fc2``), inside a
:class:`~tsformers.backbone.blocks.TransformerEncoder` (``layers``). Gateformer
(two such encoders), PV-Client and any estimator built with ``stack="standard"``
and ``mixer="full"`` consist of them.

Surgery keeps the function: permuting heads, the dimensions inside a head (the
query/key dimensions together, the value dimensions with the output
projection's columns) or FFN neurons leaves the output unchanged; keeping a
subset makes the layers physically smaller (new ``nn.Linear`` modules, and
``n_heads`` set to the heads kept).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from tsformers.backbone.blocks import FeedForward, TransformerEncoder, _MixerFFNBlock
from tsformers.backbone.mixers.full import FullAttention

__all__ = ["BlockRef", "find_blocks", "find_encoders", "head_dim", "keep_ffn", "keep_heads", "keep_layers",
           "permute_ffn", "permute_heads"]


@dataclass
class BlockRef:
    """Where a block sits: the encoder's dotted name, the layer index, the block itself."""

    encoder: str
    index: int
    block: _MixerFFNBlock

    @property
    def name(self) -> str:
        return f"{self.encoder}.layers.{self.index}"


def is_plain_block(module: nn.Module) -> bool:
    return (isinstance(module, _MixerFFNBlock) and isinstance(module.mixer, FullAttention)
            and isinstance(module.ffn, FeedForward))


def find_encoders(network: nn.Module) -> dict[str, TransformerEncoder]:
    """The ``TransformerEncoder`` stacks of ``network`` whose blocks are all plain (full attention + FFN)."""
    return {name: m for name, m in network.named_modules()
            if isinstance(m, TransformerEncoder) and all(is_plain_block(b) for b in m.layers)}


def find_blocks(network: nn.Module) -> list[BlockRef]:
    """Every plain block of every such encoder, in module order."""
    return [BlockRef(name, i, b) for name, enc in find_encoders(network).items() for i, b in enumerate(enc.layers)]


def head_dim(attn: FullAttention) -> int:
    return attn.to_q.out_features // attn.n_heads


def _linear(weight: Tensor, bias: Tensor | None) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer.to(weight.device)


def _rows(layer: nn.Linear, idx: Tensor) -> nn.Linear:
    return _linear(layer.weight[idx], None if layer.bias is None else layer.bias[idx])


def _cols(layer: nn.Linear, idx: Tensor) -> nn.Linear:
    return _linear(layer.weight[:, idx], layer.bias)


def head_index(attn: FullAttention, heads, qk: list | None = None, v: list | None = None) -> tuple[Tensor, Tensor]:
    """Row indices of the q/k and v projections for the heads ``heads`` (in that order).

    ``qk[i]``/``v[i]`` optionally reorder the dimensions inside the i-th listed head.
    """
    dh = head_dim(attn)
    heads = [int(h) for h in heads]
    qk_idx = [h * dh + int(j) for i, h in enumerate(heads) for j in (range(dh) if qk is None else qk[i])]
    v_idx = [h * dh + int(j) for i, h in enumerate(heads) for j in (range(dh) if v is None else v[i])]
    return torch.tensor(qk_idx, dtype=torch.long), torch.tensor(v_idx, dtype=torch.long)


def keep_heads(attn: FullAttention, heads, qk: list | None = None, v: list | None = None) -> None:
    """Keep the listed heads (in that order, with optional within-head orders), physically."""
    qk_idx, v_idx = head_index(attn, heads, qk, v)
    attn.to_q, attn.to_k = _rows(attn.to_q, qk_idx), _rows(attn.to_k, qk_idx)
    attn.to_v, attn.to_out = _rows(attn.to_v, v_idx), _cols(attn.to_out, v_idx)
    attn.n_heads = len(list(heads))


def permute_heads(attn: FullAttention, order, qk: list | None = None, v: list | None = None) -> None:
    """Reorder the heads (and the dimensions inside them); the output is unchanged."""
    assert sorted(int(h) for h in order) == list(range(attn.n_heads)), "order must be a permutation of the heads"
    keep_heads(attn, order, qk, v)


def keep_ffn(ffn: FeedForward, neurons) -> None:
    """Keep the listed hidden neurons of the FFN (in that order), physically."""
    idx = torch.as_tensor([int(i) for i in neurons], dtype=torch.long)
    ffn.fc1, ffn.fc2 = _rows(ffn.fc1, idx), _cols(ffn.fc2, idx)


def permute_ffn(ffn: FeedForward, order) -> None:
    """Reorder the FFN's hidden neurons; the output is unchanged."""
    assert sorted(int(i) for i in order) == list(range(ffn.fc1.out_features)), "order must be a permutation"
    keep_ffn(ffn, order)


def keep_layers(encoder: TransformerEncoder, n: int) -> None:
    """Keep the first ``n`` layers of the encoder."""
    assert 1 <= n <= len(encoder.layers), f"an encoder keeps 1..{len(encoder.layers)} layers, got {n}"
    encoder.layers = nn.ModuleList(list(encoder.layers)[:n])


def block_shapes(network: nn.Module) -> dict:
    """The structure of the plain blocks: per encoder its depth, per block its heads and FFN width (JSON-able)."""
    return {name: [{"n_heads": b.mixer.n_heads, "head_dim": head_dim(b.mixer), "d_ff": b.ffn.fc1.out_features}
                   for b in enc.layers] for name, enc in find_encoders(network).items()}


def apply_block_shapes(network: nn.Module, shapes: dict) -> nn.Module:
    """Shrink a freshly built network to ``shapes`` (from :func:`block_shapes`), so a state dict fits it."""
    encoders = find_encoders(network)
    for name, layers in shapes.items():
        enc = encoders[name]
        keep_layers(enc, len(layers))
        for block, shape in zip(enc.layers, layers):
            if block.mixer.n_heads != shape["n_heads"] or head_dim(block.mixer) != shape["head_dim"]:
                assert head_dim(block.mixer) == shape["head_dim"], "head width cannot change"
                keep_heads(block.mixer, range(shape["n_heads"]))
            if block.ffn.fc1.out_features != shape["d_ff"]:
                keep_ffn(block.ffn, range(shape["d_ff"]))
    return network
