"""Block and stacking schemes: how blocks are arranged, shared, looped or interleaved.

Importing this package imports every module in it, so each scheme is registered under
kind ``"stack"`` (a composition of blocks, (B, N, D) -> (B, N, D)) or ``"stage"`` (a
stage that changes the number of tokens or the width). Every stack is built as
``build("stack", name, d_model=..., n_heads=..., d_ff=..., n_layers=..., dropout=...,
mixer="full", mixer_kwargs=None, causal=False, **scheme_kwargs)``.
"""

from __future__ import annotations

import importlib
import pkgutil

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")):
    importlib.import_module(f"{__name__}.{_module}")
