"""Transformer-XL's relative positional multi-head attention over [memory; current segment].

Dai et al., "Transformer-XL: Attentive Language Models Beyond a Fixed-Length
Context", ACL 2019, section 3.3; the attention of GTrXL (Parisotto et al., ICML 2020).
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn

from ..registry import register
from ..dropout import attend
from ._base import CAUSAL_SELF, check_cross


def check_causal_only(causal: bool) -> None:
    if not causal:
        raise ValueError("Transformer-XL attention is causal only (its memory holds the past): build it with "
                         "causal=True, or pick a mixer that supports 'self' (e.g. 'full')")

__all__ = ["RelativeMultiHeadAttention", "relative_shift", "sinusoid"]


def sinusoid(distances: Tensor, d_model: int) -> Tensor:
    """Transformer-XL's encoding of relative distances: [sin(p f_i), cos(p f_i)], f_i = 10000^(-2i/D).

    distances: (K,) -> (K, d_model). Sines in the first half, cosines in the second
    (for odd D the last cosine is dropped).
    """
    inv_freq = torch.exp(torch.arange(0, d_model, 2, device=distances.device, dtype=torch.float32)
                         * (-math.log(10000.0) / d_model))                  # (ceil(D/2),)
    angles = distances.float()[:, None] * inv_freq[None, :]                 # (K, ceil(D/2))
    return torch.cat([angles.sin(), angles.cos()], dim=-1)[:, :d_model]


def relative_shift(scores: Tensor) -> Tensor:
    """Transformer-XL's relative shift: column k of row i moves to column k - (S - 1 - i).

    ``scores[..., i, k]`` holds query i against the relative position of distance
    K - 1 - k (distances listed from K - 1 down to 0). With the S queries being the
    last S of the K keys, the result holds at ``[..., i, j]`` the score for distance
    (K - S + i) - j, for every key j at or before query i; entries for keys after
    the query are meaningless and must be masked. Pad-and-reshape, no gather:
    (..., S, K) -> (..., S, K).
    """
    *lead, s, k = scores.shape
    padded = torch.cat([scores.new_zeros(*lead, s, 1), scores], dim=-1)    # (..., S, K + 1)
    padded = padded.view(*lead, k + 1, s)
    return padded[..., 1:, :].reshape(*lead, s, k)


@register("mixer", "xl_relative")
class RelativeMultiHeadAttention(nn.Module):
    """Relative positional multi-head attention of Transformer-XL (Dai et al., ACL 2019), causal.

    The S current tokens x attend over [memory; x] (K = M + S keys). For query i and
    key j at distance d = (M + i) - j >= 0, per head::

        score(i, j) = (q_i + u) . k_j  +  (q_i + v) . (W_R r_d)        (/ sqrt(d_head))

    where r_d is the sinusoidal encoding of d (:func:`sinusoid`), u and v are
    learned per-head biases (content and position), and the second term is computed
    for all distances at once and aligned with :func:`relative_shift`. There are no
    absolute positions: the output depends on where tokens are relative to one
    another only. q, k, v, W_R and the output projection have no biases, as in the
    paper.

    ``window``: when set, a query also ignores keys more than ``window`` steps back
    (Transformer-XL's ``same_length`` attention). Each token then sees itself and
    the ``window`` tokens before it wherever the segment boundaries fall, so the
    result no longer depends on how a stream is cut into segments.

    Cost O(S·K·D) time and O(S·K) memory per head per segment: O(N·(S + M)·D)
    over a stream of N tokens, linear in N.

    ``forward(x, kv=None, mask=None, memory=None)``: x (B, S, D) the current tokens,
    ``memory`` (B, M, D) the cached tokens just before x (None: no memory; the memory
    extends the sequence backwards, so this is causal self-attention, not a cross
    pattern, and ``kv`` is refused), ``mask``
    boolean broadcastable to (B, n_heads, S, M + S), True where a query may attend,
    combined with the causal (and window) mask. Returns (B, S, D).
    """

    complexity = "O(N·(S+M))"
    patterns = frozenset({CAUSAL_SELF})  # the memory extends the sequence backwards: not a cross pattern
    requires_order = True
    mixes_tokens = True
    paper = "Dai et al., Transformer-XL: Attentive Language Models Beyond a Fixed-Length Context, ACL 2019"

    def __init__(self, d_model: int, *, n_heads: int = 8, dropout: float = 0.0, causal: bool = True,
                 window: int | None = None):
        super().__init__()
        assert d_model % n_heads == 0, f"d_model={d_model} must be divisible by n_heads={n_heads}"
        check_causal_only(causal)
        assert window is None or window >= 0, f"window must be None or >= 0, got {window}"
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_model // n_heads
        self.dropout = dropout
        self.causal = causal
        self.window = window
        self.to_q = nn.Linear(d_model, d_model, bias=False)
        self.to_kv = nn.Linear(d_model, 2 * d_model, bias=False)
        self.to_r = nn.Linear(d_model, d_model, bias=False)          # W_R
        self.to_out = nn.Linear(d_model, d_model, bias=False)
        self.u = nn.Parameter(torch.zeros(n_heads, self.d_head))    # content bias
        self.v = nn.Parameter(torch.zeros(n_heads, self.d_head))    # position bias

    def allowed(self, n_queries: int, n_memory: int, device=None) -> Tensor:
        """Boolean (S, M + S): True where query i may see key j (0 <= distance <= window)."""
        i = torch.arange(n_queries, device=device)[:, None] + n_memory
        j = torch.arange(n_memory + n_queries, device=device)[None, :]
        distance = i - j
        ok = distance >= 0
        if self.window is not None:
            ok = ok & (distance <= self.window)
        return ok

    def forward(self, x: Tensor, kv: Tensor | None = None, mask: Tensor | None = None,
                memory: Tensor | None = None) -> Tensor:
        check_cross(self, kv)
        assert x.ndim == 3, f"expected x: (batch, tokens, d_model), got shape {tuple(x.shape)}"
        n_memory = 0 if memory is None else memory.shape[1]
        context = x if memory is None else torch.cat([memory, x], dim=1)           # (B, K, D), K = M + S
        n_queries, n_keys = x.shape[1], context.shape[1]

        q = rearrange(self.to_q(x), "b s (h d) -> b h s d", h=self.n_heads)
        k, v = (rearrange(t, "b k (h d) -> b h k d", h=self.n_heads) for t in self.to_kv(context).chunk(2, dim=-1))
        distances = torch.arange(n_keys - 1, -1, -1, device=x.device)             # K - 1, ..., 0
        r = rearrange(self.to_r(sinusoid(distances, self.d_model).to(x.dtype)), "k (h d) -> h k d", h=self.n_heads)

        scale = 1.0 / math.sqrt(self.d_head)
        position = torch.einsum("bhsd,hkd->bhsk", q + self.v[:, None], r)         # (B, h, S, K), by distance
        position = relative_shift(position) * scale                                 # (B, h, S, K), by key
        allowed = self.allowed(n_queries, n_memory, device=x.device)                # (S, K)
        if mask is not None:
            allowed = allowed & mask
        bias = position.masked_fill(~allowed, float("-inf"))
        # softmax(((q + u) . k) / sqrt(d) + bias) v, the content term inside the fused kernel
        out = attend(q + self.u[:, None], k, v, mask=bias,
                     dropout_p=self.dropout if self.training else 0.0)           # (B, h, S, d)
        return self.to_out(rearrange(out, "b h s d -> b s (h d)"))               # (B, S, D)

    def logits_at(self, x: Tensor, memory: Tensor, distances: Tensor) -> tuple[Tensor, Tensor]:
        """The scaled scores of the queries x over [memory; x] at given distances, and the values.

        For a memory whose tokens are not the contiguous steps just before x (a sparse KV
        cache keeps some older tokens and evicts others): x (B, S, D), memory (B, M, D),
        ``distances`` (B, S, M + S) long, how many steps key j lies before query i (only
        those >= 0 are meaningful; the caller masks the rest). The same scores as
        :meth:`forward` where the distances are the contiguous ones; each distinct distance's
        encoding is computed once. Returns logits (B, h, S, M + S) and values (B, h, M + S, d);
        :meth:`mix` turns attention weights over them into the output. No dropout (inference).
        """
        context = torch.cat([memory, x], dim=1)                                     # (B, K, D)
        q = rearrange(self.to_q(x), "b s (h d) -> b h s d", h=self.n_heads)
        k, v = (rearrange(t, "b k (h d) -> b h k d", h=self.n_heads) for t in self.to_kv(context).chunk(2, dim=-1))
        scale = 1.0 / math.sqrt(self.d_head)
        content = torch.einsum("bhsd,bhkd->bhsk", q + self.u[:, None], k)          # (B, h, S, K)
        unique, index = torch.unique(distances.clamp(min=0), return_inverse=True)  # (U,), (B, S, K)
        r = rearrange(self.to_r(sinusoid(unique, self.d_model).to(x.dtype)), "u (h d) -> h u d", h=self.n_heads)
        by_distance = torch.einsum("bhsd,hud->bhsu", q + self.v[:, None], r)       # (B, h, S, U)
        position = by_distance.gather(-1, index[:, None].expand(-1, self.n_heads, -1, -1))
        return (content + position) * scale, v

    def mix(self, probs: Tensor, values: Tensor) -> Tensor:
        """Attention weights (B, h, S, K) over the values (B, h, K, d) of :meth:`logits_at` -> (B, S, D)."""
        return self.to_out(rearrange(probs @ values, "b h s d -> b s (h d)"))
