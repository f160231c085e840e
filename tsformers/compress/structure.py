"""Network surgery that a saved model can replay: recording edits as compression makes them.

A compressed network differs from the one its estimator builds from its
parameters: fewer heads, narrower layers, removed sub-layers, factorised or
int8 weights. Every change is made through :func:`install`, :func:`wrap` or
:func:`set_attr`, which also append a JSON record to an edit list; the
estimator keeps that list (``network_edits_``), ``save`` writes it into
``config.json`` and ``load`` replays it on the freshly built network
(:func:`tsformers.runtime.edits.apply_edits`) before ``load_state_dict``. The
modules compression installs, their constructor records and the replay live
in :mod:`tsformers.runtime.edits`, below the estimators, so loading a
compressed model imports no compression code.
"""
from __future__ import annotations

from torch import nn

from tsformers.runtime.edits import (Bias, ChannelAffine, FactorizedLinear, HardTopKAttention, Int8Linear, Zero,
                                     apply_edits, module_spec, module_types, register_module_type)

__all__ = ["Bias", "ChannelAffine", "FactorizedLinear", "HardTopKAttention", "Int8Linear", "Zero",
           "apply_edits", "install", "module_spec", "register_module_type", "set_attr", "wrap"]


def install(network: nn.Module, path: str, module: nn.Module, edits: list | None = None) -> nn.Module:
    """Put ``module`` at ``path`` of ``network`` (dotted, as ``named_modules``), recording the edit."""
    name, kwargs = module_spec(module)
    network.set_submodule(path, module)
    if edits is not None:
        edits.append({"op": "replace", "path": path, "type": name, "kwargs": kwargs})
    return module


def wrap(network: nn.Module, path: str, wrapper: str, edits: list | None = None, **kwargs) -> nn.Module:
    """Replace the module at ``path`` by ``wrapper(module, **kwargs)`` (e.g. ``HardTopKAttention``), recording it."""
    cls = module_types()[wrapper][0]
    new = cls(network.get_submodule(path), **kwargs)
    network.set_submodule(path, new)
    if edits is not None:
        edits.append({"op": "wrap", "path": path, "type": wrapper, "kwargs": kwargs})
    return new


def set_attr(network: nn.Module, path: str, name: str, value, edits: list | None = None) -> None:
    """Set a plain (JSON) attribute of the module at ``path``, e.g. ``n_heads``, recording it."""
    setattr(network.get_submodule(path) if path else network, name, value)
    if edits is not None:
        edits.append({"op": "attr", "path": path, "name": name, "value": value})
