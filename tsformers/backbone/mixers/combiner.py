"""Combiner: full attention at sub-quadratic cost through block summaries (Combiner-Fixed)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..registry import register
from ._base import CAUSAL_SELF, SELF, check_causal, check_cross
from ..dropout import Dropout

__all__ = ["Combiner"]


@register("mixer", "combiner")
class Combiner(nn.Module):
    """Combiner-Fixed (Ren, Dai, Dai, Yang, Leskovec, Schuurmans, Dai, "Combiner: Full Attention
    Transformer with Sparse Computation Cost", NeurIPS 2021; code google-research ``combiner/``).

    Tokens are cut into contiguous blocks of ``block_size`` (None: ⌈√N⌉ at each call).
    Query i in block r attends, in one softmax, directly to the keys of its own block and
    to every other block s through one summary: the factorisation
    p(j | i) = p(s | i)·p(j | s). The summary key is the block's mean key, with logit
    q_i·k̄_s/√d + log|s| (so a block of equal keys gets the mass its tokens would get in
    full attention); its value is the block's own attention-pooled value
    Σ_{j∈s} p(j | s) v_j, p(j | s) = softmax_j(w_h·k_j/√d) with a learned query w_h per head
    (zero at init: the mean value). Every output depends on every input, while the score
    matrix is N × (b + N/b): cost O(N·(b + N/b)·D) = O(N√N·D).

    ``causal=True``: the own block is masked causally and only earlier blocks' summaries
    are visible. ``mode="local"`` drops the summaries (plain block-local attention, the
    ablation that loses full coverage). Blocks are contiguous, so order matters.
    """

    complexity = "O(N·sqrt(N)·D)"
    patterns = frozenset({SELF, CAUSAL_SELF})
    requires_order = True
    mixes_tokens = True
    paper = "Ren et al., Combiner: Full Attention Transformer with Sparse Computation Cost, NeurIPS 2021"

    def __init__(self, d_model: int, *, n_heads: int = 8, dropout: float = 0.0, causal: bool = False,
                 block_size: int | None = None, mode: str = "fixed"):
        super().__init__()
        check_causal(type(self), causal)
        assert d_model % n_heads == 0, f"d_model={d_model} must be divisible by n_heads={n_heads}"
        assert mode in ("fixed", "local"), f"mode must be 'fixed' or 'local', got {mode!r}"
        assert block_size is None or block_size >= 1
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.causal, self.block_size, self.mode = causal, block_size, mode
        self.to_qkv = nn.Linear(d_model, 3 * d_model)
        self.to_out = nn.Linear(d_model, d_model)
        self.summary_query = nn.Parameter(torch.zeros(n_heads, self.d_head))   # w_h
        self.attn_dropout = Dropout(dropout)

    def logits(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Blocked logits (B, H, n_b, b, b + n_b), own-block values (B, H, n_b, b, d), summary values (B, H, n_b, d)."""
        n = x.shape[1]
        b = self.block_size or math.ceil(math.sqrt(n))
        n_b = math.ceil(n / b)
        qkv = F.pad(self.to_qkv(x), (0, 0, 0, n_b * b - n))                      # (B, n_b·b, 3D)
        q, k, v = (rearrange(t, "B (m c) (h d) -> B h m c d", c=b, h=self.n_heads) for t in qkv.chunk(3, -1))
        valid = torch.arange(n_b * b, device=x.device).view(n_b, b) < n         # (n_b, b)
        scale = 1 / math.sqrt(self.d_head)

        local = (q @ k.transpose(-1, -2)) * scale                                 # (B, H, n_b, b, b)
        allowed = valid[:, None, :]                                              # (n_b, 1, b) keys
        if self.causal:
            allowed = allowed & torch.ones(b, b, dtype=torch.bool, device=x.device).tril()
        local = local.masked_fill(~allowed, float("-inf"))

        # block summaries: mean key, attention-pooled value
        count = valid.sum(-1)                                                    # (n_b,)
        k_bar = (k * valid[..., None]).sum(3) / count[:, None]                   # (B, H, n_b, d)
        inner = torch.einsum("Bhmcd,hd->Bhmc", k, self.summary_query) * scale    # (B, H, n_b, b)
        inner = inner.masked_fill(~valid, float("-inf")).softmax(-1)
        v_bar = torch.einsum("Bhmc,Bhmcd->Bhmd", inner, v)                       # (B, H, n_b, d)
        summary = torch.einsum("Bhrcd,Bhsd->Bhrcs", q, k_bar) * scale + count.log()  # (B, H, n_b, b, n_b)
        blocks = torch.arange(n_b, device=x.device)
        seen = blocks[None, :] < blocks[:, None] if self.causal else blocks[None, :] != blocks[:, None]
        if self.mode == "local":
            seen = torch.zeros_like(seen)
        summary = summary.masked_fill(~seen[:, None, :], float("-inf"))         # (r, 1, s) mask
        return torch.cat([local, summary], dim=-1), v, v_bar

    def forward(self, x: Tensor, kv: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        check_cross(self, kv)
        if mask is not None:
            raise ValueError("combiner takes no attention mask")
        n = x.shape[1]
        logits, v, v_bar = self.logits(x)
        b = v.shape[3]
        weights = self.attn_dropout(logits.softmax(-1))                          # (B, H, n_b, b, b + n_b)
        out = weights[..., :b] @ v + torch.einsum("Bhrcs,Bhsd->Bhrcd", weights[..., b:], v_bar)
        out = rearrange(out, "B h m c d -> B (m c) (h d)")[:, :n]                  # (B, N, D)
        return self.to_out(out)
