"""ATLAS for forecasting: a stack of test-time-optimised deep memories over the time steps of a series.

References
----------
Behrouz et al., "ATLAS: Learning to Optimally Memorize the Context at Test Time", arXiv 2505.23735, 2025.
Behrouz, Zhong & Mirrokni, "Titans: Learning to Memorize at Test Time", arXiv 2501.00663, 2025.
No official code exists; see ``shared/design/architectures.md`` section 5 for what is taken from where.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

import tsformers.backbone  # noqa: F401  (registers every part: the memories and the streaming mixers)
from tsformers.backbone.memory.layers import ATLAS_MEMORY, check_memory, memories
from tsformers.backbone.registry import build

__all__ = ["ATLAS_MEMORY", "Atlas", "LAYERS", "memories"]

State = dict[str, Tensor]
LAYERS = ("deep", "mag", "mal")


class Atlas(nn.Module):
    """ATLAS (Behrouz et al., 2025) as a streaming forecaster: every time step is a token, memories learn as data comes.

    Data flow. With ``channel_independent=True`` (the default) every variable of
    every series is its own token stream with its own memories (S = n_vars
    streams per series, weights shared, as PatchTST found best for such data);
    otherwise each series is one stream whose tokens mix all variables (S = 1)::

        u_t      = x_t - x_{t-1} (u_0 = 0), or x_t             ``normalize``: "last_value" or "none"
        tokens_t = Linear(u_{t-K+1..t})                       a causal convolution of width K over time
        tokens   = block_1 ... block_n(tokens)                ATLAS blocks, ``layer`` picks the variant:
                   "deep": memory in place of attention (DeepTransformer-style)
                   "mag":  memory alongside sliding-window attention, gated (Titans' MAG)
                   "mal":  memory, then sliding-window attention (Titans' MAL)
        z        = LN(tokens_T)                               the last token of each stream
        y        = (Linear(z) + Linear_L->H((window - ref) / std)) * std + ref
                   ref = x_T (the last value) for "last_value", the window's mean for "none"

    Each block's :class:`~tsformers.backbone.memory.omega.OmegaMemory` is a deep MLP
    written at test time by the Omega rule (window ``omega_window``) with the
    Muon-style update, one step per chunk of ``chunk_size`` tokens. The memories
    are the recurrent state: they keep learning on every new observation, while
    the outer weights (projections, gates, the memories' initial weights) are
    only trained by ``fit``.

    ``memory`` swaps the memory of every block by registry name (:func:`memories`):
    ``"omega"`` is the paper's; ``"lmu_cell"`` is LMUFormer's Legendre memory cell
    (``d_model`` coefficients over the last ``lookback`` tokens); a streaming mixer
    (``"mamba"``, ``"sla"``, ``"sliding_window"`` over ``window`` tokens) carries the
    history in its own state. The Omega settings (``d_key`` ... ``frozen_memory``) are
    the Omega memory's only.

    **Normalisation**: the tokens never see per-window statistics, because the
    memories are written once per token and a moving window's statistics would
    change every past token. With ``normalize="last_value"`` (the default; a
    tsformers extension) they read each step's change from the step before (the
    state keeps the last value, so this is causal and exact), and the forecast is
    made relative to the last observed value: the linear path (NLinear-style) reads
    the window minus its last value over its spread, and everything is added back
    onto the last value, so ``forward(x + c) == forward(x) + c``. With ``"none"`` the
    tokens read the values as given (the estimator's fitted per-series scaling) and
    instance normalisation (RevIN without affine) is applied at the output only:
    ``mean``/``std`` are the statistics of the last ``lookback`` steps, which the
    state keeps, and the linear path (RLinear) reads that normalised window.

    **Streaming** (the ``docs/extending.md`` protocol): ``init_state``, ``advance``
    (any number of steps; split-invariant), ``forecast``; ``forward(x)`` is
    ``forecast(advance(init_state(B), x))`` exactly. Cost O(T) per advance, with
    constant state: the memories, their momenta, the last c + b keys/values,
    the attention window, the last ``lookback`` inputs.

    ``forward(x)``: x (batch, lookback, n_vars) -> (batch, horizon, n_vars).
    """

    segment_len = 256  # advance() cuts long inputs into pieces of this many steps (bounds the attention mask)
    #: why ``BaseForecaster.export_onnx`` refuses this network (tsformers.runtime.onnx reads it)
    onnx_unsupported = ("its forecast writes the test-time memories (Omega rule, Muon steps) once per chunk of "
                        "chunk_size tokens, on a schedule read from the streaming state (`pending`): data-"
                        "dependent control flow that a static ONNX graph cannot hold. Use the torch engine.")

    def __init__(self, *, lookback: int, horizon: int, n_vars: int, channel_independent: bool = True,
                 d_model: int = 32, n_layers: int = 1, n_heads: int = 2, d_ff: int = 64, layer: str = "mag",
                 window: int = 32, n_persistent: int = 4, conv_kernel: int = 16, d_key: int = 4,
                 memory_depth: int = 2, memory_expansion: int = 1, poly_degree: int = 2, omega_window: int = 8,
                 chunk_size: int = 16, optimizer: str = "muon", ns_steps: int = 5, max_lr: float = 0.1,
                 frozen_memory: bool = False, dropout: float = 0.1, linear_path: bool = True,
                 normalize: str = "last_value", memory: str = ATLAS_MEMORY):
        super().__init__()
        check_memory(memory)
        if frozen_memory and memory != ATLAS_MEMORY:
            raise ValueError(f"frozen_memory=True stops the Omega rule's test-time writes; memory={memory!r} has "
                             f"no memory weights to freeze (its state is a recurrence): use memory="
                             f"{ATLAS_MEMORY!r} or frozen_memory=False")
        assert normalize in ("last_value", "none"), f"normalize must be 'last_value' or 'none', got {normalize!r}"
        assert lookback > 0 and horizon > 0 and n_vars > 0, (
            f"lookback, horizon and n_vars must be positive, got {lookback}, {horizon}, {n_vars}"
        )
        assert layer in LAYERS, f"layer must be one of {LAYERS}, got {layer!r}"
        assert 1 <= conv_kernel <= lookback + 1, f"conv_kernel must be in [1, lookback + 1], got {conv_kernel}"
        self.lookback, self.horizon, self.n_vars, self.conv_kernel = lookback, horizon, n_vars, conv_kernel
        self.channel_independent = channel_independent
        self.normalize = normalize
        self.n_streams = n_vars if channel_independent else 1   # token streams (with their own memories) per series
        width = 1 if channel_independent else n_vars             # variables in one token
        self.memory = memory
        # each memory's own settings; the streaming mixers take the block's heads, dropout and window
        memory_kwargs = {
            ATLAS_MEMORY: dict(d_key=d_key, depth=memory_depth, expansion=memory_expansion, poly_degree=poly_degree,
                               window=omega_window, chunk_size=chunk_size, optimizer=optimizer, ns_steps=ns_steps,
                               max_lr=max_lr, frozen=frozen_memory),
            # LMUFormer's defaults: as many Legendre coefficients as channels, over the training window
            "lmu_cell": dict(memory_size=d_model, theta=float(lookback)),
        }.get(memory, {})

        self.embed = nn.Linear(conv_kernel * width, d_model)              # causal conv: last K steps -> token
        self.blocks = nn.ModuleList(
            build("block", f"atlas_{layer}", d_model=d_model, n_heads=n_heads, d_ff=d_ff, dropout=dropout,
                  window=window, n_persistent=n_persistent, memory=memory, memory_kwargs=memory_kwargs)
            for _ in range(n_layers)
        )
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, horizon * width)
        self.linear = nn.Linear(lookback, horizon) if linear_path else None
        self.eps = 1e-5

    # -- streaming protocol -------------------------------------------------------------------

    def init_state(self, batch_size: int) -> State:
        like, streams = self.head.weight, self.n_streams
        state = {"inputs": like.new_zeros(batch_size, self.lookback, self.n_vars),    # the last lookback steps
                 "last": like.new_zeros(batch_size, streams, like.shape[1])}          # LN(last token) per stream
        if self.normalize == "last_value":
            state["changes"] = like.new_zeros(batch_size, self.lookback, self.n_vars)  # the last steps' changes
            state["seen"] = like.new_zeros(batch_size, 1, 1)                          # 1 once a step was read
        for i, block in enumerate(self.blocks):
            state |= {f"block{i}.{k}": v.unflatten(0, (batch_size, streams))          # (B, S, ...)
                      for k, v in block.init_state(batch_size * streams).items()}
        return state

    def advance(self, state: State, x: Tensor) -> State:
        """The state after the new steps x: (batch, T, n_vars), T >= 0."""
        assert x.ndim == 3 and x.shape[2] == self.n_vars, (
            f"Atlas was built for (batch, T, {self.n_vars}) inputs, got {tuple(x.shape)}"
        )
        for segment in x.split(self.segment_len, dim=1):
            state = self._advance(state, segment)
        return state

    def _advance(self, state: State, x: Tensor) -> State:
        batch, n_new, kernel = x.shape[0], x.shape[1], self.conv_kernel
        context = torch.cat([state["inputs"], x], dim=1)                      # (B, L + T, N)
        new_state = {"inputs": context[:, -self.lookback:]}
        if self.normalize == "last_value":
            # the step before x: the last one read, or x's first (whose change is then zero, as in a window)
            before = state["seen"] * state["inputs"][:, -1:] + (1 - state["seen"]) * x[:, :1]   # (B, 1, N)
            changes = x - torch.cat([before, x[:, :-1]], dim=1)                                  # (B, T, N)
            context = torch.cat([state["changes"], changes], dim=1)                             # (B, L + T, N)
            seen = torch.ones_like(state["seen"]) if n_new else state["seen"]
            new_state |= {"changes": context[:, -self.lookback:], "seen": seen}
        recent = context[:, context.shape[1] - n_new - kernel + 1:]            # (B, K - 1 + T, N)
        patches = recent.unfold(1, kernel, 1)                                  # (B, T, N, K)
        pattern = "b t n k -> (b n) t k" if self.channel_independent else "b t n k -> b t (k n)"
        tokens = self.embed(rearrange(patches, pattern))                       # (B*S, T, D)
        for i, block in enumerate(self.blocks):
            prefix = f"block{i}."
            own = {key[len(prefix):]: value.flatten(0, 1) for key, value in state.items() if key.startswith(prefix)}
            tokens, block_state = block.step(tokens, own)
            new_state |= {prefix + key: value.unflatten(0, (batch, self.n_streams))
                          for key, value in block_state.items()}
        new_state["last"] = self.norm(tokens[:, -1]).unflatten(0, (batch, self.n_streams))  # (B, S, D)
        return new_state

    def forecast(self, state: State) -> Tensor:
        """The forecast after the state's last step: (batch, horizon, n_vars)."""
        window = state["inputs"]                                               # (B, L, N)
        # the reference the forecast is relative to: the last value (shifts with the level), or the mean
        ref = window[:, -1:] if self.normalize == "last_value" else window.mean(dim=1, keepdim=True)  # (B, 1, N)
        std = torch.sqrt(window.var(dim=1, keepdim=True, unbiased=False) + self.eps)                   # (B, 1, N)
        pattern = "b n h -> b h n" if self.channel_independent else "b 1 (h n) -> b h n"
        y = rearrange(self.head(state["last"]), pattern, n=self.n_vars)       # (B, H, N)
        if self.linear is not None:
            y = y + self.linear(((window - ref) / std).mT).mT                   # (B, H, N)
        return y * std + ref

    # -- the network contract -------------------------------------------------------------------

    def forward(self, x: Tensor) -> Tensor:
        assert x.ndim == 3 and x.shape[1:] == (self.lookback, self.n_vars), (
            f"Atlas was built for (batch, {self.lookback}, {self.n_vars}) inputs, got {tuple(x.shape)}"
        )
        return self.forecast(self.advance(self.init_state(x.shape[0]), x))
