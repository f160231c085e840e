"""Symmetric per-output-channel weight quantisation: fake-quant for training, packed storage for inference.

``fake_quant`` rounds a weight to ``bits`` (8 or 4) on a per-row scale and
passes the gradient straight through (Bengio et al., 2013; Jacob et al., CVPR
2018), so a network trains aware of the rounding. ``QuantLinear`` stores the
same integers (int8, or two int4 per byte) and the scales, and multiplies with
the dequantised weight: the module and its saved state are physically smaller
(about 1/4 or 1/8 of the fp32 weight), and it computes exactly what the
fake-quantised layer computed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["QuantLinear", "fake_quant", "quantize"]


def quantize(weight: Tensor, bits: int) -> tuple[Tensor, Tensor]:
    """Integers in ``[-(2^(b-1) - 1), 2^(b-1) - 1]`` and the per-row scale: ``weight ≈ q * scale[:, None]``."""
    qmax = 2 ** (bits - 1) - 1
    scale = weight.detach().abs().amax(dim=1).clamp_min(1e-12) / qmax         # (out,)
    q = torch.clamp(torch.round(weight / scale[:, None]), -qmax, qmax)
    return q, scale


def fake_quant(weight: Tensor, bits: int) -> Tensor:
    """The weight rounded to ``bits`` (per row) with a straight-through gradient; fp32 (``bits >= 32``) as is."""
    if bits >= 32:
        return weight
    q, scale = quantize(weight, bits)
    return weight + (q * scale[:, None] - weight).detach()


class QuantLinear(nn.Module):
    """A Linear layer with int8 or int4 weights (per-output-channel scales) and an fp32 bias.

    int4 weights are packed two per byte. ``forward`` dequantises and calls
    ``F.linear``; the result equals the fake-quantised fp32 layer's.
    """

    def __init__(self, in_features: int, out_features: int, bits: int = 8, bias: bool = True):
        super().__init__()
        assert bits in (4, 8), f"bits must be 8 or 4, got {bits}"
        self.in_features, self.out_features, self.bits = in_features, out_features, bits
        n_bytes = in_features if bits == 8 else (in_features + 1) // 2
        self.register_buffer("qweight", torch.zeros(out_features, n_bytes, dtype=torch.int8 if bits == 8 else torch.uint8))
        self.register_buffer("scale", torch.ones(out_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    @classmethod
    def from_linear(cls, linear: nn.Linear, bits: int) -> "QuantLinear":
        layer = cls(linear.in_features, linear.out_features, bits, bias=linear.bias is not None)
        q, scale = quantize(linear.weight.detach().float(), bits)
        q = q.to(torch.int8)
        if bits == 4:
            if q.shape[1] % 2:
                q = F.pad(q, (0, 1))
            nib = (q & 0x0F).to(torch.uint8)                                    # two's complement nibbles
            q = nib[:, 0::2] | (nib[:, 1::2] << 4)
        layer.qweight.copy_(q)
        layer.scale.copy_(scale)
        if linear.bias is not None:
            with torch.no_grad():
                layer.bias.copy_(linear.bias)
        return layer.to(linear.weight.device)

    def dequantized(self) -> Tensor:
        q = self.qweight
        if self.bits == 4:
            lo, hi = (q & 0x0F).to(torch.int16), (q >> 4).to(torch.int16)
            q = torch.stack([lo, hi], dim=-1).reshape(q.shape[0], -1)[:, : self.in_features]
            q = torch.where(q > 7, q - 16, q)
        return q.to(self.scale.dtype) * self.scale[:, None]

    @property
    def weight(self) -> Tensor:
        return self.dequantized()

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.dequantized(), self.bias)

    def spec(self) -> dict:
        """Constructor arguments (the :mod:`tsformers.runtime.edits` record)."""
        return {"in_features": self.in_features, "out_features": self.out_features, "bits": self.bits,
                "bias": self.bias is not None}

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}"
