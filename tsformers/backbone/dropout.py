"""Dropout and attention with dropout, made cheap on CPU: masks from a quarter of the random numbers.

On CPU, torch draws a dropout mask with one Mersenne-Twister number per element
(``bernoulli_``); in a small network that is most of the time dropout takes, and dropout
was about a third of the default Gateformer's training step (ETTh1 shape, one thread).
Here one 64-bit draw of the same generator gives four independent 16-bit lanes, and an
element is dropped when its lane falls below ``round(p · 65536)``: a Bernoulli mask with
drop probability p rounded to a multiple of 1/65536 (0.1 becomes 6554/65536 = 0.100006),
the kept elements scaled by the inverse of the exact keep probability, so that the output
is unbiased as torch's. Same seed, same masks; a different stream from torch's own, so a
fit's numbers are not those of ``nn.Dropout``'s. Tensors of fewer than 8,192 elements (a
streaming network's single step) keep torch's dropout, which is the faster there.

Attention with dropout on CPU is torch's unfused path in any case (its fused kernel takes
no dropout); :func:`attend` is that path with these masks, and for fewer than 16 keys a
softmax in three ops, since torch's CPU kernel is about ten times slower there than at 16.
On other devices, and outside training, both functions are torch's own (a CUDA dropout is
one fused kernel).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Dropout", "attend", "dropout"]

_LANES = 65536  # the values of one 16-bit lane
#: below this many elements (a mask, or attention scores) torch's own is the faster: its fewer ops cost less than
#: the random numbers saved (measured here, forward and backward: break-even between 2,048 and 8,192), which
#: matters to the streaming networks' step-by-step attention and dropout
_MIN_ELEMENTS = 8192


def _drop_threshold(p: float) -> int:
    """The lane values below which an element is dropped: p of the 65,536, rounded."""
    return round(p * _LANES)


def _lanes(n: int, device: torch.device | str) -> Tensor:
    """``n`` independent uniform 16-bit integers, (n,) int16 in [-2^15, 2^15), four to a draw of the generator."""
    # randint over the whole int64 range: every bit of a draw is uniform, so each 16-bit lane is
    bits = torch.randint(-2**63, 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=device)  # (ceil(n/4),)
    return bits.view(torch.int16)[:n]


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, *, device: torch.device | str = "cpu") -> Tensor:
    """A boolean mask of ``shape``, each element False with probability ``round(p·65536)/65536``, independently.

    Drawn from torch's default generator of ``device`` (``torch.manual_seed`` repeats it).
    """
    lanes = _lanes(math.prod(shape), device)                                          # (n,)
    return (lanes >= _drop_threshold(p) - _LANES // 2).view(shape)


def _scaled_keep(shape: torch.Size, p: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``keep_mask(shape, p)`` of the same draw as dropout's multiplier: the inverse keep probability where kept,
    else 0.

    The lanes are integers, exact in float32, so ``lane - (t - 1)`` clamped to [0, 1] is exactly 1 where
    ``lane >= t`` and exactly 0 elsewhere: keep_mask's comparison in float operations, which vectorise on CPU,
    where a comparison to bool and bool to float do not (six times the time of these for the same elements).
    """
    dropped = _drop_threshold(p)
    threshold = dropped - _LANES // 2                                                  # keep where lane >= threshold
    exact = dtype if dtype in (torch.float32, torch.float64) else torch.float32     # every int16 exact in it
    kept = _lanes(math.prod(shape), device).to(exact).sub_(threshold - 1).clamp_(0, 1)  # (n,) 0.0 or 1.0
    return kept.mul_(_LANES / (_LANES - dropped)).to(dtype).view(shape)


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """Inverted dropout of ``x`` with drop probability ``p`` (``F.dropout``'s contract; masks as described above)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, got p={p}")
    if not training or p == 0.0:  # first: an exported (eval) graph must not depend on the batch's size
        return x
    if x.device.type != "cpu" or x.numel() < _MIN_ELEMENTS:
        return F.dropout(x, p, training)
    dropped = _drop_threshold(p)
    if dropped == 0:
        return x
    if dropped == _LANES:
        return x * 0.0
    # as torch's own CPU dropout: the scaled mask in x's dtype, kept by autograd for the backward
    noise = _scaled_keep(x.shape, p, x.dtype, x.device)
    return x * noise


class Dropout(nn.Dropout):
    """``nn.Dropout`` with the masks of :func:`dropout`: the same module (``p``, ``inplace`` ignored), drawn faster."""

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)


def attend(q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None = None, dropout_p: float = 0.0,
           is_causal: bool = False, scale: float | None = None) -> Tensor:
    """``F.scaled_dot_product_attention(q, k, v, mask, dropout_p, is_causal, scale)``, its dropout from :func:`dropout`.

    q: (..., N, d), k: (..., M, d), v: (..., M, d_v) -> (..., N, d_v). Without dropout, off
    CPU, or for fewer than 8,192 scores, it is torch's (a fused kernel where one fits); with
    dropout on CPU torch takes its unfused path anyway, which this one is, but for the mask:
    softmax(q·kᵀ·scale + mask), a row without a key all zeros (as torch's), dropout, · v.
    ``mask``: boolean (True where a query may attend) or additive, broadcastable to (..., N, M).
    """
    if dropout_p == 0.0 or q.device.type != "cpu" or q.shape[:-1].numel() * k.shape[-2] < _MIN_ELEMENTS:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal,
                                              scale=scale)
    if is_causal and mask is not None:
        raise ValueError("attend takes a mask or is_causal=True, not both (as scaled_dot_product_attention); "
                         "fold the causal mask into the mask")
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = (q @ k.transpose(-2, -1)).mul_(scale)                       # (..., N, M)
    if is_causal:  # top-left aligned, as torch's
        mask = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
    if mask is None:
        return dropout(_softmax(scores), dropout_p) @ v                  # (..., N, d_v)
    scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    # a query with no key to attend to gets zeros, not NaN (torch's _safe_softmax), and a finite gradient
    has_key = (scores > float("-inf")).any(-1, keepdim=True)             # (..., N, 1)
    weights = _softmax(scores.masked_fill(~has_key, 0.0)) * has_key
    return dropout(weights, dropout_p) @ v                               # (..., N, d_v)


#: below this many keys torch's CPU softmax over the last dimension takes about ten times longer than over 16 of
#: them (torch 2.13, AVX-512: 7.1 against 0.7 ms forward and backward for the same 1.6 million scores), and the
#: three-op form below about half torch's time; from 16 keys on torch's kernel is the faster by far
_FEW_KEYS = 16


def _softmax(scores: Tensor) -> Tensor:
    """Softmax over the last dimension: torch's, or for rows of fewer than 16 keys on CPU the same in three ops."""
    if scores.shape[-1] >= _FEW_KEYS or scores.device.type != "cpu":
        return torch.softmax(scores, dim=-1)
    e = (scores - scores.detach().amax(-1, keepdim=True)).exp()        # the shift only guards exp from overflow
    return e / e.sum(-1, keepdim=True)
