"""Gateformer: temporal and variate-wise attention with gated representations.

References
----------
Lan & Oermann, "Gateformer: Advancing Multivariate Time Series Forecasting through
Temporal and Variate-Wise Attention with Gated Representations", arXiv 2505.00307,
ICML 2025. Official code: github.com/nyuolab/Gateformer (``models/Gateformer.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

from einops import rearrange
from torch import Tensor, nn

from tsformers.backbone import (InstanceNorm, SigmoidGate, SinusoidalPositionalEncoding, available, build, build_class,
                                order_free)
from tsformers.backbone.mixers._base import SELF
from tsformers.backbone.registry import home_stack
from tsformers.backbone.blocks import block_parts
from tsformers.backbone.stacks.adaptive_depth import ExitSupervised

__all__ = ["CrossScaleTokens", "Gateformer", "WordTokens", "grid_mixer_misfit", "patch_embeddings", "temporal_mixers",
           "temporal_reducers", "temporal_stacks"]


def temporal_mixers() -> list[str]:
    """The mixers the temporal encoder takes: those with the (non-causal) self pattern that read a sequence.

    The patches of a window all see each other; a causal-only mixer (``"xl_relative"``,
    whose memory holds the past) cannot be built so. A mixer whose windows are stripes of a
    variates × patches grid (``"cswin"``, declaring ``reads_grid``) is left out: see
    :func:`grid_mixer_misfit`.
    """
    return [name for name in available("mixer") if SELF in getattr(build_class("mixer", name), "patterns", ())
            and not getattr(build_class("mixer", name), "reads_grid", False)]


def grid_mixer_misfit(name: str) -> str:
    """Why the grid mixer ``name`` (``"cswin"``) cannot be Gateformer's temporal mixer.

    The temporal encoder reads one variate's patches at a time (the paper's channel-independent
    temporal stage), a 1 × P grid, on which CSWin's cross is no cross: its time stripe is the
    whole sequence and its variate stripes are windows, half the heads global and half windowed.
    The variates × patches grid it is made for would put neighbouring columns of the frame in one
    stripe, and run LePE's convolution across them, so the forecast would depend on the order of
    the columns, which Gateformer keeps an unordered set (its variate encoder refuses such parts).
    """
    return (f"its cross-shaped windows are stripes of a variates × patches grid, but Gateformer's temporal "
            f"encoder reads one variate's patches at a time, where {name!r} would be half global, half windowed "
            f"attention; and over a variates × patches grid its stripes and LePE convolution would read the "
            f"order of the columns, which Gateformer keeps unordered. 'lepe' is CSWin's windowed attention with "
            f"LePE along time")


def temporal_stacks(temporal_mixer: str) -> list[str]:
    """The stacks that arrange the temporal encoder's blocks with ``temporal_mixer`` (its ``temporal_stack``).

    The temporal encoder runs over one variate's patches, ordered time tokens, so the stacks
    that read token order (``"fit"``'s contiguous groups, ``"sret"``'s sliced groups, the
    Mamba blocks of ``"hybrid"``, ...) are as welcome as the order-free ones. A mixer that
    works only inside its own stage (``"fca"``: ``"fca_stage"`` makes its cross tokens) takes
    only that stage, and such a stage takes only its mixer.
    """
    home = home_stack(temporal_mixer)
    if home is not None:
        return [home]
    stages_of_mixers = {home_stack(name) for name in available("mixer")} - {None}
    return [name for name in available("stack") if name not in stages_of_mixers]


#: CrossFormer's four kernels, P, 2P, 4P and 8P, as in the paper
CEL_KERNELS = (1, 2, 4, 8)


class CrossScaleTokens(nn.Module):
    """CrossFormer's cross-scale embedding (``"cel"``) as Gateformer's patch embedding: (B, N, L) -> (B, N, P, D).

    CEL embeds a multichannel series (B, C_in, L) -> (B, P, D) with Conv1d kernels of
    P, 2P, 4P and 8P steps that all step by ``patch_len``, so P = L // patch_len patches
    (no end padding; the stride is the patch length, there is no other). Gateformer's
    temporal stage is channel independent, so every variate goes through CEL on its own as
    a one-channel series. CEL has no positions (CrossFormer's attention carries relative
    biases instead), but Gateformer's temporal mixer may have none: the tokens get the same
    fixed sinusoidal positions and dropout as the paper's patch embedding, so that only how
    a patch becomes a vector differs between the choices. Cost O(L·D) per variate.
    """

    def __init__(self, d_model: int, *, patch_len: int, stride: int | None = None, dropout: float = 0.0):
        super().__init__()
        assert stride in (None, patch_len), f"CEL steps by patch_len={patch_len}, not stride={stride}"
        self.cel = build("embedding", "cel", in_ch=1, d_model=d_model, patch_len=patch_len, kernel_mults=CEL_KERNELS)
        self.position = SinusoidalPositionalEncoding(d_model)
        self.dropout = nn.Dropout(dropout)

    @staticmethod
    def misfit(*, lookback: int, d_model: int, patch_len: int, stride: int) -> str | None:
        """Why CEL cannot make the patch tokens with these settings, or None when it can."""
        if stride != patch_len:
            return (f"its convolutions step by the patch length, so it needs stride == patch_len, got "
                    f"stride={stride}, patch_len={patch_len}")
        if lookback < patch_len:
            return f"it needs a lookback of at least patch_len={patch_len} steps, got {lookback}"
        if d_model < 2 ** (len(CEL_KERNELS) - 1):  # the kernels get D/2, D/4, D/8 and the rest of the dimensions
            return (f"its {len(CEL_KERNELS)} kernels share d_model as D/2, D/4, D/8, D/8, so it needs d_model >= "
                    f"{2 ** (len(CEL_KERNELS) - 1)}, got {d_model}")
        return None

    def n_patches(self, length: int) -> int:
        return self.cel.n_patches(length)

    def forward(self, x: Tensor) -> Tensor:
        batch = x.shape[0]
        t = self.cel(rearrange(x, "b n l -> (b n) 1 l"))                  # (B*N, P, D): each variate one channel
        t = self.dropout(self.position(t))
        return rearrange(t, "(b n) p d -> b n p d", b=batch)              # (B, N, P, D)


class WordTokens(nn.Module):
    """TNT's words (``"tnt_words"``) made into patch tokens as TNT makes its sentence tokens: (B, N, L) -> (B, N, P, D).

    ``tnt_words`` cuts each patch into w words and embeds each, (..., L) -> (..., P, w, d_inner),
    with P = (L - patch_len) // stride + 1 (no end padding, one patch fewer than ``"patch"``).
    TNT (Han et al., NeurIPS 2021; the official and timm code) builds a patch's sentence token
    from its words by LayerNorm over the flattened words, Linear(w·d_inner -> D) and LayerNorm;
    this adapter does that, without TNT's inner transformer over the words (that is the
    ``"tnt"`` block, not an embedding). The words are single steps (w = patch_len, so any
    patch length divides) of d_inner = ceil(D / w) dimensions, so that the words together
    are at least as wide as a token (TNT-S: 16 words of 24 dimensions for D = 384). Positions
    and dropout as for the paper's patch embedding: fixed sinusoidal ones (TNT learns its
    own), so that only how a patch becomes a vector differs. Cost O(P·patch_len·D).
    """

    def __init__(self, d_model: int, *, patch_len: int, stride: int, dropout: float = 0.0):
        super().__init__()
        d_inner = math.ceil(d_model / patch_len)
        self.words = build("embedding", "tnt_words", d_inner=d_inner, patch_len=patch_len, words_per_patch=patch_len,
                           stride=stride)
        self.words_norm = nn.LayerNorm(patch_len * d_inner)
        self.proj = nn.Linear(patch_len * d_inner, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.position = SinusoidalPositionalEncoding(d_model)
        self.dropout = nn.Dropout(dropout)

    @staticmethod
    def misfit(*, lookback: int, d_model: int, patch_len: int, stride: int) -> str | None:
        """Why TNT's words cannot make the patch tokens with these settings, or None when they can."""
        if lookback < patch_len:  # no end padding: the window must hold one whole patch
            return f"it needs a lookback of at least patch_len={patch_len} steps, got {lookback}"
        return None

    def n_patches(self, length: int) -> int:
        return (length - self.words.patch_len) // self.words.stride + 1

    def forward(self, x: Tensor) -> Tensor:
        words = self.words(x)                                              # (B, N, P, w, d_inner)
        t = self.norm(self.proj(self.words_norm(rearrange(words, "b n p w c -> b n p (w c)"))))  # (B, N, P, D)
        return self.dropout(self.position(t))


