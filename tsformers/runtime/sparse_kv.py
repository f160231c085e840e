"""A sparse-window KV cache for streaming attention: the last ``window`` tokens plus the ``k_global`` heavy hitters.

ALISA (Zhao et al., "ALISA: Accelerating Large Language Model Inference via
Sparsity-Aware KV Caching", ISCA 2024), as catalog section D reads it: in
autoregressive or streaming decoding, keep the keys and values of the last ``w``
tokens plus the ``k`` earlier tokens with the highest attention accumulated so
far, and evict the rest (the paper's CPU/GPU scheduling is out of scope). Memory
per step O(w + k) instead of O(t), attention per step O((w + k)·D).

Eviction is per token and per row (series): the accumulated score of a cached
token is the sum, over heads and over every query since it entered, of the
attention it received. The cache never holds more than ``window + k_global``
tokens; while the sequence fits in that budget nothing is evicted and the
outputs equal full causal attention exactly.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

__all__ = ["SparseKVAttention", "SparseKVCache"]

State = dict[str, Tensor]


class SparseKVCache:
    """The cache policy: append a token's keys/values, accumulate attention, evict beyond the budget.

    State (batch first, M cached tokens, M <= window + k_global): ``k``, ``v``
    (B, h, M, d), ``score`` (B, M) accumulated attention, ``pos`` (B, M) the
    tokens' positions in the stream, ``seen`` (B,) tokens so far.
    """

    def __init__(self, window: int, k_global: int = 0):
        assert window >= 1 and k_global >= 0, f"need window >= 1 and k_global >= 0, got {window}, {k_global}"
        self.window, self.k_global = window, k_global

    @property
    def budget(self) -> int:
        return self.window + self.k_global

    def init_state(self, rows: int, n_heads: int, d_head: int, *, device=None, dtype=None) -> State:
        empty = torch.zeros(rows, n_heads, 0, d_head, device=device, dtype=dtype)
        return {"k": empty, "v": empty.clone(), "score": torch.zeros(rows, 0, device=device, dtype=dtype),
                "pos": torch.zeros(rows, 0, dtype=torch.long, device=device),
                "seen": torch.zeros(rows, dtype=torch.long, device=device)}

    def attend(self, q: Tensor, k: Tensor, v: Tensor, state: State) -> tuple[Tensor, State]:
        """One new token: q, k, v (B, h, 1, d) -> its attention output (B, h, 1, d) over the cache and itself."""
        keys = torch.cat([state["k"], k], dim=2)                              # (B, h, M + 1, d)
        values = torch.cat([state["v"], v], dim=2)
        probs = torch.softmax((q @ keys.mT) * q.shape[-1] ** -0.5, dim=-1)     # (B, h, 1, M + 1)
        out = probs @ values
        score = torch.cat([state["score"], state["score"].new_zeros(len(q), 1)], dim=1) + probs.sum(dim=(1, 2))
        pos = torch.cat([state["pos"], state["seen"][:, None]], dim=1)          # (B, M + 1)
        new = {"k": keys, "v": values, "score": score, "pos": pos, "seen": state["seen"] + 1}
        return out, self.evict(new)

    def attend_block(self, logits: Tensor, score: Tensor, pos: Tensor,
                     seen: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """S new tokens at once, from their attention logits: the same policy as S calls of :meth:`attend`.

        ``logits`` (B, h, S, M + S): the scaled scores of the S new queries against the M cached
        tokens (in the cache's order) and the S new ones; ``score``, ``pos`` (B, M) and ``seen``
        (B,) describe the cache as in the state. Query t sees the cache as it stood after token
        t - 1 (evictions included) and itself, so the result does not depend on how a stream is
        cut into blocks. The logits may carry any positional term (the caller computes them);
        only the softmax, the accumulation and the evictions run here, a loop over the S tokens.

        Returns ``probs`` (B, h, S, M + S), zero on the keys a query did not see; ``keep`` (B, M')
        ascending indices into the M + S tokens that the cache holds afterwards (M' =
        min(M + S, budget)); their accumulated ``score`` and stream positions ``pos`` (B, M').
        Every row must hold the same number of cached tokens (M), as a batched state does.
        """
        rows, _, n_new, n_keys = logits.shape
        n_cached = n_keys - n_new
        arange = torch.arange(n_new, device=logits.device)
        positions = torch.cat([pos, seen[:, None] + arange], dim=1)                # (B, M + S)
        alive = torch.zeros(rows, n_keys, dtype=torch.bool, device=logits.device)
        alive[:, :n_cached] = True
        total = torch.cat([score, score.new_zeros(rows, n_new)], dim=1)            # (B, M + S)
        every_row, held, probs = torch.arange(rows, device=logits.device), n_cached, []
        for t in range(n_new):
            alive[:, n_cached + t] = True
            held += 1
            p = torch.softmax(logits[:, :, t].masked_fill(~alive[:, None], float("-inf")), dim=-1)  # (B, h, K)
            probs.append(p)
            total = total + p.sum(dim=1)
            if held > self.budget:  # the lowest-scored token outside the last `window`, per row
                outside = positions <= (seen[:, None] + t - self.window)
                drop = total.masked_fill(~(alive & outside), float("inf")).argmin(dim=1)   # (B,)
                alive = alive.clone()
                alive[every_row, drop] = False
                held -= 1
        keep = torch.arange(n_keys, device=logits.device).expand(rows, n_keys)[alive].view(rows, held)
        return (torch.stack(probs, dim=2), keep, total.gather(1, keep), positions.gather(1, keep))

    def evict(self, state: State) -> State:
        """Drop the lowest-scored token outside the window, per row, until the budget holds."""
        while state["pos"].shape[1] > self.budget:
            recent = state["pos"] > (state["seen"][:, None] - 1 - self.window)    # the last `window` tokens
            score = state["score"].masked_fill(recent, float("inf"))
            drop = score.argmin(dim=1)                                            # (B,)
            keep = torch.ones_like(state["pos"], dtype=torch.bool)
            keep[torch.arange(len(drop)), drop] = False
            m = state["pos"].shape[1] - 1
            state = {"k": _select(state["k"], keep, m, dim=2), "v": _select(state["v"], keep, m, dim=2),
                     "score": state["score"][keep].view(-1, m), "pos": state["pos"][keep].view(-1, m),
                     "seen": state["seen"]}
        return state


def _select(t: Tensor, keep: Tensor, m: int, dim: int) -> Tensor:
    """t (B, h, M, d) without the dropped token of each row (keep (B, M), one False per row)."""
    moved = t.transpose(1, dim)                                                  # (B, M, h, d)
    return moved[keep].view(t.shape[0], m, *moved.shape[2:]).transpose(1, dim)


class SparseKVAttention(nn.Module):
    """Streaming causal attention of a multi-head mixer through a :class:`SparseKVCache`.

    Shares the projections of an attention mixer with ``to_q``, ``to_k``, ``to_v``
    and ``to_out`` (``"full"``, ``"sqa"``-like), so a trained network's attention
    decodes token by token with O(window + k_global) memory.
    ``init_state(rows)``, ``step(x, state) -> (y, state)`` with x (B, T, D), T >= 1.
    """

    def __init__(self, mixer: nn.Module, *, window: int, k_global: int = 0):
        super().__init__()
        for name in ("to_q", "to_k", "to_v", "to_out", "n_heads"):
            assert hasattr(mixer, name), f"{type(mixer).__name__} has no {name}; SparseKVAttention needs q/k/v/out"
        self.mixer, self.cache = mixer, SparseKVCache(window, k_global)

    def init_state(self, rows: int) -> State:
        w = self.mixer.to_q.weight
        return self.cache.init_state(rows, self.mixer.n_heads, w.shape[0] // self.mixer.n_heads,
                                     device=w.device, dtype=w.dtype)

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        heads = "b t (h d) -> b h t d"
        q, k, v = (rearrange(proj(x), heads, h=self.mixer.n_heads)
                   for proj in (self.mixer.to_q, self.mixer.to_k, self.mixer.to_v))
        outs = []
        for t in range(x.shape[1]):
            out, state = self.cache.attend(q[:, :, t:t + 1], k[:, :, t:t + 1], v[:, :, t:t + 1], state)
            outs.append(out)
        y = rearrange(torch.cat(outs, dim=2), "b h t d -> b t (h d)")
        return self.mixer.to_out(y), state


def full_causal(mixer: nn.Module, x: Tensor) -> Tensor:
    """The reference: causal softmax attention of the mixer's projections over all of x (B, T, D)."""
    heads = "b t (h d) -> b h t d"
    q, k, v = (rearrange(proj(x), heads, h=mixer.n_heads) for proj in (mixer.to_q, mixer.to_k, mixer.to_v))
    return mixer.to_out(rearrange(F.scaled_dot_product_attention(q, k, v, is_causal=True), "b h t d -> b t (h d)"))
