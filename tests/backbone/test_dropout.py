"""The backbone's dropout and attention: torch's contract, masks drawn from a quarter of the random numbers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tsformers.backbone.dropout import Dropout, attend, dropout, keep_mask

N = 1 << 20  # elements per mask: the binomial spread of a drop fraction is about 3e-4 at p = 0.1


def _drop_probability(p: float) -> float:
    return round(p * 65536) / 65536


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.9])
def test_each_of_the_four_lanes_of_a_draw_drops_with_probability_p(p):
    torch.manual_seed(0)
    dropped = ~keep_mask((N,), p)
    q = _drop_probability(p)
    # a lane whose sign bit were never set (a draw from [0, 2^63)) would drop nothing at p < 0.5
    for lane in range(4):
        share = dropped[lane::4].double().mean().item()
        assert abs(share - q) < 5 * math.sqrt(q * (1 - q) / (N // 4)), (lane, share, q)


def test_neighbouring_elements_are_dropped_independently():
    torch.manual_seed(1)
    p = 0.3
    dropped = ~keep_mask((N,), p)
    both = (dropped[:-1] & dropped[1:]).double().mean().item()  # neighbours in one draw and across draws
    q = _drop_probability(p) ** 2
    assert abs(both - q) < 5 * math.sqrt(q * (1 - q) / N)


def test_dropout_scales_the_kept_elements_by_the_inverse_keep_probability():
    torch.manual_seed(2)
    p = 0.1
    out = dropout(torch.ones(N), p)
    keep = 1 - _drop_probability(p)
    kept = out[out != 0]
    assert torch.allclose(kept, torch.full_like(kept, 1 / keep))
    assert abs(out.double().mean().item() - 1) < 5 * math.sqrt((1 - keep) / keep / N)  # unbiased, as torch's


def test_the_gradient_is_the_same_scaled_mask():
    torch.manual_seed(3)
    x = torch.randn(64, 7, 32, requires_grad=True)
    out = dropout(x, 0.2)
    out.sum().backward()
    scale = 1 / (1 - _drop_probability(0.2))
    assert torch.equal(x.grad, (out.detach() != 0).float() * scale)
    assert torch.equal(out.detach(), x.detach() * x.grad)


def test_the_same_seed_draws_the_same_masks_and_the_next_draw_another():
    x = torch.randn(64, 256)
    torch.manual_seed(4)
    first, second = dropout(x, 0.1), dropout(x, 0.1)
    torch.manual_seed(4)
    assert torch.equal(dropout(x, 0.1), first)
    assert not torch.equal(first, second)


def test_outside_training_at_p_0_and_p_1_it_is_torchs():
    x = torch.randn(8, 5)
    assert dropout(x, 0.5, training=False) is x
    assert dropout(x, 0.0) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    with pytest.raises(ValueError, match="between 0 and 1"):
        dropout(x, 1.5)


def test_the_module_is_an_nn_dropout_with_these_masks():
    module = Dropout(0.25)
    assert isinstance(module, nn.Dropout) and module.p == 0.25 and not module.state_dict()
    x = torch.randn(64, 256)
    torch.manual_seed(5)
    trained = module(x)
    torch.manual_seed(5)
    assert torch.equal(trained, dropout(x, 0.25))
    assert module.eval()(x) is x


def test_small_tensors_keep_torchs_dropout():
    x = torch.randn(32, 64)  # 2,048 elements: a streaming network's step, where torch's few ops are the faster
    torch.manual_seed(9)
    theirs = F.dropout(x, 0.1, True)
    torch.manual_seed(9)
    assert torch.equal(dropout(x, 0.1), theirs)


def _qkv(n=16, m=7, batch=(24, 4), d=16, seed=6):
    torch.manual_seed(seed)
    return torch.randn(*batch, n, d), torch.randn(*batch, m, d), torch.randn(*batch, m, d)


def _masks(n, m):
    torch.manual_seed(7)
    allowed = torch.rand(24, 1, n, m) > 0.4
    allowed[0, 0, 2] = False  # a query with no key: zeros, as torch gives
    return [None, allowed, torch.zeros(n, m).masked_fill(~allowed[1, 0], float("-inf"))]  # scores: 24·4·16·m


@pytest.mark.parametrize("keys", [7, 24])  # below 16 keys the three-op softmax, from 16 on torch's
@pytest.mark.parametrize("causal, which", [(False, 0), (True, 0), (False, 1), (False, 2)])
def test_attention_with_dropout_is_torchs_attention_with_these_masks(keys, causal, which):
    q, k, v = _qkv(m=keys)
    mask = _masks(16, keys)[which]
    for t in (q, k, v):
        t.requires_grad_(True)
    torch.manual_seed(8)
    out = attend(q, k, v, mask=mask, dropout_p=0.2, is_causal=causal)
    # the reference: torch's weights (its math kernel, no dropout), then the mask drawn after the same seed
    with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
        weights = F.scaled_dot_product_attention(q, k, torch.eye(keys).expand(*q.shape[:-2], keys, keys),
                                                 attn_mask=mask, is_causal=causal)   # (24, 4, 16, keys)
    torch.manual_seed(8)
    kept = keep_mask(weights.shape, 0.2).to(weights.dtype) / (1 - _drop_probability(0.2))
    reference = (weights * kept) @ v
    assert torch.allclose(out, reference, atol=1e-6)
    assert not out.isnan().any()
    grads = torch.autograd.grad(out.square().sum(), (q, k, v))
    expected = torch.autograd.grad(reference.square().sum(), (q, k, v))
    for got, want in zip(grads, expected):
        assert torch.isfinite(got).all() and torch.allclose(got, want, atol=1e-5)


def test_attention_without_dropout_is_scaled_dot_product_attention():
    q, k, v = _qkv()
    mask = _masks(16, 7)[1]
    assert torch.equal(attend(q, k, v, mask=mask), F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    small = [t[:2] for t in (q, k, v)]  # 2·4·16·7 scores: a streaming step's size, where torch's is the faster
    torch.manual_seed(10)
    theirs = F.scaled_dot_product_attention(*small, dropout_p=0.3)
    torch.manual_seed(10)
    assert torch.equal(attend(*small, dropout_p=0.3), theirs)
    with pytest.raises(ValueError, match="not both"):  # torch refuses the pair too
        attend(q, k, v, mask=mask, is_causal=True, dropout_p=0.1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("p", [0.05, 0.1, 0.5, 0.95])
def test_dropout_drops_exactly_the_elements_keep_mask_draws(p, dtype):
    # dropout builds its multiplier from the lanes in float arithmetic (faster on CPU than keep_mask's comparison):
    # the same draw must drop the same elements and scale the rest by the same number, to the bit
    x = torch.randn(40_000, dtype=torch.float64).to(dtype)
    torch.manual_seed(4)
    out = dropout(x, p)
    torch.manual_seed(4)
    kept = keep_mask(x.shape, p)
    assert 0 < int(kept.sum()) < x.numel()
    # the multiplier as torch's own CPU dropout makes it: the mask in x's dtype times the inverse keep probability
    assert torch.equal(out, x * kept.to(dtype).mul_(65536 / (65536 - round(p * 65536))))
