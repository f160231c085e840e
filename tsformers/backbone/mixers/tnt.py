"""TNT (Transformer in Transformer): an inner transformer over the words of each patch feeds the patch tokens.

Han, Xiao, Wu, Guo, Xu, Wang, "Transformer in Transformer", NeurIPS 2021 (official
code: huawei-noah/CV-Backbones, tnt_pytorch). Each patch ("sentence") is split into
sub-patches ("words"). Per block, an inner transformer with weights shared across
patches mixes the words of one patch; the words are then flattened, projected and
added to their sentence token; an outer transformer mixes the sentences.

On time tokens: sentence = a patch of the series (PatchTST token), words = single
steps or short sub-windows of it, so the intra-patch dynamics that a linear patch
embedding flattens away get their own attention.

Interface of the ``tnt`` block: ``forward(tokens, words) -> (tokens', words')`` with
tokens (B, N, D) (or (B, 1 + N, D) with a class token first, which receives no words)
and words (B, N, w, d_inner), word j of patch p in ``words[:, p, j]``. ``TNTWords``
makes words from a series.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..registry import build_mixer, register
from .full import FullAttention
from ..dropout import Dropout

__all__ = ["TNTBlock", "TNTWords"]


def _mlp(width: int, hidden: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, hidden), nn.GELU(), Dropout(dropout), nn.Linear(hidden, width),
                         Dropout(dropout))


@register("block", "tnt")
class TNTBlock(nn.Module):
    """One TNT block (Han et al., "Transformer in Transformer", NeurIPS 2021).

    Inner (per patch, weights shared by all patches, over its w words):
    words += Attn_in(LN(words)); words += MLP_in(LN(words)).
    Sentence update: tokens[p] += Linear(LN(words[p]).flatten()) (w·d_inner -> D).
    Outer (over the N patch tokens): tokens += mixer(LN(tokens)); tokens += MLP(LN(tokens)),
    the mixer built from the registry (``mixer="full"``, ``causal`` as for any mixer).
    ``outer_attention=False`` skips the outer mixer (the block then never mixes patches).
    Cost O(N·w²·d_inner) inner + the outer mixer's (O(N²·D) for full attention) + MLPs.

    tokens: (B, N, D) or (B, 1 + N, D) (class token first), words: (B, N, w, d_inner);
    returns both, same shapes.
    """

    complexity = "O(N·w^2 + N^2)"
    paper = "Han et al., Transformer in Transformer, NeurIPS 2021"

    def __init__(self, d_model: int, *, d_inner: int, words_per_patch: int, n_heads: int = 4,
                 n_heads_inner: int = 2, d_ff: int | None = None, d_ff_inner: int | None = None,
                 dropout: float = 0.0, mixer: str = "full", mixer_kwargs: dict[str, Any] | None = None,
                 causal: bool = False, outer_attention: bool = True):
        super().__init__()
        self.words_per_patch, self.d_inner = words_per_patch, d_inner
        self.outer_attention = outer_attention
        # inner transformer, shared by all patches
        self.inner_norm1 = nn.LayerNorm(d_inner)
        self.inner_attn = FullAttention(d_inner, n_heads=n_heads_inner, dropout=dropout)
        self.inner_norm2 = nn.LayerNorm(d_inner)
        self.inner_mlp = _mlp(d_inner, d_ff_inner or 4 * d_inner, dropout)
        # words -> sentence
        self.proj_norm = nn.LayerNorm(d_inner)
        self.proj = nn.Linear(words_per_patch * d_inner, d_model)
        # outer transformer
        self.outer_norm1 = nn.LayerNorm(d_model)
        self.outer_mixer = build_mixer(mixer, d_model=d_model, n_heads=n_heads, dropout=dropout, causal=causal,
                                       mixer_kwargs=mixer_kwargs)
        self.outer_norm2 = nn.LayerNorm(d_model)
        self.outer_mlp = _mlp(d_model, d_ff or 4 * d_model, dropout)
        self.dropout = Dropout(dropout)

    def forward(self, tokens: Tensor, words: Tensor) -> tuple[Tensor, Tensor]:
        b, n, w, c = words.shape
        assert (w, c) == (self.words_per_patch, self.d_inner), (
            f"words must be (B, N, {self.words_per_patch}, {self.d_inner}), got {tuple(words.shape)}")
        n_cls = tokens.shape[1] - n
        assert n_cls in (0, 1), f"tokens must hold N={n} patch tokens (plus at most one class token), " \
                                f"got {tokens.shape[1]}"
        # inner transformer: every patch's words on their own
        flat = words.reshape(b * n, w, c)                                          # (B·N, w, d_inner)
        flat = flat + self.dropout(self.inner_attn(self.inner_norm1(flat)))
        flat = flat + self.inner_mlp(self.inner_norm2(flat))
        words = flat.reshape(b, n, w, c)                                           # (B, N, w, d_inner)
        # words -> their sentence token
        sentence = self.proj(self.proj_norm(words).reshape(b, n, w * c))           # (B, N, D)
        tokens = torch.cat([tokens[:, :n_cls], tokens[:, n_cls:] + sentence], dim=1)  # (B, n_cls + N, D)
        # outer transformer over the sentences
        if self.outer_attention:
            tokens = tokens + self.dropout(self.outer_mixer(self.outer_norm1(tokens)))
        tokens = tokens + self.outer_mlp(self.outer_norm2(tokens))
        return tokens, words


@register("embedding", "tnt_words")
class TNTWords(nn.Module):
    """TNT's word embedding for a series (Han et al., NeurIPS 2021): each patch split into w sub-windows.

    Patches of ``patch_len`` steps (step ``stride``) are cut into ``words_per_patch``
    consecutive sub-windows of patch_len / w steps; each is mapped by Linear(sub_len ->
    d_inner) plus a learned word position (w, d_inner). Cost O(N·patch_len·d_inner).
    x: (..., L) -> (..., P, w, d_inner) with P = (L - patch_len) // stride + 1 (no padding).
    """

    def __init__(self, d_inner: int, *, patch_len: int, words_per_patch: int, stride: int | None = None):
        super().__init__()
        assert patch_len % words_per_patch == 0, (
            f"patch_len={patch_len} must be divisible by words_per_patch={words_per_patch}")
        self.patch_len, self.stride, self.words = patch_len, stride or patch_len, words_per_patch
        self.embed = nn.Linear(patch_len // words_per_patch, d_inner)
        self.position = nn.Parameter(torch.randn(words_per_patch, d_inner) * 0.02)

    def forward(self, x: Tensor) -> Tensor:
        patches = x.unfold(-1, self.patch_len, self.stride)                        # (..., P, patch_len)
        words = patches.reshape(*patches.shape[:-1], self.words, -1)               # (..., P, w, sub_len)
        return self.embed(words) + self.position                                   # (..., P, w, d_inner)
