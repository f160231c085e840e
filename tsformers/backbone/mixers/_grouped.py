"""Attention inside groups of token indices: the engine of the windowed, strided and stripe mixers.

A local mixer is described by which queries sit together in a group and which keys
that group reads: two index tensors ``qi: (G, Wq)`` and ``ki: (G, Wk)`` into the N
tokens, with ``-1`` marking a padding slot (a group at the end of a sequence whose
length is not a multiple of the group size). :func:`grouped_attention` gathers q, k, v
into the groups, masks the padding (and, if asked, the future), attends, and scatters
the outputs back to their tokens. Padding therefore never needs to be materialised:
any N >= 1 works with any group size. Memory O(B·h·G·Wq·Wk).
"""

from __future__ import annotations

import torch
from torch import Tensor
from ..dropout import dropout as apply_dropout

__all__ = ["grouped_attention", "gather_tokens", "scatter_tokens", "ceil_div"]


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def gather_tokens(t: Tensor, idx: Tensor) -> Tensor:
    """``t: (B, h, N, d)``, ``idx: (G, W)`` with -1 for padding -> (B, h, G, W, d), zeros at padding."""
    out = t[:, :, idx.clamp(min=0)]                                     # (B, h, G, W, d)
    return out * (idx >= 0)[..., None].to(t.dtype)


def scatter_tokens(out: Tensor, qi: Tensor, n: int) -> Tensor:
    """Inverse of :func:`gather_tokens` for an index set that holds each of 0..n-1 exactly once.

    ``out: (B, h, G, W, d)`` -> (B, h, n, d).
    """
    flat_idx = qi.reshape(-1)
    real = (flat_idx >= 0).nonzero().squeeze(-1)                       # slots holding a real token
    inverse = torch.empty(n, dtype=torch.long, device=qi.device)
    inverse[flat_idx[real]] = real
    return out.flatten(2, 3)[:, :, inverse]                             # (B, h, n, d)


def _gather_mask(mask: Tensor, qi: Tensor, ki: Tensor) -> Tensor:
    """A full-attention mask (broadcastable to (B, h, N, M), True = may attend) -> (B', h', G, Wq, Wk)."""
    while mask.dim() < 4:
        mask = mask.unsqueeze(0)
    return mask[:, :, qi.clamp(min=0)[:, :, None], ki.clamp(min=0)[:, None, :]]


def grouped_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    qi: Tensor,
    ki: Tensor,
    *,
    causal: bool = False,
    time_index: Tensor | None = None,
    bias: Tensor | None = None,
    mask: Tensor | None = None,
    dropout: float = 0.0,
    training: bool = False,
    scatter: bool = True,
) -> Tensor:
    """Softmax attention of the queries ``qi`` over the keys ``ki`` of each group.

    q, k, v: (B, h, N, d). qi: (G, Wq), ki: (G, Wk), -1 for padding. ``causal``: a query
    sees only keys whose ``time_index`` (default: the token index itself) is not later
    than its own. ``bias``: additive scores broadcastable to (B, h, G, Wq, Wk) (a
    relative position bias). ``mask``: the full-attention convention of ``FullAttention``
    (boolean, broadcastable to (B, h, N, N), True where a query may attend), gathered
    into the groups. A query left with no key (possible only under a user mask or a
    causal mask) gets a zero output.

    Returns (B, h, N, d), or the grouped (B, h, G, Wq, d) when ``scatter`` is False.
    """
    n, scale = q.shape[2], q.shape[-1] ** -0.5
    qg = gather_tokens(q, qi)                                           # (B, h, G, Wq, d)
    kg, vg = gather_tokens(k, ki), gather_tokens(v, ki)                 # (B, h, G, Wk, d)
    scores = (qg @ kg.transpose(-1, -2)) * scale                        # (B, h, G, Wq, Wk)
    if bias is not None:
        scores = scores + bias
    allowed = (ki >= 0)[:, None, :].expand(-1, qi.shape[1], -1)          # (G, Wq, Wk)
    if causal:
        tq = qi if time_index is None else time_index[qi.clamp(min=0)]
        tk = ki if time_index is None else time_index[ki.clamp(min=0)]
        allowed = allowed & (tk[:, None, :] <= tq[:, :, None])
    if mask is not None:
        allowed = allowed & _gather_mask(mask.to(torch.bool), qi, ki)   # (B', h', G, Wq, Wk)
    has_key = allowed.any(-1, keepdim=True)                             # (..., G, Wq, 1)
    scores = scores.masked_fill(~allowed, float("-inf")).masked_fill(~has_key, 0.0)
    attn = scores.softmax(-1) * has_key.to(scores.dtype)
    attn = apply_dropout(attn, dropout, training)
    out = attn @ vg                                                     # (B, h, G, Wq, d)
    return scatter_tokens(out, qi, n) if scatter else out
