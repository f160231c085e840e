"""Learnable Token Merging (backbone-catalog.md, section A): N' convex merges, a trained mask module."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tsformers.backbone import build

D = 16


def _ltm(**kwargs):
    torch.manual_seed(0)
    return build("reducer", "ltm", d_model=D, **kwargs)


@pytest.mark.parametrize("training", [True, False])
def test_n_prime_tokens_with_convex_merge_columns(training):
    ltm = _ltm(n_out=5).train(training)
    x = torch.randn(3, 17, D)
    merged, m = ltm(x, return_merge=True)
    assert merged.shape == (3, 5, D) and m.shape == (3, 17, 5)
    assert (m >= 0).all()
    torch.testing.assert_close(m.sum(dim=1), torch.ones(3, 5), atol=1e-4, rtol=0)
    torch.testing.assert_close(merged, m.transpose(1, 2) @ x)


def test_ratio_gives_ceil_ratio_n_tokens_at_any_length():
    ltm = _ltm(ratio=0.25).eval()
    for n, n_out in [(1, 1), (7, 2), (16, 4), (48, 12)]:
        assert ltm(torch.randn(2, n, D)).shape == (2, n_out, D)
    with pytest.raises(ValueError, match="exactly one"):
        build("reducer", "ltm", d_model=D, n_out=3, ratio=0.5)


def test_the_mask_module_receives_gradient_and_the_merge_is_order_free():
    ltm = _ltm(n_out=4).train()
    ltm(torch.randn(2, 12, D)).square().mean().backward()
    grads = [p.grad for p in ltm.mask.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0
    ltm.eval()
    x, perm = torch.randn(2, 12, D), torch.randperm(12)
    with torch.no_grad():
        torch.testing.assert_close(ltm(x), ltm(x[:, perm]), atol=1e-5, rtol=1e-5)


def test_the_merge_learns_a_toy_summary():
    ltm = _ltm(n_out=3).train()
    readout = nn.Linear(3 * D, 2)
    optimiser = torch.optim.Adam([*ltm.parameters(), *readout.parameters()], lr=3e-3)
    losses = []
    for step in range(150):
        x = torch.randn(32, 12, D, generator=torch.Generator().manual_seed(step))
        # mean over tokens of channel 0, and mean of channel 1 over the tokens where channel 2 > 0
        target = torch.stack([x[..., 0].mean(1), (x[..., 1] * (x[..., 2] > 0)).mean(1)], dim=-1) * 3
        loss = nn.functional.mse_loss(readout(ltm(x).flatten(1)), target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) < 0.5 * sum(losses[:10]), (losses[:3], losses[-3:])
