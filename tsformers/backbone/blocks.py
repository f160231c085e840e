"""Residual blocks, encoder stacks and gates.

A block wraps a token mixer, a feed-forward network and two norms in residual
connections, each built by name from the registry (its slots ``mixer``, ``ffn`` and
``norm``); a stack repeats blocks. Each block costs its mixer's token cost plus
O(N·D·d_ff) for the FFN.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from . import mixers  # noqa: F401  (registers every mixer, "full" the default)
from .registry import available, build, build_class, order_free, register, with_block_slot

__all__ = ["BLOCK_SLOTS", "FeedForward", "PostNormBlock", "PreNormBlock", "SigmoidGate", "TransformerEncoder",
           "block_part_names", "block_parts", "build_norm", "stacks_for_parts"]

#: The slots of the standard block besides its mixer, with their defaults (the Transformer's parts).
#: A stack whose blocks have them declares ``block_slots``; the estimators pass a choice only to those.
BLOCK_SLOTS = {"ffn": "mlp", "norm": "layernorm"}

# LayerNorm (Ba et al., 2016) is the default of the ``norm`` slot; registered as torch's own class, so
# that a network built with it is the one built before the slot existed (same modules, same weights)
register("norm", "layernorm")(nn.LayerNorm)


def build_norm(name: str, d_model: int, *, eps: float = 1e-5, **kwargs: Any) -> nn.Module:
    """The normalisation registered as ``name`` under kind "norm", over the last dim D of (..., D) tokens."""
    return build_class("norm", name)(d_model, eps=eps, **kwargs)

def block_parts(stack: str, *, unordered: str | None = None, **chosen: str) -> dict[str, str]:
    """The block slots (``ffn=``, ``norm=`` in ``chosen``) to pass to ``stack``: all of them if its blocks have them.

    A stack with blocks of its own (no ``block_slots``) takes only the defaults of
    :data:`BLOCK_SLOTS` (it builds its own FFN and norms); any other choice is refused, naming
    the stacks whose blocks have the slot. An unknown name lists the registered ones. With
    ``unordered`` (the reason the tokens are an unordered set, e.g. "PV-Client's tokens are
    variates"), a part that reads token order is refused too, naming those that do not.
    """
    for slot, name in chosen.items():
        build_class(slot, name)  # an unknown name lists the registered ones
        # (a part that does not declare requires_order, torch's LayerNorm, works token by token)
        if unordered is not None and getattr(build_class(slot, name), "requires_order", False):
            raise ValueError(f"{slot}={name!r} needs ordered tokens, but {unordered}, an unordered set; "
                             f"pick an {slot} from {order_free(slot)}")
    slots = getattr(build_class("stack", stack), "block_slots", frozenset())
    for slot, name in chosen.items():
        if slot not in slots and name != BLOCK_SLOTS[slot]:
            raise ValueError(f"{slot}={name!r} needs a stack whose blocks have a {slot!r} slot, and "
                             f"stack={stack!r} builds its own; pick a stack from {with_block_slot(slot)} "
                             f"or keep {slot}={BLOCK_SLOTS[slot]!r}")
    return {slot: name for slot, name in chosen.items() if slot in slots}


def _has_slot(stack: str, slot: str) -> bool:
    return slot in getattr(build_class("stack", stack), "block_slots", ())


def block_part_names(slot: str, stacks: Iterable[str], *, unordered: bool = False) -> list[str]:
    """The names :func:`block_parts` accepts in ``slot`` (``"ffn"``, ``"norm"``) for the blocks of all ``stacks``.

    Every registered part of the kind where each stack's blocks have the slot (with
    ``unordered``, only the parts that do not read token order); else the default alone, which
    a stack with blocks of its own builds itself.
    """
    if not all(_has_slot(stack, slot) for stack in stacks):
        return [BLOCK_SLOTS[slot]]
    return [name for name in available(slot)
            if not (unordered and getattr(build_class(slot, name), "requires_order", False))]


def stacks_for_parts(stacks: Iterable[str], **chosen: str) -> list[str]:
    """The names among ``stacks`` that :func:`block_parts` accepts with the ``chosen`` block parts.

    With the defaults every stack; with another ``ffn`` or ``norm`` only the stacks whose
    blocks have that slot (:func:`~tsformers.backbone.with_block_slot`).
    """
    custom = [slot for slot, name in chosen.items() if name != BLOCK_SLOTS[slot]]
    return [stack for stack in stacks if all(_has_slot(stack, slot) for slot in custom)]


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
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(d_ff, d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.dropout(self.act(self.fc1(x))))  # (..., D) -> (..., d_ff) -> (..., D)


class _MixerFFNBlock(nn.Module):
    """The parts shared by the pre- and post-norm blocks: two norms, mixer, FFN, two dropouts.

    Each part is built by its registry name: ``mixer`` (kind "mixer"), ``ffn`` (kind "ffn":
    "mlp", the default, "conv", "cofrnet") and ``norm`` (kind "norm": "layernorm", the
    default, "prepbn"), with ``*_kwargs`` for the part's own options.
    """

    def __init__(
        self,
        d_model: int,
        *,
        n_heads: int,
        d_ff: int,
        dropout: float = 0.1,
        activation: str = "relu",
        mixer: str = "full",
        mixer_kwargs: dict[str, Any] | None = None,
        causal: bool = False,
        eps: float = 1e-5,
        ffn: str = "mlp",
        ffn_kwargs: dict[str, Any] | None = None,
        norm: str = "layernorm",
        norm_kwargs: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.norm1 = build_norm(norm, d_model, eps=eps, **(norm_kwargs or {}))
        self.mixer = build("mixer", mixer, d_model=d_model, n_heads=n_heads, dropout=dropout, causal=causal,
                           **(mixer_kwargs or {}))
        self.dropout1 = nn.Dropout(dropout)
        self.norm2 = build_norm(norm, d_model, eps=eps, **(norm_kwargs or {}))
        self.ffn = build("ffn", ffn, d_model=d_model, d_ff=d_ff, dropout=dropout, activation=activation,
                         **(ffn_kwargs or {}))
        self.dropout2 = nn.Dropout(dropout)


@register("block", "prenorm")
class PreNormBlock(_MixerFFNBlock):
    """Pre-LN (identity-map) Transformer encoder layer with mixer, ffn and norm slots.

    x = x + drop(mixer(LN1(x))); x = x + drop(ffn(LN2(x))) (LN: the ``norm`` slot). Xiong et al., "On Layer
    Normalization in the Transformer Architecture", ICML 2020. With mixer "full" it
    computes the same function as ``nn.TransformerEncoderLayer(..., norm_first=True,
    batch_first=True)``. Cost: the mixer's, plus O(N·D·d_ff). x: (B, N, D) -> (B, N, D).
    """

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.dropout1(self.mixer(self.norm1(x)))
        return x + self.dropout2(self.ffn(self.norm2(x)))


@register("block", "postnorm")
class PostNormBlock(_MixerFFNBlock):
    """Post-LN Transformer encoder layer with mixer, ffn and norm slots (Vaswani et al., NeurIPS 2017).

    x = LN1(x + drop(mixer(x))); x = LN2(x + drop(ffn(x))). With mixer "full" it computes
    the same function as ``nn.TransformerEncoderLayer(..., norm_first=False, batch_first=True)``.
    Cost: the mixer's, plus O(N·D·d_ff). x: (B, N, D) -> (B, N, D).
    """

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm1(x + self.dropout1(self.mixer(x)))
        return self.norm2(x + self.dropout2(self.ffn(x)))


@register("stack", "standard")
class TransformerEncoder(nn.Module):
    """A stack of ``n_layers`` pre-LN (or post-LN) blocks, optionally followed by a final norm.

    The plain sequential stack of Vaswani et al. (NeurIPS 2017); the default of every
    estimator's ``stack`` slot. ``ffn`` and ``norm`` fill every block's slots (the final
    norm is the ``norm`` too: PRepBN replaces every LayerNorm). Cost: n_layers times the
    block's. x: (B, N, D) -> (B, N, D).
    """

    requires_order = False  # its blocks add no positions: order comes only from the mixer
    block_slots = frozenset(BLOCK_SLOTS)

    def __init__(
        self,
        *,
        d_model: int,
        n_heads: int,
        d_ff: int,
        n_layers: int,
        dropout: float = 0.1,
        activation: str = "relu",
        mixer: str = "full",
        mixer_kwargs: dict[str, Any] | None = None,
        causal: bool = False,
        norm_first: bool = True,
        final_norm: bool = False,
        ffn: str = "mlp",
        ffn_kwargs: dict[str, Any] | None = None,
        norm: str = "layernorm",
        norm_kwargs: dict[str, Any] | None = None,
    ):
        super().__init__()
        assert n_layers >= 1, f"n_layers must be at least 1, got {n_layers}"
        block = PreNormBlock if norm_first else PostNormBlock
        self.layers = nn.ModuleList(
            block(
                d_model,
                n_heads=n_heads,
                d_ff=d_ff,
                dropout=dropout,
                activation=activation,
                mixer=mixer,
                mixer_kwargs=mixer_kwargs,
                causal=causal,
                ffn=ffn,
                ffn_kwargs=ffn_kwargs,
                norm=norm,
                norm_kwargs=norm_kwargs,
            )
            for _ in range(n_layers)
        )
        self.norm = build_norm(norm, d_model, **(norm_kwargs or {})) if final_norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)


@register("gate", "sigmoid")
class SigmoidGate(nn.Module):
    """Elementwise sigmoid gate fusing two representations: g = sigmoid(W1 a + W2 b), g*a + (1-g)*b.

    Gateformer (Lan & Oermann, ICML 2025), used twice: temporal (global vs. patch
    embedding) and variate-wise (before vs. after variate attention). Two
    Linear(D, D) with bias. Cost O(N·D^2), no token mixing. a, b: (..., D) -> (..., D).
    """

    def __init__(self, d_model: int):
        super().__init__()
        self.proj_a = nn.Linear(d_model, d_model)
        self.proj_b = nn.Linear(d_model, d_model)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        g = torch.sigmoid(self.proj_a(a) + self.proj_b(b))
        return g * a + (1 - g) * b
