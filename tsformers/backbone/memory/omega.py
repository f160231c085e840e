"""The ATLAS memory layer: a deep memory written at test time by the Omega rule, chunk by chunk.

References
----------
Behrouz et al., "ATLAS: Learning to Optimally Memorize the Context at Test Time",
arXiv 2505.23735, 2025 (the Omega rule, polynomial features, the Muon-style update).
Behrouz, Zhong & Mirrokni, "Titans: Learning to Memorize at Test Time", arXiv 2501.00663,
2025 (the memory layer, data-dependent gates, chunked training).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from tsformers.backbone.registry import build, register

from . import optim  # noqa: F401  (registers the memory optimisers "muon" and "momentum")
from .deep import DeepMemory
from .features import PolynomialFeatures

__all__ = ["OmegaMemory", "omega_counts"]

State = dict[str, Tensor]


def omega_counts(window: int, chunk_size: int) -> Tensor:
    """How many of a chunk's Omega windows hold each token, for the c - 1 tokens before it and its b tokens.

    Token p (p = -(c-1) .. b-1, relative to the chunk's first token) lies in the
    windows [t - c + 1, t] of the chunk's tokens t = max(0, p) .. min(b - 1, p + c - 1).
    Returns a (c - 1 + b,) tensor.
    """
    c, b = window, chunk_size
    return torch.tensor([max(0, min(b - 1, p + c - 1) - max(0, p) + 1) for p in range(-(c - 1), b)],
                        dtype=torch.float32)


@register("memory", "omega")
class OmegaMemory(nn.Module):
    """ATLAS's long-term memory layer: a deep MLP memory optimised over a sliding window of tokens.

    Per token x_t (Titans' projections, with L2-normalised keys and queries, and
    ATLAS's polynomial feature map phi on both)::

        k_t = phi(norm(W_K x_t)),  v_t = W_V x_t,  q_t = phi(norm(W_Q x_t)),  gamma_t = sigmoid(w_gamma x_t)

    **Omega rule** (ATLAS): token t asks the memory to fit the last c tokens, weighted
    by the learned, input-dependent gates gamma_i (which can prune a token out):

        l_t(M) = sum_{i = t-c+1}^{t} gamma_i ||M(k_i) - v_i||^2

    c = 1 is Titans' online objective (the delta rule).

    **Chunked parallel training** (as in Titans): the sequence is cut into
    chunks of b tokens, and each chunk is *one step* of the memory optimiser, on the
    mean of its tokens' Omega objectives with every gradient taken at the weights
    the chunk starts from:

        G_j = (1/b) sum_{t in chunk j} grad l_t(M_{j-1})
        S_j = theta_j S_{j-1} + G_j;  M_j = alpha_j M_{j-1} - eta_j O(S_j)

    where O is the Newton-Schulz orthogonalisation ("muon", ATLAS) or the identity
    ("momentum"), and the step size eta (at most ``max_lr``), momentum theta and
    retention alpha are sigmoid gates of the chunk's mean token, per head. With
    b = 1 this is the token-by-token online update exactly; with c = b = 1 and
    theta = 0 it is Titans' delta rule with forgetting. Windows reach back into the
    previous chunk, so the layer keeps its last c - 1 keys and values.

    **Retrieval** y_t = M_{j-1}(q_t) for t in chunk j: every token reads the memory
    as it was before its chunk was written, so the layer is causal, and the tokens
    of a chunk are read in parallel.

    **Streaming**: :meth:`step` advances a state (weights, momenta, the last
    c - 1 + b - 1 keys/values/gates, the count of tokens waiting for their chunk to
    complete) by any number of tokens; stepping through a sequence in pieces
    equals stepping through it at once. The state's leading dimension is the row
    (series).

    Cost per chunk O((b + c) * P) for the gradient plus O(ns_steps * P * d) for the
    orthogonalisation, P = memory parameters per head, d its smaller width; linear
    in the number of tokens, constant memory. x: (R, T, d_model) -> (R, T, d_model).

    Parameters
    ----------
    d_model : int
    n_heads : int, default=4
        Independent memories per row; values have d_model / n_heads dimensions.
    d_key : int, default=8
        Key and query dimensions per head, before the feature map.
    depth : int, default=2
        Weight matrices of the memory MLP (1: a matrix memory).
    expansion : int, default=2
        Hidden width of the memory MLP = expansion * d_value.
    poly_degree : int, default=2
        Degree of the polynomial feature map; 0 switches it off (keys used as they are).
    window : int, default=8
        The Omega window c, in tokens.
    chunk_size : int, default=16
        Tokens per memory update b.
    optimizer : {"muon", "momentum"}, default="muon"
        Name of a registered memory optimiser.
    ns_steps : int, default=5
        Newton-Schulz steps of "muon".
    max_lr : float, default=0.1
        Upper bound of the step size eta.
    frozen : bool, default=False
        Never write the memory: it stays at its learned initial weights (an ablation).
    activation : {"gelu", "silu"}, default="gelu"
    """

    def __init__(self, d_model: int, *, n_heads: int = 4, d_key: int = 8, depth: int = 2, expansion: int = 2,
                 poly_degree: int = 2, window: int = 8, chunk_size: int = 16, optimizer: str = "muon",
                 ns_steps: int = 5, max_lr: float = 0.1, frozen: bool = False, activation: str = "gelu"):
        super().__init__()
        assert d_model % n_heads == 0, f"d_model={d_model} must be divisible by n_heads={n_heads}"
        assert window >= 1 and chunk_size >= 1, f"window and chunk_size must be >= 1, got {window}, {chunk_size}"
        assert max_lr > 0, f"max_lr must be positive, got {max_lr}"
        self.n_heads, self.d_key, self.d_value = n_heads, d_key, d_model // n_heads
        self.window, self.chunk_size, self.max_lr, self.frozen = window, chunk_size, max_lr, frozen
        self.buffer_len = window - 1 + chunk_size - 1  # the window's tail + the tokens of an unfinished chunk

        self.to_q = nn.Linear(d_model, n_heads * d_key, bias=False)
        self.to_k = nn.Linear(d_model, n_heads * d_key, bias=False)
        self.to_v = nn.Linear(d_model, n_heads * self.d_value, bias=False)
        self.features = PolynomialFeatures(d_key, degree=poly_degree) if poly_degree else nn.Identity()
        d_features = self.features.d_out if poly_degree else d_key
        self.memory = DeepMemory(d_features, self.d_value, depth=depth, d_hidden=expansion * self.d_value,
                                 n_heads=n_heads, activation=activation)
        self.to_gamma = nn.Linear(d_model, n_heads)             # Omega token weights
        self.to_gates = nn.Linear(d_model, 3 * n_heads)         # step size, momentum, retention (per chunk)
        with torch.no_grad():
            bias = self.to_gates.bias.view(3, n_heads)
            bias[0].fill_(0.0)                                  # eta = max_lr / 2
            bias[1].fill_(math.log(0.9 / 0.1))                  # theta = 0.9
            bias[2].fill_(math.log(0.98 / 0.02))                # alpha = 0.98
        self.optimizer = build("memory_optimizer", optimizer, ns_steps=ns_steps)
        self.to_out = nn.Linear(n_heads * self.d_value, d_model, bias=False)
        self.register_buffer("counts", omega_counts(window, chunk_size) / chunk_size, persistent=False)

    # -- state -------------------------------------------------------------------------------

    def init_state(self, rows: int) -> State:
        """The state before any token: the learned initial memory, zero momentum, an empty window."""
        h, n = self.n_heads, self.buffer_len
        like = self.to_k.weight
        state = {}
        for i, w in enumerate(self.memory.init_weights):
            state[f"w{i}"] = w.expand(rows, *w.shape).clone()                    # (R, H, d_i, d_{i+1})
            state[f"s{i}"] = torch.zeros(rows, *w.shape, dtype=like.dtype, device=like.device)
        state["keys"] = like.new_zeros(rows, n, h, self.d_key)
        state["values"] = like.new_zeros(rows, n, h, self.d_value)
        state["gamma"] = like.new_zeros(rows, n, h)                              # 0: no token there yet
        state["gates"] = like.new_zeros(rows, n, h, 3)
        state["pending"] = torch.zeros(rows, dtype=torch.long, device=like.device)
        return state

    # -- forward -----------------------------------------------------------------------------

    def forward(self, x: Tensor) -> Tensor:
        """Read and write a fresh memory over the sequence x: (R, T, d_model) -> (R, T, d_model)."""
        return self.step(x, self.init_state(x.shape[0]))[0]

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """Advance ``state`` by the tokens x: (R, T, d_model); returns the outputs (R, T, d_model) and the new state."""
        pending = state["pending"]                                            # (R,)
        if len(pending) and bool((pending != pending[0]).any()):
            return self._step_by_phase(x, state)
        return self._step(x, state)

    def _step_by_phase(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """:meth:`step` of rows at different points of their chunks, one phase at a time.

        Rows that have read different numbers of tokens (series packed into one call at different
        positions of their histories) complete their chunks, and so write their memories, at different
        tokens; the chunk schedule is shared by the rows of :meth:`_step`.
        """
        pending = state["pending"]
        y, new_state = torch.empty_like(x), {}
        for phase in pending.unique():
            rows = torch.nonzero(pending == phase).squeeze(1)
            y_rows, part = self._step(x[rows], {k: v[rows] for k, v in state.items()})
            y[rows] = y_rows
            for k, v in part.items():
                new_state.setdefault(k, v.new_empty(len(pending), *v.shape[1:]))[rows] = v
        return y, new_state

    def _step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """:meth:`step` of rows at the same point of their chunks (``state["pending"]`` alike)."""
        rows, n_new, _ = x.shape
        h, b, c, n_buf = self.n_heads, self.chunk_size, self.window, self.buffer_len
        heads = "r t (h d) -> r t h d"
        q = F.normalize(rearrange(self.to_q(x), heads, h=h), dim=-1)           # (R, T, H, d_k)
        k = F.normalize(rearrange(self.to_k(x), heads, h=h), dim=-1)           # (R, T, H, d_k)
        v = rearrange(self.to_v(x), heads, h=h)                               # (R, T, H, d_v)
        gamma = torch.sigmoid(self.to_gamma(x))                               # (R, T, H)
        gates = rearrange(self.to_gates(x), "r t (g h) -> r t h g", g=3)      # (R, T, H, 3) logits

        # the buffered tokens in front of the new ones: index n_buf + i is new token i
        keys = torch.cat([state["keys"], k], dim=1)                           # (R, n_buf + T, H, d_k)
        values = torch.cat([state["values"], v], dim=1)
        gammas = torch.cat([state["gamma"], gamma], dim=1)
        logits = torch.cat([state["gates"], gates], dim=1)
        flat = "r t h d -> (r h) t d"
        queries = self.features(rearrange(q, flat))                          # (R*H, T, d_phi)
        weights = [rearrange(state[f"w{i}"], "r h a b -> (r h) a b") for i in range(len(self.memory.dims) - 1)]
        momenta = [rearrange(state[f"s{i}"], "r h a b -> (r h) a b") for i in range(len(weights))]

        outputs, pos, pending = [], 0, int(state["pending"][0]) if rows else 0
        while pos < n_new:
            take = min(b - pending, n_new - pos)
            outputs.append(self.memory.read(weights, queries[:, pos:pos + take]))  # (R*H, take, d_v)
            pos, pending = pos + take, pending + take
            if pending == b:  # the chunk is complete: one optimiser step on its Omega objective
                end = n_buf + pos
                if not self.frozen:
                    span = slice(end - b - (c - 1), end)                      # window tail + the chunk
                    u = self.features(rearrange(keys[:, span], flat))         # (R*H, c-1+b, d_phi)
                    omega = rearrange(gammas[:, span], "r t h -> (r h) t") * self.counts
                    grads = self.memory.grad(weights, u, rearrange(values[:, span], flat), omega)
                    g = torch.sigmoid(rearrange(logits[:, end - b:end].mean(dim=1), "r h g -> (r h) g"))
                    weights, momenta = self.optimizer(weights, momenta, grads, eta=self.max_lr * g[:, 0],
                                                      theta=g[:, 1], alpha=g[:, 2])
                pending = 0
        y = torch.cat(outputs, dim=1) if outputs else x.new_zeros(rows * h, 0, self.d_value)
        y = self.to_out(rearrange(y, "(r h) t d -> r t (h d)", h=h))         # (R, T, d_model)

        keep = slice(keys.shape[1] - n_buf, keys.shape[1])
        new_state = {"keys": keys[:, keep], "values": values[:, keep], "gamma": gammas[:, keep],
                     "gates": logits[:, keep],
                     "pending": torch.full_like(state["pending"], pending)}
        for i, (w, s) in enumerate(zip(weights, momenta)):
            new_state[f"w{i}"] = rearrange(w, "(r h) a b -> r h a b", h=h)
            new_state[f"s{i}"] = rearrange(s, "(r h) a b -> r h a b", h=h)
        return y, new_state
