"""The prunable structures of a network: attention heads (with their QK and V dimensions) and FFN neurons.

Found by module type, wherever they sit (encoder stacks, wrappers such as the
static residual or quantile head):

- attention: :class:`~tsformers.backbone.mixers.full.FullAttention` (Gateformer's temporal
  and variate encoders, PV-Client's encoder, any estimator whose mixer is ``"full"``),
  also inside a :class:`~tsformers.compress.structure.HardTopKAttention`;
- MLPs: :class:`~tsformers.backbone.feedforward.FeedForward` (Gateformer, PV-Client, GTrXL,
  ATLAS, MetaFormer blocks) and LMUFormer's ``ConvFFN`` (its hidden batch norm is
  sliced with the neurons).

Masking (for scoring) and physical removal act on the same units, so a score
measured with a mask is what the pruned network computes.
"""
from __future__ import annotations

import copy
import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from tsformers.backbone.feedforward import FeedForward
from tsformers.backbone.mixers.full import FullAttention
from tsformers.compress.structure import Bias, install, set_attr

__all__ = ["AttentionUnit", "MLPUnit", "attention_units", "masked", "mlp_units", "prune_attention", "prune_mlp",
           "remove"]


@dataclass
class AttentionUnit:
    """A multi-head attention at ``path``: ``n_heads`` heads of ``d_qk`` query/key and ``d_v`` value dims."""

    path: str
    module: FullAttention

    @property
    def n_heads(self) -> int:
        return self.module.n_heads

    @property
    def d_qk(self) -> int:
        return self.module.to_q.out_features // self.n_heads

    @property
    def d_v(self) -> int:
        return self.module.to_v.out_features // self.n_heads


@dataclass
class MLPUnit:
    """An MLP at ``path`` whose ``hidden`` neurons are fc1's outputs (and ``norm``'s channels) and fc2's inputs."""

    path: str
    module: nn.Module
    norm: str | None = None  # the hidden batch norm's attribute name (LMUFormer's ConvFFN)

    @property
    def hidden(self) -> int:
        return self.module.fc2.in_features


def attention_units(network: nn.Module) -> list[AttentionUnit]:
    """Every full attention of ``network``, in module order (the forward order of the estimators' networks)."""
    return [AttentionUnit(path, m) for path, m in network.named_modules() if type(m) is FullAttention]


def mlp_units(network: nn.Module) -> list[MLPUnit]:
    """Every FeedForward and ConvFFN of ``network`` that still has neurons."""
    from tsformers.models.lmuformer import ConvFFN

    units = []
    for path, m in network.named_modules():
        if type(m) is FeedForward and isinstance(m.fc1, nn.Linear) and isinstance(m.fc2, nn.Linear):
            units.append(MLPUnit(path, m))
        elif type(m) is ConvFFN and isinstance(m.fc1, nn.Linear) and isinstance(m.fc2, nn.Linear):
            units.append(MLPUnit(path, m, norm="norm1"))
    return units


# -- masks (scoring) -------------------------------------------------------------------------------


@contextmanager
def masked(heads: dict[str, Tensor] | None = None, neurons: dict[str, Tensor] | None = None,
           units: dict[str, nn.Module] | None = None):
    """Multiply the inputs of output projections by masks while inside the block.

    ``heads[path]``: (n_heads,) for the attention at ``path`` (applied to its ``to_out``
    input, per head); ``neurons[path]``: (hidden,) for the MLP at ``path`` (its ``fc2``
    input). ``units`` maps paths to modules.
    """
    handles = []

    def hook(mask: Tensor):
        def pre(module, args):
            return (args[0] * mask.to(args[0].dtype),) + tuple(args[1:])
        return pre

    try:
        for path, mask in (heads or {}).items():
            att = units[path]
            d_v = att.to_v.out_features // att.n_heads
            handles.append(att.to_out.register_forward_pre_hook(hook(mask.repeat_interleave(d_v))))
        for path, mask in (neurons or {}).items():
            handles.append(units[path].fc2.register_forward_pre_hook(hook(mask)))
        yield
    finally:
        for h in handles:
            h.remove()


# -- physical removal ---------------------------------------------------------------------------------


