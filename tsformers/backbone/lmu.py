"""Legendre Memory Units: the LTI memory and the LMU cell, parallel (FFT) and recurrent forms.

References
----------
Voelker, Kajić & Eliasmith, "Legendre Memory Units: Continuous-Time Representation in
Recurrent Neural Networks", NeurIPS 2019 (the (A, B) system and its Legendre read-out).
Chilkuri & Eliasmith, "Parallelizing Legendre Memory Unit Training", ICML 2021 (no
recurrence in u or h: the memory is a convolution, trained in parallel by FFT).
Liu, Datta, Li & Beerel, "LMUFormer: Low Complexity Yet Powerful Spiking Model With
Legendre Memory Units", ICLR 2024 (the cell as LMUFormer uses it, and its spiking form).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from .registry import register
from .spiking import LIFNode
from .dropout import Dropout

__all__ = ["ConvFFN", "ConvFeedForward", "LMUCell", "LegendreMemory", "TokenBatchNorm", "legendre_delay_system", "shifted_legendre",
           "zoh_discretise"]


def legendre_delay_system(order: int, theta: float) -> tuple[Tensor, Tensor]:
    """The continuous LMU system dm/dt = A m + B u, with 1/theta folded in (float64).

    A[i, j] = (2i+1)/theta * (-1 if i < j else (-1)^(i-j+1)),  B[i] = (2i+1)/theta * (-1)^i.
    Its state m(t) holds the coefficients of u over the window [t - theta, t] in the
    shifted Legendre basis (the Padé approximant of a delay of theta).

    Returns
    -------
    A : (order, order) float64,  B : (order,) float64
    """
    assert order >= 1 and theta > 0, f"need order >= 1 and theta > 0, got order={order}, theta={theta}"
    q = torch.arange(order, dtype=torch.float64)
    r = (2 * q + 1) / theta                                           # (d,)
    i, j = q[:, None], q[None, :]
    sign = torch.where(i < j, -1.0, (-1.0) ** (i - j + 1))           # (d, d)
    return sign * r[:, None], (-1.0) ** q * r


def zoh_discretise(A: Tensor, B: Tensor, dt: float = 1.0) -> tuple[Tensor, Tensor]:
    """Zero-order hold: Ā = expm(A dt), B̄ = A^{-1} (Ā - I) B, in float64 (A must be invertible).

    Equivalent to ``scipy.signal.cont2discrete(..., method="zoh")``.
    """
    A, B = A.double(), B.double()
    A_bar = torch.linalg.matrix_exp(A * dt)
    B_bar = torch.linalg.solve(A, (A_bar - torch.eye(A.shape[0], dtype=A.dtype)) @ B)
    return A_bar, B_bar


def shifted_legendre(order: int, r: Tensor) -> Tensor:
    """P̃_i(r) = P_i(2r - 1) for i < order at the points r in [0, 1]: ``(*r.shape, order)``.

    The LMU read-out: u(t - r·theta) ≈ Σ_i P̃_i(r) m_i(t).
    """
    x = 2 * r - 1
    polys = [torch.ones_like(x), x][:order]
    for n in range(1, order - 1):               # Bonnet: (n+1) P_{n+1} = (2n+1) x P_n - n P_{n-1}
        polys.append(((2 * n + 1) * x * polys[n] - n * polys[n - 1]) / (n + 1))
    return torch.stack(polys, dim=-1)


@register("memory", "lmu")
class LegendreMemory(nn.Module):
    """The LMU's linear memory: m_t = Ā m_{t-1} + B̄ u_t, one memory of ``order`` per input channel.

    Voelker et al., NeurIPS 2019; the parallel form of Chilkuri & Eliasmith, ICML 2021.
    (Ā, B̄) are the zero-order-hold discretisation (dt = 1 token) of
    :func:`legendre_delay_system`, computed once in float64 and kept as buffers.

    Two exact forms of the same map:

    * **parallel** (training): m = u * H, a causal convolution with the impulse
      response H = [B̄, ĀB̄, Ā²B̄, ...] by FFT with zero-padding to 2T; O(T log T · d)
      per channel, plus O(T·d²) for a non-zero initial state.
    * **recurrent** (streaming): one token at a time, O(d²) per step, state (C, d).

    ``forward(u, state=None) -> (m, state)``: u (B, T, C), state (B, C, d) (zeros if None)
    -> m (B, T, C, d) and the state after the last token (B, C, d). Inputs longer than
    ``chunk`` tokens run chunk by chunk, so memory stays O(chunk) for any length.

    Parameters
    ----------
    order : int
        d, the number of Legendre coefficients (the paper's ``memory_size``).
    theta : float
        The window, in tokens, that the memory represents.
    chunk : int, default=4096
        Longest input run through one FFT.
    """

    def __init__(self, *, order: int, theta: float, chunk: int = 4096):
        super().__init__()
        assert chunk >= 1, f"chunk must be positive, got {chunk}"
        self.order, self.theta, self.chunk = order, float(theta), chunk
        A_bar, B_bar = zoh_discretise(*legendre_delay_system(order, theta))
        # float64 masters; cast to the input's dtype at use (non-persistent: a function of order and theta)
        self.register_buffer("A_bar", A_bar, persistent=False)        # (d, d)
        self.register_buffer("B_bar", B_bar, persistent=False)        # (d,)
        self._response_cache: dict = {}

    def extra_repr(self) -> str:
        return f"order={self.order}, theta={self.theta:g}"

    def init_state(self, batch_size: int, n_inputs: int = 1) -> Tensor:
        return self.A_bar.new_zeros(batch_size, n_inputs, self.order, dtype=torch.get_default_dtype())

    # -- the two forms ----------------------------------------------------------------------

    def step(self, u: Tensor, m: Tensor) -> Tensor:
        """One token: u (B, C), m (B, C, d) -> Ā m + B̄ u, O(d²)."""
        A_bar, B_bar = self.A_bar.to(m.dtype), self.B_bar.to(m.dtype)
        return m @ A_bar.T + u[..., None] * B_bar

    def recurrent(self, u: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The memory token by token: u (B, T, C) -> m (B, T, C, d), state (B, C, d)."""
        m = self._zeros(u) if state is None else state
        out = []
        for u_t in u.unbind(dim=1):
            m = self.step(u_t, m)
            out.append(m)
        return torch.stack(out, dim=1), m

    def parallel(self, u: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The memory of a whole sequence at once by FFT: u (B, T, C) -> m (B, T, C, d), state (B, C, d)."""
        T = u.shape[1]
        H_f = self._response_fft(T, u.device, u.dtype)                              # (d, T + 1) complex
        U = torch.fft.rfft(rearrange(u, "b t c -> b c 1 t"), n=2 * T)             # (B, C, 1, T + 1)
        m = torch.fft.irfft(U * H_f, n=2 * T)[..., :T]                             # (B, C, d, T): causal
        m = rearrange(m, "b c d t -> b t c d")
        if state is not None:
            m = m + self._free_response(state, T)                                  # + Ā^{t+1} m_{-1}
        return m, m[:, -1]

    def forward(self, u: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        assert u.ndim == 3, f"LegendreMemory expects u: (batch, time, channels), got shape {tuple(u.shape)}"
        if u.shape[1] <= 8:                       # a few streaming steps: the recurrence is cheaper than an FFT
            return self.recurrent(u, state)
        outs = []
        for piece in u.split(self.chunk, dim=1):
            m, state = self.parallel(piece, state)
            outs.append(m)
        return (outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)), state

    # -- helpers ------------------------------------------------------------------------------

    def _zeros(self, u: Tensor) -> Tensor:
        return u.new_zeros(u.shape[0], u.shape[2], self.order)

    def impulse_response(self, length: int) -> Tensor:
        """H[:, t] = Ā^t B̄ for t < length, in float64 by doubling: (d, length)."""
        H, power = self.B_bar[:, None], self.A_bar                         # H holds Ā^0..Ā^{k-1} B̄; power = Ā^k
        while H.shape[1] < length:
            H = torch.cat([H, power @ H], dim=1)
            power = power @ power
        return H[:, :length]

    def _response_fft(self, T: int, device, dtype) -> Tensor:
        """rfft(H, 2T), cached per length, device and dtype (not when made under inference mode, whose
        tensors could not be saved for a later backward pass)."""
        key = (T, str(device), dtype)
        if key in self._response_cache:
            return self._response_cache[key]
        H_f = torch.fft.rfft(self.impulse_response(T).to(device=device, dtype=dtype), n=2 * T)  # (d, T + 1)
        if not torch.is_inference_mode_enabled():
            if len(self._response_cache) >= 8:
                self._response_cache.clear()
            self._response_cache[key] = H_f
        return H_f

    def _free_response(self, m0: Tensor, T: int) -> Tensor:
        """Ā^{t+1} m0 for t < T by doubling (O(T·d²)): m0 (B, C, d) -> (B, T, C, d)."""
        A_bar = self.A_bar.to(m0.dtype)
        block, power = (m0 @ A_bar.T)[:, None], A_bar                     # block: Ā^1..Ā^k applied; power = Ā^k
        while block.shape[1] < T:
            block = torch.cat([block, block @ power.T], dim=1)
            power = power @ power
        return block[:, :T]

    def decoder(self, delays: Tensor) -> Tensor:
        """Rows that read u(t - delay) back from m_t: (n_delays, d), for delays in [0, theta]."""
        return shifted_legendre(self.order, delays.double() / self.theta)


@register("memory", "lmu_cell")
class LMUCell(nn.Module):
    """The parallelisable LMU cell of LMUFormer: u = f_u(W_u x), m = LMU(u), h = f_h(W_h [m; x]).

    Chilkuri & Eliasmith, ICML 2021, as LMUFormer (Liu et al., ICLR 2024) uses it: no
    recurrence through u or h, so the sequence trains in parallel (FFT) and streams
    exactly (O(d²) per token). u is one scalar per token (W_u: D -> 1), the memory has
    ``memory_size`` Legendre coefficients over ``theta`` tokens.

    Non-spiking: f_u = f_h = ReLU. Spiking (``spiking=True``, the paper's
    ``slmu`` cell): the input, u, m and h each pass BN -> LIF (the input's LIF fires
    at 0.5), so the cell reads and emits binary spikes.

    ``forward(x, state=None) -> (h, state)``: x (B, T, D) -> h (B, T, hidden_size); the
    state is a flat dict of tensors with batch first (zeros where absent). Cost O(T·(D +
    d)·hidden) plus the memory's O(T log T · d). Causal in eval mode (BatchNorm then
    applies fixed statistics).
    """

    def __init__(self, d_model: int, *, memory_size: int, theta: float, hidden_size: int | None = None,
                 spiking: bool = False, tau: float = 2.0, v_threshold: float = 1.0, surrogate_alpha: float = 4.0):
        super().__init__()
        hidden_size = hidden_size or d_model
        lif = dict(tau=tau, surrogate_alpha=surrogate_alpha)
        self.spiking = spiking
        # spiking: the block input becomes spikes first (threshold 0.5, as in the paper); else it is read as is
        self.in_norm = TokenBatchNorm(d_model) if spiking else nn.Identity()
        self.in_lif = LIFNode(**lif, v_threshold=0.5) if spiking else None
        self.W_u = nn.Linear(d_model, 1)
        self.u_norm = TokenBatchNorm(1) if spiking else nn.Identity()
        self.u_lif = LIFNode(**lif, v_threshold=v_threshold) if spiking else None
        self.memory = LegendreMemory(order=memory_size, theta=theta)
        self.m_norm = TokenBatchNorm(memory_size) if spiking else nn.Identity()
        self.m_lif = LIFNode(**lif, v_threshold=v_threshold) if spiking else None
        self.W_h = nn.Linear(memory_size + d_model, hidden_size)
        self.h_norm = TokenBatchNorm(hidden_size) if spiking else nn.Identity()
        self.h_lif = LIFNode(**lif, v_threshold=v_threshold) if spiking else None

    def init_state(self, batch_size: int) -> dict[str, Tensor]:
        state = {"memory": self.memory.init_state(batch_size)}
        for name in ("in_lif", "u_lif", "m_lif", "h_lif"):
            if getattr(self, name) is not None:
                state[name] = getattr(self, name).init_state(batch_size, self._width(name))
        return state

    def _width(self, name: str) -> int:
        return {"in_lif": self.W_u.in_features, "u_lif": 1, "m_lif": self.memory.order,
                "h_lif": self.W_h.out_features}[name]

    def _act(self, name: str, x: Tensor, state: dict | None, new: dict) -> Tensor:
        """The cell's nonlinearity ``name``: ReLU, or (spiking) the LIF neurons carrying their membrane."""
        lif = getattr(self, name)
        if lif is None:
            return torch.relu(x)
        spikes, new[name] = lif(x, None if state is None else state[name])
        return spikes

    def forward(self, x: Tensor, state: dict[str, Tensor] | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        new: dict[str, Tensor] = {}
        if self.spiking:
            x = self._act("in_lif", self.in_norm(x), state, new)                   # (B, T, D) spikes
        u = self._act("u_lif", self.u_norm(self.W_u(x)), state, new)               # (B, T, 1)
        m, new["memory"] = self.memory(u, None if state is None else state["memory"])  # (B, T, 1, d)
        m = rearrange(m, "b t c d -> b t (c d)")
        if self.spiking:
            m = self._act("m_lif", self.m_norm(m), state, new)                     # (B, T, d) spikes
        h = self._act("h_lif", self.h_norm(self.W_h(torch.cat([m, x], dim=-1))), state, new)  # (B, T, hidden)
        return h, new


class TokenBatchNorm(nn.BatchNorm1d):
    """BatchNorm1d over (B, T, C) tokens: statistics per channel over batch and tokens, as Conv1d's BN."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.reshape(-1, x.shape[-1])).reshape(x.shape)


class ConvFFN(nn.Module):
    """LMUFormer's channel mixer (Liu et al., ICLR 2024), Conv1x1 (= Linear per token) D -> r·D -> D.

    Non-spiking: Linear -> BN -> GELU -> Dropout -> Linear -> BN -> ReLU (as the paper's
    code). Spiking: LIF -> Linear -> BN -> LIF -> Linear -> BN. The hidden width is
    ``d_ff`` where given, else ``mlp_ratio``·D. Cost O(T·r·D²), no token mixing (only the
    LIF membranes carry over tokens). ``forward(x, state=None) -> (y, state)``, the
    streaming form of LMUFormer's blocks; :class:`ConvFeedForward` is the stateless slot part.
    """

    def __init__(self, d_model: int, *, mlp_ratio: int = 4, d_ff: int | None = None, dropout: float = 0.0,
                 spiking: bool = False, lif: dict | None = None):
        super().__init__()
        hidden = d_ff or mlp_ratio * d_model
        self.spiking = spiking
        self.lif1 = LIFNode(**lif) if spiking else None
        self.fc1, self.norm1 = nn.Linear(d_model, hidden), TokenBatchNorm(hidden)
        self.act = nn.Identity() if spiking else nn.GELU()
        self.dropout = Dropout(dropout)
        self.lif2 = LIFNode(**lif) if spiking else None
        self.fc2, self.norm2 = nn.Linear(hidden, d_model), TokenBatchNorm(d_model)

    def init_state(self, batch_size: int) -> dict[str, Tensor]:
        if not self.spiking:
            return {}
        return {"lif1": self.lif1.init_state(batch_size, self.fc1.in_features),
                "lif2": self.lif2.init_state(batch_size, self.fc2.in_features)}

    def forward(self, x: Tensor, state: dict[str, Tensor] | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        new: dict[str, Tensor] = {}
        if self.spiking:
            x, new["lif1"] = self.lif1(x, None if state is None else state["lif1"])
        x = self.dropout(self.act(self.norm1(self.fc1(x))))                   # (B, T, r·D)
        if self.spiking:
            x, new["lif2"] = self.lif2(x, None if state is None else state["lif2"])
            return self.norm2(self.fc2(x)), new                               # (B, T, D)
        return torch.relu(self.norm2(self.fc2(x))), new



@register("ffn", "conv")
class ConvFeedForward(ConvFFN):
    """LMUFormer's conv FFN (non-spiking) in the ``ffn`` slot of a block: x (..., D) -> (..., D).

    Linear -> BN -> GELU -> Dropout -> Linear -> BN -> ReLU with hidden width ``d_ff``
    (Liu et al., "LMUFormer", ICLR 2024). Its batch norms pool statistics over every token
    of the batch in training and apply fixed ones in eval, so they fold into the Linear
    layers for inference. ``activation`` is accepted for a drop-in with ``FeedForward``
    and unused (the paper's GELU). Cost O(N·D·d_ff), no token mixing.
    """

    requires_order = False  # token by token (the batch norms pool over tokens, whatever their order)
    complexity = "O(N·D·d_ff)"
    paper = "Liu et al., LMUFormer: Low Complexity Yet Powerful Spiking Model With Legendre Memory Units, ICLR 2024"

    def __init__(self, d_model: int, *, d_ff: int, dropout: float = 0.0, activation: str | None = None):
        super().__init__(d_model, d_ff=d_ff, dropout=dropout)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x)[0]
