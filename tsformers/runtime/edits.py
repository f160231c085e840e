"""Replaying recorded network surgery: the modules a compressed network may hold, and :func:`apply_edits`.

A compressed network (:mod:`tsformers.compress`) differs from the one its
estimator builds from its parameters: fewer heads, narrower layers, removed
sub-layers, factorised or int8 weights. Compression records every change as a
JSON edit (:mod:`tsformers.compress.structure` writes them); a saved model keeps
the list in ``config.json`` (``network_edits``) and loading replays it here on
the freshly built network before ``load_state_dict``. The records hold module
types by name and constructor arguments only, never pickled objects:

- ``{"op": "replace", "path": "temporal_encoder.layers.0.ffn.fc1", "type": "Linear",
  "kwargs": {"in_features": 16, "out_features": 9, "bias": true}}``
- ``{"op": "wrap", "path": "variate_encoder.layers.0.mixer", "type": "HardTopKAttention", "kwargs": {"k": 2}}``
- ``{"op": "attr", "path": "variate_encoder.layers.0.mixer", "name": "n_heads", "value": 3}``

This module sits below the estimators (it imports torch and backbone parts
only), so loading a compressed model imports no compression code. A damaged
record is a ``ValueError`` naming it, never a raw ``TypeError`` or ``KeyError``.
"""
from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tsformers.backbone.lmu import TokenBatchNorm
from tsformers.backbone.dropout import dropout
from tsformers.runtime.quant import QuantLinear

__all__ = ["Bias", "ChannelAffine", "FactorizedLinear", "HardTopKAttention", "Int8Linear", "Zero", "apply_edits",
           "module_spec", "module_types", "register_module_type"]

# -- modules that compression installs -------------------------------------------------------


class Zero(nn.Module):
    """A removed sub-layer (attention, FFN): zeros shaped like its input, so ``x + Zero(x) = x``.

    ``with_state=True`` for sub-layers of the streaming protocol (``forward(x, state) -> (y, state)``,
    e.g. LMUFormer's ``ConvFFN``): returns ``(zeros, {})`` and has an empty ``init_state``. Costs nothing.
    """

    def __init__(self, with_state: bool = False):
        super().__init__()
        self.with_state = with_state

    def init_state(self, batch_size: int) -> dict:
        return {}

    def forward(self, x: Tensor, *args, **kwargs):
        out = torch.zeros_like(x)
        return (out, {}) if self.with_state else out

    def spec(self) -> dict:
        return {"with_state": self.with_state}


class Bias(nn.Module):
    """A sub-layer whose every unit was removed: its output bias, broadcast to the input's shape.

    Exactly what masking all heads (all neurons) of a layer leaves: the output projection's bias.
    """

    def __init__(self, d_model: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(d_model))

    def forward(self, x: Tensor, *args, **kwargs) -> Tensor:
        return torch.zeros_like(x) + self.bias

    def spec(self) -> dict:
        return {"d_model": self.bias.numel()}


