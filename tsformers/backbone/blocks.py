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
from .feedforward import FeedForward  # noqa: F401  (registers "mlp", the default of the ffn slot)
from .registry import available, build, build_class, build_mixer, order_free, register, with_block_slot
from .dropout import Dropout

__all__ = ["BLOCK_SLOTS", "PostNormBlock", "PreNormBlock", "SigmoidGate", "TransformerEncoder",
           "block_part_names", "block_parts", "blocks_for_parts", "build_norm", "stack_block", "stacks_for_parts"]

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


def _block_has_slot(block: str | None, slot: str) -> bool:
    """Whether ``block`` (None: the stack's own) has ``slot``; an unknown block is refused where it is built."""
    return block is None or block not in available("block") or slot in build_class("block", block).block_slots


def block_part_names(slot: str, stacks: Iterable[str], *, unordered: bool = False,
                     block: str | None = None) -> list[str]:
    """The names :func:`block_parts` accepts in ``slot`` (``"ffn"``, ``"norm"``) for the blocks of all ``stacks``.

    Every registered part of the kind where each stack's blocks have the slot (with
    ``unordered``, only the parts that do not read token order); else the default alone, which
    a stack with blocks of its own builds itself, as does a ``block`` chosen by name without
    the slot (the MetaFormer block's MLP is fixed).
    """
    if not all(_has_slot(stack, slot) for stack in stacks) or not _block_has_slot(block, slot):
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


def _takes_block(stack: str) -> bool:
    return getattr(build_class("stack", stack), "block_by_name", False)


def blocks_for_parts(stack: str, *, default: str, **chosen: str) -> list[str]:
    """The blocks :func:`stack_block` accepts for ``stack`` with the ``chosen`` block parts (``ffn=``, ``norm=``).

    A stack that repeats a block by name (the standard stack) takes every registered block with
    the standard block's interface (a ``block_slots`` declaration) that has a slot for each
    non-default part; a stack with blocks of its own takes only the caller's ``default``.
    """
    if stack not in available("stack") or not _takes_block(stack):
        return [default]
    return _repeatable_blocks(**chosen)


def _repeatable_blocks(**chosen: str) -> list[str]:
    """The registered blocks with the standard block's interface and a slot for each non-default chosen part."""
    custom = [slot for slot, name in chosen.items() if name != BLOCK_SLOTS[slot]]
    slots = {name: getattr(build_class("block", name), "block_slots", None) for name in available("block")}
    return [name for name, has in slots.items() if has is not None and all(slot in has for slot in custom)]


def _check_block(block: str, **chosen: str) -> type:
    """The class of ``block``, refused (ValueError naming those that fit) unless it fits the ``chosen`` parts."""
    cls = build_class("block", block)  # an unknown name lists the registered ones
    if not hasattr(cls, "block_slots"):
        raise ValueError(f"block={block!r} does not take the standard block's arguments (a mixer by name, d_ff, "
                         f"norm), so no stack repeats it by name; pick one of {_repeatable_blocks()}")
    for slot, name in chosen.items():
        if slot not in cls.block_slots and name != BLOCK_SLOTS[slot]:
            raise ValueError(f"{slot}={name!r} needs a block with a {slot!r} slot, and block={block!r} has none (its "
                             f"{slot} is fixed); keep {slot}={BLOCK_SLOTS[slot]!r} or pick a block from "
                             f"{_repeatable_blocks(**{slot: name})}")
    return cls


def stack_block(stack: str, block: str, *, default: str, **chosen: str) -> dict[str, str]:
    """The ``block=`` to pass to ``stack``: ``{"block": block}`` if it repeats a block by name, else ``{}``.

    A stack with blocks of its own takes only the caller's ``default`` (the block it stands for);
    another choice is refused, naming the stacks that take one. The block must have the standard
    block's interface and a slot for each non-default part in ``chosen`` (``ffn=``, ``norm=``).
    """
    if not _takes_block(stack):
        if block != default:
            takes = [name for name in available("stack") if _takes_block(name)]
            raise ValueError(f"block={block!r} needs a stack that repeats a block by name, and stack={stack!r} "
                             f"builds its own; pick a stack from {takes} or keep block={default!r}")
        return {}
    _check_block(block, **chosen)
    return {"block": block}


