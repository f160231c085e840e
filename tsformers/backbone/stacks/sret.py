"""Sliced Recursive Transformer: one block applied several times, with sliced group attention.

Shen, Liu and Xing, "Sliced Recursive Transformer", ECCV 2022 (arXiv 2111.05297),
official code szq0214/SReT.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..feedforward import FeedForward
from ..registry import build_mixer, register
from ..dropout import Dropout

__all__ = ["SReT", "SReTBlock", "grouped"]


def grouped(fn, x: Tensor, groups: int) -> Tensor:
    """Apply the token mixer ``fn`` inside ``groups`` contiguous slices of the token axis.

    Tokens in different slices never meet. Equal slices are folded into the batch
    ((B, N, D) -> (B·g, N/g, D)); uneven ones (N not a multiple of g) run one by one,
    the first N mod g slices one token longer (``torch.tensor_split``).
    """
    b, n, d = x.shape
    groups = max(1, min(groups, n))
    if groups == 1:
        return fn(x)
    if n % groups == 0:
        out = fn(x.reshape(b * groups, n // groups, d))        # (B·g, N/g, D)
        return out.reshape(b, n, d)
    return torch.cat([fn(chunk) for chunk in torch.tensor_split(x, groups, dim=1)], dim=1)


class SReTBlock(nn.Module):
    """A pre-LN block with sliced group attention and learnable scalar residuals.

    x = α1·x + β1·mixer_g(LN1(x)); x = α2·x + β2·ffn(LN2(x)), the mixer applied
    inside g contiguous token groups (g given per call); α and β start at 1.
    Cost O(N²·D/g) for full attention plus O(N·D·d_ff). x: (B, N, D) -> (B, N, D).
    """

    def __init__(self, d_model: int, *, n_heads: int, d_ff: int, dropout: float = 0.0, mixer: str = "full",
                 mixer_kwargs: dict[str, Any] | None = None, causal: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.mixer = build_mixer(mixer, d_model=d_model, n_heads=n_heads, dropout=dropout, causal=causal,
                                 mixer_kwargs=mixer_kwargs)
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, d_ff=d_ff, dropout=dropout, activation="gelu")
        self.dropout = Dropout(dropout)
        self.alpha = nn.Parameter(torch.ones(2))  # (α1, α2)
        self.beta = nn.Parameter(torch.ones(2))   # (β1, β2)

    def forward(self, x: Tensor, groups: int = 1) -> Tensor:
        x = self.alpha[0] * x + self.beta[0] * self.dropout(grouped(self.mixer, self.norm1(x), groups))
        return self.alpha[1] * x + self.beta[1] * self.dropout(self.ffn(self.norm2(x)))


class _NLL(nn.Module):
    """The non-shared "non-linear projection layer" between two loops: x + MLP(LN(x)), hidden ratio·D."""

    def __init__(self, d_model: int, ratio: float):
        super().__init__()
        hidden = max(1, int(round(ratio * d_model)))
        self.net = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, hidden), nn.GELU(),
                                 nn.Linear(hidden, d_model))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(x)


@register("stack", "sret")
class SReT(nn.Module):
    """Sliced Recursive Transformer stack (Shen, Liu & Xing, ECCV 2022; arXiv 2111.05297).

    ``n_layers`` distinct blocks; each is applied ``n_loops`` times with shared weights,
    and a small non-shared NLL MLP (hidden ``nll_ratio``·D) sits before every repeat, so
    the parameter count grows with n_loops only by the NLLs. Residuals are learnable
    scalars (α·x + β·f(x)). Sliced group attention: the first loop splits the tokens
    into ``groups_first`` contiguous groups; the recursive loops split them into
    ``groups_recursive`` groups after a token permutation, and restore the order after.

    The official code draws a fresh random permutation on every call, also at inference;
    here it is deterministic: ``permute="strided"`` (group k of the permuted order holds
    tokens k, k+g, k+2g, ...: dilated groups), ``"seeded"`` (one random permutation per N,
    drawn from ``seed``) or ``None`` (contiguous groups in every loop).

    Cost per pass O(N²·D/g) with full attention over g groups, times n_layers·n_loops,
    plus the FFNs. x: (B, N, D) -> (B, N, D). A causal mixer stays causal under the
    strided permutation (each dilated group is in time order); a seeded one is refused
    with ``causal=True``.
    """

    requires_order = True  # sliced group attention groups the tokens by position

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
        n_loops: int = 2,
        groups_first: int = 2,
        groups_recursive: int = 2,
        nll_ratio: float = 0.25,
        permute: str | None = "strided",
        seed: int = 0,
    ):
        super().__init__()
        assert n_layers >= 1 and n_loops >= 1, (n_layers, n_loops)
        assert permute in (None, "strided", "seeded"), f"permute must be None, 'strided' or 'seeded', got {permute!r}"
        if causal and permute == "seeded":
            raise ValueError("a seeded permutation breaks time order; use permute='strided' or None with causal=True")
        self.n_loops, self.groups_first, self.groups_recursive = n_loops, groups_first, groups_recursive
        self.permute, self.seed = permute, seed
        self.blocks = nn.ModuleList(
            SReTBlock(d_model, n_heads=n_heads, d_ff=d_ff, dropout=dropout, mixer=mixer, mixer_kwargs=mixer_kwargs,
                      causal=causal)
            for _ in range(n_layers)
        )
        self.nlls = nn.ModuleList(
            nn.ModuleList(_NLL(d_model, nll_ratio) for _ in range(n_loops - 1)) for _ in range(n_layers)
        )

    def permutation(self, n: int, device: torch.device | None = None) -> Tensor | None:
        """The token order of the recursive loops, (N,) indices, or None for no permutation."""
        if self.permute is None:
            return None
        if self.permute == "strided":
            g = max(1, min(self.groups_recursive, n))
            perm = torch.cat([torch.arange(k, n, g) for k in range(g)])  # (N,); group sizes match tensor_split
        else:
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + n))
        return perm.to(device)

    def forward(self, x: Tensor) -> Tensor:
        perm = self.permutation(x.shape[1], x.device)
        inverse = None if perm is None else torch.argsort(perm)
        for block, nlls in zip(self.blocks, self.nlls):
            x = block(x, self.groups_first)
            for nll in nlls:                                     # the n_loops - 1 recursive passes
                x = nll(x)
                if perm is None:
                    x = block(x, self.groups_recursive)
                else:
                    x = block(x[:, perm], self.groups_recursive)[:, inverse]  # permute, slice, restore
        return x
