"""Short-term memory: sliding-window attention with a cache of the last tokens, for streaming.

References
----------
Beltagy, Peters & Cohan, "Longformer: The Long-Document Transformer", arXiv 2004.05150, 2020
(sliding-window attention). Behrouz, Zhong & Mirrokni, "Titans: Learning to Memorize at Test
Time", arXiv 2501.00663, 2025 (attention over a window as the short-term memory beside a
long-term neural memory; persistent memory tokens).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from tsformers.backbone.mixers._base import CAUSAL_SELF, SELF, check_cross
from tsformers.backbone.registry import register
from tsformers.backbone.dropout import attend

__all__ = ["SlidingWindowAttention"]

State = dict[str, Tensor]


@register("mixer", "sliding_window")
class SlidingWindowAttention(nn.Module):
    """Multi-head softmax attention inside a window of ``window`` tokens, with a learned relative-position bias.

    Query i attends to keys j with i - window < j <= i (causal) or |i - j| < window
    (not causal), plus ``n_persistent`` learned tokens that every query sees
    (Titans' persistent memory). The score of (i, j) gets a learned bias per head
    and distance |i - j|, so order is known without positional encodings.
    Cost O(N * window * D) time; streaming keeps the last window - 1 tokens.

    ``forward(x, kv=None, mask=None)`` follows the mixer interface (self-attention
    only: ``kv`` must be None; ``mask`` as in :class:`~tsformers.backbone.FullAttention`).
    ``step(x, state)`` advances a causal cache by any number of tokens, so that
    stepping through a sequence in pieces equals ``forward`` over all of it.
    """

    complexity = "O(N*w)"
    patterns = frozenset({SELF, CAUSAL_SELF})
    requires_order = True
    mixes_tokens = True
    paper = "Beltagy et al., Longformer, arXiv 2004.05150, 2020; Behrouz et al., Titans, arXiv 2501.00663, 2025"

    def __init__(self, d_model: int, *, n_heads: int = 8, dropout: float = 0.0, causal: bool = False,
                 window: int = 64, n_persistent: int = 0):
        super().__init__()
        assert d_model % n_heads == 0, f"d_model={d_model} must be divisible by n_heads={n_heads}"
        assert window >= 1 and n_persistent >= 0, f"need window >= 1, n_persistent >= 0; got {window}, {n_persistent}"
        self.n_heads, self.dropout, self.causal, self.window = n_heads, dropout, causal, window
        self.to_q = nn.Linear(d_model, d_model)
        self.to_kv = nn.Linear(d_model, 2 * d_model)
        self.to_out = nn.Linear(d_model, d_model)
        self.rel_bias = nn.Parameter(torch.zeros(n_heads, window))                 # per head and distance
        self.persistent = nn.Parameter(torch.randn(n_persistent, d_model) * 0.02)  # (P, D), P may be 0

    # -- the mixer interface ---------------------------------------------------------------

    def forward(self, x: Tensor, kv: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        check_cross(self, kv)
        if mask is None and x.shape[1] > 4 * self.window:
            return self._forward_blocked(x)
        return self._forward_dense(x, mask)

    def _forward_dense(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Every query against every key under a band mask: O(N^2), the reference for short sequences."""
        n = x.shape[1]
        pos = torch.arange(n, device=x.device)
        distance = pos[:, None] - pos[None, :]                                    # (N, N)
        allowed = (distance >= 0) & (distance < self.window) if self.causal else distance.abs() < self.window
        allowed = allowed.expand(x.shape[0], 1, n, n)
        if mask is not None:
            allowed = allowed & mask
        return self._attend(x, x, distance.abs().clamp(max=self.window - 1), allowed)

    def _forward_blocked(self, x: Tensor) -> Tensor:
        """Queries in blocks of ``window``, each against its own key band only: O(N·window)."""
        batch, n, d = x.shape
        w = self.window
        n_blocks = -(-n // w)
        left, right = w - 1, (0 if self.causal else w - 1)
        padded = F.pad(x, (0, 0, left, n_blocks * w - n + right))                 # (B, left + nb·w + right, D)
        keys = padded.unfold(1, w + left + right, w)                              # (B, nb, D, w + left + right)
        keys = rearrange(keys, "b k d m -> (b k) m d")                            # (B·nb, M, D)
        queries = rearrange(F.pad(x, (0, 0, 0, n_blocks * w - n)), "b (k c) d -> (b k) c d", c=w)  # (B·nb, w, D)

        q_pos = torch.arange(w, device=x.device) + left                           # within a block's key band
        k_pos = torch.arange(w + left + right, device=x.device)
        distance = q_pos[:, None] - k_pos[None, :]                                # (w, M)
        band = (distance >= 0) & (distance < w) if self.causal else distance.abs() < w
        start = torch.arange(n_blocks, device=x.device) * w - left                 # global index of each band's key 0
        key_index = start[:, None] + k_pos[None, :]                               # (nb, M)
        real_key = (key_index >= 0) & (key_index < n)
        real_query = (start[:, None] + left + torch.arange(w, device=x.device)[None, :]) < n   # (nb, w)
        # padding queries (cropped below) may see anything in their band, so that no row is empty
        allowed = band[None] & (real_key[:, None, :] | ~real_query[:, :, None])   # (nb, w, M)
        allowed = allowed.repeat(batch, 1, 1)[:, None]                            # (B·nb, 1, w, M)
        y = self._attend(queries, keys, distance.abs().clamp(max=w - 1), allowed)  # (B·nb, w, D)
        return rearrange(y, "(b k) c d -> b (k c) d", b=batch)[:, :n]             # (B, N, D)

    # -- streaming -------------------------------------------------------------------------

    def init_state(self, rows: int) -> State:
        like = self.to_q.weight
        return {"cache": like.new_zeros(rows, self.window - 1, like.shape[1]),
                "seen": torch.zeros(rows, dtype=torch.long, device=like.device)}

    def init_scan(self, rows: int) -> State:
        """The empty cache of ``scan`` (the streaming interface of a recurrent slot)."""
        return self.init_state(rows)

    def scan(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """The streaming interface of a recurrent slot: ``step`` from an empty cache when ``state`` is None."""
        return self.step(x, self.init_state(x.shape[0]) if state is None else state)

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """Causal attention of the new tokens x: (R, T, D) over the cache and themselves."""
        assert self.causal, "streaming needs causal=True"
        w, n_new = self.window, x.shape[1]
        context = torch.cat([state["cache"], x], dim=1)                           # (R, w-1+T, D)
        q_pos = torch.arange(n_new, device=x.device) + (w - 1)
        k_pos = torch.arange(context.shape[1], device=x.device)
        distance = q_pos[:, None] - k_pos[None, :]                                # (T, w-1+T)
        in_window = (distance >= 0) & (distance < w)
        filled = k_pos[None, :] >= (w - 1) - state["seen"][:, None]              # (R, w-1+T): not cache padding
        allowed = (in_window[None] & filled[:, None])[:, None]                    # (R, 1, T, w-1+T)
        y = self._attend(x, context, distance.clamp(0, w - 1), allowed)
        keep = slice(context.shape[1] - (w - 1), context.shape[1])
        return y, {"cache": context[:, keep], "seen": (state["seen"] + n_new).clamp(max=w - 1)}

    # -- the attention itself ---------------------------------------------------------------

    def _attend(self, x: Tensor, context: Tensor, distance: Tensor, allowed: Tensor) -> Tensor:
        """Queries from x (B, N, D), keys/values from [persistent, context (B, M, D)]; distance (N, M) -> bias."""
        heads = "b n (h d) -> b h n d"
        persistent = self.persistent.expand(x.shape[0], -1, -1)                   # (B, P, D)
        k, v = self.to_kv(torch.cat([persistent, context], dim=1)).chunk(2, dim=-1)
        q, k, v = (rearrange(t, heads, h=self.n_heads) for t in (self.to_q(x), k, v))
        bias = self.rel_bias[:, distance]                                         # (h, N, M)
        bias = bias.masked_fill(~allowed, float("-inf"))                          # (B, h, N, M)
        bias = F.pad(bias, (persistent.shape[1], 0))                              # persistent keys: bias 0, always seen
        out = attend(q, k, v, mask=bias, dropout_p=self.dropout if self.training else 0.0)
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))               # (B, N, D)
