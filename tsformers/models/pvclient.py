"""PV-Client: an ENhanced Transformer across variables plus a linear trend module.

References
----------
Gao, Cao, Chen, Zhang, PV-Client (photovoltaic power forecasting from weather factors),
arXiv 2406.03808 (official code: github.com/daxin007/PV-Client);
Gao et al., "Client: Cross-variable Linear Integrated Enhanced Transformer for Multivariate
Long-Term Time Series Forecasting", arXiv 2305.18838 (github.com/daxin007/Client).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from tsformers.backbone import InstanceNorm, TransformerEncoder, build, build_class, order_free
from tsformers.backbone.blocks import block_parts
from tsformers.backbone.registry import home_stack
from tsformers.backbone.stacks.adaptive_depth import ExitSupervised

__all__ = ["PVClient"]


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

    A tsformers extension, off by default here (``n_known_future=0``) and on in
    :class:`~tsformers.estimators.pvclient.PVClientForecaster`: the **per-step pathway**.
    The paper's tokens are whole windows, so the weather of one forecast hour reaches
    that hour's power only through a Linear(L -> H) of a token; a gradient-boosted
    regression of the hour's power on the hour's weather beats that by far. The
    pathway maps each horizon step's known-future inputs (the last ``n_known_future``
    channels, led by the horizon, so their last H rows are the forecast period), and
    the targets one horizon earlier, to the targets at that step with one MLP shared
    by all steps, and adds it to the paper's output in the scaler's units (a weather
    value means the same power in every window, so it must not be instance-normalised).
    Its last layer starts at zero: training starts from the paper's model.

    The defaults are PV-Client's (``predict_client.py``: L = 192, H = 96, 4 heads, d_ff 128,
    2 layers, dropout 0.1, GELU). The encoder is built from registered parts by name:
    ``mixer``, ``stack`` and, where the stack's blocks have those slots, their ``ffn``
    ("mlp", the paper's GELU FFN) and ``norm`` ("layernorm", the paper's; with the
    standard stack it is the final norm too). Every variate is forecast; a caller keeps the ones it
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
        n_targets: int = 1,
        n_known_future: int = 0,
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
        encoder = dict(d_model=lookback, n_heads=n_heads, d_ff=d_ff, n_layers=e_layers, dropout=dropout, mixer=mixer,
                       **block_parts(stack, unordered="PV-Client's tokens are variates", ffn=ffn, norm=norm))
        if stack == "standard":
            self.encoder = TransformerEncoder(**encoder, activation="gelu", norm_first=False, final_norm=True)
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
        self.step_pathway = None
        if n_known_future:  # the tsformers extension: the hour's known inputs -> the hour's targets
            self.step_pathway = nn.Sequential(
                nn.Linear(n_known_future + n_targets, d_ff), nn.GELU(), nn.Dropout(dropout),
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
        step = self.step_pathway(torch.cat([known, earlier], dim=-1))     # (B, H, T)
        return torch.cat([y[..., :t] + step, y[..., t:]], dim=-1)         # (B, H, N)

    def trend(self, x: Tensor) -> Tensor:
        """The linear module alone (normalise, Linear(L -> H), denormalise), without its weight w_lin."""
        self._check(x)
        x, stats = self.norm(x)                                           # (B, L, N)
        y = self.linear(rearrange(x, "b l n -> b n l"))                   # (B, N, H)
        return self.norm.inverse(rearrange(y, "b n h -> b h n"), stats)   # (B, H, N)
