"""Looped transformer: one block repeated T times between pre- and post-blocks (test-time depth).

Gao et al., "AlgoFormer: An Efficient Transformer Framework with Algorithmic
Structures", TMLR 2024 (arXiv 2402.13572); input injection as in Yang et al.,
"Looped Transformers are Better at Learning Learning Algorithms", ICLR 2024.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..blocks import BLOCK_SLOTS, PreNormBlock, build_norm
from ..registry import register

__all__ = ["LoopedTransformer"]


@register("stack", "looped")
class LoopedTransformer(nn.Module):
    """pre-blocks -> one shared block looped ``n_loops`` times -> post-blocks (AlgoFormer, TMLR 2024).

    e = pre(x); h_0 = e; h_{t+1} = loop(h_t + γ ⊙ e) for t < T; y = post(h_T).
    With ``input_injection`` the pre-block output e is re-injected every loop through
    a per-channel gain γ that starts at 0 (so an untrained model begins as a plain loop
    and learns how much of e to re-inject, a stable form of Yang et al.'s h + e);
    without it γ is absent. The parameter count does not depend on T, and
    ``n_loops`` can be changed after training (``stack.n_loops = 12`` or
    ``stack(x, n_loops=12)``) to spend more test-time compute on refinement.
    ``n_loops`` defaults to ``n_layers``, so the looped part is as deep as a standard stack.

    Cost: (n_pre + T + n_post) blocks, each the mixer's cost plus O(N·D·d_ff);
    parameters of n_pre + 1 + n_post blocks. x: (B, N, D) -> (B, N, D).
    """

    requires_order = False  # plain pre-norm blocks: order comes only from the mixer
    block_slots = frozenset(BLOCK_SLOTS)  # its blocks are the standard block: ffn and norm by name

    def __init__(
        self,
        *,
        d_model: int,
        n_heads: int,
        d_ff: int,
        n_layers: int,
        dropout: float = 0.0,
        mixer: str = "full",
        mixer_kwargs: dict[str, Any] | None = None,
        causal: bool = False,
        n_loops: int | None = None,
        n_pre: int = 1,
        n_post: int = 1,
        input_injection: bool = True,
        final_norm: bool = False,
        ffn: str = "mlp",
        ffn_kwargs: dict[str, Any] | None = None,
        norm: str = "layernorm",
        norm_kwargs: dict[str, Any] | None = None,
    ):
        super().__init__()

        def block() -> PreNormBlock:
            return PreNormBlock(d_model, n_heads=n_heads, d_ff=d_ff, dropout=dropout, mixer=mixer,
                                mixer_kwargs=mixer_kwargs, causal=causal, ffn=ffn, ffn_kwargs=ffn_kwargs,
                                norm=norm, norm_kwargs=norm_kwargs)

        self.n_loops = n_layers if n_loops is None else n_loops
        assert self.n_loops >= 0 and n_pre >= 0 and n_post >= 0
        self.pre = nn.ModuleList(block() for _ in range(n_pre))
        self.loop = block()
        self.post = nn.ModuleList(block() for _ in range(n_post))
        self.inject = nn.Parameter(torch.zeros(d_model)) if input_injection else None
        self.norm = build_norm(norm, d_model, **(norm_kwargs or {})) if final_norm else nn.Identity()

    def forward(self, x: Tensor, n_loops: int | None = None) -> Tensor:
        for layer in self.pre:
            x = layer(x)
        e = x                                                           # (B, N, D) the pre-block output
        for _ in range(self.n_loops if n_loops is None else n_loops):
            x = self.loop(x if self.inject is None else x + self.inject * e)
        for layer in self.post:
            x = layer(x)
        return self.norm(x)
