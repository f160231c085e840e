"""Residual blocks around the ATLAS memory: alone (DeepTransformer-style), or with sliding-window attention.

Every block is pre-norm residual and streams: ``init_state(rows)``, ``step(x, state) -> (y, state)``
for any number of new tokens, and ``forward(x)`` = ``step(x, init_state(len(x)))[0]``.
x: (R, T, D) -> (R, T, D), causal.

References
----------
Behrouz et al., "ATLAS: Learning to Optimally Memorize the Context at Test Time", arXiv 2505.23735, 2025
(DeepTransformers; ATLAS in hybrids with sliding-window attention).
Behrouz, Zhong & Mirrokni, "Titans: Learning to Memorize at Test Time", arXiv 2501.00663, 2025
(memory as a gate, MAG, and memory as a layer, MAL).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from tsformers.backbone.feedforward import FeedForward
from tsformers.backbone.registry import available, build, register, streaming

from .omega import OmegaMemory
from .window import SlidingWindowAttention
from ..dropout import Dropout

__all__ = ["ATLAS_MEMORY", "AtlasDeepBlock", "AtlasGatedBlock", "AtlasLayeredBlock", "StreamingMemory",
           "build_memory", "check_memory", "memories"]

State = dict[str, Tensor]

#: The paper's memory: a deep MLP written at test time by the Omega rule.
ATLAS_MEMORY = "omega"
#: Registered memories (kind "memory") besides the paper's that map tokens to tokens with a streaming state.
#: "lmu" (the bare Legendre system: d coefficients per input channel) and "segment" (Transformer-XL's
#: cache of past inputs, with no read-out of its own) do not: they are parts of a layer, not a layer.
TOKEN_MEMORIES = ("lmu_cell",)


def memories() -> list[str]:
    """The memories an ATLAS block accepts, by registry name.

    ``"omega"`` (the paper's deep memory under the Omega rule), the registered memories that
    map tokens to tokens and carry a streaming state (``"lmu_cell"``, LMUFormer's Legendre
    memory cell), and every causal mixer with a streaming state
    (:func:`tsformers.backbone.streaming`), whose state then carries the history instead of
    memory weights. Every one keeps the block causal and its streaming exact.
    """
    names = {ATLAS_MEMORY, *TOKEN_MEMORIES}
    mixers = set(streaming("mixer"))
    assert not names & mixers, f"a memory and a mixer share a name: {sorted(names & mixers)}"
    return sorted(names | mixers)


class StreamingMemory(nn.Module):
    """A token-to-token part with a streaming state behind the memory's interface: ``init_state``, ``step``.

    ``part`` is a streaming mixer (``init_scan(rows)``, ``scan(x, state) -> (y, state)``) or a
    memory cell (``init_state(rows)``, ``part(x, state) -> (y, state)``); x: (R, T, D) -> (R, T, D).
    """

    def __init__(self, part: nn.Module):
        super().__init__()
        self.part = part
        self.scans = callable(getattr(part, "scan", None))

    def init_state(self, rows: int) -> State:
        return self.part.init_scan(rows) if self.scans else self.part.init_state(rows)

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        return self.part.scan(x, state) if self.scans else self.part(x, state)

    def forward(self, x: Tensor) -> Tensor:
        return self.step(x, self.init_state(x.shape[0]))[0]


def check_memory(name: str) -> None:
    """Refuse a ``name`` that cannot hold an ATLAS block's memory, with a ValueError naming :func:`memories`."""
    if name not in memories():
        raise ValueError(f"ATLAS's blocks stream token by token, so their memory must map tokens to tokens and "
                         f"carry a state: memory={name!r} is not one of {memories()} (the Omega memory, the "
                         f"memories {list(TOKEN_MEMORIES)} and the streaming mixers, tsformers.backbone.streaming(); "
                         f"'lmu' is the Legendre system inside 'lmu_cell', 'segment' a cache with no read-out)")


def build_memory(name: str, d_model: int, *, n_heads: int, dropout: float, window: int,
                 memory_kwargs: dict[str, Any] | None = None) -> nn.Module:
    """The memory ``name`` of an ATLAS block (one of :func:`memories`), with ``init_state`` and ``step``.

    ``memory_kwargs`` are the part's own settings (the Omega memory's key size, depth, window,
    optimiser...; the LMU cell's ``memory_size`` and ``theta``). A streaming mixer is built causal
    with the block's heads and dropout; ``"sliding_window"`` attends over ``window`` tokens.
    A name that cannot hold the memory is a ValueError naming those that can.
    """
    check_memory(name)
    kwargs = dict(memory_kwargs or {})
    if name == ATLAS_MEMORY:
        return OmegaMemory(d_model, n_heads=n_heads, **kwargs)
    if name in available("memory"):
        return StreamingMemory(build("memory", name, d_model=d_model, **kwargs))
    if name == "sliding_window":
        kwargs.setdefault("window", window)
    return StreamingMemory(build("mixer", name, d_model=d_model, n_heads=n_heads, dropout=dropout, causal=True,
                                 **kwargs))


def _sub(state: State, prefix: str) -> State:
    return {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}


def _prefixed(prefix: str, state: State) -> State:
    return {f"{prefix}.{k}": v for k, v in state.items()}


class _AtlasBlock(nn.Module):
    """Parts shared by the three blocks: the memory, the FFN, norms, dropout; the window attention if any.

    ``memory`` names the block's memory (one of :func:`memories`; the paper's ``"omega"`` by
    default) and ``memory_kwargs`` its own settings (:func:`build_memory`).
    """

    uses_attention = True

    def __init__(self, d_model: int, *, n_heads: int = 4, d_ff: int | None = None, dropout: float = 0.0,
                 activation: str = "gelu", window: int = 32, n_persistent: int = 4, memory: str = ATLAS_MEMORY,
                 memory_kwargs: dict[str, Any] | None = None):
        super().__init__()
        self.norm_mem = nn.LayerNorm(d_model)
        self.memory = build_memory(memory, d_model, n_heads=n_heads, dropout=dropout, window=window,
                                   memory_kwargs=memory_kwargs)
        if self.uses_attention:
            self.attention = SlidingWindowAttention(d_model, n_heads=n_heads, dropout=dropout, causal=True,
                                                    window=window, n_persistent=n_persistent)
        self.norm_ffn = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, d_ff=d_ff or 4 * d_model, dropout=dropout, activation=activation)
        self.dropout = Dropout(dropout)

    def init_state(self, rows: int) -> State:
        state = _prefixed("memory", self.memory.init_state(rows))
        if self.uses_attention:
            state |= _prefixed("attention", self.attention.init_state(rows))
        return state

    def forward(self, x: Tensor) -> Tensor:
        return self.step(x, self.init_state(x.shape[0]))[0]

    def _ffn(self, x: Tensor) -> Tensor:
        return x + self.dropout(self.ffn(self.norm_ffn(x)))


