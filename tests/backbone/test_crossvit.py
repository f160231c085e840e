"""CrossViT fusion and two-branch encoder (backbone-catalog.md, section A): information flows through CLS only."""

from __future__ import annotations

import math

import torch
from torch import nn

from tsformers.backbone import build


def _fusion(**kwargs):
    torch.manual_seed(0)
    return build("fusion", "crossvit_fusion", d_model=16, d_y=24, n_heads=4, **kwargs).eval()


def test_fusion_keeps_the_shapes_of_both_branches():
    fusion = _fusion(fusion_depth=2)
    x, y = torch.randn(2, 1 + 12, 16), torch.randn(2, 1 + 3, 24)
    x_out, y_out = fusion(x, y)
    assert x_out.shape == x.shape and y_out.shape == y.shape


def test_changing_branch_b_patches_changes_cls_a_but_never_a_patches():
    fusion = _fusion()
    x, y = torch.randn(2, 1 + 12, 16), torch.randn(2, 1 + 3, 24)
    y_changed = y.clone()
    y_changed[:, 1:] += torch.randn_like(y_changed[:, 1:])
    with torch.no_grad():
        (a, b), (a2, b2) = fusion(x, y), fusion(x, y_changed)
    assert not torch.allclose(a[:, 0], a2[:, 0])                       # CLS_A read B's patches
    torch.testing.assert_close(a[:, 1:], a2[:, 1:], rtol=0, atol=0)   # A's patches untouched
    torch.testing.assert_close(a[:, 1:], x[:, 1:], rtol=0, atol=0)
    torch.testing.assert_close(b2[:, 1:], y_changed[:, 1:], rtol=0, atol=0)
    # symmetric: B's CLS reads A's patches
    x_changed = x.clone()
    x_changed[:, 5] += torch.randn(16)                                 # (a constant shift would vanish in LN)
    with torch.no_grad():
        _, b3 = fusion(x_changed, y)
    assert not torch.allclose(b[:, 0], b3[:, 0])


def test_fusion_learns_to_move_information_between_branches():
    fusion = _fusion().train()
    readout = nn.Linear(16, 1)
    optimiser = torch.optim.Adam([*fusion.parameters(), *readout.parameters()], lr=3e-3)
    losses = []
    for step in range(120):
        g = torch.Generator().manual_seed(step)
        x, y = torch.randn(32, 1 + 6, 16, generator=g), torch.randn(32, 1 + 4, 24, generator=g)
        target = y[:, 1:, 0].mean(dim=1, keepdim=True)                # a fact only B's patches hold
        loss = nn.functional.mse_loss(readout(fusion(x, y)[0][:, 0]), target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) < 0.5 * sum(losses[:10]), (losses[:3], losses[-3:])


def test_two_branch_encoder_shapes_and_learns_a_seasonal_series():
    torch.manual_seed(0)
    encoder = build("fusion", "crossvit_two_branch", d_small=16, d_large=32, patch_small=4, patch_large=16,
                    n_heads=4, depth=1)
    lookback, horizon = 48, 8
    small, large = encoder(torch.randn(3, lookback))
    assert small.shape == (3, 1 + encoder.embed_small.n_patches(lookback), 16)
    assert large.shape == (3, 1 + encoder.embed_large.n_patches(lookback), 32)

    t = torch.arange(2000, dtype=torch.float32)
    series = torch.sin(2 * math.pi * t / 12) + 0.5 * torch.sin(2 * math.pi * t / 7)
    windows = series.unfold(0, lookback + horizon, 1)                 # (W, L + H)
    head = nn.Linear(16 + 32, horizon)
    optimiser = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=3e-3)
    losses = []
    for step in range(100):
        batch = windows[torch.randint(0, len(windows), (32,), generator=torch.Generator().manual_seed(step))]
        loss = nn.functional.mse_loss(head(encoder.features(batch[:, :lookback])), batch[:, lookback:])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) < 0.3 * sum(losses[:10]), (losses[:3], losses[-3:])
