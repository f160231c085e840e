"""Dropout with a cheaper mask on CPU: the same Bernoulli mask, drawn from 16 random bits per element.

``torch.nn.Dropout`` draws its CPU mask with ``bernoulli_``, one pseudo-random float per element, and that
draw was the largest single cost of a Gateformer training step (23% of its CPU time under torch.profiler, a
batch of 32 at the ETTh1 shape). Here one 64-bit draw (``random_``) serves four elements: each takes a 15-bit
lane and is kept where the lane is at least ``round(p * 2**15)``, so an element is dropped with probability
``round(p * 2**15) / 2**15`` (0.100006 for ``p=0.1``), the kept ones scaled by ``1 / (1 - p)`` as torch does.
``benchmarks/train_overhead.py`` measures the training step before and after (the training loop section of
``docs/benchmarks.md``). The random stream is not torch's, so a fit is not bit for bit the one torch's dropout
gives: the same distribution, other draws, as with another seed.

The mask comes from torch's default generator, so ``torch.manual_seed`` (and Lightning's seeding) fixes it
as it fixes torch's. On other devices torch's own dropout is used: CUDA's fused kernel is already cheap.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Dropout", "apply_dropout"]

_LANE_BITS = 15           # the sign bit of each int16 lane is left out: random_() leaves the top int64 bit 0
_LANES = 1 << _LANE_BITS


def keep_mask(shape: torch.Size, p: float) -> Tensor:
    """A boolean mask of ``shape``, each element True (kept) with probability ``1 - round(p * 2**15) / 2**15``."""
    n = shape.numel()
    bits = torch.empty((n + 3) // 4, dtype=torch.int64).random_()          # four 16-bit lanes per draw
    lanes = bits.view(torch.int16)[:n].view(shape) & (_LANES - 1)           # (*shape) in [0, 2**15)
    return lanes >= round(p * _LANES)


class _MaskedScale(torch.autograd.Function):
    """x * keep / (1 - p), keeping only the boolean mask for the backward pass (as torch's dropout does)."""

    @staticmethod
    def forward(ctx, x: Tensor, p: float) -> Tensor:
        keep = keep_mask(x.shape, p)
        ctx.save_for_backward(keep)
        ctx.scale = 1.0 / (1.0 - p)
        return x.mul(keep).mul_(ctx.scale)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (keep,) = ctx.saved_tensors
        return grad.mul(keep).mul_(ctx.scale), None


def apply_dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """``torch.nn.functional.dropout`` with the cheaper CPU mask (module docstring); ``x`` itself where
    nothing is dropped (eval mode, ``p=0``)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return x
    if p == 1.0 or x.device.type != "cpu":
        return F.dropout(x, p, training=True)
    return _MaskedScale.apply(x, p)


class Dropout(nn.Dropout):
    """``torch.nn.Dropout`` with the cheaper CPU mask (module docstring); the same parameters and state."""

    def forward(self, x: Tensor) -> Tensor:
        if self.inplace:
            return super().forward(x)
        return apply_dropout(x, self.p, self.training)
