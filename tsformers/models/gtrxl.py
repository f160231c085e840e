"""GTrXL: the gated Transformer-XL, read as a streaming forecaster over long histories.

References
----------
Parisotto et al., "Stabilizing Transformers for Reinforcement Learning", ICML 2020,
arXiv 1910.06764 (identity-map reordering, gating layers; no official code).
Dai et al., "Transformer-XL: Attentive Language Models Beyond a Fixed-Length
Context", ACL 2019 (segment recurrence, relative positional attention).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from tsformers.backbone import FeedForward, build, streaming
from tsformers.backbone.gating import BIASED_GATES, GATES  # importing it registers the gates
from tsformers.backbone.memory.segment import SegmentMemory
from tsformers.backbone.mixers.xl_relative import RelativeMultiHeadAttention
from tsformers.runtime.sparse_kv import SparseKVCache
from tsformers.backbone.dropout import Dropout

__all__ = ["BLOCKS", "STACKS", "GTrXL", "IdentityMapXLBlock", "PostNormXLBlock", "mixers"]

#: The paper's mixer: Transformer-XL's relative attention over a segment memory of ``mem_len`` states.
XL_MIXER = "xl_relative"


def mixers() -> list[str]:
    """The mixers a GTrXL layer accepts: ``"xl_relative"`` (the paper's) and every streaming causal mixer.

    A streaming mixer (``tsformers.backbone.streaming()``) carries its own recurrent state from
    segment to segment in place of the segment memory, so the forecast stays exact when streamed.
    """
    return sorted({XL_MIXER, *streaming("mixer")})


def _gate(name: str, d_model: int, bias: float) -> nn.Module:
    assert name in GATES, f"gating must be one of {GATES}, got {name!r}"
    return build("gate", name, d_model=d_model, **({"bias": bias} if name in BIASED_GATES else {}))


class _XLBlock(nn.Module):
    """The parts of a Transformer-XL layer: a mixer, MLP, two gates (or residuals), two norms.

    The mixer is the paper's relative attention over the segment memory (``"xl_relative"``), or
    a streaming causal mixer whose own state replaces that memory (``recurrent``):
    ``forward(x, memory)`` reads the segment memory (B, M, D) for the first, ``stream(x,
    state) -> (out, state)`` carries the mixer's state (None at the start) for the second.
    """

    def __init__(self, d_model: int, *, n_heads: int, d_ff: int, mem_len: int, dropout: float, gating: str,
                 gate_bias: float, mixer: str = XL_MIXER):
        super().__init__()
        self.recurrent = mixer != XL_MIXER
        self.norm_attn = nn.LayerNorm(d_model)
        self.attn = (build("mixer", mixer, d_model=d_model, n_heads=n_heads, dropout=dropout, causal=True)
                     if self.recurrent else
                     RelativeMultiHeadAttention(d_model, n_heads=n_heads, dropout=dropout, window=mem_len))
        self.gate_attn = _gate(gating, d_model, gate_bias)
        self.norm_ff = nn.LayerNorm(d_model)
        self.ff = FeedForward(d_model, d_ff=d_ff, dropout=dropout)
        self.gate_ff = _gate(gating, d_model, gate_bias)
        self.dropout = Dropout(dropout)

    def attend_sparse(self, x: Tensor, memory: Tensor, distances: Tensor, policy) -> tuple[Tensor, object]:
        """The layer over a memory of non-contiguous tokens (a sparse KV cache), for inference.

        x (B, S, D) the new tokens, memory (B, M, D) the cached layer inputs, ``distances``
        (B, S, M + S) from each query back to each key; ``policy(logits) -> (probs, extra)``
        chooses what each query sees (:meth:`SparseKVCache.attend_block`). Returns the layer's
        output (B, S, D) and the policy's ``extra``.
        """
        queries, cached = self._attn_inputs(x, memory)
        logits, values = self.attn.logits_at(queries, cached, distances)
        probs, extra = policy(logits)
        return self._merge(x, self.attn.mix(probs, values)), extra


class IdentityMapXLBlock(_XLBlock):
    """GTrXL's layer (Parisotto et al., ICML 2020, eqs. for TrXL-I with gating), x: (B, S, D) -> (B, S, D).

    Layer norm on the sub-layers' inputs only, a ReLU on their outputs, and a gate
    g(x, y) in place of each residual ``+``::

        Y     = g_attn(E, ReLU(RelMHA(LN([StopGrad(M); E]))))
        E_out = g_ff(Y, ReLU(MLP(LN(Y))))

    With gating "gru" this is GTrXL; with "residual" it is TrXL-I. The path from E to
    E_out is an identity map when the gates are shut. ``memory``: (B, M, D), layer
    inputs of the tokens just before x. Cost: the attention's O(S·(M + S)·D) plus
    O(S·D·(d_ff + D)) for the MLP and the gates.
    """

    def forward(self, x: Tensor, memory: Tensor) -> Tensor:
        n_memory = memory.shape[1]
        context = self.norm_attn(torch.cat([memory.detach(), x], dim=1))             # (B, M + S, D)
        attended = self.attn(context[:, n_memory:], memory=context[:, :n_memory])         # (B, S, D)
        return self._merge(x, attended)

    def _attn_inputs(self, x: Tensor, memory: Tensor) -> tuple[Tensor, Tensor]:
        context = self.norm_attn(torch.cat([memory.detach(), x], dim=1))             # (B, M + S, D)
        return context[:, memory.shape[1]:], context[:, :memory.shape[1]]

    def stream(self, x: Tensor, state: dict[str, Tensor] | None) -> tuple[Tensor, dict[str, Tensor]]:
        attended, state = self.attn.scan(self.norm_attn(x), state)                   # (B, S, D), its state
        return self._merge(x, attended), state

    def _merge(self, x: Tensor, attended: Tensor) -> Tensor:
        y = self.gate_attn(x, F.relu(self.dropout(attended)))
        return self.gate_ff(y, F.relu(self.dropout(self.ff(self.norm_ff(y)))))


class PostNormXLBlock(_XLBlock):
    """The canonical Transformer-XL layer (Dai et al., ACL 2019), the "TrXL" baseline of GTrXL's paper.

    Layer norm after each merge, no ReLU on the sub-layer outputs::

        Y     = LN(g_attn(E, RelMHA([StopGrad(M); E])))
        E_out = LN(g_ff(Y, MLP(Y)))

    With gating "residual" this is Transformer-XL. x: (B, S, D) -> (B, S, D), same cost
    as :class:`IdentityMapXLBlock`.
    """

    def forward(self, x: Tensor, memory: Tensor) -> Tensor:
        return self._merge(x, self.attn(x, memory=memory.detach()))                        # (B, S, D)

    def _attn_inputs(self, x: Tensor, memory: Tensor) -> tuple[Tensor, Tensor]:
        return x, memory.detach()

    def stream(self, x: Tensor, state: dict[str, Tensor] | None) -> tuple[Tensor, dict[str, Tensor]]:
        attended, state = self.attn.scan(x, state)                                         # (B, S, D), its state
        return self._merge(x, attended), state

    def _merge(self, x: Tensor, attended: Tensor) -> Tensor:
        y = self.norm_attn(self.gate_attn(x, self.dropout(attended)))
        return self.norm_ff(self.gate_ff(y, self.dropout(self.ff(y))))


BLOCKS = {"identity_map": IdentityMapXLBlock, "post_norm": PostNormXLBlock}
# how the layers relate, by the registry's names for the two schemes a memory-carrying XL stack can
# follow: "standard" (independent weights) and "looped" (one block's weights applied at every layer)
STACKS = ("standard", "looped")


class GTrXL(nn.Module):
    """GTrXL (Parisotto et al., 2020) over a multivariate series: gated Transformer-XL layers, segment memory.

    Data flow, one token per time step::

        x_t (n_vars)  --Linear-->  token (D)  --n_layers x [gated XL block over memory + segment]-->
        last token's state  --LN, Linear(D -> horizon·n_vars)-->  forecast (+ last observed value)

    - **Tokens**: each time step's variates are projected to ``d_model``
      (channel-mixing, no positional embedding: the attention is relative). One
      token per step makes the state advance by any number of steps.
    - **Segment recurrence**: a history is cut into segments of ``segment_len``
      steps; each layer attends over its memory (its inputs for the ``mem_len``
      previous tokens, gradients stopped) plus the segment. Each token attends to
      itself and the ``mem_len`` tokens before it (Transformer-XL's same-length
      attention), so the outputs do not depend on where the segments are cut: the
      segment length only sets how many tokens are processed at once and where
      backpropagation is truncated. The forecast depends on the last
      ``receptive_field = n_layers·mem_len + 1`` steps; cost per step O((mem_len +
      segment_len)·D) per layer, linear in the history.
    - **Mixer** (a tsformers extension): ``mixer="xl_relative"`` is the paper's
      attention above; a streaming causal mixer (``mixers()``: ``"sla"``,
      ``"mamba"``, ``"sliding_window"``) replaces it, each layer carrying the
      mixer's state from segment to segment instead of the segment memory
      (gradients stopped at segment boundaries as well). The forecast then reads
      the whole history through that state, at the mixer's cost per step.
    - **Head**: the last token's final state (after a LayerNorm for the
      identity-map block) -> Linear(D -> horizon·n_vars). With
      ``last_value_anchor`` the head forecasts the change from the last observed
      value (NLinear's last-value normalisation, applied to the output only so
      that a streamed state stays exact). No instance normalisation: the estimator
      scales each series with fitted statistics, and per-window statistics would
      change every cached state whenever a step arrives.
    - **Causal normalisation** (``normalize="last_value"``, the default; a tsformers
      extension): each token embeds the step's change from the step before (zero
      for the first step ever seen) instead of its values, and the head's output is
      added onto the last observed value (the anchor is then always on). The
      forecast moves with the level of the series exactly (``forward(x + c) ==
      forward(x) + c``), so a level never seen in training (ETTh1's test period, a
      trend) reads like one that was; the change needs only the last observed
      value, which the state keeps, so streaming stays exact. The forecast then
      depends on one step more. ``normalize="none"`` embeds the values (the
      paper's tokens), with ``last_value_anchor`` choosing the head's reference.

    Streaming protocol (``docs/extending.md``): the state holds each layer's
    memory, the last token's final state and the last observed values.
    ``forecast(advance(init_state(B), x))`` equals ``forward(x)`` for any x, and
    ``advance`` costs O(T·(mem_len + segment_len)·D·n_layers) for T new steps,
    whatever came before.

    ``forward(x)``: x (batch, time, n_vars), any length >= 1 (``lookback`` is the
    training window) -> (batch, horizon, n_vars); every variate is forecast.
    """

    def __init__(
        self,
        *,
        lookback: int,
        horizon: int,
        n_vars: int,
        d_model: int = 128,
        n_heads: int = 8,
        d_ff: int = 256,
        n_layers: int = 3,
        segment_len: int = 96,
        mem_len: int = 256,
        dropout: float = 0.1,
        block: str = "identity_map",
        stack: str = "standard",
        gating: str = "gru",
        gate_bias: float = 2.0,
        last_value_anchor: bool = True,
        normalize: str = "last_value",
        mixer: str = XL_MIXER,
        kv_cache: str | None = None,
        kv_window: int | None = None,
        kv_global: int | None = None,
    ):
        super().__init__()
        assert lookback > 0 and horizon > 0 and n_vars > 0, (
            f"lookback, horizon and n_vars must be positive, got {lookback}, {horizon}, {n_vars}"
        )
        assert segment_len >= 1 and mem_len >= 1, f"segment_len and mem_len must be >= 1, got {segment_len}, {mem_len}"
        assert block in BLOCKS, f"block must be one of {sorted(BLOCKS)}, got {block!r}"
        assert normalize in ("last_value", "none"), f"normalize must be 'last_value' or 'none', got {normalize!r}"
        assert last_value_anchor or normalize == "none", (
            "normalize='last_value' forecasts from the last observed value: last_value_anchor=False needs 'none'"
        )
        if stack not in STACKS:
            raise ValueError(f"GTrXL arranges its gated Transformer-XL layers (each with a segment memory) as the "
                             f"stacks {sorted(STACKS)} only, got stack={stack!r}")
        if mixer not in mixers():
            raise ValueError(f"GTrXL streams its layers, so their mixer must be causal and carry a state: "
                             f"mixer={mixer!r} is not one of {mixers()} (tsformers.backbone.streaming() and "
                             f"the paper's {XL_MIXER!r})")
        self.mixer = mixer
        self.kv = None  # the sparse KV cache of inference, if any (a tsformers extension; ALISA's policy)
        if kv_cache is not None:
            if kv_cache != "sparse":
                raise ValueError(f"kv_cache must be None or 'sparse', got {kv_cache!r}")
            if mixer != XL_MIXER:
                raise ValueError(f"kv_cache='sparse' replaces the segment memory of mixer={XL_MIXER!r}; "
                                 f"mixer={mixer!r} carries its own recurrent state instead. Use kv_cache=None "
                                 f"or mixer={XL_MIXER!r}.")
            window = max(mem_len // 2, 1) if kv_window is None else kv_window
            k_global = max(mem_len - window, 0) if kv_global is None else kv_global
            if window < 1 or k_global < 0:
                raise ValueError(f"kv_cache='sparse' needs kv_window >= 1 and kv_global >= 0, got "
                                 f"kv_window={window}, kv_global={k_global}")
            self.kv = SparseKVCache(window, k_global)
            self.onnx_unsupported = ("with kv_cache='sparse' which tokens a forecast reads depends on the "
                                     "attention accumulated over the whole history (no fixed window to export); "
                                     "export a model with kv_cache=None")
        if mixer != XL_MIXER:  # the forecast reads the whole history through the mixer's state
            self.onnx_unsupported = (f"with mixer={mixer!r} the forecast depends on the whole history (no finite "
                                     f"receptive field to export as a window)")
        self.lookback, self.horizon, self.n_vars = lookback, horizon, n_vars
        self.segment_len, self.mem_len, self.n_layers = segment_len, mem_len, n_layers
        self.normalize = normalize
        self.last_value_anchor = last_value_anchor

        self.embed = nn.Sequential(nn.Linear(n_vars, d_model), Dropout(dropout))    # (B, T, N) -> (B, T, D)
        def new_block():
            return BLOCKS[block](d_model, n_heads=n_heads, d_ff=d_ff, mem_len=mem_len, dropout=dropout,
                                 gating=gating, gate_bias=gate_bias, mixer=mixer)

        # "looped": one block applied n_layers times (the registry's "looped" scheme without pre- and
        # post-blocks or input injection); each application keeps its own segment memory, so only
        # the weights are shared
        shared = new_block() if stack == "looped" else None
        self.layers = nn.ModuleList(shared if shared is not None else new_block() for _ in range(n_layers))
        self.memory = SegmentMemory(n_layers=n_layers, mem_len=mem_len, d_model=d_model)
        self.norm = nn.LayerNorm(d_model) if block == "identity_map" else nn.Identity()  # pre-LN stacks end with one
        self.head = nn.Linear(d_model, horizon * n_vars)

    @property
    def receptive_field(self) -> int | None:
        """How many of the latest steps a forecast depends on: n_layers·mem_len + 1 (+ 1 for a change's predecessor).

        None with a recurrent mixer, whose state reads the whole history, and with the sparse KV cache.
        """
        if self.mixer != XL_MIXER or self.kv is not None:
            return None
        return self.n_layers * self.mem_len + 1 + int(self.normalize == "last_value")

    # -- streaming protocol ---------------------------------------------------------------

    def init_state(self, batch_size: int) -> dict[str, Tensor]:
        """The state before any observation: empty memories, no last token."""
        p = self.head.weight
        d_model = p.shape[1]
        if self.sparse:  # "memory.<l>" (B, 0, D), "kv_score.<l>", "kv_pos.<l>" (B, 0), "kv_seen" (B,)
            memories = self.memory.init(batch_size, device=p.device, dtype=p.dtype)
            for i in range(self.n_layers):
                memories[f"kv_score.{i}"] = p.new_zeros(batch_size, 0)
                memories[f"kv_pos.{i}"] = torch.zeros(batch_size, 0, dtype=torch.long, device=p.device)
            memories["kv_seen"] = torch.zeros(batch_size, dtype=torch.long, device=p.device)
        elif self.mixer == XL_MIXER:
            memories = self.memory.init(batch_size, device=p.device, dtype=p.dtype)  # "memory.<l>": (B, 0, D)
        else:  # each layer's mixer state, "mixer.<l>.<name>"
            memories = {f"mixer.{i}.{k}": v for i, layer in enumerate(self.layers)
                        for k, v in layer.attn.init_scan(batch_size).items()}
        return {
            **memories,
            "last_hidden": p.new_zeros(batch_size, 0, d_model),                 # (B, 0 or 1, D)
            "last_value": p.new_zeros(batch_size, 0, self.n_vars),              # (B, 0 or 1, N)
        }

    @property
    def sparse(self) -> bool:
        """Whether the layers read the sparse KV cache: built with ``kv_cache="sparse"`` and in eval mode.

        Training (``train()``) reads the segment memory of ``mem_len`` steps as without the cache.
        """
        return self.kv is not None and not self.training

    def advance(self, state: dict[str, Tensor], x: Tensor) -> dict[str, Tensor]:
        """Fold the new steps x (B, T, n_vars), T >= 1, into the state, ``segment_len`` steps at a time."""
        _, state = self.encode(state, x)
        return {key: value.detach().clone() for key, value in state.items()}  # no views of x or activations

    def encode(self, state: dict[str, Tensor], x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The final-layer states of the new steps x (B, T, n_vars): (B, T, D), and the advanced state."""
        self._check(x)
        hidden = []
        for segment in x.split(self.segment_len, dim=1):
            h, state = self._segment(state, segment)
            hidden.append(h)
        return torch.cat(hidden, dim=1), state

    def forecast(self, state: dict[str, Tensor]) -> Tensor:
        """The next ``horizon`` steps after the state's last observation: (B, horizon, n_vars)."""
        hidden = state["last_hidden"]
        assert hidden.shape[1] == 1, "the state has seen no observation yet: advance it by at least one step"
        y = rearrange(self.head(self.norm(hidden[:, 0])), "b (h n) -> b h n", n=self.n_vars)  # (B, H, N)
        return y + state["last_value"] if self.last_value_anchor else y

    # -- training / batch forecasting ------------------------------------------------------

    def forward(self, x: Tensor) -> Tensor:
        """Forecast from the history x (B, T, n_vars): the same as ``forecast(advance(init_state(B), x))``.

        The segments are aligned to the end of x, so that the last one is complete;
        all but the last run without gradients (their states enter the last one
        as stopped-gradient memory only).
        """
        self._check(x)
        state = self.init_state(x.shape[0])
        first = x.shape[1] % self.segment_len or self.segment_len
        segments = [x[:, :first], *(x[:, first:].split(self.segment_len, dim=1) if x.shape[1] > first else ())]
        with torch.no_grad():
            for segment in segments[:-1]:
                _, state = self._segment(state, segment)
        return self.forecast(self._segment(state, segments[-1])[1])

    def _segment(self, state: dict[str, Tensor], x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """One segment x (B, S, n_vars) through the stack, reading and writing the memories: (B, S, D), state."""
        h = self.embed(self._changes(state, x) if self.normalize == "last_value" else x)  # (B, S, D)
        if self.sparse:  # the layers over their sparse KV caches (inference with kv_cache="sparse")
            h, new_state = self._sparse_segment(state, h)
            new_state["last_hidden"], new_state["last_value"] = h[:, -1:], x[:, -1:]
            return h, new_state
        new_state = {}
        for i, layer in enumerate(self.layers):
            if layer.recurrent:  # the mixer's own state stands for the history
                prefix = f"mixer.{i}."
                memory = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
                h, memory = layer.stream(h, memory)                          # (B, S, D)
                new_state.update({prefix + k: v for k, v in memory.items()})
            else:
                memory = self.memory.read(state, i)                          # (B, m, D), detached
                new_state[self.memory.key(i)] = self.memory.update(memory, h)
                h = layer(h, memory)                                         # (B, S, D)
        new_state["last_hidden"] = h[:, -1:]                                 # (B, 1, D)
        new_state["last_value"] = x[:, -1:]                                  # (B, 1, N)
        return h, new_state

    def _sparse_segment(self, state: dict[str, Tensor], h: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The embedded segment h (B, S, D) through the layers over their sparse KV caches: (B, S, D), state.

        Each layer's cache holds its inputs of at most ``window + k_global`` earlier tokens (the
        last ``window`` and the heavy hitters by attention accumulated over heads and queries),
        with their stream positions, so a query attends at the true distances (Transformer-XL's
        relative encoding of any distance); the policy runs token by token
        (:meth:`SparseKVCache.attend_block`), so the cut of a stream into segments does not
        change it.
        """
        seen = state["kv_seen"]                                                      # (B,)
        queries = seen[:, None] + torch.arange(h.shape[1], device=h.device)         # (B, S)
        new_state = {"kv_seen": seen + h.shape[1]}
        for i, layer in enumerate(self.layers):
            memory, score, pos = state[self.memory.key(i)], state[f"kv_score.{i}"], state[f"kv_pos.{i}"]
            distances = queries[:, :, None] - torch.cat([pos, queries], dim=1)[:, None, :]  # (B, S, M + S)

            def policy(logits, score=score, pos=pos):
                probs, *kept = self.kv.attend_block(logits, score, pos, seen)
                return probs, kept

            context = torch.cat([memory, h], dim=1)                                  # (B, M + S, D)
            h, (keep, score, pos) = layer.attend_sparse(h, memory, distances, policy)
            new_state[self.memory.key(i)] = context.gather(1, keep[..., None].expand(-1, -1, context.shape[-1]))
            new_state[f"kv_score.{i}"], new_state[f"kv_pos.{i}"] = score, pos
        return h, new_state

    @staticmethod
    def _changes(state: dict[str, Tensor], x: Tensor) -> Tensor:
        """x (B, S, N) minus each step's predecessor; the state's last value precedes the first step."""
        before = state["last_value"] if state["last_value"].shape[1] else x[:, :1]   # (B, 1, N)
        return x - torch.cat([before, x[:, :-1]], dim=1)                         # (B, S, N)

    def _check(self, x: Tensor) -> None:
        assert x.ndim == 3 and x.shape[1] >= 1 and x.shape[2] == self.n_vars, (
            f"GTrXL was built for (batch, time >= 1, {self.n_vars}) inputs, got {tuple(x.shape)}"
        )