class ChannelAffine(nn.Module):
    """x ⊙ weight + bias over the last axis: an eval-mode batch norm with nothing to fold into."""

    def __init__(self, d_model: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.weight + self.bias

    def spec(self) -> dict:
        return {"d_model": self.weight.numel()}


class HardTopKAttention(nn.Module):
    """Selective hard attention (AxFormer): a wrapped full attention that keeps the top ``k`` scores per query.

    The other scores are set to -inf before the softmax, so every attention row has
    exactly ``min(k, keys)`` non-zeros (``attention_weights``). The wrapped module's
    projections (``to_q``, ``to_k``, ``to_v``, ``to_out``, ``n_heads``) are used as they
    are, pruned or not. Scores still cost O(N²); the scale is 1/sqrt(d_qk), as
    ``scaled_dot_product_attention``'s.
    """

    def __init__(self, attention: nn.Module, k: int):
        super().__init__()
        assert k >= 1, f"k must be positive, got {k}"
        self.attention, self.k = attention, int(k)

    def attention_weights(self, x: Tensor, kv: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        """The attention weights (B, h, N, M): each row sums to 1 and has exactly min(k, allowed keys) non-zeros."""
        att = self.attention
        kv = x if kv is None else kv
        h = att.n_heads
        q = att.to_q(x).unflatten(-1, (h, -1)).transpose(1, 2)                 # (B, h, N, d_qk)
        k = att.to_k(kv).unflatten(-1, (h, -1)).transpose(1, 2)                # (B, h, M, d_qk)
        scores = q @ k.mT / math.sqrt(q.shape[-1])                             # (B, h, N, M)
        allowed = torch.ones(scores.shape[-2:], dtype=torch.bool, device=x.device)
        if getattr(att, "causal", False):
            allowed = allowed.tril()
        if mask is not None:
            allowed = allowed & mask
        scores = scores.masked_fill(~allowed, float("-inf"))
        keep = min(self.k, scores.shape[-1])
        top = scores.topk(keep, dim=-1).indices
        chosen = torch.zeros_like(scores, dtype=torch.bool).scatter(-1, top, True) & allowed.expand_as(scores)
        return torch.softmax(scores.masked_fill(~chosen, float("-inf")), dim=-1)

    def forward(self, x: Tensor, kv: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        att = self.attention
        weights = self.attention_weights(x, kv, mask)
        if self.training and att.dropout:
            weights = dropout(weights, att.dropout)
        v = att.to_v(x if kv is None else kv).unflatten(-1, (att.n_heads, -1)).transpose(1, 2)  # (B, h, M, d_v)
        return att.to_out((weights @ v).transpose(1, 2).flatten(-2))             # (B, N, D)

    def spec(self) -> dict:
        return {"k": self.k}


class FactorizedLinear(nn.Module):
    """A Linear whose weight is W = D·S (DSFormer): dense D (out × rank), sparse S (rank × in), and a bias.

    S is stored compactly: its ``nnz`` values and their flat positions in the (rank × in)
    matrix (a buffer), so the parameters are out·rank + nnz (+ out for the bias).
    ``forward`` rebuilds S densely once per call, then x ↦ D(Sx) + b.
    """

    def __init__(self, in_features: int, out_features: int, rank: int, nnz: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.dense = nn.Parameter(torch.zeros(out_features, rank))
        self.values = nn.Parameter(torch.zeros(nnz))
        self.register_buffer("positions", torch.zeros(nnz, dtype=torch.long))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def sparse(self) -> Tensor:
        """S as a dense (rank, in) tensor."""
        flat = self.values.new_zeros(self.rank * self.in_features).index_put((self.positions,), self.values)
        return flat.view(self.rank, self.in_features)

    @property
    def weight(self) -> Tensor:
        """W = D·S (out, in), for code that reads a Linear's weight (its dtype, device or values)."""
        return self.dense @ self.sparse()

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(F.linear(x, self.sparse()), self.dense, self.bias)

    def flop_adjustment(self, inputs: tuple, output: Tensor) -> int:
        """The counter sees a dense (rank × in) product; S costs only its non-zeros."""
        rows = output.numel() // self.out_features
        return 2 * rows * (self.values.numel() - self.rank * self.in_features)

    def spec(self) -> dict:
        return {"in_features": self.in_features, "out_features": self.out_features, "rank": self.rank,
                "nnz": self.values.numel(), "bias": self.bias is not None}


class Int8Linear(nn.Module):
    """A dynamically quantised Linear (int8 weights, activations quantised per call), stored as plain tensors.

    Made from the modules of ``torch.ao.quantization.quantize_dynamic`` (:meth:`from_quantized`):
    the state dict holds the int8 weight, its scale and zero point (per tensor) and the
    float bias, so ``torch.load(weights_only=True)`` reads it; the packed weight that
    ``torch.ops.quantized.linear_dynamic`` needs is rebuilt on first use after loading.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("weight_int8", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones((), dtype=torch.float64))
        self.register_buffer("weight_zero_point", torch.zeros((), dtype=torch.long))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)
        self._packed = None

    @classmethod
    def from_quantized(cls, module: nn.Module) -> Int8Linear:
        """From a ``torch.ao.nn.quantized.dynamic.Linear`` with a per-tensor qint8 weight."""
        weight, bias = module.weight(), module.bias()
        if weight.qscheme() != torch.per_tensor_affine:
            raise ValueError(f"only per-tensor int8 weights are stored, got {weight.qscheme()}")
        new = cls(module.in_features, module.out_features, bias=bias is not None)
        new.weight_int8.copy_(weight.int_repr())
        new.weight_scale.fill_(weight.q_scale())
        new.weight_zero_point.fill_(weight.q_zero_point())
        if bias is not None:
            new.bias.copy_(bias.detach())
        return new

    @property
    def weight(self) -> Tensor:
        """The dequantised float32 weight (out, in), for code that reads a Linear's weight."""
        return ((self.weight_int8.double() - self.weight_zero_point) * self.weight_scale).float()

    def _pack(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            weight = torch._make_per_tensor_quantized_tensor(self.weight_int8, float(self.weight_scale),
                                                             int(self.weight_zero_point))
            return torch.ops.quantized.linear_prepack(weight, self.bias)

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._packed = None

    def forward(self, x: Tensor) -> Tensor:
        if self._packed is None:
            self._packed = self._pack()
        return torch.ops.quantized.linear_dynamic(x.contiguous(), self._packed)

    def flop_adjustment(self, inputs: tuple, output: Tensor) -> int:
        """The counter does not see the quantized kernel: count its multiply-adds as a Linear's."""
        return 2 * (output.numel() // self.out_features) * self.in_features * self.out_features

    def spec(self) -> dict:
        return {"in_features": self.in_features, "out_features": self.out_features, "bias": self.bias is not None}


# -- specs: how to rebuild a module from JSON ----------------------------------------------------


def _linear_spec(m: nn.Linear) -> dict:
    return {"in_features": m.in_features, "out_features": m.out_features, "bias": m.bias is not None}


def _conv1d_spec(m: nn.Conv1d) -> dict:
    return {"in_channels": m.in_channels, "out_channels": m.out_channels, "kernel_size": m.kernel_size[0],
            "stride": m.stride[0], "padding": m.padding[0] if isinstance(m.padding, tuple) else m.padding,
            "dilation": m.dilation[0], "groups": m.groups, "bias": m.bias is not None}


def _bn_spec(m: nn.BatchNorm1d) -> dict:
    return {"num_features": m.num_features, "eps": m.eps, "momentum": m.momentum, "affine": m.affine,
            "track_running_stats": m.track_running_stats}


def _layernorm_spec(m: nn.LayerNorm) -> dict:
    return {"normalized_shape": list(m.normalized_shape), "eps": m.eps,
            "elementwise_affine": m.elementwise_affine, "bias": m.bias is not None}


_REGISTERED: dict = {}  # types added by register_module_type


def register_module_type(cls: type, spec=None) -> type:
    """Let edits install (and ``load`` rebuild) modules of ``cls``; usable as a class decorator.

    ``spec(module) -> dict`` gives JSON constructor arguments; by default the module's own
    ``spec()`` method. A wrapper type (``wrap``) takes the wrapped module first. The name
    recorded is the class name, so it must be unique and stable across versions.
    """
    _REGISTERED[cls.__name__] = (cls, spec or (lambda m: m.spec()))
    return cls


def module_types() -> dict:
    """Module types an edit may name: class and the function giving its constructor arguments."""
    own = {c.__name__: (c, lambda m: m.spec()) for c in (Zero, Bias, ChannelAffine, FactorizedLinear, Int8Linear,
                                                         HardTopKAttention, QuantLinear)}
    return {"Linear": (nn.Linear, _linear_spec), "Conv1d": (nn.Conv1d, _conv1d_spec),
            "BatchNorm1d": (nn.BatchNorm1d, _bn_spec), "TokenBatchNorm": (TokenBatchNorm, _bn_spec),
            "LayerNorm": (nn.LayerNorm, _layernorm_spec), "Identity": (nn.Identity, lambda m: {}), **own,
            **_REGISTERED}


def module_spec(module: nn.Module) -> tuple[str, dict]:
    """``(type name, constructor kwargs)`` of a module an edit can rebuild; ValueError for any other type."""
    name = type(module).__name__
    types = module_types()
    if name not in types or type(module) is not types[name][0]:
        raise ValueError(f"cannot record a {name} in a network edit; supported: {sorted(types)}")
    return name, types[name][1](module)


# -- replaying edits -----------------------------------------------------------------------------

_ATTRIBUTE_TYPES = (bool, int, float, str)  # what an "attr" edit may set: plain values, as set_attr records


def apply_edits(network: nn.Module, edits: list) -> nn.Module:
    """Replay recorded edits on a freshly built network (in place, in order); the weights come afterwards.

    Raises
    ------
    ValueError
        An edit that is not a record of :mod:`tsformers.compress.structure`: an unknown operation or
        module type, a path the network does not have, constructor arguments the type refuses, or an
        attribute that is not a plain value of the network.
    """
    if not isinstance(edits, list):
        raise ValueError(f"network edits must be a list of records, got {type(edits).__name__}")
    types = module_types()
    for number, edit in enumerate(edits):
        try:
            _apply(network, edit, types)
        except (AttributeError, AssertionError, KeyError, TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f"network edit {number} ({_short(edit)}) cannot be replayed: {err}") from None
    return network


def _apply(network: nn.Module, edit, types: dict) -> None:
    if not isinstance(edit, dict) or not isinstance(edit.get("path"), str):
        raise ValueError("a record is a JSON object with a string path")
    op, path = edit.get("op"), edit["path"]
    if op in ("replace", "wrap"):
        if edit.get("type") not in types:
            raise ValueError(f"unknown module type {edit.get('type')!r}; known: {sorted(types)}")
        if not isinstance(edit.get("kwargs"), dict):
            raise ValueError("its kwargs are not a JSON object")
        cls = types[edit["type"]][0]
        old = network.get_submodule(path)  # AttributeError for a path the network does not have
        network.set_submodule(path, cls(**edit["kwargs"]) if op == "replace" else cls(old, **edit["kwargs"]))
    elif op == "attr":
        owner, name, value = network.get_submodule(path), edit.get("name"), edit.get("value")
        current = getattr(owner, name) if isinstance(name, str) else None
        if not (isinstance(current, _ATTRIBUTE_TYPES) and type(value) is type(current)):
            raise ValueError(f"{name!r} is not a plain {type(value).__name__} attribute of {path or 'the network'}")
        setattr(owner, name, value)
    else:
        raise ValueError(f"unknown operation {op!r}; known: attr, replace, wrap")


def _short(edit, limit: int = 120) -> str:
    text = repr(edit)
    return text if len(text) <= limit else text[:limit] + "..."
