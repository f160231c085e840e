"""Adaptive encoder depth: exit heads after every layer and a gate that picks the depth per window.

Yao, Aich, Suh, Roy-Chowdhury, Shelton and Chandraker, "Efficient Transformer Encoders for
Mask2Former-style models" (ECO-M2F), ECCV 2024 (arXiv 2404.15244): train with an exit after every
encoder layer, label each training sample with its best depth, train a small gate to predict it,
and run only that depth.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..blocks import BLOCK_SLOTS, PreNormBlock
from ..registry import register

__all__ = ["AdaptiveDepth", "ExitSupervised"]


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
        self.last_depths: Tensor | None = None  # (B,) depths of the last gated forward

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
    @staticmethod
    def gate_features(x: Tensor) -> Tensor:
        """(B, N, D) -> (B, 2D): what the gate reads, the tokens' mean and std over N."""
        return torch.cat([x.mean(dim=1), x.std(dim=1, unbiased=False)], dim=-1)

    def gate_logits(self, x: Tensor) -> Tensor:
        """(B, N, D) -> (B, L) logits over depths 1..L, from the tokens' mean and std."""
        return self.gate(self.gate_features(x))

    def predict_depth(self, x: Tensor) -> Tensor:
        """(B,) predicted depths in 1..L."""
        return self.gate_logits(x).argmax(dim=-1) + 1

    def gate_loss(self, x: Tensor, labels: Tensor) -> Tensor:
        """Cross-entropy of the gate against depth labels (B,) in 1..L."""
        return F.cross_entropy(self.gate_logits(x), labels - 1)

    def fit_gate(self, x: Tensor, labels: Tensor, *, steps: int = 200, lr: float = 1e-2,
                 batch_size: int = 256) -> float:
        """Train only the gate on tokens x (B, N, D) and labels (B,); marks the gate fitted. Returns the last loss."""
        return self.fit_gate_features(self.gate_features(x.detach()), labels, steps=steps, lr=lr,
                                      batch_size=batch_size)

    def fit_gate_features(self, features: Tensor, labels: Tensor, *, steps: int = 200, lr: float = 1e-2,
                          batch_size: int = 256) -> float:
        """:meth:`fit_gate` on the gate's input, ``gate_features(x)`` (B, 2D): windows need not be kept whole."""
        features, labels = features.detach(), labels.detach()
        optimiser = torch.optim.Adam(self.gate.parameters(), lr=lr)
        generator = torch.Generator().manual_seed(0)
        loss = torch.tensor(float("nan"))
        for _ in range(steps):
            batch = torch.randint(len(features), (min(batch_size, len(features)),), generator=generator)
            loss = F.cross_entropy(self.gate(features[batch]), labels[batch] - 1)
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
        self.last_depths = depths                    # what this forward ran, for a caller to report
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


