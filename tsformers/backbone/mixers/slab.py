"""SLAB: simplified linear attention (``sla``) and progressive re-parameterised BatchNorm (``prepbn``).

Guo et al., "SLAB: Efficient Transformers with Simplified Linear Attention and
Progressive Re-parameterized Batch Normalization", ICML 2024 (repo xinghaochen/SLAB).

``sla`` is a (B, N, D) -> (B, N, D) mixer; ``prepbn`` is a normalisation layer
registered under kind ``"norm"``, a drop-in for ``nn.LayerNorm`` that turns into an
eval-mode BatchNorm which folds into the next Linear.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..registry import register
from ._base import CAUSAL_SELF, CROSS, SELF, check_causal, check_cross
from ..dropout import Dropout

__all__ = ["PRepBN", "RepBN", "SimplifiedLinearAttention"]


@register("mixer", "sla")
class SimplifiedLinearAttention(nn.Module):
    """Simplified linear attention (Guo et al., "SLAB", ICML 2024).

    Per head, with the ReLU kernel φ:  out_i = φ(q_i)·(Σ_j φ(k_j) v_jᵀ) / (φ(q_i)·Σ_j φ(k_j) + ε),
    plus a depthwise convolution over the tokens of V (kernel ``conv_kernel``, one filter
    per head channel shared by the heads, as in the official code) added back for local
    detail. Cost O(N·D·d_head) time and O(N·D + H·d_head²) memory: linear in N.

    ``causal=True``: sums over j <= i, computed in chunks of ``chunk_size`` tokens (exact
    attention inside a chunk, a running (d_head × d_head) state across chunks) and
    the convolution left-padded; ``step(x_t, state)`` is the same computation one token
    at a time with an O(1) state, for streaming. ``conv_kernel=0`` drops the convolution:
    the mixer is then permutation-equivariant and suits unordered variate tokens
    (``requires_order`` is set per instance; the class default describes the default
    ``conv_kernel=3``). Cross-attention (``kv`` given) uses the linear attention term only:
    the convolution of V lives on the key/value tokens, not on the queries.

    Deviation from the official code: no learned positional encoding added to K (it has a
    fixed number of tokens), so the module runs at any N.
    """

    complexity = "O(N·D·d_head)"
    patterns = frozenset({SELF, CAUSAL_SELF, CROSS})
    requires_order = True
    mixes_tokens = True
    paper = "Guo et al., SLAB: Efficient Transformers with Simplified Linear Attention and Progressive " \
            "Re-parameterized Batch Normalization, ICML 2024"

    def __init__(self, d_model: int, *, n_heads: int = 8, dropout: float = 0.0, causal: bool = False,
                 conv_kernel: int = 3, eps: float = 1e-6, chunk_size: int = 64):
        super().__init__()
        check_causal(type(self), causal)
        assert d_model % n_heads == 0, f"d_model={d_model} must be divisible by n_heads={n_heads}"
        assert conv_kernel >= 0 and chunk_size >= 1
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.causal, self.eps, self.chunk_size, self.conv_kernel = causal, eps, chunk_size, conv_kernel
        self.requires_order = conv_kernel > 0  # instance value: without the conv the mixer is order-free
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.dropout = Dropout(dropout)
        self.dwc = (nn.Conv1d(self.d_head, self.d_head, conv_kernel, groups=self.d_head)
                    if conv_kernel > 0 else None)

    # ------------------------------------------------------------------------------ helpers

    def _heads(self, t: Tensor) -> Tensor:
        return rearrange(t, "b n (h d) -> b h n d", h=self.n_heads)

    def _conv(self, v: Tensor) -> Tensor:
        """Depthwise conv over tokens of v (B, H, N, d): left-padded when causal, 'same' otherwise."""
        b, h, n, d = v.shape
        k = self.conv_kernel
        left = k - 1 if self.causal else (k - 1) // 2
        seq = rearrange(v, "b h n d -> (b h) d n")
        seq = F.pad(seq, (left, k - 1 - left))
        return rearrange(self.dwc(seq), "(b h) d n -> b h n d", b=b)            # (B, H, N, d)

    def _linear_attention(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Non-causal: φ(q)(φ(k)ᵀ v) / (φ(q)·Σφ(k) + ε); q (B,H,N,d), k, v (B,H,M,d)."""
        kv = torch.einsum("bhmc,bhmd->bhcd", k, v)                               # (B, H, d, d)
        z = k.sum(dim=2)                                                         # (B, H, d)
        num = torch.einsum("bhnc,bhcd->bhnd", q, kv)                             # (B, H, N, d)
        den = torch.einsum("bhnc,bhc->bhn", q, z)[..., None]                     # (B, H, N, 1)
        return num / (den + self.eps)

    def _causal_linear_attention(self, q: Tensor, k: Tensor, v: Tensor, kv0: Tensor | None = None,
                                 z0: Tensor | None = None) -> Tensor:
        """Causal form in chunks: exact masked attention within a chunk, prefix state across chunks.

        ``kv0`` (B, H, d, d) and ``z0`` (B, H, d): the sums over the tokens before q (a stream's state).
        """
        b, h, n, d = q.shape
        c = min(self.chunk_size, n)
        pad = (-n) % c
        if pad:  # padded tokens come after every real one, so causality keeps them out
            q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
        q, k, v = (rearrange(t, "b h (m c) d -> b h m c d", c=c) for t in (q, k, v))  # (B, H, n/c, c, d)
        chunk_kv = torch.einsum("bhmcx,bhmcy->bhmxy", k, v)                      # (B, H, n/c, d, d)
        chunk_z = k.sum(dim=3)                                                   # (B, H, n/c, d)
        prev_kv = chunk_kv.cumsum(dim=2) - chunk_kv                              # exclusive prefix sums
        prev_z = chunk_z.cumsum(dim=2) - chunk_z
        if kv0 is not None:  # the tokens of earlier calls precede every chunk
            prev_kv, prev_z = prev_kv + kv0[:, :, None], prev_z + z0[:, :, None]
        scores = torch.einsum("bhmix,bhmjx->bhmij", q, k)                        # (B, H, n/c, c, c)
        scores = scores * torch.ones(c, c, dtype=torch.bool, device=q.device).tril()
        num = torch.einsum("bhmix,bhmxy->bhmiy", q, prev_kv) + scores @ v        # (B, H, n/c, c, d)
        den = torch.einsum("bhmix,bhmx->bhmi", q, prev_z) + scores.sum(-1)       # (B, H, n/c, c)
        out = num / (den[..., None] + self.eps)
        return rearrange(out, "b h m c d -> b h (m c) d")[:, :, :n]               # (B, H, N, d)

    # ------------------------------------------------------------------------------ forward

    def forward(self, x: Tensor, kv: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        check_cross(self, kv)
        if mask is not None:
            raise ValueError("sla (linear attention) takes no attention mask; pad with zero tokens instead")
        if kv is None:
            q, k, v = (self._heads(t) for t in self.qkv(x).chunk(3, dim=-1))    # (B, H, N, d) each
        else:
            w_q, w_kv = self.qkv.weight.split([x.shape[-1], 2 * x.shape[-1]])
            b_q, b_kv = self.qkv.bias.split([x.shape[-1], 2 * x.shape[-1]])
            q = self._heads(F.linear(x, w_q, b_q))                               # (B, H, N, d)
            k, v = (self._heads(t) for t in F.linear(kv, w_kv, b_kv).chunk(2, dim=-1))  # (B, H, M, d)
        q, k = F.relu(q), F.relu(k)
        out = self._causal_linear_attention(q, k, v) if self.causal else self._linear_attention(q, k, v)
        if self.dwc is not None and kv is None:
            out = out + self._conv(v)
        return self.dropout(self.proj(rearrange(out, "b h n d -> b n (h d)")))    # (B, N, D)

    # ---------------------------------------------------------------------------- streaming

    def init_state(self, batch: int, device=None, dtype=None) -> dict[str, Tensor]:
        """Zero state: running Σφ(k)vᵀ (B,H,d,d), Σφ(k) (B,H,d), and the last conv_kernel-1 values."""
        h, d = self.n_heads, self.d_head
        return {
            "kv": torch.zeros(batch, h, d, d, device=device, dtype=dtype),
            "z": torch.zeros(batch, h, d, device=device, dtype=dtype),
            "v": torch.zeros(batch, h, max(self.conv_kernel - 1, 0), d, device=device, dtype=dtype),
        }

    def init_scan(self, rows: int) -> dict[str, Tensor]:
        """The zero state of ``scan`` for ``rows`` sequences, on the parameters' device and dtype."""
        return self.init_state(rows, self.proj.weight.device, self.proj.weight.dtype)

    def scan(self, x: Tensor, state: dict[str, Tensor] | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """The causal forward over T new tokens x (B, T, D) after ``state``: (y (B, T, D), new state).

        The chunked parallel form started from the state's sums, so a sequence fed in pieces
        gives the causal ``forward`` over all of it (the streaming interface of a recurrent slot).
        """
        if not self.causal:
            raise ValueError("scan() is the causal recurrence; build sla with causal=True")
        state = self.init_scan(x.shape[0]) if state is None else state
        q, k, v = (self._heads(t) for t in self.qkv(x).chunk(3, dim=-1))        # (B, H, T, d) each
        q, k = F.relu(q), F.relu(k)
        out = self._causal_linear_attention(q, k, v, state["kv"], state["z"])    # (B, H, T, d)
        window = torch.cat([state["v"], v], dim=2)                               # (B, H, k-1+T, d)
        if self.dwc is not None:  # the left padding is the state's last k-1 values
            seq = rearrange(window, "b h n d -> (b h) d n")
            out = out + rearrange(self.dwc(seq), "(b h) d n -> b h n d", b=x.shape[0])
        new_state = {"kv": state["kv"] + torch.einsum("bhnc,bhnd->bhcd", k, v), "z": state["z"] + k.sum(dim=2),
                     "v": window[:, :, window.shape[2] - state["v"].shape[2]:]}
        return self.dropout(self.proj(rearrange(out, "b h n d -> b n (h d)"))), new_state

    def step(self, x: Tensor, state: dict[str, Tensor] | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """One causal step: x (B, D) the newest token -> (y (B, D), new state); O(H·d_head²) per step.

        Feeding tokens 0..N-1 one by one from ``state=None`` gives the causal ``forward``.
        """
        if not self.causal:
            raise ValueError("step() is the causal recurrence; build sla with causal=True")
        state = self.init_state(x.shape[0], x.device, x.dtype) if state is None else state
        q, k, v = (rearrange(t, "b (h d) -> b h d", h=self.n_heads) for t in self.qkv(x).chunk(3, dim=-1))
        q, k = F.relu(q), F.relu(k)                                              # (B, H, d)
        kv = state["kv"] + k[..., :, None] * v[..., None, :]                     # (B, H, d, d)
        z = state["z"] + k
        out = torch.einsum("bhc,bhcd->bhd", q, kv) / ((q * z).sum(-1, keepdim=True) + self.eps)
        window = torch.cat([state["v"], v[:, :, None]], dim=2)                   # (B, H, k, d)
        if self.dwc is not None:
            # the conv at the last position of a left-padded sequence: Σ_i w[c, i]·window[i, c] + bias
            out = out + torch.einsum("bhkd,dk->bhd", window, self.dwc.weight[:, 0]) + self.dwc.bias
        new_state = {"kv": kv, "z": z, "v": window[:, :, 1:]}
        return self.proj(rearrange(out, "b h d -> b (h d)")), new_state


class RepBN(nn.Module):
    """RepBN(x) = BN(x) + η·x over the channels of tokens x (..., D), η a learnable scalar (init 1).

    Statistics over every token of the batch. In eval mode it is a per-channel affine map
    s ⊙ x + t (``affine()``), so it folds into a neighbouring Linear.
    """

    def __init__(self, d_model: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.bn = nn.BatchNorm1d(d_model, eps=eps, momentum=momentum)
        self.eta = nn.Parameter(torch.ones(1))

    def forward(self, x: Tensor) -> Tensor:
        flat = x.reshape(-1, x.shape[-1])                                        # (B·N, D)
        return (self.bn(flat) + self.eta * flat).reshape(x.shape)

    def affine(self) -> tuple[Tensor, Tensor]:
        """(s, t) with eval-mode RepBN(x) = s ⊙ x + t, each (D,)."""
        bn = self.bn
        inv = torch.rsqrt(bn.running_var + bn.eps)
        gamma = bn.weight if bn.weight is not None else torch.ones_like(inv)
        beta = bn.bias if bn.bias is not None else torch.zeros_like(inv)
        return gamma * inv + self.eta, beta - bn.running_mean * gamma * inv


@register("norm", "prepbn")
class PRepBN(nn.Module):
    """Progressive re-parameterised BatchNorm (Guo et al., "SLAB", ICML 2024): LayerNorm → RepBN.

    norm(x) = λ·LN(x) + (1−λ)·RepBN(x); λ = 1 for ``warmup_steps`` training steps, then
    decays linearly to 0 over ``decay_steps`` (a step is one forward in training mode,
    counted in the ``step`` buffer; ``set_step`` moves it). Cost O(N·D), no token mixing.

    Eval uses the current λ; once λ = 0 only the eval-mode RepBN remains, an affine map
    that ``fold_into(linear)`` merges into the next Linear (inference without any norm).
    Deviation from the official ``LinearNorm``, which always uses RepBN alone in eval:
    that mismatches training until the decay has finished, so we blend with λ until then.
    """

    def __init__(self, d_model: int, *, warmup_steps: int = 0, decay_steps: int = 10_000, eps: float = 1e-5):
        super().__init__()
        assert warmup_steps >= 0 and decay_steps >= 0
        self.warmup_steps, self.decay_steps = warmup_steps, decay_steps
        self.ln = nn.LayerNorm(d_model, eps=eps)
        self.repbn = RepBN(d_model, eps=eps)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    @property
    def lam(self) -> float:
        """λ at the current step: 1 during warm-up, then linear to 0 over decay_steps."""
        after = int(self.step) - self.warmup_steps
        if after <= 0:
            return 1.0
        return 0.0 if self.decay_steps == 0 else max(0.0, 1.0 - after / self.decay_steps)

    def set_step(self, step: int) -> None:
        self.step.fill_(step)

    def forward(self, x: Tensor) -> Tensor:
        lam = self.lam
        if self.training:
            self.step.add_(1)
        if lam == 1.0 and not self.training:
            return self.ln(x)
        if lam == 0.0:
            return self.repbn(x)
        # in training both branches run, so BN statistics are gathered through the warm-up too
        return lam * self.ln(x) + (1 - lam) * self.repbn(x)

    @torch.no_grad()
    def fold_into(self, linear: nn.Linear) -> nn.Linear:
        """A new Linear equal to ``linear(self(x))`` in eval mode once λ = 0 (the inputs are the norm's).

        linear(s ⊙ x + t) = (W·diag(s)) x + (W t + b).
        """
        if self.lam != 0.0:
            raise ValueError(f"prepbn folds only after its decay (λ = {self.lam:.3g} > 0 at step {int(self.step)})")
        s, t = self.repbn.affine()
        bias = linear.bias if linear.bias is not None else torch.zeros(linear.out_features)
        folded = nn.Linear(linear.in_features, linear.out_features, device=linear.weight.device,
                           dtype=linear.weight.dtype)
        folded.weight.copy_(linear.weight * s)
        folded.bias.copy_(linear.weight @ t + bias)
        return folded
