"""What every token mixer shares: the four CAB patterns and the checks that refuse the others.

A mixer maps tokens ``x: (B, N, D)`` to ``(B, N, D)``; ``forward(x, kv=None, mask=None)``
is self-attention over x when ``kv`` is None and cross-attention from x to ``kv``
(B, M, D) otherwise. Class attributes describe it for the shared tests and benchmarks:

- ``complexity``: its cost in N (tokens), e.g. ``"O(N^2·D)"``;
- ``patterns``: which of the four CAB patterns it supports;
- ``requires_order``: True when it only makes sense on ordered (time) tokens;
- ``mixes_tokens``: False for channel-only "mixers" (their Jacobian is block-diagonal);
- ``paper``: the paper it comes from.
"""

from __future__ import annotations

from torch import Tensor

# The four CAB patterns ("CAB: Comprehensive Attention Benchmarking on Long Sequence Modeling", ICML 2023).
SELF, CAUSAL_SELF, CROSS, CAUSAL_CROSS = "self", "causal_self", "cross", "causal_cross"
ALL_PATTERNS = frozenset({SELF, CAUSAL_SELF, CROSS, CAUSAL_CROSS})

__all__ = ["ALL_PATTERNS", "CAUSAL_CROSS", "CAUSAL_SELF", "CROSS", "SELF", "check_causal", "check_cross"]


def check_causal(cls: type, causal: bool) -> None:
    """Raise a ValueError naming the supported patterns when ``causal=True`` is not one of them."""
    if causal and CAUSAL_SELF not in cls.patterns and CAUSAL_CROSS not in cls.patterns:
        raise ValueError(
            f"{cls.__name__} has no causal form (it supports {sorted(cls.patterns)}); "
            f"build it with causal=False or pick a mixer that supports 'causal_self'"
        )


def check_cross(module, kv: Tensor | None) -> None:
    """Raise a ValueError when a self-only mixer is given key/value tokens."""
    if kv is None:
        return
    wanted = CAUSAL_CROSS if getattr(module, "causal", False) else CROSS
    if wanted not in type(module).patterns:
        raise ValueError(
            f"{type(module).__name__} does not support the {wanted!r} pattern (it supports "
            f"{sorted(type(module).patterns)}); call it without kv or pick a cross-attention mixer"
        )
