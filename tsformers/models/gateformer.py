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

from tsformers.backbone import (BLOCK_SLOTS, InstanceNorm, SigmoidGate, SinusoidalPositionalEncoding, available, build,
                                build_class, order_free)
from tsformers.backbone.mixers._base import SELF
from tsformers.backbone.registry import home_stack
from tsformers.backbone.blocks import block_parts
from tsformers.backbone.stacks.adaptive_depth import ExitSupervised
from tsformers.backbone.dropout import Dropout

__all__ = ["GRID_STACKS", "CrossScaleTokens", "Gateformer", "MultiScaleView", "WordSentenceEncoder", "WordTokens",
           "patch_embeddings", "temporal_blocks", "temporal_fusions", "temporal_mixers", "temporal_reducers",
           "temporal_stacks"]


def temporal_mixers() -> list[str]:
    """The mixers the temporal encoder takes: those with the (non-causal) self pattern.

    The patches of a window all see each other; a causal-only mixer (``"xl_relative"``,
    whose memory holds the past) cannot be built so. A mixer whose windows are stripes of a
    variates × patches grid (``"cswin"``, declaring ``reads_grid``) is handed each sample's
    whole grid, the variates as an unordered set, by the stacks of :func:`temporal_stacks`.
    """
    return [name for name in available("mixer") if SELF in getattr(build_class("mixer", name), "patterns", ())]


def _reads_grid(mixer: str) -> bool:
    return getattr(build_class("mixer", mixer), "reads_grid", False)


#: the stacks that build every mixer with the stack's ``mixer_kwargs`` and hand it every (B·N, P, D) row of the
#: batch whole, so that a grid mixer can regroup the rows into each sample's variates × patches grid. Not so:
#: ``fit`` and ``sret`` (they cut the patches into groups along the batch), ``adaptive_depth`` (rows exit at
#: their own depths, a sample's variates apart), ``dual_stream`` (its own attention) and the mixers' own stages
GRID_STACKS = ("deep", "hybrid", "looped", "mixed", "standard", "three_phase", "wide")


def temporal_stacks(temporal_mixer: str) -> list[str]:
    """The stacks that arrange the temporal encoder's blocks with ``temporal_mixer`` (its ``temporal_stack``).

    The temporal encoder runs over one variate's patches, ordered time tokens, so the stacks
    that read token order (``"fit"``'s contiguous groups, ``"sret"``'s sliced groups, the
    Mamba blocks of ``"hybrid"``, ...) are as welcome as the order-free ones. A mixer that
    works only inside its own stage (``"fca"``: ``"fca_stage"`` makes its cross tokens) takes
    only that stage, and such a stage takes only its mixer. A grid mixer (``"cswin"``) reads
    each sample's variates × patches grid from the rows of the batch, which only the stacks of
    :data:`GRID_STACKS` hand it whole.
    """
    home = home_stack(temporal_mixer)
    if home is not None:
        return [home]
    if _reads_grid(temporal_mixer):
        return [name for name in available("stack") if name in GRID_STACKS]
    stages_of_mixers = {home_stack(name) for name in available("mixer")} - {None}
    return [name for name in available("stack") if name not in stages_of_mixers]


