"""CrossViT's cross-attention fusion of two token branches, and a small two-branch patch encoder.

Chen, Fan, Panda, "CrossViT: Cross-Attention Multi-Scale Vision Transformer for
Image Classification", ICCV 2021 (official code: IBM/CrossViT). Two branches tokenise
the same input at two patch sizes, each with its own CLS token and width. Fusion lets
the CLS token of one branch, projected to the other branch's width, be the *only*
query over [that CLS; the other branch's patch tokens]; the result is projected back
and becomes the new CLS, so a fusion costs O(N) instead of O(N²). Patch tokens are
never changed by a fusion; information flows between branches through the CLS tokens
only (and back into the patch tokens at the next self-attention inside the branch).

On a series: a small patch length (fine, many tokens) and a large one (coarse, few
tokens); the forecast head reads both CLS tokens.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from ..embeddings import PatchEmbedding
from ..registry import build, register
from ..dropout import attend

__all__ = ["ClsCrossAttention", "CrossViTFusion", "CrossViTTwoBranch"]


class ClsCrossAttention(nn.Module):
    """The CLS token (first token) alone queries all tokens: x[:, :1] + Attn(q = LN(x)[:, :1], kv = LN(x)).

    Multi-head softmax attention with one query (CrossViT's ``CrossAttentionBlock``
    without MLP). Cost O(M·D) for M tokens. x: (B, 1 + M, D) -> (B, 1, D).
    """

    def __init__(self, dim: int, *, n_heads: int, dropout: float = 0.0):
        super().__init__()
        assert dim % n_heads == 0, f"width {dim} must be divisible by n_heads={n_heads}"
        self.n_heads = n_heads
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(dim, dim)
        self.to_v = nn.Linear(dim, dim)
        self.to_out = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm(x)                                                       # (B, 1 + M, D)
        q = rearrange(self.to_q(h[:, :1]), "b n (h d) -> b h n d", h=self.n_heads)  # (B, h, 1, d)
        k = rearrange(self.to_k(h), "b n (h d) -> b h n d", h=self.n_heads)         # (B, h, 1 + M, d)
        v = rearrange(self.to_v(h), "b n (h d) -> b h n d", h=self.n_heads)
        out = attend(q, k, v, dropout_p=self.dropout if self.training else 0.0)  # (B, h, 1, d)
        return x[:, :1] + self.to_out(rearrange(out, "b h n d -> b n (h d)"))  # (B, 1, D)


class _OneWay(nn.Module):
    """CLS of branch X reads branch Y: f (X -> Y width), ``depth`` CLS cross-attentions, g (Y -> X width)."""

    def __init__(self, d_from: int, d_to: int, *, n_heads: int, depth: int, dropout: float):
        super().__init__()
        self.project = nn.Sequential(nn.LayerNorm(d_from), nn.GELU(), nn.Linear(d_from, d_to))
        self.layers = nn.ModuleList(ClsCrossAttention(d_to, n_heads=n_heads, dropout=dropout) for _ in range(depth))
        self.project_back = nn.Sequential(nn.LayerNorm(d_to), nn.GELU(), nn.Linear(d_to, d_from))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        cls = self.project(x[:, :1])                                   # (B, 1, d_to)
        for layer in self.layers:
            cls = layer(torch.cat([cls, y[:, 1:]], dim=1))             # over [CLS_x; patches_y] -> (B, 1, d_to)
        return torch.cat([self.project_back(cls), x[:, 1:]], dim=1)    # (B, 1 + N_x, d_from)


@register("fusion", "crossvit_fusion")
class CrossViTFusion(nn.Module):
    """CrossViT cross-attention fusion (Chen, Fan, Panda, ICCV 2021), symmetric, between two branches.

    For branch x: CLS_x' = g(f(CLS_x) + Attn(q = f(CLS_x), kv = [f(CLS_x); patches_y])),
    with f = LN -> GELU -> Linear(d_x -> d_y) and g its way back; symmetrically for y.
    Both directions read the *inputs* (the paper's simultaneous update). As in the paper
    (eq. 7) and the official code, the residual is taken in the other branch's width
    and the back-projection *replaces* CLS_x. ``fusion_depth`` stacks that many CLS
    cross-attentions per direction. Patch tokens pass unchanged.
    Cost O((N_x + N_y)·D) per fusion.

    ``forward(x, y) -> (x', y')``: x (B, 1 + N_x, d_model), y (B, 1 + N_y, d_y), each with
    its CLS token first; outputs have the input shapes.
    """

    complexity = "O(N·D)"
    paper = "Chen, Fan, Panda, CrossViT: Cross-Attention Multi-Scale Vision Transformer, ICCV 2021"

    def __init__(self, d_model: int, *, d_y: int | None = None, n_heads: int = 4, fusion_depth: int = 1,
                 dropout: float = 0.0):
        super().__init__()
        d_y = d_y or d_model
        assert fusion_depth >= 1, f"fusion_depth must be at least 1, got {fusion_depth}"
        self.x_reads_y = _OneWay(d_model, d_y, n_heads=n_heads, depth=fusion_depth, dropout=dropout)
        self.y_reads_x = _OneWay(d_y, d_model, n_heads=n_heads, depth=fusion_depth, dropout=dropout)

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        assert x.shape[1] >= 1 and y.shape[1] >= 1, "each branch needs its CLS token first"
        return self.x_reads_y(x, y), self.y_reads_x(y, x)


@register("fusion", "crossvit_two_branch")
class CrossViTTwoBranch(nn.Module):
    """A small CrossViT encoder for one series (Chen, Fan, Panda, ICCV 2021): two patch sizes, CLS fusion.

    The series is cut into patches of ``patch_small`` and of ``patch_large`` steps
    (``PatchEmbedding``, sinusoidal positions), each branch gets a learned CLS token and
    its own width. ``depth`` multi-scale blocks follow, each = ``small_depth`` /
    ``large_depth`` pre-norm Transformer blocks (registered ``prenorm`` with ``mixer``)
    inside each branch, then one ``CrossViTFusion``. Cost per block
    O(N_s²·d_s + N_l²·d_l) inside the branches plus O(N·D) for the fusion
    (N_s = L / patch_small, N_l = L / patch_large).

    ``forward(x) -> (small, large)`` with x: (B, L) a univariate window (one variate per
    row, PatchTST-style); small: (B, 1 + N_s, d_small), large: (B, 1 + N_l, d_large),
    CLS first, after a final LayerNorm. ``features(x)`` gives the two CLS tokens
    concatenated, (B, d_small + d_large), for a forecast head.
    """

    complexity = "O(N^2·D)"
    paper = "Chen, Fan, Panda, CrossViT: Cross-Attention Multi-Scale Vision Transformer, ICCV 2021"

    def __init__(self, d_small: int = 32, d_large: int = 64, *, patch_small: int = 4, patch_large: int = 16,
                 n_heads: int = 4, depth: int = 1, small_depth: int = 1, large_depth: int = 1,
                 fusion_depth: int = 1, d_ff_mult: int = 2, dropout: float = 0.0, mixer: str = "full"):
        super().__init__()
        assert patch_small < patch_large, f"patch_small={patch_small} must be below patch_large={patch_large}"
        self.embed_small = PatchEmbedding(d_small, patch_len=patch_small, stride=patch_small, dropout=dropout)
        self.embed_large = PatchEmbedding(d_large, patch_len=patch_large, stride=patch_large, dropout=dropout)
        self.cls_small = nn.Parameter(torch.randn(1, 1, d_small) * 0.02)
        self.cls_large = nn.Parameter(torch.randn(1, 1, d_large) * 0.02)

        def blocks(width: int, count: int) -> nn.ModuleList:
            return nn.ModuleList(
                build("block", "prenorm", d_model=width, n_heads=n_heads, d_ff=d_ff_mult * width, dropout=dropout,
                      activation="gelu", mixer=mixer)
                for _ in range(count))

        self.small_blocks = nn.ModuleList(blocks(d_small, small_depth) for _ in range(depth))
        self.large_blocks = nn.ModuleList(blocks(d_large, large_depth) for _ in range(depth))
        self.fusions = nn.ModuleList(
            CrossViTFusion(d_small, d_y=d_large, n_heads=n_heads, fusion_depth=fusion_depth, dropout=dropout)
            for _ in range(depth))
        self.norm_small = nn.LayerNorm(d_small)
        self.norm_large = nn.LayerNorm(d_large)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        b = x.shape[0]
        small = torch.cat([self.cls_small.expand(b, -1, -1), self.embed_small(x)], dim=1)  # (B, 1 + N_s, d_s)
        large = torch.cat([self.cls_large.expand(b, -1, -1), self.embed_large(x)], dim=1)  # (B, 1 + N_l, d_l)
        for small_blocks, large_blocks, fusion in zip(self.small_blocks, self.large_blocks, self.fusions):
            for block in small_blocks:
                small = block(small)
            for block in large_blocks:
                large = block(large)
            small, large = fusion(small, large)
        return self.norm_small(small), self.norm_large(large)

    def features(self, x: Tensor) -> Tensor:
        small, large = self(x)
        return torch.cat([small[:, 0], large[:, 0]], dim=-1)           # (B, d_small + d_large)