@register("block", "atlas_deep")
class AtlasDeepBlock(_AtlasBlock):
    """DeepTransformer-style block: the deep memory in the place of attention (ATLAS, LMM).

    x = x + drop(Memory(LN(x))); x = x + drop(FFN(LN(x))). Softmax attention is the
    non-parametric solution of the Omega objective over all past tokens; here a
    deep memory trained by the Omega rule replaces it. Cost O(T) in tokens.
    """

    uses_attention = False

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        m, mem_state = self.memory.step(self.norm_mem(x), _sub(state, "memory"))
        x = x + self.dropout(m)
        return self._ffn(x), _prefixed("memory", mem_state)


@register("block", "atlas_mag")
class AtlasGatedBlock(_AtlasBlock):
    """Memory alongside sliding-window attention, merged by a gate (Titans' MAG layout).

    n = LN(x); y = SWA(n) (short-term); m = Memory(n) (long-term);
    x = x + drop(W_o(LN_y(y) * sigmoid(LN_m(m)))); x = x + drop(FFN(LN(x))).
    The gate is Titans' normalised elementwise sigmoid gating. Cost O(T * window) in tokens.
    """

    def __init__(self, d_model: int, **kwargs: Any):
        super().__init__(d_model, **kwargs)
        self.norm_short = nn.LayerNorm(d_model)
        self.norm_long = nn.LayerNorm(d_model)
        self.merge = nn.Linear(d_model, d_model)

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        n = self.norm_mem(x)
        y, attn_state = self.attention.step(n, _sub(state, "attention"))
        m, mem_state = self.memory.step(n, _sub(state, "memory"))
        x = x + self.dropout(self.merge(self.norm_short(y) * torch.sigmoid(self.norm_long(m))))
        return self._ffn(x), _prefixed("memory", mem_state) | _prefixed("attention", attn_state)


@register("block", "atlas_mal")
class AtlasLayeredBlock(_AtlasBlock):
    """Memory as a layer, followed by sliding-window attention (Titans' MAL layout).

    x = x + drop(Memory(LN(x))); x = x + drop(SWA(LN(x))); x = x + drop(FFN(LN(x))).
    Cost O(T * window) in tokens.
    """

    def __init__(self, d_model: int, **kwargs: Any):
        super().__init__(d_model, **kwargs)
        self.norm_attn = nn.LayerNorm(d_model)

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        m, mem_state = self.memory.step(self.norm_mem(x), _sub(state, "memory"))
        x = x + self.dropout(m)
        y, attn_state = self.attention.step(self.norm_attn(x), _sub(state, "attention"))
        x = x + self.dropout(y)
        return self._ffn(x), _prefixed("memory", mem_state) | _prefixed("attention", attn_state)