def _stack_misfit(temporal_stack: str, temporal_mixer: str) -> str:
    """Why ``temporal_stack`` cannot hold ``temporal_mixer`` (it is not among :func:`temporal_stacks`)."""
    if home_stack(temporal_mixer):
        return (f"temporal_mixer={temporal_mixer!r} gets its cross tokens only inside stack "
                f"{home_stack(temporal_mixer)!r}")
    if _reads_grid(temporal_mixer):
        return (f"temporal_mixer={temporal_mixer!r} reads each sample's variates × patches grid from the rows of the "
                f"batch, and stack {temporal_stack!r} does not hand its mixer every row whole with the mixer's "
                f"options")
    return f"stack {temporal_stack!r} runs its own mixer in every block"


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
        self.dropout = Dropout(dropout)

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
    ``"tnt"`` block, not an embedding: :meth:`sentences_and_words` hands the words to
    Gateformer's ``temporal_block="tnt"``). The words are single steps (w = patch_len, so any
    patch length divides) of d_inner = ceil(D / w) dimensions, so that the words together
    are at least as wide as a token (TNT-S: 16 words of 24 dimensions for D = 384). Positions
    and dropout as for the paper's patch embedding: fixed sinusoidal ones (TNT learns its
    own), so that only how a patch becomes a vector differs. Cost O(P·patch_len·D).
    """

    def __init__(self, d_model: int, *, patch_len: int, stride: int, dropout: float = 0.0):
        super().__init__()
        d_inner = math.ceil(d_model / patch_len)
        self.d_inner = d_inner
        self.words = build("embedding", "tnt_words", d_inner=d_inner, patch_len=patch_len, words_per_patch=patch_len,
                           stride=stride)
        self.words_norm = nn.LayerNorm(patch_len * d_inner)
        self.proj = nn.Linear(patch_len * d_inner, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.position = SinusoidalPositionalEncoding(d_model)
        self.dropout = Dropout(dropout)

    @staticmethod
    def misfit(*, lookback: int, d_model: int, patch_len: int, stride: int) -> str | None:
        """Why TNT's words cannot make the patch tokens with these settings, or None when they can."""
        if lookback < patch_len:  # no end padding: the window must hold one whole patch
            return f"it needs a lookback of at least patch_len={patch_len} steps, got {lookback}"
        return None

    def n_patches(self, length: int) -> int:
        return (length - self.words.patch_len) // self.words.stride + 1

    def sentences_and_words(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The patch ("sentence") tokens (B, N, P, D) and the words they are made of (B, N, P, w, d_inner)."""
        words = self.words(x)                                              # (B, N, P, w, d_inner)
        t = self.norm(self.proj(self.words_norm(rearrange(words, "b n p w c -> b n p (w c)"))))  # (B, N, P, D)
        return self.dropout(self.position(t)), words

    def forward(self, x: Tensor) -> Tensor:
        return self.sentences_and_words(x)[0]                             # (B, N, P, D)


class WordSentenceEncoder(nn.Module):
    """TNT's blocks as the temporal encoder: sentence tokens (B·N, P, D) with their words -> (B·N, P, D).

    ``n_layers`` registered ``"tnt"`` blocks (Han et al., "Transformer in Transformer", NeurIPS
    2021), each an inner transformer over every patch's words (weights shared by the patches),
    the projected words added to their sentence token, then the outer block over the P
    sentences with the temporal ``mixer``; the words pass from block to block, as in TNT. The
    inner transformer has TNT's four heads where ``d_inner`` divides into them (gcd(d_inner, 4))
    and its MLP ratio 4; the outer block Gateformer's heads, ``d_ff`` and dropout. Cost per
    block O(P·w²·d_inner) inner, plus the mixer's and O(P·D·d_ff) outer.
    """

    def __init__(self, *, d_model: int, d_inner: int, words_per_patch: int, n_heads: int, d_ff: int, n_layers: int,
                 dropout: float, mixer: str, mixer_kwargs: dict | None = None):
        super().__init__()
        self.layers = nn.ModuleList(
            build("block", "tnt", d_model=d_model, d_inner=d_inner, words_per_patch=words_per_patch, n_heads=n_heads,
                  n_heads_inner=math.gcd(d_inner, 4), d_ff=d_ff, dropout=dropout, mixer=mixer,
                  mixer_kwargs=mixer_kwargs)
            for _ in range(n_layers))

    def forward(self, tokens: Tensor, words: Tensor) -> Tensor:
        for layer in self.layers:
            tokens, words = layer(tokens, words)                          # (B·N, P, D), (B·N, P, w, d_inner)
        return tokens


#: the registered blocks the temporal encoder can be made of, reading each patch's words beside its token
_WORD_BLOCKS = ("tnt",)


def temporal_blocks() -> list[str]:
    """The blocks Gateformer's ``temporal_block`` takes: TNT's, over the words of ``embedding="tnt_words"``."""
    return [name for name in available("block") if name in _WORD_BLOCKS]


#: CrossViT's large patches, in patch lengths: the coarse scale over the fine one of ``patch_len``
LARGE_PATCH = 2


class MultiScaleView(nn.Module):
    """CrossViT's two-branch encoder (``"crossvit_two_branch"``) as the temporal view: (B, N, L) -> (B, N, D).

    Chen, Fan, Panda, "CrossViT", ICCV 2021. Each variate's window on its own (channel
    independent, as the paper's temporal stage) is cut into patches of ``patch_len`` steps
    (the fine branch, d_model wide) and of ``LARGE_PATCH``·patch_len steps (the coarse branch,
    2·d_model wide: in CrossViT the large-patch branch is the wider one), each with its CLS
    token; ``n_layers`` multi-scale encoders follow, each one pre-norm block per branch, then
    CrossViT's fusion (each CLS token queries the other branch's patches, ``CrossViTFusion``).
    Both CLS tokens -> Linear -> D replace the patch embedding, the temporal encoder and the
    flatten head. The blocks' FFN is ``d_ff / d_model`` (at least 1) times their width.
    Cost per encoder O(P²·D) over the P fine patches, O(P·D) for the fusion.
    """

    def __init__(self, name: str, d_model: int, *, patch_len: int, n_heads: int, d_ff: int, n_layers: int,
                 dropout: float):
        super().__init__()
        self.branches = build("fusion", name, d_small=d_model, d_large=2 * d_model, patch_small=patch_len,
                              patch_large=LARGE_PATCH * patch_len, n_heads=n_heads, depth=n_layers,
                              d_ff_mult=max(1, d_ff // d_model), dropout=dropout)
        self.head = nn.Sequential(nn.Linear(3 * d_model, d_model), Dropout(dropout))

    @staticmethod
    def misfit(*, lookback: int, patch_len: int, stride: int) -> str | None:
        """Why the two branches cannot read windows with these settings, or None when they can."""
        if stride != patch_len:
            return (f"its branches cut non-overlapping patches, so it needs stride == patch_len, got stride={stride}, "
                    f"patch_len={patch_len}")
        if lookback < LARGE_PATCH * patch_len:  # the coarse branch needs one whole patch
            return (f"its coarse branch cuts patches of {LARGE_PATCH}·patch_len = {LARGE_PATCH * patch_len} steps, "
                    f"longer than lookback={lookback}; lower patch_len to at most {lookback // LARGE_PATCH}")
        return None

    def forward(self, x: Tensor) -> Tensor:
        batch = x.shape[0]
        cls = self.branches.features(rearrange(x, "b n l -> (b n) l"))   # (B·N, 3D): both branches' CLS tokens
        return rearrange(self.head(cls), "(b n) d -> b n d", b=batch)     # (B, N, D)


#: the registered two-branch encoders that make each variate's temporal view from the window
_MULTISCALE = ("crossvit_two_branch",)


def temporal_fusions() -> list[str]:
    """The encoders Gateformer's ``temporal_fusion`` takes: two branches at two patch sizes, fused (CrossViT's)."""
    return [name for name in available("fusion") if name in _MULTISCALE]


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
    :func:`patch_embeddings`. A grid ``temporal_mixer`` ("cswin") attends over each sample's
    whole variates × patches grid, the variates as an unordered set (a stack of
    :data:`GRID_STACKS`). ``temporal_block`` (None: the stack's own blocks, the paper's; "tnt",
    one of :func:`temporal_blocks`) makes the temporal encoder ``e_layers`` TNT blocks over the
    words of ``embedding="tnt_words"`` (:class:`WordSentenceEncoder`). ``temporal_fusion`` (None:
    the paper's patches; "crossvit_two_branch", one of :func:`temporal_fusions`) replaces the
    patch embedding, temporal encoder and flatten head by CrossViT's two branches at two patch
    sizes (:class:`MultiScaleView`).

    ``attention_dropout`` (None: ``dropout``, the paper's) is the own dropout of the mixers named by
    ``temporal_mixer`` and ``variate_mixer`` (on the attention weights of an attention mixer), apart
    from the ``dropout`` of the embeddings, blocks and heads; at 0 an attention mixer on CPU takes
    torch's fused kernel in training too. The other parts with mixers of their own keep ``dropout``:
    ``temporal_fusion``'s branches, an attention ``temporal_reducer``, the latent attention of the
    ``"fit"`` stack, the Mamba blocks of ``"hybrid"`` and the linear ones of ``"mixed"``
    (``"dual_stream"``'s own attention takes it).

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
        attention_dropout: float | None = None,
        temporal_mixer: str = "full",
        variate_mixer: str = "full",
        stack: str = "standard",
        ffn: str = "mlp",
        norm: str = "layernorm",
        embedding: str = "patch",
        n_static: int = 0,
        temporal_stack: str | None = None,
        temporal_reducer: str | None = None,
        temporal_block: str | None = None,
        temporal_fusion: str | None = None,
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
        if temporal_reducer is not None and temporal_reducer not in temporal_reducers():
            raise ValueError(f"temporal_reducer={temporal_reducer!r} is not a stage or reducer Gateformer can shrink "
                             f"the patch tokens with; pick one of {temporal_reducers()} or None (the paper's)")
        build_class("embedding", embedding)  # an unknown name lists the registered ones
        shape = dict(lookback=lookback, d_model=d_model, patch_len=patch_len, stride=stride)
        misfit = embedding_misfit(embedding, **shape)
        if misfit is not None:
            raise ValueError(f"embedding={embedding!r} cannot make Gateformer's patch tokens here: {misfit}; "
                             f"pick an embedding from {patch_embeddings(**shape)}")
        chosen = dict(temporal_mixer=temporal_mixer, temporal_stack=temporal_stack, temporal_reducer=temporal_reducer,
                      embedding=embedding, ffn=ffn, norm=norm, temporal_block=temporal_block)
        if temporal_fusion is not None:
            _check_temporal_fusion(temporal_fusion, lookback=lookback, patch_len=patch_len, stride=stride, **chosen)
        elif temporal_block is not None:
            _check_temporal_block(temporal_block, **chosen)
        elif temporal_stack is None:
            # a temporal mixer that works only inside its own stage (fca: the stage hands it the cross tokens
            # of earlier blocks) gets that stage as the temporal encoder; the patches are ordered tokens
            temporal_stack = home_stack(temporal_mixer) or stack
            if temporal_stack != stack and stack != "standard":
                raise ValueError(f"temporal_mixer={temporal_mixer!r} gets its cross tokens only inside stack "
                                 f"{temporal_stack!r}, which then arranges the temporal encoder, so stack={stack!r} "
                                 f"cannot; keep stack='standard' (the variate encoder's) or pick another temporal "
                                 f"mixer")
            fitting = temporal_stacks(temporal_mixer)
            if temporal_stack not in fitting:  # a grid mixer (cswin) in a stack that regroups the rows
                raise ValueError(f"stack={stack!r} arranges the temporal encoder too, and cannot hold "
                                 f"temporal_mixer={temporal_mixer!r}: {_stack_misfit(stack, temporal_mixer)}; pick a "
                                 f"stack from {[name for name in order_free('stack') if name in fitting]}, or a "
                                 f"temporal_stack from {fitting}")
        else:
            build_class("stack", temporal_stack)  # an unknown name lists the registered ones
            if temporal_stack not in temporal_stacks(temporal_mixer):
                raise ValueError(f"temporal_stack={temporal_stack!r} cannot hold temporal_mixer={temporal_mixer!r}: "
                                 f"{_stack_misfit(temporal_stack, temporal_mixer)}; pick a temporal stack from "
                                 f"{temporal_stacks(temporal_mixer)}")
        # a grid mixer (cswin) regroups the (B·N, P, D) rows into each sample's N × P grid, the variates being
        # the unordered set they are everywhere in Gateformer (one-variate time stripes, LePE along time only)
        grid = dict(variates=n_vars, unordered_variates=True) if _reads_grid(temporal_mixer) else None
        # the mixers' own dropout, when not the blocks' (mixer_kwargs' "dropout" replaces it: build_mixer)
        mixer_dropout = None if attention_dropout is None else dict(dropout=attention_dropout)
        temporal_options = {**(grid or {}), **(mixer_dropout or {})} or None

        self.norm = InstanceNorm()
        # global temporal embedding: the whole window of a variate -> one vector (iTransformer-style)
        self.global_embed = nn.Sequential(nn.Linear(lookback, d_model), Dropout(dropout))
        if temporal_fusion is not None:
            # CrossViT: two branches at two patch sizes, fused through their CLS tokens, read out by a Linear
            self.temporal_view = MultiScaleView(temporal_fusion, d_model, patch_len=patch_len, n_heads=n_heads,
                                                d_ff=d_ff, n_layers=e_layers, dropout=dropout)
            self.patch_embed = self.temporal_encoder = self.temporal_reducer = self.temporal_head = None
        else:
            self.temporal_view = None
            # temporal dependency embedding: patches -> pre-LN attention over time, per variate -> flatten head.
            # The paper's "patch" is built as it is (its weights keep their names in saved models); the others
            # through an adapter to the same (B, N, P, D) tokens
            self.patch_embed = _TOKEN_MAKERS[embedding].make(d_model, patch_len=patch_len, stride=stride,
                                                             dropout=dropout)
            n_patches = self.patch_embed.n_patches(lookback)
            if temporal_block is not None:
                self.temporal_encoder = WordSentenceEncoder(
                    d_model=d_model, d_inner=self.patch_embed.d_inner, words_per_patch=patch_len, n_heads=n_heads,
                    d_ff=d_ff, n_layers=e_layers, dropout=dropout, mixer=temporal_mixer,
                    mixer_kwargs=temporal_options)
            else:
                temporal_parts = block_parts(temporal_stack, ffn=ffn, norm=norm)
                self.temporal_encoder = build("stack", temporal_stack, **encoder, **temporal_parts,
                                              mixer=temporal_mixer, mixer_kwargs=temporal_options)
            # optional: fewer patch tokens for the flatten head (a stage or learned queries), ceil(P/2) of them
            self.temporal_reducer = None if temporal_reducer is None else _PATCH_REDUCERS[temporal_reducer](
                temporal_reducer, d_model, n_heads=n_heads, d_ff=d_ff, dropout=dropout, n_patches=n_patches)
            n_tokens = n_patches if temporal_reducer is None else math.ceil(n_patches / 2)
            self.temporal_head = nn.Sequential(nn.Linear(d_model * n_tokens, d_model), Dropout(dropout))
        self.time_gate = SigmoidGate(d_model)
        # static attributes of the series (optional): one context vector added to every variate token
        self.static_context = nn.Linear(n_static, d_model) if n_static else None
        # variate-wise attention over the N variate tokens (no positions: an unordered set)
        self.variate_encoder = build("stack", stack, **encoder, **variate_parts, mixer=variate_mixer,
                                     mixer_kwargs=mixer_dropout)
        self.variate_gate = SigmoidGate(d_model)
        self.head = nn.Linear(d_model, horizon)

    def forward(self, x: Tensor, static: Tensor | None = None) -> Tensor:
        assert x.ndim == 3 and x.shape[1:] == (self.lookback, self.n_vars), (
            f"Gateformer was built for (batch, {self.lookback}, {self.n_vars}) inputs, got {tuple(x.shape)}"
        )
        x, stats = self.norm(x)                                           # (B, L, N)
        x = rearrange(x, "b l n -> b n l")

        g = self.global_embed(x)                                          # (B, N, D)
        t = self.patch_view(x) if self.temporal_view is None else self.temporal_view(x)   # (B, N, D)
        v = self.time_gate(g, t)                                          # (B, N, D)
        if self.static_context is not None:
            v = v + self.static_context(static)[:, None, :]               # (B, n_static) -> (B, 1, D)

        c = self.variate_encoder(v)                                       # (B, N, D)
        z = self.variate_gate(v, c)                                       # (B, N, D)

        y = rearrange(self.head(z), "b n h -> b h n")                    # (B, H, N)
        return self.norm.inverse(y, stats)

    def patch_view(self, x: Tensor) -> Tensor:
        """The paper's temporal view, per variate: patches, temporal encoder, flatten head; (B, N, L) -> (B, N, D)."""
        batch = x.shape[0]
        if isinstance(self.temporal_encoder, WordSentenceEncoder):        # TNT: the words go with their sentences
            t, words = self.patch_embed.sentences_and_words(x)            # (B, N, P, D), (B, N, P, w, d_inner)
            t = self.temporal_encoder(rearrange(t, "b n p d -> (b n) p d"),
                                      rearrange(words, "b n p w c -> (b n) p w c"))  # (B*N, P, D)
        else:
            t = self.patch_embed(x)                                       # (B, N, P, D)
            t = self.temporal_encoder(rearrange(t, "b n p d -> (b n) p d"))  # (B*N, P, D)
        if self.temporal_reducer is not None:
            t = self.temporal_reducer(t)                                  # (B*N, ceil(P/2), D)
        return self.temporal_head(rearrange(t, "(b n) p d -> b n (d p)", b=batch))  # (B, N, D)


