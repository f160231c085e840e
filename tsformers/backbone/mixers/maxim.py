"""MAXIM's multi-axis gated MLP on a 1-D token sequence, and its cross-gating block.

Tu, Talebi, Zhang, Yang, Milanfar, Bovik, Li, "MAXIM: Multi-Axis MLP for Image
Processing", CVPR 2022 (official code: google-research/maxim). On images the local
axis is a b x b window and the global axis a g x g grid; here tokens are a 1-D
sequence, so

- the **local (block) branch** cuts the N tokens into N/b blocks of b consecutive
  tokens and mixes inside each block (token i meets tokens in its own block only);
- the **global (grid) branch** lays the tokens out as a g x (N/g) grid (row r holds
  tokens r·N/g ... (r+1)·N/g - 1) and mixes along the g axis, so token i meets the
  tokens congruent to i mod N/g (same offset, stride N/g).

Each mixing is a spatial gating unit (gMLP, Liu et al., NeurIPS 2021): split the
channels into u, v; v = Dense over the token axis (a b x b or g x g matrix); u ⊙ (v + 1).
The token-axis weights have sizes b and g, not N, so any N works: the sequence is
zero-padded at the end up to a multiple of b (of g) inside each branch and cut back.
On time tokens pick b = patches per day and g = number of days.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..registry import register
from ._base import CAUSAL_SELF, SELF, check_causal, check_cross
from ..dropout import Dropout

__all__ = ["AxisGatedMLP", "CrossGatingBlock", "MultiAxisGatedMLP", "SpatialGatingWeights"]


def _pad_to_multiple(x: Tensor, multiple: int) -> tuple[Tensor, int]:
    """Zero-pad the token axis of (B, N, C) at the end up to a multiple; returns the padded tensor and N."""
    n = x.shape[1]
    pad = (-n) % multiple
    return (F.pad(x, (0, 0, 0, pad)) if pad else x), n


def _to_axis(x: Tensor, size: int, mode: str) -> Tensor:
    """(B, N, C), N a multiple of ``size`` -> (B, groups, size, C) with the mixing axis at dim 2.

    ``block``: groups are the N/size blocks of ``size`` consecutive tokens.
    ``grid``: the sequence is a size x (N/size) grid; groups are its N/size columns
    (tokens with the same offset mod N/size), each holding ``size`` tokens.
    """
    b, n, c = x.shape
    if mode == "block":
        return x.reshape(b, n // size, size, c)
    return x.reshape(b, size, n // size, c).transpose(1, 2)


def _from_axis(x: Tensor, mode: str) -> Tensor:
    """Inverse of ``_to_axis``: (B, groups, size, C) -> (B, N, C)."""
    b, groups, size, c = x.shape
    if mode == "grid":
        x = x.transpose(1, 2)
    return x.reshape(b, groups * size, c)


class _TokenAxisDense(nn.Module):
    """Dense layer over the token axis of (B, groups, L, C): out[.., i, :] = sum_j W[i, j] x[.., j, :] + bias[i].

    With ``causal`` the L x L matrix is lower-triangular (position i sees 0..i of its axis).
    """

    def __init__(self, size: int, *, causal: bool, bias_init: float = 0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(size, size) * 2e-2)   # MAXIM's normal(0.02) init
        self.bias = nn.Parameter(torch.full((size,), bias_init))
        self.register_buffer("keep", torch.ones(size, size).tril() if causal else torch.ones(size, size),
                             persistent=False)

    def forward(self, x: Tensor) -> Tensor:                            # (B, G, L, C)
        w = self.weight * self.keep                                     # (L, L)
        return torch.einsum("ij,bgjc->bgic", w, x) + self.bias[:, None]  # (B, G, L, C)


class AxisGatedMLP(nn.Module):
    """One branch of the multi-axis block: a residual gMLP whose spatial gating runs along one axis.

    LN -> Dense(C -> factor·C) -> GELU -> SGU along the axis (u ⊙ (Dense_axis(LN(v)) + 1))
    -> Dense(factor·C/2 -> C) -> dropout, added to the input. ``mode="block"`` mixes within
    blocks of ``size`` consecutive tokens, ``mode="grid"`` along the grid axis of a
    size x (N/size) layout. Cost O(N·size·C + N·C²·factor). x: (B, N, C) -> (B, N, C).
    """

    def __init__(self, width: int, *, size: int, mode: str, factor: int = 2, dropout: float = 0.0,
                 causal: bool = False):
        super().__init__()
        assert mode in ("block", "grid"), f"mode must be 'block' or 'grid', got {mode!r}"
        assert size >= 1 and factor >= 1, f"size and factor must be positive, got {size}, {factor}"
        self.size, self.mode = size, mode
        hidden = width * factor
        assert hidden % 2 == 0, f"width·factor={hidden} must be even (the SGU splits it in two)"
        self.norm = nn.LayerNorm(width)
        self.in_proj = nn.Linear(width, hidden)
        self.gate_norm = nn.LayerNorm(hidden // 2)
        self.axis_dense = _TokenAxisDense(size, causal=causal)
        self.out_proj = nn.Linear(hidden // 2, width)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x, n = _pad_to_multiple(x, self.size)                          # (B, N_pad, C)
        x = _to_axis(x, self.size, self.mode)                          # (B, G, L, C)
        y = F.gelu(self.in_proj(self.norm(x)))                         # (B, G, L, factor·C)
        u, v = y.chunk(2, dim=-1)                                      # 2 x (B, G, L, factor·C/2)
        y = u * (self.axis_dense(self.gate_norm(v)) + 1.0)             # spatial gating unit
        x = x + self.dropout(self.out_proj(y))                         # (B, G, L, C)
        return _from_axis(x, self.mode)[:, :n]                         # (B, N, C)


@register("mixer", "maxim_gmlp")
class MultiAxisGatedMLP(nn.Module):
    """MAXIM's multi-axis gated MLP (Tu et al., "MAXIM: Multi-Axis MLP for Image Processing", CVPR 2022).

    Dense(D -> expand·D) -> GELU, split the channels in two halves: the first goes
    through the global (grid) gMLP branch, the second through the local (block) gMLP
    branch; concatenate, Dense(expand·D -> D), dropout. The outer LayerNorm and
    residual of the paper's block are the host block's (``PreNormBlock``). Token-axis
    weights are b x b (``block_size``) and g x g (``grid_size``), so N is free; it is
    zero-padded internally to multiples of b and of g. Cost O(N·(b + g)·D + N·D²).

    ``causal=True`` (our addition, not in the paper) makes both token-axis matrices
    lower-triangular: a token then only meets earlier tokens of its block and earlier
    rows of its grid column, and end padding never reaches a real token. No cross
    pattern; ``mask`` is not supported. x: (B, N, D) -> (B, N, D).
    """

    complexity = "O(N·(b+g)·D)"
    patterns = frozenset({SELF, CAUSAL_SELF})
    requires_order = True
    mixes_tokens = True
    paper = "Tu et al., MAXIM: Multi-Axis MLP for Image Processing, CVPR 2022"

    def __init__(self, d_model: int, *, n_heads: int = 1, dropout: float = 0.0, causal: bool = False,
                 block_size: int = 4, grid_size: int = 4, expand: int = 2, gmlp_factor: int = 2):
        super().__init__()
        check_causal(type(self), causal)
        del n_heads  # an MLP mixer has no heads; accepted for the shared constructor
        self.causal = causal
        width = d_model * expand // 2
        assert width * 2 == d_model * expand, f"d_model·expand={d_model * expand} must be even"
        self.in_proj = nn.Linear(d_model, 2 * width)
        self.global_branch = AxisGatedMLP(width, size=grid_size, mode="grid", factor=gmlp_factor,
                                          dropout=dropout, causal=causal)
        self.local_branch = AxisGatedMLP(width, size=block_size, mode="block", factor=gmlp_factor,
                                         dropout=dropout, causal=causal)
        self.out_proj = nn.Linear(2 * width, d_model)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, kv: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        check_cross(self, kv)
        if mask is not None:
            raise ValueError("maxim_gmlp takes no attention mask (it has no attention matrix)")
        u, v = F.gelu(self.in_proj(x)).chunk(2, dim=-1)                # 2 x (B, N, expand·D/2)
        y = torch.cat([self.global_branch(u), self.local_branch(v)], dim=-1)  # (B, N, expand·D)
        return self.dropout(self.out_proj(y))                          # (B, N, D)


class SpatialGatingWeights(nn.Module):
    """MAXIM's ``GetSpatialGatingWeights``: multi-axis gate values for the cross-gating block.

    LN -> Dense(C -> 2C) -> GELU, split in u, v; u -> token-axis Dense along the grid
    axis, v -> token-axis Dense within blocks (both biases start at 1, so the gate starts
    near 1); concatenate, Dense(2C -> C), dropout. Cost O(N·(b + g)·C + N·C²).
    x: (B, N, C) -> (B, N, C).
    """

    def __init__(self, width: int, *, block_size: int, grid_size: int, dropout: float = 0.0):
        super().__init__()
        self.block_size, self.grid_size = block_size, grid_size
        self.norm = nn.LayerNorm(width)
        self.in_proj = nn.Linear(width, 2 * width)
        self.grid_dense = _TokenAxisDense(grid_size, causal=False, bias_init=1.0)
        self.block_dense = _TokenAxisDense(block_size, causal=False, bias_init=1.0)
        self.out_proj = nn.Linear(2 * width, width)
        self.dropout = Dropout(dropout)

    def _along(self, x: Tensor, dense: nn.Module, size: int, mode: str) -> Tensor:
        x, n = _pad_to_multiple(x, size)
        return _from_axis(dense(_to_axis(x, size, mode)), mode)[:, :n]  # (B, N, C)

    def forward(self, x: Tensor) -> Tensor:
        u, v = F.gelu(self.in_proj(self.norm(x))).chunk(2, dim=-1)     # 2 x (B, N, C)
        u = self._along(u, self.grid_dense, self.grid_size, "grid")
        v = self._along(v, self.block_dense, self.block_size, "block")
        return self.dropout(self.out_proj(torch.cat([u, v], dim=-1)))  # (B, N, C)


@register("fusion", "cross_gating")
class CrossGatingBlock(nn.Module):
    """MAXIM's cross-gating MLP block (Tu et al., CVPR 2022): two token streams gate each other.

    Both streams are projected to width D (y from ``d_y``), then each computes
    multi-axis gate values from itself (``SpatialGatingWeights`` after LN -> Dense -> GELU);
    y' = y + Dense(y ⊙ g_x) and x' = x + y' + Dense(x ⊙ g_y), as in the official code
    (x' also receives the aggregated y'). Use it to let targets and covariates, two
    time-token streams of the same length, modulate each other. Cost O(N·(b + g)·D + N·D²).

    ``forward(x, y) -> (x', y')`` with x: (B, N, D), y: (B, N, d_y); both outputs (B, N, D).
    """

    complexity = "O(N·(b+g)·D)"
    paper = "Tu et al., MAXIM: Multi-Axis MLP for Image Processing, CVPR 2022"

    def __init__(self, d_model: int, *, d_y: int | None = None, block_size: int = 4, grid_size: int = 4,
                 dropout: float = 0.0):
        super().__init__()
        self.x_proj = nn.Linear(d_model, d_model)
        self.y_proj = nn.Linear(d_y or d_model, d_model)
        self.x_pre = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, d_model), nn.GELU())
        self.y_pre = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, d_model), nn.GELU())
        self.x_gate = SpatialGatingWeights(d_model, block_size=block_size, grid_size=grid_size, dropout=dropout)
        self.y_gate = SpatialGatingWeights(d_model, block_size=block_size, grid_size=grid_size, dropout=dropout)
        self.x_out = nn.Linear(d_model, d_model)
        self.y_out = nn.Linear(d_model, d_model)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        assert x.shape[:2] == y.shape[:2], (
            f"cross gating needs two streams with the same batch and token count, got {tuple(x.shape)} "
            f"and {tuple(y.shape)}")
        x, y = self.x_proj(x), self.y_proj(y)                          # (B, N, D) each
        shortcut_x, shortcut_y = x, y
        x, y = self.x_pre(x), self.y_pre(y)
        gx, gy = self.x_gate(x), self.y_gate(y)                        # gate values, (B, N, D) each
        y = shortcut_y + self.dropout(self.y_out(y * gx))              # y gated by x
        x = shortcut_x + y + self.dropout(self.x_out(x * gy))          # x gated by y
        return x, y
