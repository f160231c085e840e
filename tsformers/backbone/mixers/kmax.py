"""kMaX-DeepLab's k-means cross-attention: K learned centres summarise N tokens by hard assignment.

Yu, Wang, Qiao, Collins, Zhu, Adam, Yuille, Chen, "k-means Mask Transformer",
ECCV 2022 (code: google-research/deeplab2, bytedance/kmax-deeplab). Cross-attention
from cluster centres to tokens whose softmax over tokens is replaced by a hard argmax
over the *clusters*: every token is assigned to its nearest centre, and each centre
moves by the sum of the values of its tokens, C <- C + A^T V, a k-means step.

Transfer: K "regime" or "variate-group" prototypes summarise time or variate tokens
into K tokens (a reducer for a decoder or head). Order-free: permuting the tokens
leaves the centres unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..registry import register
from ..dropout import Dropout

__all__ = ["KMeansCrossAttention"]


@register("reducer", "kmeans_xattn")
class KMeansCrossAttention(nn.Module):
    """k-means cross-attention (Yu et al., "k-means Mask Transformer", ECCV 2022) as a token reducer.

    Per iteration (``n_iters``): logits = q(LN(C)) k(LN(x))^T / sqrt(D), (B, K, N);
    A = one-hot of the argmax over the K clusters for every token; C <- C + LN(W (A V))
    with V = v(LN(x)) (kMaX normalises the update with BatchNorm; LayerNorm here, so a
    forecast does not depend on the batch); then C <- C + FFN(LN(C)). The initial C are
    K learned centres.

    kMaX takes no gradient through the argmax (its logits are trained by a mask loss).
    With no such loss here, ``straight_through=True`` (default) passes the gradient of
    softmax over the clusters through the hard assignment (forward values unchanged);
    ``False`` is kMaX's stop-gradient, and then q and k learn nothing.
    Cost O(N·K·D) per iteration.

    ``forward(x, return_assignment=False)``: x (B, N, D) -> centres (B, K, D), and the list
    of hard assignments (one (B, K, N) per iteration) when asked.
    """

    complexity = "O(N·K·D)"
    paper = "Yu et al., k-means Mask Transformer (kMaX-DeepLab), ECCV 2022"

    def __init__(self, d_model: int, *, n_clusters: int = 8, n_iters: int = 1, d_ff: int | None = None,
                 dropout: float = 0.0, straight_through: bool = True):
        super().__init__()
        assert n_clusters >= 1 and n_iters >= 1, f"need n_clusters, n_iters >= 1, got {n_clusters}, {n_iters}"
        self.n_iters, self.straight_through = n_iters, straight_through
        self.centres = nn.Parameter(torch.randn(n_clusters, d_model))               # (K, D)
        self.norm_centres = nn.LayerNorm(d_model)
        self.norm_tokens = nn.LayerNorm(d_model)
        self.to_q = nn.Linear(d_model, d_model)
        self.to_k = nn.Linear(d_model, d_model)
        self.to_v = nn.Linear(d_model, d_model)
        self.update = nn.Sequential(nn.Linear(d_model, d_model), nn.LayerNorm(d_model))
        self.norm_ffn = nn.LayerNorm(d_model)
        d_ff = d_ff or 2 * d_model
        self.ffn = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), Dropout(dropout), nn.Linear(d_ff, d_model))
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, return_assignment: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        b = x.shape[0]
        tokens = self.norm_tokens(x)
        k, v = self.to_k(tokens), self.to_v(tokens)                                 # (B, N, D) each
        c = self.centres.expand(b, -1, -1)                                          # (B, K, D)
        assignments = []
        for _ in range(self.n_iters):
            q = self.to_q(self.norm_centres(c))                                     # (B, K, D)
            logits = q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])                 # (B, K, N)
            hard = F.one_hot(logits.argmax(dim=1), logits.shape[1]).transpose(1, 2).to(x.dtype)  # (B, K, N)
            a = hard
            if self.straight_through and torch.is_grad_enabled():
                soft = logits.softmax(dim=1)                                        # over the clusters
                a = hard + soft - soft.detach()
            assignments.append(hard)
            c = c + self.dropout(self.update(a @ v))                                # k-means step, (B, K, D)
            c = c + self.dropout(self.ffn(self.norm_ffn(c)))
        return (c, assignments) if return_assignment else c