def _check_temporal_block(name: str, *, temporal_mixer: str, temporal_stack: str | None, embedding: str, ffn: str,
                          norm: str, **_) -> None:
    """Refuse, naming the fix, a ``temporal_block`` that cannot be the temporal encoder's with these settings."""
    if name not in temporal_blocks():
        raise ValueError(f"temporal_block={name!r} is not a block Gateformer's temporal encoder can be made of; "
                         f"pick one of {temporal_blocks()} or None (the stack's own blocks, the paper's)")
    if embedding != "tnt_words":
        raise ValueError(f"temporal_block={name!r} reads the words of each patch, which embedding={embedding!r} does "
                         f"not make; set embedding='tnt_words'")
    if temporal_stack not in (None, "standard"):
        raise ValueError(f"temporal_block={name!r} makes the temporal encoder e_layers {name} blocks in sequence, "
                         f"which temporal_stack={temporal_stack!r} cannot arrange; leave temporal_stack None")
    if home_stack(temporal_mixer) is not None:
        raise ValueError(f"temporal_mixer={temporal_mixer!r} gets its cross tokens only inside stack "
                         f"{home_stack(temporal_mixer)!r}, not in a {name} block; pick a temporal mixer from "
                         f"{[m for m in temporal_mixers() if home_stack(m) is None]}")
    custom = {slot: part for slot, part in dict(ffn=ffn, norm=norm).items() if part != BLOCK_SLOTS[slot]}
    if custom:
        raise ValueError(f"temporal_block={name!r} builds its own MLPs and LayerNorms, so "
                         f"{', '.join(f'{slot}={part!r}' for slot, part in custom.items())} cannot apply to both "
                         f"encoders; keep ffn='mlp' and norm='layernorm'")


