"""Name -> class registry for backbone parts, so that callers can say ``mixer="full"``.

Parts register themselves by kind (``"mixer"``, ``"block"``, ``"gate"``, ...) and name::

    @register("mixer", "full")
    class FullAttention(nn.Module): ...

    attn = build("mixer", "full", d_model=64, n_heads=4)
    available("mixer")   # ['full', ...]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_REGISTRY: dict[str, dict[str, type]] = {}


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register(kind: str, name: str) -> Callable[[type], type]:
    """Class decorator: register ``cls`` under ``(kind, name)`` and return it unchanged.

    Registering another class under a taken name is an error; registering the same
    class again (a module reload) replaces the entry.
    """

    def decorator(cls: type) -> type:
        entries = _REGISTRY.setdefault(kind, {})
        taken = entries.get(name)
        if taken is not None and _qualname(taken) != _qualname(cls):
            raise ValueError(
                f"{kind} {name!r} is already registered to {_qualname(taken)}; "
                f"pick another name for {_qualname(cls)}"
            )
        entries[name] = cls
        return cls

    return decorator


def available(kind: str | None = None) -> list[str] | dict[str, list[str]]:
    """Sorted names registered under ``kind``, or ``{kind: names}`` for every kind when ``kind`` is None."""
    if kind is None:
        return {k: sorted(v) for k, v in sorted(_REGISTRY.items())}
    if kind not in _REGISTRY:
        raise ValueError(f"unknown kind {kind!r}; available kinds: {', '.join(sorted(_REGISTRY)) or 'none'}")
    return sorted(_REGISTRY[kind])


def build_class(kind: str, name: str) -> type:
    """The class registered under ``(kind, name)``; an unknown name is a ValueError listing the valid ones."""
    names = available(kind)  # raises on an unknown kind
    if name not in names:
        raise ValueError(f"unknown {kind} {name!r}; available {kind} names: {', '.join(names)}")
    return _REGISTRY[kind][name]


def _declares_order(cls: type) -> bool:
    return isinstance(getattr(cls, "requires_order", None), bool)


def home_stack(name: str) -> str | None:
    """The stack a mixer does what its paper says in only, or None for a mixer any block can hold.

    ``"fca"`` attends to cross tokens that only ``"fca_stage"`` makes (it merges the outputs of
    earlier blocks along positions); in another block it would be plain attention. A mixer
    declares it as ``home_stack``.
    """
    return getattr(build_class("mixer", name), "home_stack", None)


def order_free(kind: str, *, standalone: bool = False) -> list[str]:
    """Sorted names under ``kind`` whose part does not depend on token order (``requires_order`` False).

    These are the parts a slot over variate tokens (an unordered set) accepts; mixers and
    stacks declare ``requires_order``. ``standalone=True`` (mixers) also leaves out the mixers
    whose :func:`home_stack` reads token order: over variates they would lose what they are for.
    """
    names = available(kind)  # raises on an unknown kind
    undeclared = [name for name in names if not _declares_order(_REGISTRY[kind][name])]
    if undeclared:
        declaring = [k for k, parts in sorted(_REGISTRY.items()) if all(map(_declares_order, parts.values()))]
        raise ValueError(f"the {kind} parts {undeclared} do not declare requires_order, so order_free({kind!r}) "
                         f"cannot tell; the kinds whose parts all declare it: {', '.join(declaring)}")
    free = [name for name in names if not _REGISTRY[kind][name].requires_order]
    if standalone and kind == "mixer":
        free = [name for name in free if home_stack(name) is None or not _REGISTRY["stack"][home_stack(name)].requires_order]
    return free


def with_block_slot(slot: str) -> list[str]:
    """Sorted names of the stacks whose blocks have ``slot`` (``"ffn"``, ``"norm"``), declared in ``block_slots``.

    Stacks built from the standard block (``"standard"``, ``"looped"``, ...) take the block's
    ``ffn`` and ``norm`` by name; stacks with blocks of their own do not.
    """
    return [name for name in available("stack") if slot in getattr(_REGISTRY["stack"][name], "block_slots", ())]


def streaming(kind: str = "mixer") -> list[str]:
    """Sorted names under ``kind`` with a causal form and a streaming ``scan(x, state) -> (y, state)``.

    ``init_scan(rows)`` is the state before any token.
    ``scan`` runs the causal mixer over any number of new tokens x (B, T, D) after a state (a
    dict of tensors, batch first; None for the start) and returns the state after them, so
    that feeding a sequence in pieces equals the causal ``forward`` over all of it. These are
    the mixers a recurrent slot (GTrXL's ``mixer``, LMUFormer's ``memory``) accepts.
    """
    from tsformers.backbone.mixers._base import CAUSAL_SELF  # the mixers package imports this module

    return [name for name in available(kind)
            if CAUSAL_SELF in getattr(_REGISTRY[kind][name], "patterns", ())
            and callable(getattr(_REGISTRY[kind][name], "scan", None))
            and callable(getattr(_REGISTRY[kind][name], "init_scan", None))]


def build(kind: str, name: str, **kwargs: Any) -> Any:
    """Instantiate the class registered under ``(kind, name)`` with ``kwargs``."""
    return build_class(kind, name)(**kwargs)