def _patch_tokens(d_model: int, *, patch_len: int, stride: int, dropout: float) -> nn.Module:
    """The paper's patch embedding as it is: it makes (..., P, D) tokens already, and its weights keep their names."""
    return build("embedding", "patch", d_model=d_model, patch_len=patch_len, stride=stride, dropout=dropout)


def _patch_misfit(*, lookback: int, d_model: int, patch_len: int, stride: int) -> str | None:
    """Why the paper's patch embedding cannot make the patch tokens, or None: it pads ``stride`` steps at the end."""
    if lookback + stride < patch_len:
        return f"it needs lookback + stride >= patch_len={patch_len}, got {lookback} + {stride}"
    return None


class _TokenMaker(NamedTuple):
    """How Gateformer gets (B, N, L) -> (B, N, P, D) patch tokens (a module with ``n_patches(L)``) from an embedding."""

    make: Callable[..., nn.Module]          # (d_model, *, patch_len, stride, dropout) -> the module
    misfit: Callable[..., str | None]       # (*, lookback, d_model, patch_len, stride) -> why it cannot, or None


#: the registered embeddings Gateformer makes its patch tokens from, by registry name
_TOKEN_MAKERS = {
    "patch": _TokenMaker(_patch_tokens, _patch_misfit),
    "cel": _TokenMaker(CrossScaleTokens, CrossScaleTokens.misfit),
    "tnt_words": _TokenMaker(WordTokens, WordTokens.misfit),
}