def _check_temporal_fusion(name: str, *, lookback: int, patch_len: int, stride: int, **chosen: str | None) -> None:
    """Refuse, naming the fix, a ``temporal_fusion`` that cannot make the temporal view with these settings."""
    if name not in temporal_fusions():
        raise ValueError(f"temporal_fusion={name!r} is not a two-branch encoder Gateformer's temporal view can be; "
                         f"pick one of {temporal_fusions()} or None (the paper's patches)")
    # its branches are CrossViT's own: patch embeddings, pre-norm blocks of full attention, MLPs and LayerNorms
    defaults = dict(temporal_mixer="full", temporal_stack=None, temporal_reducer=None, embedding="patch",
                    **BLOCK_SLOTS, temporal_block=None)
    clash = [f"{key}={chosen[key]!r}" for key, default in defaults.items() if chosen[key] != default]
    if clash:
        raise ValueError(f"temporal_fusion={name!r} replaces the patch embedding, the temporal encoder and its head "
                         f"by CrossViT's two branches of their own blocks (full attention), so {', '.join(clash)} "
                         f"cannot apply; leave each at its default: "
                         f"{', '.join(f'{key}={default!r}' for key, default in defaults.items())}")
    misfit = MultiScaleView.misfit(lookback=lookback, patch_len=patch_len, stride=stride)
    if misfit is not None:
        raise ValueError(f"temporal_fusion={name!r} cannot read the windows here: {misfit}")
