"""FcaFormer's forward cross attention: later blocks of a stage also attend to merged tokens of earlier blocks.

Zhang, Hu, Wang, Chen, "FcaFormer: Forward Cross Attention in Hybrid Vision
Transformer", ICCV 2023 (official code: hkzhang-git/FcaFormer). Inside a stage, the
output of each block is merged by a token merger (TME: a large-kernel, long-stride
depthwise convolution followed by a small-kernel enhancement) into a few "cross
tokens"; every later block attends with keys and values [own tokens; cross tokens of
the earlier blocks], each cross token scaled by learnable factors (LSF). This adds
dense connections across depth to attention at a cost of N/s extra keys per earlier
block. On time tokens the TME is a depthwise Conv1d with stride s.

Two parts: ``fca`` (a mixer: attention that accepts cross tokens; alone, without
them, it is plain multi-head self-attention) and ``fca_stage`` (a stack that makes the
cross tokens and hands them forward).

Where we depart from the official code, and why:

- LSFs are per channel and per source block, shape (sources, D), applied after a
  per-source LayerNorm; the code's factors are per cross-token *position* (fixed N)
  and sit before the norm, where a uniform scale would be normalised away.
- A source's cross tokens enter the joint softmax with weight rho = mean(LSF^2)
  (rho = 1 at the initial LSF = 1, so the start matches the plain joint softmax):
  a zero-valued token would still take softmax mass, so without this weight
  LSF = 0 would not switch the cross path off; with it, all LSFs = 0 gives exactly
  the plain stage and the path fades continuously as the LSFs shrink.
- No relative position bias (the code's 2-D table needs a fixed resolution) and
  no local conv after attention; the TME reads the block output (after the FFN).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..registry import mixer_dropout, register
from ._base import CAUSAL_SELF, CROSS, SELF, check_causal, check_cross
from ..dropout import Dropout, dropout

__all__ = ["FcaBlock", "FcaStage", "ForwardCrossAttention", "TokenMerger"]


@register("mixer", "fca")
class ForwardCrossAttention(nn.Module):
    """Forward cross attention (Zhang et al., "FcaFormer", ICCV 2023): softmax attention over [own; cross tokens].

    Queries come from x; keys/values from x (or ``kv``) and, when given, from the
    cross tokens of up to ``n_sources`` earlier blocks, ``cross = [s_1, ..., s_S]``,
    s_l: (B, M_l, D). Source l is normalised (its own LayerNorm), scaled per channel by
    its LSF gamma_l (D,), projected by the shared k/v projections, and enters the joint
    softmax with weight rho_l = mean(gamma_l^2) (see the module docstring). Without
    cross tokens (``n_sources=0``, the registry default) this is multi-head
    self-attention. Cost O(N·(M + sum_l M_l)·D), M_l = N / merge_stride.

    ``causal=True``: query i sees own keys 0..i and cross token j of every source only
    if j·merge_stride <= i, which holds when the cross tokens come from the causal
    ``TokenMerger`` of ``fca_stage`` (token j summarises steps up to j·merge_stride).
    ``mask``: boolean, broadcastable to (B, n_heads, N, M) over the own keys, True
    where a query may attend. x: (B, N, D) -> (B, N, D).
    """

    complexity = "O(N^2·D)"
    patterns = frozenset({SELF, CAUSAL_SELF, CROSS})
    requires_order = False
    # its cross tokens come only from the stage that merges earlier blocks' outputs: in any other
    # block it is plain multi-head attention, so a slot builds that stage around it or refuses it
    home_stack = "fca_stage"
    mixes_tokens = True
    paper = "Zhang et al., FcaFormer: Forward Cross Attention in Hybrid Vision Transformer, ICCV 2023"

    def __init__(self, d_model: int, *, n_heads: int = 8, dropout: float = 0.0, causal: bool = False,
                 n_sources: int = 0, merge_stride: int = 4):
        super().__init__()
        check_causal(type(self), causal)
        assert d_model % n_heads == 0, f"d_model={d_model} must be divisible by n_heads={n_heads}"
        self.n_heads, self.dropout, self.causal = n_heads, dropout, causal
        self.n_sources, self.merge_stride = n_sources, merge_stride
        self.to_q = nn.Linear(d_model, d_model)
        self.to_k = nn.Linear(d_model, d_model)
        self.to_v = nn.Linear(d_model, d_model)
        self.to_out = nn.Linear(d_model, d_model)
        self.cross_norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(n_sources))
        self.lsf = nn.Parameter(torch.ones(n_sources, d_model))       # learnable scale factors, (S, D)

    def _heads(self, t: Tensor) -> Tensor:
        return rearrange(t, "b n (h d) -> b h n d", h=self.n_heads)

    def forward(self, x: Tensor, kv: Tensor | None = None, mask: Tensor | None = None,
                cross: Sequence[Tensor] | None = None) -> Tensor:
        check_cross(self, kv)
        kv = x if kv is None else kv                                   # (B, M, D)
        cross = list(cross or [])
        assert len(cross) <= self.n_sources, (
            f"got cross tokens from {len(cross)} blocks but this fca mixer was built with n_sources="
            f"{self.n_sources}")
        n = x.shape[1]
        q, k, v = self._heads(self.to_q(x)), self._heads(self.to_k(kv)), self._heads(self.to_v(kv))
        logits = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])      # (B, h, N, M)
        allowed = torch.ones(n, kv.shape[1], dtype=torch.bool, device=x.device)
        if self.causal:
            allowed = allowed.tril()
        allowed = allowed if mask is None else allowed & mask           # broadcast to (B, h, N, M)
        weights = [allowed.to(logits.dtype).expand_as(logits)]
        values = [v]
        # the last len(cross) sources' factors pair with the given sources (early blocks have fewer)
        first = self.n_sources - len(cross)
        for l, s in enumerate(cross, start=first):
            gamma = self.lsf[l]                                         # (D,)
            s = self.cross_norms[l](s) * gamma                          # (B, M_l, D)
            k_s, v_s = self._heads(self.to_k(s)), self._heads(self.to_v(s))  # (B, h, M_l, d)
            logits = torch.cat([logits, q @ k_s.transpose(-2, -1) / math.sqrt(q.shape[-1])], dim=-1)
            w = gamma.square().mean().expand(n, s.shape[1])             # rho_l for every (query, cross token)
            if self.causal:
                visible = (torch.arange(s.shape[1], device=x.device) * self.merge_stride)[None, :] \
                    <= torch.arange(n, device=x.device)[:, None]        # (N, M_l)
                w = w * visible
            weights.append(w.expand(*logits.shape[:2], n, s.shape[1]))
            values.append(v_s)
        weight = torch.cat(weights, dim=-1)                             # (B, h, N, M + sum M_l)
        logits = logits.masked_fill(weight == 0, float("-inf"))
        unnormalised = torch.exp(logits - logits.amax(dim=-1, keepdim=True)) * weight
        attn = unnormalised / unnormalised.sum(dim=-1, keepdim=True)   # weighted softmax
        attn = dropout(attn, self.dropout, self.training)
        out = attn @ torch.cat(values, dim=-2)                          # (B, h, N, d)
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))     # (B, N, D)


class TokenMerger(nn.Module):
    """FcaFormer's TME on a token sequence: depthwise Conv1d(kernel k, stride s), then depthwise Conv1d(3), residual.

    Non-causal: centred padding k // 2, giving floor((N - 1) / s) + 1 cross tokens.
    Causal: left padding only, so cross token j summarises steps j·s - k + 1 .. j·s and
    the enhancement conv (left-padded) only reads cross tokens j-2..j: token j depends
    on steps <= j·s; ceil(N / s) cross tokens. Cost O(N·k·D). x: (B, N, D) -> (B, M, D).
    """

    def __init__(self, d_model: int, *, stride: int = 4, kernel: int = 7, causal: bool = False):
        super().__init__()
        assert stride >= 1 and kernel >= 1, f"stride and kernel must be positive, got {stride}, {kernel}"
        self.causal, self.kernel = causal, kernel
        self.merge = nn.Conv1d(d_model, d_model, kernel, stride=stride, groups=d_model, bias=False)
        self.enhance = nn.Conv1d(d_model, d_model, 3, groups=d_model)

    def forward(self, x: Tensor) -> Tensor:
        x = x.transpose(1, 2)                                           # (B, D, N)
        pad = (self.kernel - 1, 0) if self.causal else (self.kernel // 2, self.kernel // 2)
        m = self.merge(F.pad(x, pad))                                   # (B, D, M)
        m = m + self.enhance(F.pad(m, (2, 0) if self.causal else (1, 1)))
        return m.transpose(1, 2)                                        # (B, M, D)


class FcaBlock(nn.Module):
    """Pre-norm block around the ``fca`` mixer: x + drop(fca(LN(x), cross)), then x + drop(FFN(LN(x))).

    Cost: the mixer's plus O(N·D·d_ff). x: (B, N, D) -> (B, N, D).
    """

    def __init__(self, d_model: int, *, n_heads: int, d_ff: int, dropout: float, activation: str,
                 causal: bool, n_sources: int, merge_stride: int, mixer_kwargs: dict[str, Any] | None = None):
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        own, options = mixer_dropout(dropout, mixer_kwargs)
        self.mixer = ForwardCrossAttention(d_model, n_heads=n_heads, dropout=own, causal=causal, n_sources=n_sources,
                                           merge_stride=merge_stride, **options)
        self.norm2 = nn.LayerNorm(d_model)
        act = {"relu": nn.ReLU, "gelu": nn.GELU}[activation]
        self.ffn = nn.Sequential(nn.Linear(d_model, d_ff), act(), Dropout(dropout), nn.Linear(d_ff, d_model))
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, cross: Sequence[Tensor] | None = None) -> Tensor:
        x = x + self.dropout(self.mixer(self.norm1(x), cross=cross))
        return x + self.dropout(self.ffn(self.norm2(x)))


@register("stack", "fca_stage")
class FcaStage(nn.Module):
    """An FcaFormer stage (Zhang et al., ICCV 2023): ``n_layers`` FCA blocks with forward cross tokens.

    Block l attends to its own tokens and to the cross tokens that ``TokenMerger`` made
    from the outputs of blocks max(0, l - max_sources) .. l - 1 (FcaFormer's
    ``cab_max_d``). Needs time tokens (the merger is a strided convolution). Built like
    every stack; ``mixer`` must be ``"fca"`` or ``"full"`` (both mean the FCA attention,
    which is full attention plus cross tokens). Cost of block l:
    O(N·(N + min(l, max_sources)·N/s)·D) plus the FFN. x: (B, N, D) -> (B, N, D).
    """

    requires_order = True  # the token merger is a strided convolution over positions

    def __init__(self, *, d_model: int, n_heads: int, d_ff: int, n_layers: int, dropout: float = 0.1,
                 activation: str = "relu", mixer: str = "full", mixer_kwargs: dict[str, Any] | None = None,
                 causal: bool = False, merge_stride: int = 4, merge_kernel: int = 7, max_sources: int = 12,
                 final_norm: bool = False):
        super().__init__()
        if mixer not in ("fca", "full"):
            raise ValueError(f"fca_stage runs the 'fca' attention in every block; got mixer={mixer!r} "
                             "(use 'fca' or 'full', or another stack for other mixers)")
        assert n_layers >= 1 and max_sources >= 1, f"need n_layers >= 1 and max_sources >= 1, got {n_layers}, {max_sources}"
        self.max_sources = max_sources
        self.blocks = nn.ModuleList(
            FcaBlock(d_model, n_heads=n_heads, d_ff=d_ff, dropout=dropout, activation=activation, causal=causal,
                     n_sources=min(l, max_sources), merge_stride=merge_stride, mixer_kwargs=mixer_kwargs)
            for l in range(n_layers))
        self.mergers = nn.ModuleList(
            TokenMerger(d_model, stride=merge_stride, kernel=merge_kernel, causal=causal)
            for _ in range(n_layers - 1))
        self.norm = nn.LayerNorm(d_model) if final_norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        cross: list[Tensor] = []                                        # cross tokens, one (B, M, D) per block
        for l, block in enumerate(self.blocks):
            x = block(x, cross[-self.max_sources:])                     # (B, N, D)
            if l < len(self.mergers):
                cross.append(self.mergers[l](x))                        # (B, ceil(N / s), D)
        return self.norm(x)