def embedding_misfit(name: str, *, lookback: int, d_model: int, patch_len: int, stride: int) -> str | None:
    """Why the registered embedding ``name`` cannot make Gateformer's patch tokens with these settings, or None."""
    if name not in _TOKEN_MAKERS:  # registered later, with an interface no adapter here knows
        return "Gateformer has no adapter from its output to (batch, variates, patches, d_model) tokens"
    return _TOKEN_MAKERS[name].misfit(lookback=lookback, d_model=d_model, patch_len=patch_len, stride=stride)


def patch_embeddings(*, lookback: int, d_model: int, patch_len: int, stride: int) -> list[str]:
    """The registered embeddings that make Gateformer's patch tokens with these settings (its ``embedding`` slot)."""
    return [name for name in available("embedding")
            if embedding_misfit(name, lookback=lookback, d_model=d_model, patch_len=patch_len, stride=stride) is None]


def _stage(name: str, d_model: int, *, n_heads: int, d_ff: int, dropout: float, n_patches: int) -> nn.Module:
    """A token-reducing stage at the temporal encoder's width, stride 2: (B, P, D) -> (B, ceil(P/2), D).

    ``"qpool_stage"``: Hiera's Q-pooling attention block (queries max-pooled over two patches,
    keys and values at all P); ``"resnas_stage"``: ViT-ResNAS's residual spatial reduction
    (pooled skip plus a strided convolution), its blocks being the temporal encoder's before it.
    """
    if name == "qpool_stage":
        return build("stage", name, d_in=d_model, d_out=d_model, stride=2, n_heads=n_heads, d_ff=d_ff,
                     dropout=dropout)
    return build("stage", name, d_in=d_model, d_out=d_model, stride=2, n_layers=0)