class ExitSupervised:
    """Mixin for a network whose stacks may be ``adaptive_depth``: ECO-M2F's steps 1-3 from a training loop.

    A network built from registered parts does not know whether its ``stack`` slot holds an
    :class:`AdaptiveDepth`; this mixin finds the ones it holds (several: Gateformer's temporal and
    variate encoders) and treats them as one depth, exit k of the network being its forecast with
    every adaptive stack stopped after block k. It gives a training loop two hooks, both no-ops
    without an adaptive stack:

    * ``auxiliary_loss(batch_loss)``: step 1, the losses of the shallower exits, added to the
      forecast's loss in training (the full depth's exit is the forecast itself);
    * ``after_training(batches, window_losses)``: steps 2-3 on the trained weights, labelling
      each training window with its depth and fitting every stack's gate on them; sets
      ``mean_depth``, the mean number of blocks the gates then run per stack over those windows.
    """

    def depth_stacks(self) -> list[AdaptiveDepth]:
        """The adaptive-depth stacks of this network (all of the same depth L), in module order."""
        stacks = [m for m in self.modules() if isinstance(m, AdaptiveDepth)]
        assert len({len(s.layers) for s in stacks}) <= 1, "adaptive-depth stacks of one network share their depth"
        return stacks

    @contextmanager
    def at_depth(self, depth: int | None) -> Iterator[None]:
        """Run every adaptive-depth stack for exactly ``depth`` blocks inside the block (None: as before)."""
        stacks = self.depth_stacks()
        before = [s.forced_depth for s in stacks]
        for stack in stacks:
            stack.forced_depth = depth
        try:
            yield
        finally:
            for stack, forced in zip(stacks, before):
                stack.forced_depth = forced

    def auxiliary_loss(self, batch_loss: Callable[[], Tensor]) -> Tensor | None:
        """The exits' losses to add to the forecast's: sum over k < L of (w_k / w_L)·loss at depth k.

        ``batch_loss()`` is the batch's loss of the network's forecast as the network runs now; it is
        called once per shallower exit. The weights are the stack's :meth:`AdaptiveDepth.exit_weights`
        (growing with depth, as ECO-M2F's) relative to the full depth's, so the forecast's own loss
        keeps weight 1 as in any other network. None without an adaptive stack (or with one block).
        """
        stacks = self.depth_stacks()
        if not stacks or len(stacks[0].layers) == 1:
            return None
        weights = stacks[0].exit_weights()
        total = None
        for depth in range(1, len(weights)):
            with self.at_depth(depth):
                loss = (weights[depth - 1] / weights[-1]) * batch_loss()
            total = loss if total is None else total + loss
        return total

    @torch.no_grad()
    def after_training(self, batches: Iterable[tuple[tuple, Tensor]],
                       window_losses: Callable[[tuple, Tensor], Tensor]) -> None:
        """Label windows with their depth and fit every adaptive stack's gate (ECO-M2F steps 2-3).

        ``batches`` yields ``(inputs, y)`` training windows; ``window_losses(inputs, y)`` is the loss
        (W,) of each window's forecast as the network runs now. Each window is labelled with the
        smallest depth within the stack's ``tolerance`` of its best exit (:meth:`AdaptiveDepth.depth_labels`),
        and each stack's gate is fitted on what that stack read at full depth. A stack that runs
        several rows per window (a channel-independent encoder: B·N rows, window-major) gives each
        row its window's label.
        """
        stacks = self.depth_stacks()
        if not stacks:
            return
        depth = len(stacks[0].layers)
        features: list[list[Tensor]] = [[] for _ in stacks]                      # per stack, (rows, 2D) per batch
        reading = [False]                                                         # only the full-depth run is read

        def keep(i: int):
            def hook(_, args):
                if reading[0]:
                    features[i].append(AdaptiveDepth.gate_features(args[0]))
            return hook

        hooks = [stack.register_forward_pre_hook(keep(i)) for i, stack in enumerate(stacks)]
        was_training = self.training
        self.eval()
        losses = []                                                               # per batch, (W, L)
        try:
            for inputs, y in batches:
                per_depth = []
                for k in range(1, depth + 1):
                    reading[0] = k == depth
                    with self.at_depth(k):
                        per_depth.append(window_losses(inputs, y))                # (W,)
                losses.append(torch.stack(per_depth, dim=1))
        finally:
            for hook in hooks:
                hook.remove()
            self.train(was_training)
        losses = torch.cat(losses)                                                # (W, L)
        labels = AdaptiveDepth.depth_labels(losses, stacks[0].tolerance)          # (W,)
        labels[~losses.isfinite().all(dim=1)] = depth   # a window without observed targets: no evidence, full depth
        chosen = []
        with torch.enable_grad():
            for i, stack in enumerate(stacks):
                x = torch.cat(features[i])                                        # (W·rows, 2D)
                assert len(x) % len(labels) == 0, "a stack's rows are whole windows"
                rows = labels.repeat_interleave(len(x) // len(labels))
                stack.fit_gate_features(x, rows)
                chosen.append(stack.gate(x).argmax(dim=-1).float().add(1).mean())
        self.mean_depth = float(torch.stack(chosen).mean())
