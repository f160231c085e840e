"""O(1)-per-step streaming state for recurrent mixers: ``update(x_t, state) -> (y_t, state)``.

Catalog section D ("recurrent streaming state", for ``sla`` causal, ``mamba``,
``hybrid``): a mixer whose causal form is a recurrence can be fed one token at a
time with a state of fixed size, so each new observation costs the same whatever
came before. :class:`Stream` gives every such part one interface:

- :class:`~tsformers.backbone.LegendreMemory` (LMU): ``m_t = Ā m_{t-1} + B̄ u_t``, O(d²);
- :class:`~tsformers.backbone.LMUCell`: the cell on one token (its recurrent form);
- any mixer with ``step`` and ``init_state``: one-token steps ``step(x (B, D), state=None)``
  (``sla``, ``mamba``) or sequence steps ``step(x (R, T, D), state)``
  (:class:`~tsformers.backbone.SlidingWindowAttention`, its O(window) cache).

``run(x)`` steps through a whole sequence and equals the mixer's causal parallel
``forward`` (tested).
"""
from __future__ import annotations

import inspect

import torch
from torch import Tensor, nn

from tsformers.backbone.lmu import LegendreMemory, LMUCell

__all__ = ["Stream"]


class Stream:
    """One-token-at-a-time driver of a recurrent part (the part keeps its weights; this holds no state).

    Parameters
    ----------
    module : nn.Module
        LegendreMemory, LMUCell, or a mixer with ``init_state`` and ``step``.
    """

    def __init__(self, module: nn.Module):
        self.module = module
        if isinstance(module, (LegendreMemory, LMUCell)):
            self.kind = type(module).__name__
        elif hasattr(module, "step") and hasattr(module, "init_state"):
            if getattr(module, "causal", True) is False:
                raise ValueError(f"{type(module).__name__} was built with causal=False; only a causal mixer streams.")
            state_param = list(inspect.signature(module.step).parameters.values())[1]
            self.kind = "token" if state_param.default is None else "sequence"
        else:
            raise TypeError(f"{type(module).__name__} has no recurrent form (no step/init_state); it cannot stream.")

    def init_state(self, batch: int, n_inputs: int = 1):
        """The state before any token (``n_inputs``: LegendreMemory's channels)."""
        if self.kind == "LegendreMemory":
            return self.module.init_state(batch, n_inputs)
        return self.module.init_state(batch)

    def update(self, x: Tensor, state):
        """One token x (B, D) -> (y (B, ...), state), at a cost that does not depend on the tokens before."""
        if self.kind == "LegendreMemory":
            m = self.module.step(x, state)                                 # (B, C, d)
            return m, m
        if self.kind == "LMUCell":
            h, state = self.module(x[:, None], state)                      # T = 1: the recurrent form
            return h[:, 0], state
        if self.kind == "token":
            return self.module.step(x, state)
        y, state = self.module.step(x[:, None], state)
        return y[:, 0], state

    def run(self, x: Tensor, state=None):
        """Every token of x (B, T, D) in turn: (outputs (B, T, ...), the state after the last)."""
        if state is None:
            state = self.init_state(x.shape[0], x.shape[2] if self.kind == "LegendreMemory" else 1)
        outs = []
        for x_t in x.unbind(dim=1):
            y, state = self.update(x_t, state)
            outs.append(y)
        return torch.stack(outs, dim=1), state