def _learned_queries(name: str, d_model: int, *, n_heads: int, d_ff: int, dropout: float, n_patches: int) -> nn.Module:
    """A reducer of K = ceil(P/2) learned tokens over the P patch tokens, as many as a stride-2 stage leaves.

    ``"pem_xattn"``: PEM's prototype cross-attention (each query reads its most similar patch);
    ``"kmeans_xattn"``: kMaX's k-means cross-attention (patches clustered onto K centres);
    ``"ltm"``: learnable token merging (K convex combinations of the patches). Output k is always
    the k-th query, centre or slot, so the flatten head reads the same summary at the same place.
    """
    k = math.ceil(n_patches / 2)
    if name == "pem_xattn":
        return build("reducer", name, d_model=d_model, n_heads=n_heads, n_queries=k, d_ff=d_ff, dropout=dropout)
    if name == "kmeans_xattn":
        return build("reducer", name, d_model=d_model, n_clusters=k, d_ff=d_ff, dropout=dropout)
    return build("reducer", name, d_model=d_model, n_out=k)


#: the registered stages and reducers that shrink each variate's patch tokens before the flatten head
_PATCH_REDUCERS = {"qpool_stage": _stage, "resnas_stage": _stage, "kmeans_xattn": _learned_queries,
                   "ltm": _learned_queries, "pem_xattn": _learned_queries}


def temporal_reducers() -> list[str]:
    """The stages and reducers Gateformer's ``temporal_reducer`` takes: (B, P, D) -> (B, ceil(P/2), D) patch tokens.

    The stages (kind ``"stage"``) reduce ordered tokens by a strided window, the reducers (kind
    ``"reducer"``) read any set of tokens through K learned queries; both fit the temporal
    encoder's output, one variate's patches in time order. A part registered later, with an
    interface no adapter here knows, is not among them.
    """
    return sorted(name for kind in ("stage", "reducer") for name in available(kind) if name in _PATCH_REDUCERS)


