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

from tsformers.backbone.memory import layers  # noqa: F401  (registers the blocks "atlas_deep|mag|mal")
from tsformers.backbone.registry import build

__all__ = ["Atlas", "LAYERS"]

State = dict[str, Tensor]
LAYERS = ("deep", "mag", "mal")


class Atlas(nn.Module):
    """ATLAS (Behrouz et al., 2025) as a streaming forecaster: every time step is a token, memories learn as data comes.

    Data flow. With ``channel_independent=True`` (the default) every variable of
    every series is its own token stream with its own memories (S = n_vars
    streams per series, weights shared, as PatchTST found best for such data);
    otherwise each series is one stream whose tokens mix all variables (S = 1)::

        tokens_t = Linear(x_{t-K+1..t})                       a causal convolution of width K over time
        tokens   = block_1 ... block_n(tokens)                ATLAS blocks, ``layer`` picks the variant:
                   "deep": memory in place of attention (DeepTransformer-style)
                   "mag":  memory alongside sliding-window attention, gated (Titans' MAG)
                   "mal":  memory, then sliding-window attention (Titans' MAL)
        z        = LN(tokens_T)                               the last token of each stream
        y        = (Linear(z) + Linear_L->H(norm(window))) * std + mean

    Each block's :class:`~tsformers.backbone.memory.omega.OmegaMemory` is a deep MLP
    written at test time by the Omega rule (window ``omega_window``) with the
    Muon-style update, one step per chunk of ``chunk_size`` tokens. The memories
    are the recurrent state: they keep learning on every new observation, while
    the outer weights (projections, gates, the memories' initial weights) are
    only trained by ``fit``.

    **Normalisation**: the tokens see the data as given (the estimator's fitted
    per-series scaling), never per-window statistics, because the memories are
    written once per token and a moving window's statistics would change every
    past token. Instance normalisation (RevIN without affine) is applied at the
    output only: ``mean``/``std`` are the statistics of the last ``lookback``
    steps, which the state keeps, and the optional linear path (RLinear) reads
    that normalised window.

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
                 frozen_memory: bool = False, dropout: float = 0.1, linear_path: bool = True):
        super().__init__()
        assert lookback > 0 and horizon > 0 and n_vars > 0, (
            f"lookback, horizon and n_vars must be positive, got {lookback}, {horizon}, {n_vars}"
        )
        assert layer in LAYERS, f"layer must be one of {LAYERS}, got {layer!r}"
        assert 1 <= conv_kernel <= lookback + 1, f"conv_kernel must be in [1, lookback + 1], got {conv_kernel}"
        self.lookback, self.horizon, self.n_vars, self.conv_kernel = lookback, horizon, n_vars, conv_kernel
        self.channel_independent = channel_independent
        self.n_streams = n_vars if channel_independent else 1   # token streams (with their own memories) per series
        width = 1 if channel_independent else n_vars             # variables in one token
        memory = dict(d_key=d_key, depth=memory_depth, expansion=memory_expansion, poly_degree=poly_degree,
                      window=omega_window, chunk_size=chunk_size, optimizer=optimizer, ns_steps=ns_steps,
                      max_lr=max_lr, frozen=frozen_memory)

        self.embed = nn.Linear(conv_kernel * width, d_model)              # causal conv: last K steps -> token
        self.blocks = nn.ModuleList(
            build("block", f"atlas_{layer}", d_model=d_model, n_heads=n_heads, d_ff=d_ff, dropout=dropout,
                  window=window, n_persistent=n_persistent, memory_kwargs=memory)
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
        recent = context[:, context.shape[1] - n_new - kernel + 1:]            # (B, K - 1 + T, N)
        patches = recent.unfold(1, kernel, 1)                                  # (B, T, N, K)
        pattern = "b t n k -> (b n) t k" if self.channel_independent else "b t n k -> b t (k n)"
        tokens = self.embed(rearrange(patches, pattern))                       # (B*S, T, D)
        new_state = {"inputs": context[:, -self.lookback:]}
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
        mean = window.mean(dim=1, keepdim=True)                                # (B, 1, N)
        std = torch.sqrt(window.var(dim=1, keepdim=True, unbiased=False) + self.eps)
        pattern = "b n h -> b h n" if self.channel_independent else "b 1 (h n) -> b h n"
        y = rearrange(self.head(state["last"]), pattern, n=self.n_vars)       # (B, H, N)
        if self.linear is not None:
            y = y + self.linear(((window - mean) / std).mT).mT                  # (B, H, N)
        return y * std + mean

    # -- the network contract -------------------------------------------------------------------

    def forward(self, x: Tensor) -> Tensor:
        assert x.ndim == 3 and x.shape[1:] == (self.lookback, self.n_vars), (
            f"Atlas was built for (batch, {self.lookback}, {self.n_vars}) inputs, got {tuple(x.shape)}"
        )
        return self.forecast(self.advance(self.init_state(x.shape[0]), x))
