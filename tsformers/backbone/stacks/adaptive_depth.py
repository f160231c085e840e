"""Adaptive encoder depth: exit heads after every layer and a gate that picks the depth per window.

Yao, Aich, Suh, Roy-Chowdhury, Shelton and Chandraker, "Efficient Transformer Encoders for
Mask2Former-style models" (ECO-M2F), ECCV 2024 (arXiv 2404.15244): train with an exit after every
encoder layer, label each training sample with its best depth, train a small gate to predict it,
and run only that depth.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..blocks import BLOCK_SLOTS, PreNormBlock
from ..registry import register

__all__ = ["AdaptiveDepth"]


@register("stack", "adaptive_depth")
class AdaptiveDepth(nn.Module):
    """``n_layers`` pre-LN blocks with an exit after each, and a gate that predicts how many to run.

    ECO-M2F (Yao et al., ECCV 2024, arXiv 2404.15244), three steps:

    1. Train the stack with every exit supervised: ``outs = stack.exit_outputs(tokens)`` gives
       the L exits (B, N, D) (exit k = LayerNorm_k of the k-th block's output); the forecaster
       applies its own head to each and sums the L losses weighted by ``exit_weights()``
       (growing with depth, as the paper's weighted stochastic depth).
    2. Label windows: with the stack frozen, compute per-window losses ``losses`` (B, L) of every
       exit and ``labels = stack.depth_labels(losses, tolerance)``: the smallest depth whose loss
       is within ``tolerance`` (relative) of that window's best (the catalog's rule); with
       ``cost_per_layer`` > 0 instead the paper's utility argmin_k loss_k + cost·k.
    3. Train the gate: ``stack.fit_gate(tokens, labels)`` (or your own loop on
       ``stack.gate_loss(tokens, labels)``). The gate is an MLP (hidden ``gate_hidden``) on
       window statistics, the mean and std over tokens of the input tokens (B, 2D).

    Forward: in training, or before the gate is fitted, all L blocks run and exit L is
    returned (so the plain stack trains like a standard one). In eval with a fitted gate,
    each window runs only its predicted number of blocks (windows that stop leave the batch)
    and returns that exit. ``forward(x, depth=k)`` or ``stack.forced_depth = k`` runs exactly
    k blocks. Redoing steps 2-3 with another tolerance changes the accuracy/compute
    trade-off without retraining the blocks. With ``causal=True`` the blocks are causal, but
    the gate reads the statistics of the whole window, so the chosen depth (not the tokens)
    depends on the full window: fine for window-level forecasting. Cost: the gate O(N·D + D·gate_hidden), plus
    k blocks per window (mixer cost + O(N·D·d_ff) each). x: (B, N, D) -> (B, N, D).
    """

    requires_order = False  # halting is decided per token, from that token alone
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
        gate_hidden: int = 32,
        tolerance: float = 0.05,
        ffn: str = "mlp",
        ffn_kwargs: dict[str, Any] | None = None,
        norm: str = "layernorm",
        norm_kwargs: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.layers = nn.ModuleList(
            PreNormBlock(d_model, n_heads=n_heads, d_ff=d_ff, dropout=dropout, mixer=mixer,
                         mixer_kwargs=mixer_kwargs, causal=causal, ffn=ffn, ffn_kwargs=ffn_kwargs, norm=norm,
                         norm_kwargs=norm_kwargs)
            for _ in range(n_layers)
        )
        self.exits = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(n_layers))
        self.gate = nn.Sequential(nn.Linear(2 * d_model, gate_hidden), nn.GELU(), nn.Linear(gate_hidden, n_layers))
        self.register_buffer("gate_fitted", torch.tensor(False))
        self.tolerance = tolerance
        self.forced_depth: int | None = None

    # ------------------------------------------------------------------ step 1: every exit
    def exit_outputs(self, x: Tensor) -> list[Tensor]:
        """The L exits, each (B, N, D): exit k = LayerNorm_k(block_k(... block_1(x)))."""
        outs = []
        for layer, exit_norm in zip(self.layers, self.exits):
            x = layer(x)
            outs.append(exit_norm(x))
        return outs

    # ------------------------------------------------------------------ step 2: depth labels
    def exit_weights(self) -> Tensor:
        """(L,) loss weights of the exits, proportional to depth and summing to 1."""
        k = torch.arange(1, len(self.layers) + 1, dtype=torch.float32)
        return k / k.sum()

    @staticmethod
    def depth_labels(losses: Tensor, tolerance: float = 0.05, cost_per_layer: float = 0.0) -> Tensor:
        """(B, L) per-exit losses -> (B,) depths in 1..L.

        The first exit with loss <= best·(1 + tolerance); or, when ``cost_per_layer`` > 0,
        argmin_k losses_k + cost_per_layer·k (ECO-M2F's utility with loss in place of quality).
        """
        if cost_per_layer > 0:
            k = torch.arange(1, losses.shape[1] + 1, device=losses.device, dtype=losses.dtype)
            return (losses + cost_per_layer * k).argmin(dim=1) + 1
        best = losses.min(dim=1, keepdim=True).values
        good = losses <= best * (1 + tolerance) + 1e-12                           # (B, L)
        return good.float().argmax(dim=1) + 1                                     # first True, 1-based

    # ------------------------------------------------------------------ step 3: the gate
    def gate_logits(self, x: Tensor) -> Tensor:
        """(B, N, D) -> (B, L) logits over depths 1..L, from the tokens' mean and std."""
        stats = torch.cat([x.mean(dim=1), x.std(dim=1, unbiased=False)], dim=-1)  # (B, 2D)
        return self.gate(stats)

    def predict_depth(self, x: Tensor) -> Tensor:
        """(B,) predicted depths in 1..L."""
        return self.gate_logits(x).argmax(dim=-1) + 1

    def gate_loss(self, x: Tensor, labels: Tensor) -> Tensor:
        """Cross-entropy of the gate against depth labels (B,) in 1..L."""
        return F.cross_entropy(self.gate_logits(x), labels - 1)

    def fit_gate(self, x: Tensor, labels: Tensor, *, steps: int = 200, lr: float = 1e-2,
                 batch_size: int = 256) -> float:
        """Train only the gate on tokens x (B, N, D) and labels (B,); marks the gate fitted. Returns the last loss."""
        x, labels = x.detach(), labels.detach()
        optimiser = torch.optim.Adam(self.gate.parameters(), lr=lr)
        generator = torch.Generator().manual_seed(0)
        loss = torch.tensor(float("nan"))
        for _ in range(steps):
            batch = torch.randint(len(x), (min(batch_size, len(x)),), generator=generator)
            loss = self.gate_loss(x[batch], labels[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        self.gate_fitted.fill_(True)
        return float(loss.detach())

    # ------------------------------------------------------------------ inference
    def forward(self, x: Tensor, depth: int | None = None) -> Tensor:
        depth = self.forced_depth if depth is None else depth
        if depth is None and (self.training or not bool(self.gate_fitted)):
            depth = len(self.layers)
        if depth is not None:
            assert 1 <= depth <= len(self.layers), f"depth must lie in 1..{len(self.layers)}, got {depth}"
            for layer in self.layers[:depth]:
                x = layer(x)
            return self.exits[depth - 1](x)
        depths = self.predict_depth(x)                                            # (B,)
        out = torch.empty_like(x)
        index = torch.arange(len(x), device=x.device)                             # windows still running
        for k, (layer, exit_norm) in enumerate(zip(self.layers, self.exits), start=1):
            x = layer(x)                                                          # (B_active, N, D)
            done = depths[index] == k
            if done.any():
                out[index[done]] = exit_norm(x[done])
                x, index = x[~done], index[~done]
            if index.numel() == 0:
                break
        return out
