"""Token mixers: attention variants and their replacements, one module per paper.

Importing this package imports every module in it, so each mixer is registered under
kind ``"mixer"`` (or ``"reducer"``, ``"fusion"``, ``"norm"``, ``"embedding"``, ``"ffn"``
for the parts that are not (B, N, D) -> (B, N, D) mixers) and ``available("mixer")``
lists exactly what is implemented. The interface is described in ``_base``.
"""

from __future__ import annotations

import importlib
import pkgutil

from ._base import ALL_PATTERNS, CAUSAL_CROSS, CAUSAL_SELF, CROSS, SELF
from .full import FullAttention
from .xl_relative import RelativeMultiHeadAttention

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")):
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["ALL_PATTERNS", "CAUSAL_CROSS", "CAUSAL_SELF", "CROSS", "SELF", "FullAttention",
           "RelativeMultiHeadAttention"]
