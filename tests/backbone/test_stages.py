"""Token-reducing stages: ceil(N/stride) tokens, Q-pooling keeps K and V at N, the ResNAS skip path."""

from __future__ import annotations

import math

import pytest
import torch

from tsformers.backbone import available, build
from tsformers.backbone.stacks.stages import avg_pool_tokens


def _stage(name, **kw):
    torch.manual_seed(0)
    kw.setdefault("stride", 2)
    return build("stage", name, d_in=16, d_out=32, **kw).eval()


@pytest.mark.parametrize("name", ["resnas_stage", "qpool_stage"])
@pytest.mark.parametrize("n,stride", [(8, 2), (9, 2), (12, 3), (5, 4)])
def test_a_stage_keeps_n_over_stride_tokens_and_widens(name, n, stride):
    assert name in available("stage")
    stage = _stage(name, stride=stride).train()
    x = torch.randn(2, n, 16, requires_grad=True)
    y = stage(x)
    assert y.shape == (2, math.ceil(n / stride), 32)
    y.square().mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_qpool_pools_only_the_queries():
    stage = _stage("qpool_stage")
    shapes = {}
    for name in ("to_q", "to_k", "to_v"):
        getattr(stage, name).register_forward_hook(lambda _, __, out, name=name: shapes.update({name: out.shape}))
    with torch.no_grad():
        y = stage(torch.randn(2, 10, 16))
    assert shapes["to_k"] == shapes["to_v"] == (2, 10, 32)            # K, V at N
    assert y.shape == (2, 5, 32)                                       # queries and output at N/2


def test_qpool_mask_units_and_causality_hide_the_right_keys():
    x = torch.randn(1, 16, 16)
    changed = x.clone()
    changed[:, 8:] += 3 * torch.randn_like(changed[:, 8:])             # the second mask unit of 8 tokens
    local = _stage("qpool_stage", mask_unit=8)
    with torch.no_grad():
        a, b = local(x), local(changed)
        torch.testing.assert_close(a[:, :4], b[:, :4])                 # pooled tokens 0..3 = unit 0
        assert not torch.allclose(a[:, 4:], b[:, 4:])
        glob = _stage("qpool_stage")
        assert not torch.allclose(glob(x)[:, :4], glob(changed)[:, :4])
    causal = _stage("qpool_stage", causal=True)
    later = x.clone()
    later[:, 6:] += 3 * torch.randn_like(later[:, 6:])
    with torch.no_grad():
        a, b = causal(x), causal(later)
    torch.testing.assert_close(a[:, :3], b[:, :3])
    assert not torch.allclose(a[:, 3:], b[:, 3:])


def test_resnas_with_the_conv_branch_zeroed_is_its_skip_path():
    stage = _stage("resnas_stage", kernel_size=3)
    x = torch.randn(2, 9, 16)
    with torch.no_grad():
        full = stage(x)
        stage.conv.weight.zero_()
        stage.conv.bias.zero_()
        skip = stage(x)
        expected = stage.skip(torch.stack([x[:, i:i + 2].mean(1) for i in range(0, 9, 2)], dim=1))
    torch.testing.assert_close(skip, expected)
    torch.testing.assert_close(avg_pool_tokens(x, 2)[:, -1], x[:, -1])   # the partial window
    assert not torch.allclose(full, skip)


def test_resnas_convolution_is_causal_at_the_pooled_resolution_and_blocks_run_after():
    stage = _stage("resnas_stage", kernel_size=4, n_layers=1, causal=True)
    x = torch.randn(1, 12, 16)
    changed = x.clone()
    changed[:, 6:] += 3 * torch.randn_like(changed[:, 6:])
    with torch.no_grad():
        a, b = stage(x), stage(changed)
    torch.testing.assert_close(a[:, :3], b[:, :3])
    assert not torch.allclose(a[:, 3:], b[:, 3:])
    assert len(stage.blocks) == 1
