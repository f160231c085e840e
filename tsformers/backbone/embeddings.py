"""Input-side parts: instance normalisation, positional encodings, patch embeddings."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .registry import register
from .dropout import Dropout

__all__ = ["InstanceNorm", "NormStats", "PatchEmbedding", "SinusoidalPositionalEncoding"]

NormStats = tuple[Tensor, Tensor]  # (mean, std), each (B, 1, N)


class InstanceNorm(nn.Module):
    """Per-window, per-variate normalisation over time, undone on the forecast (RevIN).

    Kim et al., "Reversible Instance Normalization for Accurate Time-Series
    Forecasting against Distribution Shift", ICLR 2022. The default (``affine=False``)
    is the plain form of the Non-stationary Transformer (Liu et al., NeurIPS 2022)
    that Gateformer uses; ``affine=True`` adds RevIN's learnable per-variate weight
    (init 1) and bias (init 0), as PV-Client uses. Statistics are detached.
    Cost O(L) per variate, no token mixing.

    ``forward(x) -> (x_norm, stats)`` with x: (B, L, N); ``inverse(y, stats)`` with y: (B, H, N).
    """

    def __init__(self, *, n_vars: int | None = None, affine: bool = False, eps: float = 1e-5):
        super().__init__()
        assert not affine or n_vars, "InstanceNorm(affine=True) needs n_vars for its per-variate weight and bias"
        self.eps = eps
        self.affine = affine
        if affine:
            self.weight = nn.Parameter(torch.ones(n_vars))
            self.bias = nn.Parameter(torch.zeros(n_vars))

    def forward(self, x: Tensor) -> tuple[Tensor, NormStats]:
        assert x.ndim == 3, f"InstanceNorm expects x: (batch, time, n_vars), got shape {tuple(x.shape)}"
        mean = x.mean(dim=1, keepdim=True).detach()                                         # (B, 1, N)
        std = torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + self.eps).detach()  # (B, 1, N)
        x = (x - mean) / std
        if self.affine:
            x = x * self.weight + self.bias
        return x, (mean, std)

    def inverse(self, y: Tensor, stats: NormStats) -> Tensor:
        mean, std = stats
        if self.affine:
            y = (y - self.bias) / (self.weight + self.eps**2)  # RevIN's guard against a zero weight
        return y * std + mean                                # (B, H, N)


class SinusoidalPositionalEncoding(nn.Module):
    """Fixed sin/cos positions added to a token sequence (Vaswani et al., NeurIPS 2017).

    pe[p, 2i] = sin(p / 10000^(2i/D)), pe[p, 2i+1] = cos(p / 10000^(2i/D)).
    x: (B, P, D) -> x + pe[:P]. Cost O(P·D), no parameters.
    """

    def __init__(self, d_model: int, *, max_len: int = 5000):
        super().__init__()
        pe = torch.zeros(max_len, d_model)
        if pe.is_meta:  # built for its shapes only (loading checks a model's size first): no values to compute,
            self.register_buffer("pe", pe, persistent=False)  # and arange on meta would import torch._dynamo
            return
        position = torch.arange(max_len, dtype=torch.float32)[:, None]                  # (max_len, 1)
        div_term = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)[:, : d_model // 2]               # odd D: one cos fewer
        self.register_buffer("pe", pe, persistent=False)                                # (max_len, D)

    def forward(self, x: Tensor) -> Tensor:
        n_tokens = x.shape[-2]
        assert n_tokens <= self.pe.shape[0], f"{n_tokens} positions exceed max_len={self.pe.shape[0]}"
        return x + self.pe[:n_tokens]


@register("embedding", "patch")
class PatchEmbedding(nn.Module):
    """Patches of one series -> tokens (PatchTST, Nie et al., ICLR 2023; as Gateformer uses it).

    The end of the series is replication-padded by ``stride`` steps, then cut into
    patches of ``patch_len`` with step ``stride``, giving

        P = (L - patch_len) // stride + 2      (13 for L = 96, patch_len = stride = 8)

    patches, each mapped by Linear(patch_len -> D, no bias), plus fixed sinusoidal
    positions, then dropout. x: (..., L) -> (..., P, D); leading axes (batch,
    variates) pass through, so every variate is embedded on its own. Cost O(P·D).
    """

    def __init__(self, d_model: int, *, patch_len: int, stride: int, dropout: float = 0.0, max_len: int = 5000):
        super().__init__()
        assert patch_len > 0 and stride > 0, f"patch_len and stride must be positive, got {patch_len}, {stride}"
        self.patch_len = patch_len
        self.stride = stride
        self.pad = nn.ReplicationPad1d((0, stride))
        self.value_embedding = nn.Linear(patch_len, d_model, bias=False)
        self.position = SinusoidalPositionalEncoding(d_model, max_len=max_len)
        self.dropout = Dropout(dropout)

    def n_patches(self, length: int) -> int:
        """Number of patches P for a series of ``length`` steps."""
        assert length + self.stride >= self.patch_len, (
            f"a series of {length} steps is too short for patch_len={self.patch_len} with stride={self.stride}"
        )
        return (length - self.patch_len) // self.stride + 2

    def patches(self, x: Tensor) -> Tensor:
        """The raw patches: (..., L) -> (..., P, patch_len)."""
        self.n_patches(x.shape[-1])  # checks the length
        lead = x.shape[:-1]
        x = self.pad(x.reshape(-1, 1, x.shape[-1]))                      # (M, 1, L + stride); pad needs 3-D
        x = x.unfold(-1, self.patch_len, self.stride)                    # (M, 1, P, patch_len)
        return x.reshape(*lead, *x.shape[-2:])

    def forward(self, x: Tensor) -> Tensor:
        x = self.value_embedding(self.patches(x))                        # (..., P, D)
        return self.dropout(self.position(x))

