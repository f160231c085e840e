"""Three-Phase Transformer: cyclic channel partition, per-channel RMSNorm, Givens rotation, horn DC channel.

"Three-Phase Transformer" (3PT), arXiv 2604.14430, 2026.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ..blocks import PreNormBlock
from ..registry import register

__all__ = ["ChannelRMSNorm", "GivensRotation", "ThreePhase", "ThreePhaseBlock", "phase_partition"]


def phase_partition(d_model: int, n_phases: int, horn: bool) -> tuple[int, int]:
    """(channel size c, remainder R): n_phases channels of an even size c, R = D - n_phases·c dims left.

    With ``horn`` at least one dim is kept out of the channels for the DC side channel.
    """
    c = ((d_model - int(horn)) // n_phases) // 2 * 2
    if c < 2:
        raise ValueError(f"d_model={d_model} is too small for the three_phase stack: it needs {n_phases} phases of "
                         f"at least 2 dims{' plus one DC dim' if horn else ''}, so d_model >= "
                         f"{2 * n_phases + int(horn)}; raise d_model or choose another stack")
    return c, d_model - n_phases * c


class ChannelRMSNorm(nn.Module):
    """RMSNorm inside each cyclic channel (and inside the remainder/DC dims), one (D,) weight. Cost O(N·D)."""

    def __init__(self, d_model: int, sizes: list[int], eps: float = 1e-6):
        super().__init__()
        assert sum(sizes) == d_model, (sizes, d_model)
        self.sizes, self.eps = sizes, eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x: Tensor) -> Tensor:
        parts = [p * torch.rsqrt(p.pow(2).mean(-1, keepdim=True) + self.eps) for p in x.split(self.sizes, dim=-1)]
        return torch.cat(parts, dim=-1) * self.weight


class GivensRotation(nn.Module):
    """Rotate every (2j, 2j+1) pair of channel i by θ + i·2π/n_phases (θ learnable); the remainder is kept.

    An orthogonal map acting inside each channel, so each channel's norm is preserved.
    Cost O(N·D), 1 parameter. x: (..., D) -> (..., D).
    """

    def __init__(self, n_phases: int, channel: int, theta: float = 0.0, learn_theta: bool = True):
        super().__init__()
        self.n_phases, self.channel = n_phases, channel
        theta_t = torch.tensor(float(theta))
        self.theta = nn.Parameter(theta_t) if learn_theta else theta_t
        self.register_buffer("offsets", torch.arange(n_phases) * (2 * math.pi / n_phases), persistent=False)

    def angles(self) -> Tensor:
        """(n_phases,) rotation angle of each channel."""
        return self.theta + self.offsets

    def forward(self, x: Tensor) -> Tensor:
        width = self.n_phases * self.channel
        pairs = x[..., :width].unflatten(-1, (self.n_phases, self.channel // 2, 2))   # (..., P, c/2, 2)
        a, b = pairs[..., 0], pairs[..., 1]
        phi = self.angles()[:, None]                                                   # (P, 1)
        cos, sin = torch.cos(phi), torch.sin(phi)
        rotated = torch.stack([cos * a - sin * b, sin * a + cos * b], dim=-1).flatten(-3)  # (..., P·c)
        return torch.cat([rotated, x[..., width:]], dim=-1)


class ThreePhaseBlock(PreNormBlock):
    """Pre-norm block with the 3PT prior: per-channel RMSNorm, and a Givens rotation between mixer and FFN.

    x = x + mixer(CRMS1(x)); x = rot(x); x = x + ffn(CRMS2(x)). With one phase, θ = 0 and no
    DC dims it is the pre-RMSNorm block. Cost: the mixer's + O(N·D·d_ff) + O(N·D).
    """

    def __init__(self, d_model: int, *, n_heads: int, d_ff: int, dropout: float = 0.0, mixer: str = "full",
                 mixer_kwargs: dict[str, Any] | None = None, causal: bool = False, n_phases: int = 3,
                 theta: float = 0.0, learn_theta: bool = True, horn: bool = True):
        super().__init__(d_model, n_heads=n_heads, d_ff=d_ff, dropout=dropout, mixer=mixer,
                         mixer_kwargs=mixer_kwargs, causal=causal)
        c, rest = phase_partition(d_model, n_phases, horn)
        sizes = [c] * n_phases + ([rest] if rest else [])
        self.norm1, self.norm2 = ChannelRMSNorm(d_model, sizes), ChannelRMSNorm(d_model, sizes)
        self.rotation = GivensRotation(n_phases, c, theta, learn_theta)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.dropout1(self.mixer(self.norm1(x)))
        x = self.rotation(x)
        return x + self.dropout2(self.ffn(self.norm2(x)))


@register("stack", "three_phase")
class ThreePhase(nn.Module):
    """Three-Phase Transformer stack (3PT, arXiv 2604.14430, 2026).

    A residual-stream prior: the hidden vector is split into ``n_phases`` (N_p, default 3)
    equal cyclic channels of even size, kept by per-channel RMSNorm and, between attention
    and FFN in every block, a 2-D Givens rotation that turns channel i by θ + i·2π/N_p
    (θ learnable per block, init ``theta``). The dims outside the channels form a DC
    subspace; with ``horn`` the fixed Gabriel's-horn profile r(p) = 1/(p+1) of the token
    position p is added into its last dim at the input, an absolute-position side channel
    (meant for causal time-token decoders). The paper finds N_p = 1 and 3 about equal at
    123M parameters, hence the option. Deviations: the mixer slot (full attention by
    default) and the plain FFN are kept instead of the paper's RoPE+GQA and SwiGLU, and
    heads are not forced to align with the channels. Extra parameters: one θ per block.
    Cost O(N²·D) + O(N·D·d_ff) per block. x: (B, N, D) -> (B, N, D).
    """

    requires_order = True  # the horn side channel (on by default) adds each token's position

    def __init__(
        self,
        *,
        d_model: int,
        n_heads: int,
        d_ff: int,
        n_layers: int,
        dropout: float = 0.0,
        mixer: str = "full",
        mixer_kwargs: dict[str, Any] | None = None,
        causal: bool = False,
        n_phases: int = 3,
        theta: float = 0.0,
        learn_theta: bool = True,
        horn: bool = True,
    ):
        super().__init__()
        self.horn = horn
        self.layers = nn.ModuleList(
            ThreePhaseBlock(d_model, n_heads=n_heads, d_ff=d_ff, dropout=dropout, mixer=mixer,
                            mixer_kwargs=mixer_kwargs, causal=causal, n_phases=n_phases, theta=theta,
                            learn_theta=learn_theta, horn=horn)
            for _ in range(n_layers)
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.horn:                                                   # DC side channel: r(p) = 1/(p+1)
            p = torch.arange(x.shape[1], device=x.device, dtype=x.dtype)
            x = torch.cat([x[..., :-1], x[..., -1:] + (1.0 / (p + 1))[:, None]], dim=-1)
        for layer in self.layers:
            x = layer(x)
        return x