def _linear(old: nn.Linear, rows=None, cols=None, scale: float = 1.0) -> nn.Linear:
    """A new Linear holding the ``rows`` (outputs) and ``cols`` (inputs) of ``old``, weights times ``scale``."""
    w = old.weight.detach()
    b = None if old.bias is None else old.bias.detach()
    if rows is not None:
        w, b = w[rows], None if b is None else b[rows]
    if cols is not None:
        w = w[:, cols]
    new = nn.Linear(w.shape[1], w.shape[0], bias=b is not None, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        new.weight.copy_(w * scale)
        if b is not None:
            new.bias.copy_(b * scale)
    return new


def _bn(old: nn.BatchNorm1d, channels) -> nn.BatchNorm1d:
    new = type(old)(len(channels), eps=old.eps, momentum=old.momentum, affine=old.affine,
                    track_running_stats=old.track_running_stats)
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            if getattr(old, name) is not None:
                getattr(new, name).copy_(getattr(old, name)[channels])
        if old.num_batches_tracked is not None:
            new.num_batches_tracked.copy_(old.num_batches_tracked)
    return new.train(old.training)


def prune_mlp(network: nn.Module, unit: MLPUnit, keep, edits: list) -> None:
    """Keep only the neurons ``keep`` (indices) of ``unit``; with none left the MLP becomes its fc2 bias."""
    keep = torch.as_tensor(sorted(int(i) for i in keep), dtype=torch.long)
    m = unit.module
    if len(keep) == 0:
        from tsformers.compress.structure import Zero
        from tsformers.models.lmuformer import ConvFFN

        if type(m) is ConvFFN:  # the ConvFFN's fc2 feeds a batch norm: no exact constant; drop the sub-layer
            install(network, unit.path, Zero(with_state=True), edits)
            return
        new = Bias(m.fc2.out_features)
        with torch.no_grad():
            new.bias.copy_(m.fc2.bias if m.fc2.bias is not None else torch.zeros(m.fc2.out_features))
        install(network, unit.path, new, edits)
        return
    install(network, f"{unit.path}.fc1", _linear(m.fc1, rows=keep), edits)
    if unit.norm is not None:
        install(network, f"{unit.path}.{unit.norm}", _bn(getattr(m, unit.norm), keep), edits)
    install(network, f"{unit.path}.fc2", _linear(m.fc2, cols=keep), edits)


def prune_attention(network: nn.Module, unit: AttentionUnit, keep_heads, edits: list,
                    qk_keep: list | None = None, v_keep: list | None = None) -> None:
    """Keep the heads ``keep_heads`` of ``unit``; within them, optionally only some QK and V dimensions.

    ``qk_keep[i]`` / ``v_keep[i]``: the dimensions kept in the i-th kept head (the same
    number in every head, as the heads share one reshape). Query weights absorb the
    change of the softmax scale 1/sqrt(d_qk), so the kept scores are unchanged. With no
    head left, the attention becomes its output bias.
    """
    att = unit.module
    heads = sorted(int(h) for h in keep_heads)
    if not heads:
        new = Bias(att.to_out.out_features)
        with torch.no_grad():
            new.bias.copy_(att.to_out.bias if att.to_out.bias is not None else torch.zeros(att.to_out.out_features))
        install(network, unit.path, new, edits)
        return
    d_qk, d_v = unit.d_qk, unit.d_v
    qk_keep = qk_keep or [list(range(d_qk))] * len(heads)
    v_keep = v_keep or [list(range(d_v))] * len(heads)
    assert len({len(k) for k in qk_keep}) == 1 and len({len(k) for k in v_keep}) == 1, \
        "every kept head must keep the same number of QK (and of V) dimensions"
    qk_rows = torch.as_tensor([h * d_qk + j for h, dims in zip(heads, qk_keep) for j in sorted(dims)])
    v_rows = torch.as_tensor([h * d_v + j for h, dims in zip(heads, v_keep) for j in sorted(dims)])
    scale = math.sqrt(len(qk_keep[0]) / d_qk)   # SDPA divides by sqrt(new d_qk): keep q·k / sqrt(old d_qk)
    install(network, f"{unit.path}.to_q", _linear(att.to_q, rows=qk_rows, scale=scale), edits)
    install(network, f"{unit.path}.to_k", _linear(att.to_k, rows=qk_rows), edits)
    install(network, f"{unit.path}.to_v", _linear(att.to_v, rows=v_rows), edits)
    install(network, f"{unit.path}.to_out", _linear(att.to_out, cols=v_rows), edits)
    set_attr(network, unit.path, "n_heads", len(heads), edits)


def remove(network: nn.Module, removals, edits: list | None = None) -> tuple[nn.Module, list]:
    """A pruned copy of ``network`` without the listed structures, and its edits.

    ``removals``: ``(kind, path, index)`` with kind "head" (of the attention at path) or
    "neuron" (of the MLP at path). Paths are those of :func:`attention_units` / :func:`mlp_units`.
    """
    network = copy.deepcopy(network)
    edits = [] if edits is None else edits
    by_unit: dict[tuple[str, str], set] = {}
    for kind, path, index in removals:
        by_unit.setdefault((kind, path), set()).add(int(index))
    atts = {u.path: u for u in attention_units(network)}
    mlps = {u.path: u for u in mlp_units(network)}
    for (kind, path), gone in by_unit.items():
        if kind == "head":
            unit = atts[path]
            prune_attention(network, unit, [h for h in range(unit.n_heads) if h not in gone], edits)
        elif kind == "neuron":
            unit = mlps[path]
            prune_mlp(network, unit, [j for j in range(unit.hidden) if j not in gone], edits)
        else:
            raise ValueError(f"unknown structure kind {kind!r}")
    return network, edits
