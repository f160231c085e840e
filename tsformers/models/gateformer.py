"""Gateformer: temporal and variate-wise attention with gated representations.

References
----------
Lan & Oermann, "Gateformer: Advancing Multivariate Time Series Forecasting through
Temporal and Variate-Wise Attention with Gated Representations", arXiv 2505.00307,
ICML 2025. Official code: github.com/nyuolab/Gateformer (``models/Gateformer.py``).
"""

from __future__ import annotations

from einops import rearrange
from torch import Tensor, nn

from tsformers.backbone import InstanceNorm, PatchEmbedding, SigmoidGate, available, build, build_class, order_free
from tsformers.backbone.mixers._base import SELF
from tsformers.backbone.registry import home_stack
from tsformers.backbone.blocks import block_parts
from tsformers.backbone.stacks.adaptive_depth import ExitSupervised

__all__ = ["Gateformer", "temporal_mixers"]


def temporal_mixers() -> list[str]:
    """The mixers the temporal encoder takes: those with the (non-causal) self pattern.

    The patches of a window all see each other; a causal-only mixer (``"xl_relative"``,
    whose memory holds the past) cannot be built so.
    """
    return [name for name in available("mixer") if SELF in getattr(build_class("mixer", name), "patterns", ())]


class Gateformer(ExitSupervised, nn.Module):
    """Gateformer (Lan & Oermann, 2025): per-variate temporal encoding, gated, then variate attention, gated.

    Each variate becomes one token by gating two views of its window: a global
    Linear(L -> D) embedding and a patch-wise temporal Transformer (channel
    independent). Attention over the variate tokens then mixes variates, and a
    second gate decides per feature how much of that to take. The defaults are
    the paper's ETTh1 setting for H = 96. Both encoders are built from registered parts
    by name: ``temporal_mixer``, ``variate_mixer``, ``stack``, and the blocks' ``ffn``
    ("mlp", the paper's) and ``norm`` ("layernorm", the paper's).

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
        n_static: int = 0,
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
                             f"variates too, an unordered set; pick a stack from {order_free('stack')}")
        # a temporal mixer that works only inside its own stage (fca: the stage hands it the cross tokens
        # of earlier blocks) gets that stage as the temporal encoder; the patches are ordered tokens
        temporal_stack = home_stack(temporal_mixer) or stack
        if temporal_stack != stack and stack != "standard":
            raise ValueError(f"temporal_mixer={temporal_mixer!r} gets its cross tokens only inside stack "
                             f"{temporal_stack!r}, which then arranges the temporal encoder, so stack={stack!r} "
                             f"cannot; keep stack='standard' (the variate encoder's) or pick another temporal mixer")
        temporal_parts = block_parts(temporal_stack, ffn=ffn, norm=norm)

        self.norm = InstanceNorm()
        # global temporal embedding: the whole window of a variate -> one vector (iTransformer-style)
        self.global_embed = nn.Sequential(nn.Linear(lookback, d_model), nn.Dropout(dropout))
        # temporal dependency embedding: patches -> pre-LN attention over time, per variate -> flatten head
        self.patch_embed = PatchEmbedding(d_model, patch_len=patch_len, stride=stride, dropout=dropout)
        n_patches = self.patch_embed.n_patches(lookback)
        self.temporal_encoder = build("stack", temporal_stack, **encoder, **temporal_parts, mixer=temporal_mixer)
        self.temporal_head = nn.Sequential(nn.Linear(d_model * n_patches, d_model), nn.Dropout(dropout))
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
        t = self.temporal_head(rearrange(t, "(b n) p d -> b n (d p)", b=batch))  # (B, N, D)
        v = self.time_gate(g, t)                                          # (B, N, D)
        if self.static_context is not None:
            v = v + self.static_context(static)[:, None, :]               # (B, n_static) -> (B, 1, D)

        c = self.variate_encoder(v)                                       # (B, N, D)
        z = self.variate_gate(v, c)                                       # (B, N, D)

        y = rearrange(self.head(z), "b n h -> b h n")                    # (B, H, N)
        return self.norm.inverse(y, stats)
