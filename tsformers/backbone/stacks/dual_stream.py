"""Dual-Stream Transformer: a token stream written by attention, a context stream written by FFNs.

Kerce and Fox, "The Dual-Stream Transformer: Channelized Architecture for Interpretable
Language Modeling", arXiv 2603.07461, 2026.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..feedforward import FeedForward
from ..registry import mixer_dropout, register
from ..dropout import Dropout, attend

__all__ = ["ChannelLayerNorm", "DualStream", "DualStreamBlock", "HeadLinear"]

MIXINGS = ("independent", "kronecker", "dense")


class HeadLinear(nn.Module):
    """A D -> D projection (D = H·d_h, no bias) whose head-to-head mixing is restricted.

    ``"dense"``: any D×D matrix (the standard projection). ``"independent"``: block-diagonal,
    one d_h×d_h block per head (H·d_h² parameters; heads never exchange anything).
    ``"kronecker"``: W = A ⊗ I_{d_h} with A: H×H (H² parameters): output head h is
    Σ_h' A[h, h']·(input head h'), so heads exchange scalars and each head's vector
    structure is kept. Cost O(N·D²), O(N·D·d_h), O(N·D·H) respectively.
    """

    def __init__(self, d_model: int, n_heads: int, mixing: str = "kronecker"):
        super().__init__()
        assert mixing in MIXINGS, f"mixing must be one of {MIXINGS}, got {mixing!r}"
        assert d_model % n_heads == 0, (d_model, n_heads)
        self.mixing, self.n_heads, self.d_head = mixing, n_heads, d_model // n_heads
        h, dh = n_heads, self.d_head
        if mixing == "dense":
            self.weight = nn.Parameter(torch.empty(d_model, d_model))
            nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)                   # as nn.Linear
        elif mixing == "independent":
            self.weight = nn.Parameter(torch.empty(h, dh, dh))                   # (H, out, in)
            bound = dh ** -0.5
            nn.init.uniform_(self.weight, -bound, bound)
        else:
            self.weight = nn.Parameter(torch.eye(h) + torch.randn(h, h) * h ** -0.5 * 0.5)  # (H, H)

    def matrix(self) -> Tensor:
        """The equivalent (D, D) matrix M, y = x @ M.T."""
        if self.mixing == "dense":
            return self.weight
        if self.mixing == "independent":
            return torch.block_diag(*self.weight)
        return torch.kron(self.weight, torch.eye(self.d_head, device=self.weight.device, dtype=self.weight.dtype))

    def forward(self, x: Tensor) -> Tensor:                                       # (..., D)
        if self.mixing == "dense":
            return F.linear(x, self.weight)
        xh = x.unflatten(-1, (self.n_heads, self.d_head))                         # (..., H, d_h)
        if self.mixing == "independent":
            y = torch.einsum("hod,...hd->...ho", self.weight, xh)
        else:
            y = torch.einsum("gh,...hd->...gd", self.weight, xh)
        return y.flatten(-2)                                                      # (..., D)


class ChannelLayerNorm(nn.Module):
    """Channel-aware LayerNorm: each head's d_h dims normalised on their own, affine (D,) weight and bias.

    Keeps heads isolated (a plain LayerNorm would mix statistics across heads). Cost O(N·D).
    """

    def __init__(self, d_model: int, n_heads: int, eps: float = 1e-5):
        super().__init__()
        self.n_heads, self.eps = n_heads, eps
        self.weight, self.bias = nn.Parameter(torch.ones(d_model)), nn.Parameter(torch.zeros(d_model))

    def forward(self, x: Tensor) -> Tensor:
        xh = x.unflatten(-1, (self.n_heads, -1))                                  # (..., H, d_h)
        xh = F.layer_norm(xh, xh.shape[-1:], eps=self.eps)
        return xh.flatten(-2) * self.weight + self.bias


class DualStreamBlock(nn.Module):
    """One layer: x_t += Attn(CLN(read)); x_e += FFN(CLN(x_t + x_e)).

    read = x_t + x_e (``attn_reads="both"``, default) or x_t alone (``"token"``: the token
    stream then never depends on any FFN). q, k, v and the output projection are
    ``HeadLinear`` with the chosen head mixing. Cost O(N²·D) + O(N·D·d_ff) plus the projections.
    """

    def __init__(self, d_model: int, *, n_heads: int, d_ff: int, dropout: float = 0.0, causal: bool = False,
                 mixing: str = "kronecker", attn_reads: str = "both", attention_dropout: float | None = None):
        super().__init__()
        assert attn_reads in ("both", "token"), attn_reads
        self.n_heads, self.causal, self.attn_reads = n_heads, causal, attn_reads
        self.p = dropout if attention_dropout is None else attention_dropout  # on the attention weights
        self.norm_attn = ChannelLayerNorm(d_model, n_heads)
        self.q, self.k, self.v, self.o = (HeadLinear(d_model, n_heads, mixing) for _ in range(4))
        self.norm_ffn = ChannelLayerNorm(d_model, n_heads)
        self.ffn = FeedForward(d_model, d_ff=d_ff, dropout=dropout, activation="gelu")
        self.dropout = Dropout(dropout)

    def forward(self, x_t: Tensor, x_e: Tensor) -> tuple[Tensor, Tensor]:
        h = self.norm_attn(x_t + x_e if self.attn_reads == "both" else x_t)      # (B, N, D)
        q, k, v = (proj(h).unflatten(-1, (self.n_heads, -1)).transpose(1, 2) for proj in (self.q, self.k, self.v))
        a = attend(q, k, v, dropout_p=self.p if self.training else 0.0, is_causal=self.causal)  # (B, H, N, d_h)
        x_t = x_t + self.dropout(self.o(a.transpose(1, 2).flatten(-2)))           # token stream: attention only
        x_e = x_e + self.dropout(self.ffn(self.norm_ffn(x_t + x_e)))              # context stream: FFN only
        return x_t, x_e


@register("stack", "dual_stream")
class DualStream(nn.Module):
    """Dual-Stream Transformer stack (Kerce & Fox, arXiv 2603.07461, 2026).

    The residual stream is split in two: a token stream x_t (starts as the input tokens,
    written only by attention) and a context stream x_e (starts at 0, written only by the
    FFNs); the output is x_t + x_e and ``streams(x)`` returns both. Heads are isolated by a
    channel-aware (per-head) LayerNorm, and head mixing in the attention projections is
    ``"independent"`` (block-diagonal), ``"kronecker"`` (A ⊗ I: heads exchange scalars only;
    the paper's recommended trade-off) or ``"dense"`` (standard). For interpretable
    variate-token models, align heads with covariate groups. The paper's exact read path of
    each sublayer was not available to us: attention reads x_t + x_e by default
    (``attn_reads="token"`` makes it read x_t alone) and the FFN reads x_t + x_e.

    Uses its own channelized softmax attention, so ``mixer`` must be ``"full"``; of the mixer's
    options it takes ``mixer_kwargs={"dropout": p}`` only, the dropout of its attention weights.
    Cost O(N²·D) + O(N·D·d_ff) per layer. x: (B, N, D) -> (B, N, D).
    """

    requires_order = False  # its attention has no positions; the FFNs act per token

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
        mixing: str = "kronecker",
        attn_reads: str = "both",
    ):
        super().__init__()
        attention_dropout, options = mixer_dropout(None, mixer_kwargs)  # None: the blocks' dropout
        if mixer != "full" or options:
            raise ValueError(f"dual_stream uses its own channelized softmax attention, which takes no mixer options "
                             f"but its dropout; build it with mixer='full' and no mixer_kwargs other than dropout, got "
                             f"mixer={mixer!r}, mixer_kwargs={mixer_kwargs}")
        self.layers = nn.ModuleList(
            DualStreamBlock(d_model, n_heads=n_heads, d_ff=d_ff, dropout=dropout, causal=causal, mixing=mixing,
                            attn_reads=attn_reads, attention_dropout=attention_dropout)
            for _ in range(n_layers)
        )

    def streams(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(token stream, context stream), each (B, N, D)."""
        x_t, x_e = x, torch.zeros_like(x)
        for layer in self.layers:
            x_t, x_e = layer(x_t, x_e)
        return x_t, x_e

    def forward(self, x: Tensor) -> Tensor:
        x_t, x_e = self.streams(x)
        return x_t + x_e
