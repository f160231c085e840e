"""Name -> class registry for backbone parts, so that callers can say ``mixer="full"``.

Parts register themselves by kind (``"mixer"``, ``"block"``, ``"gate"``, ...) and name::

    @register("mixer", "full")
    class FullAttention(nn.Module): ...

    attn = build("mixer", "full", d_model=64, n_heads=4)
    available("mixer")   # ['full', ...]

An estimator's slots (its parameters that take a part by name) say what they accept through
``available(slot, estimator)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

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


class Slot(NamedTuple):
    """An estimator's slot: the registry kinds its parts come from, and the names it accepts.

    ``names`` are the parts the slot accepts given the estimator's other parameters; the
    registered parts of ``kinds`` not among them are refused by ``fit``.
    """

    kinds: tuple[str, ...]
    names: list[str]


def available(slot: str | None = None, estimator: Any = None) -> list[str] | dict[str, list[str]]:
    """The parts that fill a slot, by name: registered under a kind, or accepted by an estimator.

    Parameters
    ----------
    slot : str, optional
        Without ``estimator``: a registry kind (``"mixer"``, ``"stack"``, ``"ffn"``, ...).
        With ``estimator``: one of its slot parameters (``"temporal_mixer"`` of
        Gateformer, ``"mixer"`` of GTrXL, ``"memory"`` of LMUFormer and ATLAS, ...).
        None: every kind, or every slot of ``estimator``.
    estimator : str, estimator class or estimator, optional
        The estimator whose slot to ask about: its name (``"GTrXLForecaster"``, ``"gtrxl"``),
        its class (asked with its default parameters), or an instance (asked with its own:
        a slot's choices can depend on the others, e.g. Gateformer's ``ffn`` on its ``stack``).

    Returns
    -------
    list of str or dict of str to list of str
        The sorted names, or ``{slot: names}`` when ``slot`` is None. With an estimator these
        are exactly the names its ``fit`` accepts in that slot, the other parameters as they are.

    Raises
    ------
    ValueError
        An unknown kind, an unknown estimator, or a slot the estimator does not have (the
        message lists the ones it has).

    Examples
    --------
    >>> from tsformers.backbone import available
    >>> available("memory_optimizer")
    ['momentum', 'muon']
    >>> available("mixer", "GTrXLForecaster")
    ['mamba', 'sla', 'sliding_window', 'xl_relative']
    """
    if estimator is not None:
        slots = estimator_slots(estimator)
        if slot is None:
            return {name: part.names for name, part in slots.items()}
        if slot not in slots:
            raise ValueError(f"{_estimator_name(estimator)} has no slot {slot!r}; its slots: "
                             f"{', '.join(sorted(slots)) or 'none'}")
        return slots[slot].names
    if slot is None:
        return {k: sorted(v) for k, v in sorted(_REGISTRY.items())}
    if slot not in _REGISTRY:
        raise ValueError(f"unknown kind {slot!r}; available kinds: {', '.join(sorted(_REGISTRY)) or 'none'}")
    return sorted(_REGISTRY[slot])


def _estimator_name(estimator: Any) -> str:
    return estimator if isinstance(estimator, str) else getattr(estimator, "__name__", type(estimator).__name__)


def estimator_slots(estimator: Any) -> dict[str, Slot]:
    """Every slot of ``estimator`` (a name, a class or an instance, as in :func:`available`): ``{slot: Slot}``.

    An estimator declares its slots in ``_slots()``; one with none (the baselines) has none.
    """
    if isinstance(estimator, str):
        from tsformers.estimators.registry import estimator_class  # the estimators sit above the backbone

        estimator = estimator_class(estimator)
    from tsformers.estimators.base import BaseForecaster

    cls = estimator if isinstance(estimator, type) else type(estimator)
    if not issubclass(cls, BaseForecaster):
        raise ValueError(f"{estimator!r} is not a tsformers estimator")
    if cls._slots is BaseForecaster._slots:
        return {}  # no slot (the baselines), whatever the parameters; some have no defaults to build with
    if isinstance(estimator, type):
        estimator = estimator()  # the defaults: what a slot accepts can depend on the other parameters
    return estimator._slots()


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


def mixer_dropout(dropout: float, mixer_kwargs: dict[str, Any] | None) -> tuple[float, dict[str, Any]]:
    """A block's mixer's own dropout and its other options: ``mixer_kwargs``' ``"dropout"`` (the attention
    weights' dropout of an attention mixer) where given, else the block's ``dropout``."""
    options = dict(mixer_kwargs or {})
    return options.pop("dropout", dropout), options


def build_mixer(name: str, *, d_model: int, n_heads: int, dropout: float, causal: bool,
                mixer_kwargs: dict[str, Any] | None = None) -> Any:
    """The mixer ``name`` as a block builds it: the block's width, heads and ``causal``, its dropout as
    :func:`mixer_dropout` gives it, plus the mixer's other options from ``mixer_kwargs``."""
    own, options = mixer_dropout(dropout, mixer_kwargs)
    return build("mixer", name, d_model=d_model, n_heads=n_heads, dropout=own, causal=causal, **options)