class Gateformer(ExitSupervised, nn.Module):
    """Gateformer (Lan & Oermann, 2025): per-variate temporal encoding, gated, then variate attention, gated.

    Each variate becomes one token by gating two views of its window: a global
    Linear(L -> D) embedding and a patch-wise temporal Transformer (channel
    independent). Attention over the variate tokens then mixes variates, and a
    second gate decides per feature how much of that to take. The defaults are
    the paper's ETTh1 setting for H = 96. Both encoders are built from registered parts
    by name: ``temporal_mixer``, ``variate_mixer``, ``stack``, and the blocks' ``ffn``
    ("mlp", the paper's) and ``norm`` ("layernorm", the paper's); ``temporal_stack`` arranges the
    temporal encoder alone (None: as ``stack``), and may read the patches' order; ``temporal_reducer``
    (None: the paper's, none) shrinks its P patch tokens to ceil(P/2) before the flatten head, by a
    stage or a reducer of :func:`temporal_reducers`; so is the patch
    ``embedding`` of the temporal stage ("patch", the paper's; "cel" and "tnt_words"
    through the adapters :class:`CrossScaleTokens` and :class:`WordTokens`), one of
    :func:`patch_embeddings`.

    ``forward(x, static=None)``: x (batch, lookback, n_vars) -> (batch, horizon, n_vars);
    every variate is forecast, a caller that wants fewer selects them. With
    ``n_static`` > 0, ``static`` (batch, n_static) holds the series' encoded static
    attributes (a tsformers extension, not in the paper), added as a context vector
    to every variate token before the variate attention.
    """

    def __init__(
        self,
        *,
        lookback: int,
        horizon: int,
        n_vars: int,
        d_model: int = 64,
        n_heads: int = 4,
        d_ff: int = 64,
        e_layers: int = 1,
        patch_len: int = 8,
        stride: int = 8,
        dropout: float = 0.1,
        temporal_mixer: str = "full",
        variate_mixer: str = "full",
        stack: str = "standard",
        ffn: str = "mlp",
        norm: str = "layernorm",
        embedding: str = "patch",
        n_static: int = 0,
        temporal_stack: str | None = None,
        temporal_reducer: str | None = None,
    ):
        super().__init__()
        assert lookback > 0 and horizon > 0 and n_vars > 0, (
            f"lookback, horizon and n_vars must be positive, got {lookback}, {horizon}, {n_vars}"
        )
        self.lookback, self.horizon, self.n_vars = lookback, horizon, n_vars
        encoder = dict(d_model=d_model, n_heads=n_heads, d_ff=d_ff, n_layers=e_layers, dropout=dropout)
        variate_parts = block_parts(stack, unordered="Gateformer's blocks also run over the variates", ffn=ffn,
                                    norm=norm)
        build_class("mixer", temporal_mixer)  # an unknown name lists the registered ones
        if getattr(build_class("mixer", temporal_mixer), "reads_grid", False):
            raise ValueError(f"temporal_mixer={temporal_mixer!r} cannot be Gateformer's temporal mixer: "
                             f"{grid_mixer_misfit(temporal_mixer)}; pick a temporal mixer from {temporal_mixers()}")
        if temporal_mixer not in temporal_mixers():
            raise ValueError(f"temporal_mixer={temporal_mixer!r} is causal only, but the patches of a window all see "
                             f"each other; pick a temporal mixer from {temporal_mixers()}")
        # the variate tokens are an unordered set: a part that reads their order would make the
        # forecast depend on the order of the columns
        if home_stack(variate_mixer) is not None and variate_mixer not in order_free("mixer", standalone=True):
            raise ValueError(f"variate_mixer={variate_mixer!r} attends to cross tokens that only stack "
                             f"{home_stack(variate_mixer)!r} makes, merging earlier blocks along positions, which "
                             f"variates (an unordered set) do not have; use it as temporal_mixer, or pick a "
                             f"variate mixer from {order_free('mixer', standalone=True)}")
        if build_class("mixer", variate_mixer).requires_order:
            raise ValueError(f"variate_mixer={variate_mixer!r} needs ordered tokens, but variates are an unordered "
                             f"set; use it as temporal_mixer, or pick a variate mixer from "
                             f"{order_free('mixer', standalone=True)}")
        if build_class("stack", stack).requires_order:
            raise ValueError(f"stack={stack!r} needs ordered tokens, but Gateformer stacks its blocks over the "
                             f"variates too, an unordered set; pick a stack from {order_free('stack')}, or "
                             f"temporal_stack={stack!r} to arrange the temporal encoder alone (ordered patches)")
        if temporal_stack is None:
            # a temporal mixer that works only inside its own stage (fca: the stage hands it the cross tokens
            # of earlier blocks) gets that stage as the temporal encoder; the patches are ordered tokens
            temporal_stack = home_stack(temporal_mixer) or stack
            if temporal_stack != stack and stack != "standard":
                raise ValueError(f"temporal_mixer={temporal_mixer!r} gets its cross tokens only inside stack "
                                 f"{temporal_stack!r}, which then arranges the temporal encoder, so stack={stack!r} "
                                 f"cannot; keep stack='standard' (the variate encoder's) or pick another temporal "
                                 f"mixer")
        else:
            build_class("stack", temporal_stack)  # an unknown name lists the registered ones
            if temporal_stack not in temporal_stacks(temporal_mixer):
                reason = (f"temporal_mixer={temporal_mixer!r} gets its cross tokens only inside stack "
                          f"{home_stack(temporal_mixer)!r}" if home_stack(temporal_mixer) else
                          f"stack {temporal_stack!r} runs its own mixer in every block")
                raise ValueError(f"temporal_stack={temporal_stack!r} cannot hold temporal_mixer={temporal_mixer!r}: "
                                 f"{reason}; pick a temporal stack from {temporal_stacks(temporal_mixer)}")
        temporal_parts = block_parts(temporal_stack, ffn=ffn, norm=norm)
        if temporal_reducer is not None and temporal_reducer not in temporal_reducers():
            raise ValueError(f"temporal_reducer={temporal_reducer!r} is not a stage or reducer Gateformer can shrink "
                             f"the patch tokens with; pick one of {temporal_reducers()} or None (the paper's)")
        build_class("embedding", embedding)  # an unknown name lists the registered ones
        shape = dict(lookback=lookback, d_model=d_model, patch_len=patch_len, stride=stride)
        misfit = embedding_misfit(embedding, **shape)
        if misfit is not None:
            raise ValueError(f"embedding={embedding!r} cannot make Gateformer's patch tokens here: {misfit}; "
                             f"pick an embedding from {patch_embeddings(**shape)}")

        self.norm = InstanceNorm()
        # global temporal embedding: the whole window of a variate -> one vector (iTransformer-style)
        self.global_embed = nn.Sequential(nn.Linear(lookback, d_model), nn.Dropout(dropout))
        # temporal dependency embedding: patches -> pre-LN attention over time, per variate -> flatten head.
        # The paper's "patch" is built as it is (its weights keep their names in saved models); the others
        # through an adapter to the same (B, N, P, D) tokens
        self.patch_embed = _TOKEN_MAKERS[embedding].make(d_model, patch_len=patch_len, stride=stride, dropout=dropout)
        n_patches = self.patch_embed.n_patches(lookback)
        self.temporal_encoder = build("stack", temporal_stack, **encoder, **temporal_parts, mixer=temporal_mixer)
        # optional: fewer patch tokens for the flatten head (a stage or learned queries), ceil(P/2) of them
        self.temporal_reducer = None if temporal_reducer is None else _PATCH_REDUCERS[temporal_reducer](
            temporal_reducer, d_model, n_heads=n_heads, d_ff=d_ff, dropout=dropout, n_patches=n_patches)
        n_tokens = n_patches if temporal_reducer is None else math.ceil(n_patches / 2)
        self.temporal_head = nn.Sequential(nn.Linear(d_model * n_tokens, d_model), nn.Dropout(dropout))
        self.time_gate = SigmoidGate(d_model)
        # static attributes of the series (optional): one context vector added to every variate token
        self.static_context = nn.Linear(n_static, d_model) if n_static else None
        # variate-wise attention over the N variate tokens (no positions: an unordered set)
        self.variate_encoder = build("stack", stack, **encoder, **variate_parts, mixer=variate_mixer)
        self.variate_gate = SigmoidGate(d_model)
        self.head = nn.Linear(d_model, horizon)

    def forward(self, x: Tensor, static: Tensor | None = None) -> Tensor:
        assert x.ndim == 3 and x.shape[1:] == (self.lookback, self.n_vars), (
            f"Gateformer was built for (batch, {self.lookback}, {self.n_vars}) inputs, got {tuple(x.shape)}"
        )
        batch = x.shape[0]
        x, stats = self.norm(x)                                           # (B, L, N)
        x = rearrange(x, "b l n -> b n l")

        g = self.global_embed(x)                                          # (B, N, D)
        t = self.patch_embed(x)                                           # (B, N, P, D)
        t = self.temporal_encoder(rearrange(t, "b n p d -> (b n) p d"))   # (B*N, P, D)
        if self.temporal_reducer is not None:
            t = self.temporal_reducer(t)                                  # (B*N, ceil(P/2), D)
        t = self.temporal_head(rearrange(t, "(b n) p d -> b n (d p)", b=batch))  # (B, N, D)
        v = self.time_gate(g, t)                                          # (B, N, D)
        if self.static_context is not None:
            v = v + self.static_context(static)[:, None, :]               # (B, n_static) -> (B, 1, D)

        c = self.variate_encoder(v)                                       # (B, N, D)
        z = self.variate_gate(v, c)                                       # (B, N, D)

        y = rearrange(self.head(z), "b n h -> b h n")                    # (B, H, N)
        return self.norm.inverse(y, stats)
