"""Learnable Token Merging: a mask module predicts a soft merge of N tokens into N' tokens.

Wang, Yang, "Efficient Visual Transformer by Learnable Token Merging" (LTM), 2024
(code: Statistical-Deep-Learning/LTM). A small mask module reads each token and
predicts its assignment over N' output slots (softmax over the slots, Gumbel-softmax
while training); the merged tokens are convex combinations of the input tokens,
M^T x with the columns of M normalised to sum to 1. The paper derives the mask from an
information-bottleneck bound; the IB regulariser is not included here.

Use it to shrink a long time-token sequence inside a model, or to group many variate
tokens into N' "variate clusters" (the merge is order-free: permuting the input tokens
leaves the merged tokens unchanged).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..registry import register

__all__ = ["LearnableTokenMerging"]


@register("reducer", "ltm")
class LearnableTokenMerging(nn.Module):
    """Learnable token merging (Wang & Yang, "Efficient Visual Transformer by Learnable Token Merging", 2024).

    Mask module: LN -> Linear(D -> hidden) -> GELU -> Linear(hidden -> slots), per token.
    P = softmax over the first N' slot logits / tau (``F.gumbel_softmax`` in training),
    P: (B, N, N'); M = P with every column divided by its sum, so each merged token
    y_j = sum_i M[i, j] x_i is a convex combination of the inputs. N' is ``n_out``, or
    ceil(ratio·N) for ``ratio`` (then at most ``max_out`` slots exist; the slot head is
    cut to the first N'). Cost O(N·N'·D) plus O(N·D·hidden) for the mask module.

    ``forward(x, return_merge=False)``: x (B, N, D) -> (B, N', D), and M (B, N, N') when asked.
    """

    complexity = "O(N·N'·D)"
    paper = "Wang & Yang, Efficient Visual Transformer by Learnable Token Merging, 2024"

    def __init__(self, d_model: int, *, n_out: int | None = None, ratio: float | None = None, tau: float = 1.0,
                 hidden: int | None = None, max_out: int = 256, eps: float = 1e-6):
        super().__init__()
        if (n_out is None) == (ratio is None):
            raise ValueError(f"give exactly one of n_out or ratio, got n_out={n_out}, ratio={ratio}")
        assert n_out is None or n_out >= 1, f"n_out must be positive, got {n_out}"
        assert ratio is None or 0 < ratio <= 1, f"ratio must be in (0, 1], got {ratio}"
        assert tau > 0, f"tau must be positive, got {tau}"
        self.n_out, self.ratio, self.tau, self.eps = n_out, ratio, tau, eps
        self.slots = n_out or max_out
        hidden = hidden or d_model
        self.mask = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, hidden), nn.GELU(),
                                  nn.Linear(hidden, self.slots))

    def output_tokens(self, n: int) -> int:
        """N' for an input of n tokens."""
        if self.n_out is not None:
            return self.n_out
        n_out = max(1, math.ceil(self.ratio * n))
        assert n_out <= self.slots, f"ratio {self.ratio} of {n} tokens needs {n_out} slots > max_out={self.slots}"
        return n_out

    def merge_matrix(self, x: Tensor) -> Tensor:
        """M: (B, N, N'), columns convex (non-negative, summing to 1 over the N inputs)."""
        logits = self.mask(x)[..., : self.output_tokens(x.shape[1])]           # (B, N, N')
        if self.training:
            p = F.gumbel_softmax(logits, tau=self.tau, dim=-1)                  # soft, one sample per token
        else:
            p = torch.softmax(logits / self.tau, dim=-1)                        # assignment over the slots
        return p / (p.sum(dim=1, keepdim=True) + self.eps)                      # normalise every column

    def forward(self, x: Tensor, return_merge: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        m = self.merge_matrix(x)                                                # (B, N, N')
        merged = m.transpose(1, 2) @ x                                          # (B, N', D)
        return (merged, m) if return_merge else merged
