"""LMUFormer: a convolutional patch embedding, Legendre-memory token mixing, a convolutional channel mixer.

References
----------
Liu, Datta, Li & Beerel, "LMUFormer: Low Complexity Yet Powerful Spiking Model With
Legendre Memory Units", ICLR 2024, arXiv 2402.04882. Official code:
github.com/zeyuliu1037/LMUFormer (``lmu_rnn_conv1d`` and the spiking ``slmu_rnn_ms_conv1d``).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from tsformers.backbone import build, streaming
from tsformers.backbone.lmu import ConvFFN, LMUCell, TokenBatchNorm
from tsformers.backbone.spiking import LIFNode
from tsformers.backbone.dropout import Dropout

__all__ = ["CausalConv1d", "ConvFFN", "LMUFormer", "LMUFormerBlock", "LMUTokenizer", "memories"]

#: The paper's token mixer: the Legendre memory cell.
LMU_MEMORY = "lmu"


def memories() -> list[str]:
    """The token mixers an LMUFormer block accepts: ``"lmu"`` (the paper's) and every streaming causal mixer.

    A streaming mixer (``tsformers.backbone.streaming()``) runs in parallel over a window and
    carries a state over any history, as the LMU does, so the stream stays exact.
    """
    return sorted({LMU_MEMORY, *streaming("mixer")})

State = dict[str, Tensor]


def _sub(state: State | None, prefix: str) -> State | None:
    """The entries of ``state`` under ``prefix.``, with the prefix removed (None stays None)."""
    if state is None:
        return None
    cut = len(prefix) + 1
    return {k[cut:]: v for k, v in state.items() if k.startswith(prefix + ".")}


def _prefixed(prefix: str, state: State) -> State:
    return {f"{prefix}.{k}": v for k, v in state.items()}


class CausalConv1d(nn.Module):
    """Conv1d over the token axis with left padding: output t reads inputs t-k+1 .. t only.

    The paper's tokenizer pads both sides (each k=3 conv looks one token ahead); left
    padding makes it causal, so the stream can be advanced exactly. Streaming state: the
    last k-1 inputs. ``forward(x, state=None) -> (y, state)``: x (B, T, C_in) -> y (B, T,
    C_out), state (B, k-1, C_in) (zeros, the padding, where None). Cost O(T·k·C_in·C_out).
    """

    def __init__(self, in_channels: int, out_channels: int, *, kernel_size: int = 3, bias: bool = False):
        super().__init__()
        assert kernel_size >= 1, f"kernel_size must be positive, got {kernel_size}"
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, bias=bias)
        self.context = kernel_size - 1

    def init_state(self, batch_size: int) -> Tensor:
        return torch.zeros(batch_size, self.context, self.conv.in_channels)

    def forward(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        past = x.new_zeros(x.shape[0], self.context, x.shape[2]) if state is None else state
        x = torch.cat([past, x], dim=1)                                      # (B, k-1+T, C_in)
        y = self.conv(x.mT).mT                                              # (B, T, C_out)
        return y, x[:, x.shape[1] - self.context:]                          # the last k-1 inputs


class LMUTokenizer(nn.Module):
    """The convolutional patch embedding: one token per time step, no downsampling.

    Non-spiking: n_layers x [CausalConv(k) -> ReLU -> BN], then the relative position
    embedding x + CausalConv(k)(x). Spiking (membrane-shortcut order): CausalConv -> BN,
    then (n_layers - 1) x [LIF -> CausalConv -> BN], then x + BN(CausalConv(LIF(x))); the
    output stays real-valued. (B, T, C_in) -> (B, T, D); cost O(T·k·D²) per layer.
    """

    def __init__(self, in_channels: int, d_model: int, *, n_layers: int = 4, kernel_size: int = 3,
                 spiking: bool = False, lif: dict | None = None):
        super().__init__()
        assert n_layers >= 1, f"the tokenizer needs at least one conv layer, got n_layers={n_layers}"
        self.spiking = spiking
        widths = [in_channels] + [d_model] * n_layers
        self.convs = nn.ModuleList(CausalConv1d(a, b, kernel_size=kernel_size) for a, b in zip(widths, widths[1:]))
        self.norms = nn.ModuleList(TokenBatchNorm(d_model) for _ in range(n_layers))
        # spiking: a LIF before every conv but the first (which encodes the real-valued series)
        self.lifs = nn.ModuleList(LIFNode(**lif) for _ in range(n_layers - 1)) if spiking else nn.ModuleList()
        self.rpe_lif = LIFNode(**lif) if spiking else nn.Identity()
        self.rpe_conv = CausalConv1d(d_model, d_model, kernel_size=kernel_size)
        self.rpe_norm = TokenBatchNorm(d_model) if spiking else nn.Identity()

    def init_state(self, batch_size: int) -> State:
        state = {f"conv{i}": conv.init_state(batch_size) for i, conv in enumerate(self.convs)}
        state["rpe_conv"] = self.rpe_conv.init_state(batch_size)
        if self.spiking:
            d_model = self.rpe_conv.conv.in_channels
            state.update({f"lif{i + 1}": lif.init_state(batch_size, d_model) for i, lif in enumerate(self.lifs)})
            state["rpe_lif"] = self.rpe_lif.init_state(batch_size, d_model)
        return state

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        new: State = {}

        def run(name: str, layer: nn.Module, h: Tensor) -> Tensor:
            h, new[name] = layer(h, None if state is None else state[name])
            return h

        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            if self.spiking:
                if i > 0:
                    x = run(f"lif{i}", self.lifs[i - 1], x)                   # (B, T, D) spikes
                x = norm(run(f"conv{i}", conv, x))                            # (B, T, D)
            else:
                x = norm(torch.relu(run(f"conv{i}", conv, x)))                # (B, T, D)
        r = run("rpe_lif", self.rpe_lif, x) if self.spiking else x
        return x + self.rpe_norm(run("rpe_conv", self.rpe_conv, r)), new


class LMUFormerBlock(nn.Module):
    """x = x + BN(Conv1x1(Memory(x)));  x = x + ConvFFN(x). The residual stream stays real-valued.

    Memory: the paper's LMU cell (``memory="lmu"``), or a streaming causal mixer by its
    registry name (``memories()``), built causal with one head (the LMU it stands in for
    is one memory over all channels); ``"sliding_window"`` attends over ``theta`` tokens,
    the window the LMU represents. Either is kept under ``lmu`` (the paper's name for
    the slot), so the parameter names of the paper's form do not change.
    """

    def __init__(self, d_model: int, *, memory_size: int, theta: float, mlp_ratio: int = 4, dropout: float = 0.0,
                 spiking: bool = False, lif: dict | None = None, memory: str = LMU_MEMORY):
        super().__init__()
        lif = lif or {}
        self.recurrent_mixer = memory != LMU_MEMORY
        if self.recurrent_mixer:
            window = {"window": max(int(theta), 1)} if memory == "sliding_window" else {}
            self.lmu = build("mixer", memory, d_model=d_model, n_heads=1, dropout=dropout, causal=True, **window)
        else:
            self.lmu = LMUCell(d_model, memory_size=memory_size, theta=theta, spiking=spiking,
                               **{k: v for k, v in lif.items() if k in ("tau", "v_threshold", "surrogate_alpha")})
        self.proj, self.proj_norm = nn.Linear(d_model, d_model), TokenBatchNorm(d_model)
        self.ffn = ConvFFN(d_model, mlp_ratio=mlp_ratio, dropout=dropout, spiking=spiking, lif=lif)

    def init_state(self, batch_size: int) -> State:
        memory = self.lmu.init_scan(batch_size) if self.recurrent_mixer else self.lmu.init_state(batch_size)
        return {**_prefixed("lmu", memory), **_prefixed("ffn", self.ffn.init_state(batch_size))}

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        if self.recurrent_mixer:
            h, lmu_state = self.lmu.scan(x, _sub(state, "lmu"))                 # (B, T, D)
        else:
            h, lmu_state = self.lmu(x, _sub(state, "lmu"))                      # (B, T, D)
        x = x + self.proj_norm(self.proj(h))                                    # token mixer
        f, ffn_state = self.ffn(x, _sub(state, "ffn"))
        return x + f, {**_prefixed("lmu", lmu_state), **_prefixed("ffn", ffn_state)}


class LMUFormer(nn.Module):
    """LMUFormer (Liu et al., ICLR 2024) for forecasting: conv embedding, LMU blocks, a head on the last token.

    Every time step is a token. The tokenizer's causal convolutions embed it (D
    channels), each block mixes tokens through a Legendre memory of ``memory_size``
    coefficients over ``theta`` tokens and channels through a conv FFN, and a linear
    head reads the last token's features, which hold the memory of the whole window,
    and forecasts every step of the horizon at once. Cost per window O(L·D²·r + L log L ·d)
    in parallel (training), O(D²·r + d²) per step in streaming.

    Everything is causal and stateful, so the network streams exactly:
    ``forecast(advance(init_state(B), x)) == forward(x)`` for any x; BatchNorm applies
    fixed statistics in eval mode (in training it pools its batch's tokens, as in the
    paper). There is no instance normalisation (its window statistics cannot be
    streamed); the estimator standardises each series with fitted statistics.

    Causal normalisation (``normalize="last_value"``, the default; a tsformers extension,
    not in the paper): the tokenizer reads each step's change from the step before
    (zero for the first step ever seen) instead of its value, and the head's forecast
    is added onto the last observed value::

        x (B, T, N) -> sequences (B·G, T, C) -> changes dx_t = x_t - x_{t-1} (dx_0 = 0)
          -> tokenizer, blocks -> last token (B·G, D) -> head -> (B, H, N) + x_T

    so ``forward(x + c) == forward(x) + c``: a level or a trend never seen in training
    reads like one that was. The change needs only the previous value, which the state
    keeps (``last_value``, and ``seen``: 0 before the first step), so streaming stays
    exact. ``normalize="none"`` reads the values and forecasts them (the paper's form).

    A state that has seen more than ``lookback`` steps differs from a window in two
    ways: the first (embed_layers + 1)·(kernel_size - 1) tokens of a window are embedded
    from zero padding, and the memory keeps a tail beyond ``theta`` (about 1% of its
    weight, gone after 2·theta). The default theta leaves those padded tokens out of the
    memory's window, so a forecast from a long history matches the window forecast the
    network was trained on (on ETTh1-96 both gave MSE 0.407; with theta = lookback the
    long-history forecast fell to 0.430 against 0.400 for the windows). With several
    blocks, later memories also read earlier ones' start-up, and the two drift further apart.

    Parameters
    ----------
    lookback, horizon, n_vars : int
        Window length (used for ``theta=None`` and input checks), forecast length, input channels.
    d_model : int, default=64
    memory_size : int, optional
        d, Legendre coefficients per memory; None: d_model (2·d_model when spiking), as the paper.
    theta : float, optional
        The memory window in tokens; None: the tokens whose embedding reads only the window,
        ``lookback - (embed_layers + 1)·(kernel_size - 1)`` (86 of 96 by default; the paper's
        theta = the number of tokens).
    n_layers : int, default=1
        LMU blocks (1 in the paper).
    embed_layers, kernel_size : int, default=4, 3
        Tokenizer depth and kernel of its causal convolutions.
    mlp_ratio : int, default=4
    dropout : float, default=0.1
    spiking : bool, default=False
        LIF neurons in the tokenizer, the LMU cell and the channel mixer.
    tau, v_threshold, surrogate_alpha : float, default=2.0, 1.0, 4.0
        LIF time constant, firing threshold and surrogate-gradient slope (spiking only).
    channel_independent : bool, default=True
        Embed, memorise and forecast each variate on its own with shared weights
        (batch x n_vars sequences of one channel); False mixes all variates in the
        tokenizer, as the paper's mel-bin channels, and forecasts them jointly.
    normalize : {"last_value", "none"}, default="last_value"
        Changes in and the forecast added onto the last value, or the values (see above).
    memory : str, default="lmu"
        The token mixer of every block: the paper's Legendre memory cell, or a streaming
        causal mixer of ``memories()`` (``"sla"``, ``"mamba"``, ``"sliding_window"``; not spiking).

    ``forward(x)``: x (batch, lookback, n_vars) -> (batch, horizon, n_vars).
    """

    stream_chunk = 2048  # tokens per parallel pass when advancing over a long history

    def __init__(self, *, lookback: int, horizon: int, n_vars: int, d_model: int = 64,
                 memory_size: int | None = None, theta: float | None = None, n_layers: int = 1,
                 embed_layers: int = 4, kernel_size: int = 3, mlp_ratio: int = 4, dropout: float = 0.1,
                 spiking: bool = False, tau: float = 2.0, v_threshold: float = 1.0, surrogate_alpha: float = 4.0,
                 channel_independent: bool = True, normalize: str = "last_value", memory: str = LMU_MEMORY):
        super().__init__()
        if memory not in memories():
            raise ValueError(f"LMUFormer streams its blocks, so their memory must be causal and carry a state: "
                             f"memory={memory!r} is not one of {memories()} (tsformers.backbone.streaming() and "
                             f"the paper's {LMU_MEMORY!r})")
        if spiking and memory != LMU_MEMORY:
            raise ValueError(f"spiking=True needs the spiking LMU cell (memory={LMU_MEMORY!r}); "
                             f"memory={memory!r} has no spiking form")
        if memory != LMU_MEMORY:
            self.onnx_unsupported = f"the ONNX graph is built and tested for memory={LMU_MEMORY!r} only"
        assert normalize in ("last_value", "none"), f"normalize must be 'last_value' or 'none', got {normalize!r}"
        assert lookback > 0 and horizon > 0 and n_vars > 0, (
            f"lookback, horizon and n_vars must be positive, got {lookback}, {horizon}, {n_vars}"
        )
        assert n_layers >= 1, f"n_layers must be at least 1, got {n_layers}"
        self.lookback, self.horizon, self.n_vars = lookback, horizon, n_vars
        self.channel_independent = channel_independent
        self.normalize = normalize
        self.d_model = d_model
        memory_size = memory_size or (2 * d_model if spiking else d_model)
        # the first `padded` tokens of a window see the convolutions' zero padding, which a stream does not
        self.padded = (embed_layers + 1) * (kernel_size - 1)
        theta = float(theta or max(lookback - self.padded, 1))
        lif = dict(tau=tau, v_threshold=v_threshold, surrogate_alpha=surrogate_alpha)
        in_channels = 1 if channel_independent else n_vars

        self.tokenizer = LMUTokenizer(in_channels, d_model, n_layers=embed_layers, kernel_size=kernel_size,
                                      spiking=spiking, lif=lif)
        self.blocks = nn.ModuleList(
            LMUFormerBlock(d_model, memory_size=memory_size, theta=theta, mlp_ratio=mlp_ratio, dropout=dropout,
                           spiking=spiking, lif=lif, memory=memory)
            for _ in range(n_layers)
        )
        out = horizon if channel_independent else horizon * n_vars
        self.head = nn.Sequential(Dropout(dropout), nn.Linear(d_model, out))

    # -- the window path (training) ------------------------------------------------------

    def forward(self, x: Tensor) -> Tensor:
        assert x.ndim == 3 and x.shape[2] == self.n_vars, (
            f"LMUFormer was built for (batch, time, {self.n_vars}) inputs, got {tuple(x.shape)}"
        )
        values = self._tokens_in(x)                                             # (B·G, T, C)
        z, _ = self._run(self._inputs(values, None), None)                     # (B·G, T, D)
        return self._head(z[:, -1], x.shape[0], values[:, -1:])                 # (B, H, N)

    # -- the streaming protocol ------------------------------------------------------------

    def init_state(self, batch_size: int) -> State:
        """Zeros everywhere: the state before any observation (the window path's padding)."""
        rows = batch_size * self._groups()                                      # one sequence per (series, group)
        state = _prefixed("tokenizer", self.tokenizer.init_state(rows))
        for i, block in enumerate(self.blocks):
            state.update(_prefixed(f"blocks.{i}", block.init_state(rows)))
        state["readout"] = torch.zeros(rows, self.d_model)
        if self.normalize == "last_value":  # fixed shapes (an exported graph needs them): a flag, not an empty tensor
            state["last_value"] = torch.zeros(rows, self._channels())           # the previous step's values
            state["seen"] = torch.zeros(rows, 1)                                # 1 once a step has been read
        device = next(self.parameters()).device
        return self._external({k: v.to(device) for k, v in state.items()}, batch_size)

    def advance(self, state: State, x: Tensor) -> State:
        """The state after the observations x (batch, T, n_vars), any T >= 1, in chunks of ``stream_chunk``."""
        assert x.ndim == 3 and x.shape[2] == self.n_vars and x.shape[1] >= 1, (
            f"advance expects x: (batch, T >= 1, {self.n_vars}), got {tuple(x.shape)}"
        )
        batch = x.shape[0]
        inner = self._internal(state)
        tokens = self._tokens_in(x)                                             # (B·G, T, C)
        for piece in tokens.split(self.stream_chunk, dim=1):
            z, new = self._run(self._inputs(piece, inner), inner)
            inner = {**new, "readout": z[:, -1], **self._last(piece)}           # (B·G, D): the head's input
        return self._external(inner, batch)

    def forecast(self, state: State) -> Tensor:
        """The forecast from a state: (batch, horizon, n_vars)."""
        inner = self._internal(state)
        last = inner["last_value"][:, None] if self.normalize == "last_value" else None   # (B·G, 1, C)
        return self._head(inner["readout"], state["readout"].shape[0], last)     # (B, H, N)

    def forecast_every_step(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """The forecast after each step of x, from all the history before it (the paper's "with states").

        x (batch, T, n_vars) -> forecasts (batch, T, horizon, n_vars), where ``forecasts[:, t]``
        equals ``forecast(advance(state, x[:, :t + 1]))``, and the state after x.
        """
        batch = x.shape[0]
        inner = self._internal(state if state is not None else self.init_state(batch))
        out = []
        for piece in self._tokens_in(x).split(self.stream_chunk, dim=1):
            z, new = self._run(self._inputs(piece, inner), inner)               # (B·G, t, D)
            inner = {**new, "readout": z[:, -1], **self._last(piece)}
            out.append(self._head(z, batch, piece))                             # (B, t, H, N)
        return torch.cat(out, dim=1), self._external(inner, batch)

    # -- internals -----------------------------------------------------------------------

    def _run(self, tokens: Tensor, state: State | None) -> tuple[Tensor, State]:
        """Tokenizer and blocks over tokens (B·G, T, C) -> features (B·G, T, D) and the new state."""
        z, tok = self.tokenizer(tokens, _sub(state, "tokenizer"))
        new = _prefixed("tokenizer", tok)
        for i, block in enumerate(self.blocks):
            z, s = block(z, _sub(state, f"blocks.{i}"))
            new.update(_prefixed(f"blocks.{i}", s))
        return z, new

    def _groups(self) -> int:
        return self.n_vars if self.channel_independent else 1

    def _channels(self) -> int:
        return 1 if self.channel_independent else self.n_vars

    def _inputs(self, values: Tensor, state: State | None) -> Tensor:
        """What the tokenizer reads from values (B·G, T, C): the values, or their changes from the step before.

        The step before the first is the state's last value once it has seen one (``seen`` = 1),
        else the first step itself, whose change is then zero (as at the start of a window).
        """
        if self.normalize == "none":
            return values
        first = values[:, 0]                                                    # (B·G, C)
        if state is not None:  # arithmetic, not a branch on the flag: the exported graph has no control flow
            first = state["seen"] * state["last_value"] + (1 - state["seen"]) * first
        return values - torch.cat([first[:, None], values[:, :-1]], dim=1)     # (B·G, T, C)

    def _last(self, values: Tensor) -> State:
        """The state entries that the changes and the anchor of the next steps need."""
        if self.normalize == "none":
            return {}
        return {"last_value": values[:, -1], "seen": values.new_ones(values.shape[0], 1)}

    def _tokens_in(self, x: Tensor) -> Tensor:
        if self.channel_independent:
            return rearrange(x, "b t n -> (b n) t 1")                         # each variate its own sequence
        return x                                                                # (B, T, N): variates as channels

    def _head(self, readout: Tensor, batch: int, last: Tensor | None) -> Tensor:
        """readout (B·G, [t,] D) -> forecast (B, [t,] H, N), added onto ``last`` (B·G, [t or 1,] C) when normalised.

        ``last``: the values the forecasts start from (the last observed, or each step's own).
        """
        y = self.head(readout)                                                  # (B·G, ..., H) or (B, ..., H·N)
        if self.channel_independent:
            y = rearrange(y, "(b n) ... h -> b ... h n", b=batch)
        else:
            y = rearrange(y, "b ... (h n) -> b ... h n", n=self.n_vars)
        if self.normalize == "none":
            return y
        pattern = "(b n) t 1 -> b t 1 n" if self.channel_independent else "b t n -> b t 1 n"
        level = rearrange(last, pattern, b=batch)                               # (B, t or 1, 1, N)
        return y + (level if readout.ndim == 3 else level[:, 0])

    def _external(self, state: State, batch: int) -> State:
        """(B·G, ...) -> (B, G, ...): the state's leading dimension is the series."""
        return {k: v.reshape(batch, self._groups(), *v.shape[1:]) for k, v in state.items()}

    def _internal(self, state: State) -> State:
        return {k: v.reshape(-1, *v.shape[2:]) for k, v in state.items()}

