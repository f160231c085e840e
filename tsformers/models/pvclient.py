"""PV-Client: an ENhanced Transformer across variables plus a linear trend module.

References
----------
Gao, Cao, Chen, Zhang, PV-Client (photovoltaic power forecasting from weather factors),
arXiv 2406.03808 (official code: github.com/daxin007/PV-Client);
Gao et al., "Client: Cross-variable Linear Integrated Enhanced Transformer for Multivariate
Long-Term Time Series Forecasting", arXiv 2305.18838 (github.com/daxin007/Client).
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn

from tsformers.backbone import InstanceNorm, TransformerEncoder, build, build_class, order_free
from tsformers.backbone.blocks import block_parts, stack_block
from tsformers.backbone.registry import home_stack
from tsformers.backbone.stacks.adaptive_depth import ExitSupervised
from tsformers.backbone.dropout import Dropout

__all__ = ["PAPER_BLOCK", "STEP_FUSIONS", "FusedStepPathway", "PVClient"]

#: The paper's encoder block (post-LN); the block the stacks with blocks of their own stand for.
PAPER_BLOCK = "postnorm"

#: The fusions the per-step pathway takes (``step_fusion``): blocks that fuse two streams of the same H hour
#: tokens, token for token. CrossViT's fusions are not among them: they exchange CLS tokens between two
#: branches of different patch sizes, which two streams of hours do not have.
STEP_FUSIONS = ("cross_gating",)


class FusedStepPathway(nn.Module):
    """The per-step pathway with its two streams fused by a registered fusion (MAXIM's cross gating).

    The forecast period's known-future inputs (B, H, F) and the targets one horizon earlier
    (B, H, T) are two streams of the same H hour tokens. The weather stream is embedded per
    hour to ``width`` (Linear F -> width; the fusion embeds the power stream itself, T ->
    width); the fusion lets each stream gate the other with weights computed along the hour
    axis (Tu et al., CVPR 2022: within blocks of b consecutive hours, and along the g rows of
    a g x H/g grid); a Linear(width -> T), zero at start, reads the fused weather stream, which
    holds the gated power stream too. b = g = ceil(sqrt(H)), so that b·g >= H: one block hop
    and one grid hop reach every hour (H need not be a multiple: the fusion pads).
    Cost O(H·(b + g)·width + H·width²).

    ``forward(steps)``: steps (B, H, F + T), the known inputs then the earlier targets -> (B, H, T).
    """

    def __init__(self, *, n_known: int, n_targets: int, horizon: int, width: int, fusion: str = "cross_gating",
                 dropout: float = 0.0):
        super().__init__()
        self.n_known, self.n_targets = n_known, n_targets
        size = math.isqrt(horizon - 1) + 1                            # ceil(sqrt(H))
        self.known_embed = nn.Linear(n_known, width)
        self.fusion = build("fusion", fusion, d_model=width, d_y=n_targets, block_size=size, grid_size=size,
                            dropout=dropout)
        self.head = nn.Linear(width, n_targets)
        nn.init.zeros_(self.head.weight)  # the pathway starts at zero: training starts from the paper's model
        nn.init.zeros_(self.head.bias)

    def forward(self, steps: Tensor) -> Tensor:
        known, earlier = steps.split([self.n_known, self.n_targets], dim=-1)    # (B, H, F), (B, H, T)
        weather, _ = self.fusion(self.known_embed(known), earlier)              # (B, H, width), each gated
        return self.head(weather)                                               # (B, H, T)


class PVClient(ExitSupervised, nn.Module):
    """PV-Client (Gao et al., 2024): attention across variables plus a linear trend, weighted per variate.

    The data flow of the official model:

    1. RevIN, affine (per-variate weight 1, bias 0; statistics over the window, detached).
    2. No embedding and no positional encoding: each variate's normalised window *is* its
       token, so d_model = lookback and the tokens are the N variates (PV power and each
       weather factor), an unordered set.
    3. The "ENhanced Transformer": ``e_layers`` post-LN encoder layers (full attention, GELU
       FFN lookback -> d_ff -> lookback) and a final LayerNorm. Attention mixes variables,
       never time steps: cost O(N^2·L) per layer, plus O(N·L·d_ff) for the FFN.
    4. A projection Linear(L -> H) per token instead of a decoder: P_trans (B, H, N).
    5. The linear (trend) module: one Linear(L -> H) shared by all variates, on the
       normalised input: P_lin (B, H, N). Cost O(N·L·H).
    6. y = w_trans ⊙ P_trans + w_lin ⊙ P_lin with learnable per-variate vectors (PV-Client
       initialises both to 1; Client fixes w_trans = 1 and starts w_lin from a setting).
    7. RevIN denormalisation.

    Two tsformers extensions, off by default. ``block`` (the standard stack only) names the
    encoder block: "postnorm", the paper's; "prenorm"; or "metaformer" (Yu et al., CVPR 2022:
    x + LayerScale(mixer(Norm(x))), x + LayerScale(MLP(Norm(x))), with ``mixer`` as its token
    mixer, since PoolFormer's pooling reads an order the variates do not have; its MLP is fixed,
    so ``ffn`` must stay "mlp").

    And, off here (``n_known_future=0``) and on in
    :class:`~tsformers.estimators.pvclient.PVClientForecaster`: the **per-step pathway**.
    The paper's tokens are whole windows, so the weather of one forecast hour reaches
    that hour's power only through a Linear(L -> H) of a token; a gradient-boosted
    regression of the hour's power on the hour's weather beats that by far. The
    pathway maps each horizon step's known-future inputs (the last ``n_known_future``
    channels, led by the horizon, so their last H rows are the forecast period), and
    the targets one horizon earlier, to the targets at that step with one MLP shared
    by all steps, and adds it to the paper's output in the scaler's units (a weather
    value means the same power in every window, so it must not be instance-normalised).
    Its last layer starts at zero: training starts from the paper's model. ``step_fusion``
    None: the MLP reads each step's inputs concatenated (width ``d_ff``); "cross_gating":
    the two streams (weather of each forecast hour, power one horizon earlier) are fused by
    MAXIM's cross-gating block over the hours (:class:`FusedStepPathway`, width ``d_ff``), so
    an hour's forecast also reads its neighbours.

    The defaults are PV-Client's (``predict_client.py``: L = 192, H = 96, 4 heads, d_ff 128,
    2 layers, dropout 0.1, GELU). The encoder is built from registered parts by name:
    ``mixer``, ``stack``, ``block`` (the standard stack's) and, where the blocks have those
    slots, their ``ffn`` ("mlp", the paper's GELU FFN) and ``norm`` ("layernorm", the paper's;
    with the standard stack it is the final norm too). Every variate is forecast; a caller keeps the ones it
    wants (the estimators keep the targets, the first channels).

    ``forward(x)``: x (batch, lookback, n_vars) -> (batch, horizon, n_vars).
    ``trend(x)``: the linear module alone, with the same normalisation, same shapes.
    """

    def __init__(
        self,
        *,
        lookback: int,
        horizon: int,
        n_vars: int,
        n_heads: int = 4,
        d_ff: int = 128,
        e_layers: int = 2,
        dropout: float = 0.1,
        w_trans: float = 1.0,
        w_lin: float = 1.0,
        mixer: str = "full",
        stack: str = "standard",
        ffn: str = "mlp",
        norm: str = "layernorm",
        block: str = PAPER_BLOCK,
        n_targets: int = 1,
        n_known_future: int = 0,
        step_fusion: str | None = None,
    ):
        super().__init__()
        assert lookback > 0 and horizon > 0 and n_vars > 0, (
            f"lookback, horizon and n_vars must be positive, got {lookback}, {horizon}, {n_vars}"
        )
        assert lookback % n_heads == 0, (
            f"PV-Client's tokens are whole windows (d_model = lookback), so n_heads={n_heads} must divide "
            f"lookback={lookback}"
        )
        self.lookback, self.horizon, self.n_vars = lookback, horizon, n_vars

        self.norm = InstanceNorm(n_vars=n_vars, affine=True)
        # the tokens are variates, an unordered set: no part may read their order
        for slot, name in (("mixer", mixer), ("stack", stack)):
            if build_class(slot, name).requires_order:
                raise ValueError(f"{slot}={name!r} needs ordered tokens, but PV-Client's tokens are variates (an "
                                 f"unordered set); pick one of {order_free(slot, standalone=True)}")
        if home_stack(mixer) is not None and mixer not in order_free("mixer", standalone=True):
            raise ValueError(f"mixer={mixer!r} attends to cross tokens that only stack {home_stack(mixer)!r} makes, "
                             f"merging earlier blocks along positions, which PV-Client's tokens (variates, an "
                             f"unordered set) do not have; pick one of {order_free('mixer', standalone=True)}")
        # the ENhanced Transformer over variate tokens: post-LN, GELU, final LayerNorm, d_model = L; the blocks'
        # FFN and norms by name where the stack's blocks have those slots (the paper's: "mlp", "layernorm")
        parts = block_parts(stack, unordered="PV-Client's tokens are variates", ffn=ffn, norm=norm)
        encoder = dict(d_model=lookback, n_heads=n_heads, d_ff=d_ff, n_layers=e_layers, dropout=dropout, mixer=mixer,
                       **parts, **stack_block(stack, block, default=PAPER_BLOCK, **parts))
        if stack == "standard":
            self.encoder = TransformerEncoder(**encoder, activation="gelu", final_norm=True)
        else:  # another arrangement of the blocks, with that scheme's own norms
            self.encoder = build("stack", stack, **encoder)
        self.projection = nn.Linear(lookback, horizon)   # replaces a decoder, per variate token
        self.linear = nn.Linear(lookback, horizon)       # the trend module, shared across variates
        self.w_trans = nn.Parameter(torch.full((n_vars,), float(w_trans)))
        self.w_lin = nn.Parameter(torch.full((n_vars,), float(w_lin)))

        assert 0 <= n_known_future <= n_vars - n_targets and 0 < n_targets <= n_vars, (
            f"n_targets={n_targets} and n_known_future={n_known_future} do not fit n_vars={n_vars}"
        )
        self.n_targets, self.n_known_future = n_targets, n_known_future
        if step_fusion is not None and step_fusion not in STEP_FUSIONS:
            build_class("fusion", step_fusion)  # an unknown name lists the registered ones
            raise ValueError(f"step_fusion={step_fusion!r} does not fuse two streams of hour tokens token for token "
                             f"(CrossViT's fusions exchange the CLS tokens of two patch branches); pick one of "
                             f"{list(STEP_FUSIONS)}, or None for the MLP over the concatenated inputs")
        self.step_pathway = None
        if n_known_future and step_fusion is not None:  # the hour streams fused across hours
            self.step_pathway = FusedStepPathway(n_known=n_known_future, n_targets=n_targets, horizon=horizon,
                                                 width=d_ff, fusion=step_fusion, dropout=dropout)
        elif n_known_future:  # the tsformers extension: the hour's known inputs -> the hour's targets
            self.step_pathway = nn.Sequential(
                nn.Linear(n_known_future + n_targets, d_ff), nn.GELU(), Dropout(dropout),
                nn.Linear(d_ff, d_ff), nn.GELU(), nn.Linear(d_ff, n_targets),
            )
            nn.init.zeros_(self.step_pathway[-1].weight)
            nn.init.zeros_(self.step_pathway[-1].bias)

    def _check(self, x: Tensor) -> None:
        assert x.ndim == 3 and x.shape[1:] == (self.lookback, self.n_vars), (
            f"PVClient was built for (batch, {self.lookback}, {self.n_vars}) inputs, got {tuple(x.shape)}"
        )

    def forward(self, x: Tensor) -> Tensor:
        self._check(x)
        scaled = x                                                        # (B, L, N), the scaler's units
        x, stats = self.norm(x)                                           # (B, L, N)
        tokens = rearrange(x, "b l n -> b n l")                           # (B, N, L): a token per variate

        p_trans = self.projection(self.encoder(tokens))                   # (B, N, L) -> (B, N, H)
        p_lin = self.linear(tokens)                                       # (B, N, H)
        y = self.w_trans * rearrange(p_trans, "b n h -> b h n") + self.w_lin * rearrange(p_lin, "b n h -> b h n")
        y = self.norm.inverse(y, stats)                                   # (B, H, N)
        if self.step_pathway is None:
            return y
        h, t = self.horizon, self.n_targets
        known = scaled[:, -h:, -self.n_known_future:]                     # (B, H, F): the forecast period's inputs
        earlier = scaled[:, -h:, :t]                                      # (B, H, T): each target one horizon earlier
        step = self.step_pathway(torch.cat([known, earlier], dim=-1))     # (B, H, F + T) -> (B, H, T)
        return torch.cat([y[..., :t] + step, y[..., t:]], dim=-1)         # (B, H, N)

    def trend(self, x: Tensor) -> Tensor:
        """The linear module alone (normalise, Linear(L -> H), denormalise), without its weight w_lin."""
        self._check(x)
        x, stats = self.norm(x)                                           # (B, L, N)
        y = self.linear(rearrange(x, "b l n -> b n l"))                   # (B, N, H)
        return self.norm.inverse(rearrange(y, "b n h -> b h n"), stats)   # (B, H, N)