class _MixerFFNBlock(nn.Module):
    """The parts shared by the pre- and post-norm blocks: two norms, mixer, FFN, two dropouts.

    Each part is built by its registry name: ``mixer`` (kind "mixer"), ``ffn`` (kind "ffn":
    "mlp", the default, "conv", "cofrnet") and ``norm`` (kind "norm": "layernorm", the
    default, "prepbn"), with ``*_kwargs`` for the part's own options.
    """

    block_slots = frozenset(BLOCK_SLOTS)  # the standard stack repeats it by name, with ffn and norm by name

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
        self.mixer = build_mixer(mixer, d_model=d_model, n_heads=n_heads, dropout=dropout, causal=causal,
                                 mixer_kwargs=mixer_kwargs)
        self.dropout1 = Dropout(dropout)
        self.norm2 = build_norm(norm, d_model, eps=eps, **(norm_kwargs or {}))
        self.ffn = build("ffn", ffn, d_model=d_model, d_ff=d_ff, dropout=dropout, activation=activation,
                         **(ffn_kwargs or {}))
        self.dropout2 = Dropout(dropout)


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
    """A stack of ``n_layers`` blocks of one registered kind, optionally followed by a final norm.

    The plain sequential stack of Vaswani et al. (NeurIPS 2017); the default of every
    estimator's ``stack`` slot. ``block`` names the block it repeats, among those with the
    standard block's interface (:func:`blocks_for_parts`): ``"prenorm"`` (the default),
    ``"postnorm"`` or ``"metaformer"`` (x + LayerScale(Mixer(Norm(x))), x + LayerScale(MLP(Norm(x))),
    Yu et al., CVPR 2022); ``block_kwargs`` are its own options (MetaFormer's ``layer_scale_init``).
    ``ffn`` and ``norm`` fill every block's slots (the final norm is the ``norm`` too: PRepBN
    replaces every LayerNorm); the MetaFormer block has no ``ffn`` slot, so another ``ffn`` is
    refused with it. Cost: n_layers times the block's. x: (B, N, D) -> (B, N, D).
    """

    requires_order = False  # its blocks add no positions: order comes only from the mixer
    block_slots = frozenset(BLOCK_SLOTS)
    block_by_name = True  # ``block=``: the one stack that repeats a registered block (stack_block)

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
        block: str = "prenorm",
        block_kwargs: dict[str, Any] | None = None,
        final_norm: bool = False,
        ffn: str = "mlp",
        ffn_kwargs: dict[str, Any] | None = None,
        norm: str = "layernorm",
        norm_kwargs: dict[str, Any] | None = None,
    ):
        super().__init__()
        assert n_layers >= 1, f"n_layers must be at least 1, got {n_layers}"
        block_cls = _check_block(block, ffn=ffn, norm=norm)
        if ffn_kwargs and "ffn" not in block_cls.block_slots:
            raise ValueError(f"ffn_kwargs={ffn_kwargs} configure an ffn, and block={block!r} has a fixed one; "
                             f"drop ffn_kwargs")
        # only a block with an ffn slot is given one (MetaFormer's MLP is its own)
        ffn_part = dict(ffn=ffn, ffn_kwargs=ffn_kwargs) if "ffn" in block_cls.block_slots else {}
        self.layers = nn.ModuleList(
            block_cls(
                d_model,
                n_heads=n_heads,
                d_ff=d_ff,
                dropout=dropout,
                activation=activation,
                mixer=mixer,
                mixer_kwargs=mixer_kwargs,
                causal=causal,
                norm=norm,
                norm_kwargs=norm_kwargs,
                **ffn_part,
                **(block_kwargs or {}),
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
