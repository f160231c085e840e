"""Batch-norm folding: eval-mode BatchNorm merged into the neighbouring Linear or Conv1d (``fold_bn``)."""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from tsformers.compress.core import derive, one_network
from tsformers.compress.structure import ChannelAffine, install

__all__ = ["fold_bn", "fold_bn_network"]


def _bn_affine(bn: nn.BatchNorm1d) -> tuple[Tensor, Tensor]:
    """(s, t) with eval-mode bn(x) = s ⊙ x + t."""
    inv = torch.rsqrt(bn.running_var + bn.eps)
    gamma = bn.weight if bn.weight is not None else torch.ones_like(inv)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(inv)
    return gamma * inv, beta - bn.running_mean * gamma * inv


@torch.no_grad()
def _after(layer: nn.Module, s: Tensor, t: Tensor) -> nn.Module:
    """``layer`` followed by x ↦ s ⊙ x + t over its output channels, as one layer (Linear or Conv1d)."""
    if isinstance(layer, nn.Linear):
        new = nn.Linear(layer.in_features, layer.out_features, bias=True)
        new.weight.copy_(layer.weight * s[:, None])
    else:
        new = nn.Conv1d(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                        padding=layer.padding, dilation=layer.dilation, groups=layer.groups, bias=True)
        new.weight.copy_(layer.weight * s[:, None, None])
    bias = layer.bias if layer.bias is not None else torch.zeros_like(s)
    new.bias.copy_(s * bias + t)
    return new


@torch.no_grad()
def _before(linear: nn.Linear, s: Tensor, t: Tensor) -> nn.Linear:
    """x ↦ s ⊙ x + t followed by ``linear``, as one Linear: (W diag(s)) x + (W t + b)."""
    new = nn.Linear(linear.in_features, linear.out_features, bias=True)
    new.weight.copy_(linear.weight * s)
    new.bias.copy_(linear.weight @ t + (linear.bias if linear.bias is not None else 0))
    return new


def fold_bn_network(network: nn.Module, edits: list) -> list[str]:
    """Fold every foldable eval-mode batch norm of ``network`` in place; return the folded norms' paths.

    - LMUFormer: ``fc1``+``norm1`` and ``fc2``+``norm2`` of each ConvFFN, ``proj``+``proj_norm`` of
      each block; spiking tokenizers also conv+norm (the non-spiking tokenizer's norms follow a ReLU
      and feed zero-padded convolutions: they stay).
    - PRepBN (SLAB) after its decay (λ = 0): in a MetaFormer block, ``norm2`` into the FFN's ``fc1``
      and ``norm1`` into a full attention's q, k and v projections; elsewhere it becomes a per-channel
      affine map (no LayerNorm, no statistics).
    """
    from tsformers.backbone.lmu import TokenBatchNorm
    from tsformers.backbone.mixers.full import FullAttention
    from tsformers.backbone.mixers.metaformer import MetaFormerBlock
    from tsformers.backbone.mixers.slab import PRepBN
    from tsformers.models.lmuformer import ConvFFN, LMUFormerBlock, LMUTokenizer

    folded = []

    def fold_pair(layer_path: str, norm_path: str) -> None:
        layer, norm = network.get_submodule(layer_path), network.get_submodule(norm_path)
        if not isinstance(norm, (TokenBatchNorm, nn.BatchNorm1d)) or not norm.track_running_stats:
            return
        install(network, layer_path, _after(layer, *_bn_affine(norm)), edits)
        install(network, norm_path, nn.Identity(), edits)
        folded.append(norm_path)

    for path, m in list(network.named_modules()):
        pre = f"{path}." if path else ""
        if type(m) is ConvFFN:
            fold_pair(pre + "fc1", pre + "norm1")
            fold_pair(pre + "fc2", pre + "norm2")
        elif type(m) is LMUFormerBlock:
            fold_pair(pre + "proj", pre + "proj_norm")
        elif type(m) is LMUTokenizer and m.spiking:
            for i in range(len(m.convs)):
                fold_pair(f"{pre}convs.{i}.conv", f"{pre}norms.{i}")
            fold_pair(pre + "rpe_conv.conv", pre + "rpe_norm")
    for path, m in list(network.named_modules()):
        if type(m) is not PRepBN or m.lam != 0.0:
            continue
        parent_path, _, name = path.rpartition(".")
        parent = network.get_submodule(parent_path) if parent_path else network
        s, t = (v.detach() for v in m.repbn.affine())
        pre = f"{parent_path}." if parent_path else ""
        if type(parent) is MetaFormerBlock and name == "norm2" and isinstance(parent.ffn.fc1, nn.Linear):
            install(network, pre + "ffn.fc1", _before(parent.ffn.fc1, s, t), edits)
            install(network, path, nn.Identity(), edits)
        elif type(parent) is MetaFormerBlock and name == "norm1" and type(parent.mixer) is FullAttention:
            for proj in ("to_q", "to_k", "to_v"):
                install(network, f"{pre}mixer.{proj}", _before(getattr(parent.mixer, proj), s, t), edits)
            install(network, path, nn.Identity(), edits)
        else:
            affine = ChannelAffine(len(s))
            with torch.no_grad():
                affine.weight.copy_(s)
                affine.bias.copy_(t)
            install(network, path, affine, edits)
        folded.append(path)
    return folded


def fold_bn(estimator, df=None):
    """Fold eval-mode batch norms into their neighbouring layers; the forecasts stay the same (to ~1e-6).

    See :func:`fold_bn_network` for the patterns (LMUFormer's batch norms; SLAB's PRepBN
    after its decay). ``df`` is not needed (accepted for the common signature).
    Raises ValueError when the network has nothing to fold (Gateformer, PV-Client,
    GTrXL and ATLAS use LayerNorm, which depends on each token's own statistics).

    References
    ----------
    Guo et al., "SLAB: Efficient Transformers with Simplified Linear Attention and
    Progressive Re-parameterized Batch Normalization", ICML 2024.
    """
    network = copy.deepcopy(one_network(estimator)).eval()
    edits: list = []
    folded = fold_bn_network(network, edits)
    if not folded:
        raise ValueError(f"{type(estimator).__name__}'s network has no eval-mode batch norm to fold.")
    return derive(estimator, network, edits, {"method": "fold_bn", "folded": folded})
