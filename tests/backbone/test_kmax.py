"""kMaX k-means cross-attention (backbone-catalog.md, section A): hard one-hot assignment, order-free centres."""

from __future__ import annotations

import torch
from torch import nn

from tsformers.backbone import build

D, K = 16, 5


def _kmax(**kwargs):
    torch.manual_seed(0)
    return build("reducer", "kmeans_xattn", d_model=D, n_clusters=K, **kwargs)


def test_shape_and_a_one_hot_assignment_per_token():
    kmax = _kmax(n_iters=2).eval()
    centres, assignments = kmax(torch.randn(3, 20, D), return_assignment=True)
    assert centres.shape == (3, K, D) and len(assignments) == 2
    for a in assignments:
        assert a.shape == (3, K, 20)
        assert set(a.unique().tolist()) <= {0.0, 1.0}
        torch.testing.assert_close(a.sum(dim=1), torch.ones(3, 20))       # exactly one cluster per token
    assert len({int(i) for i in assignments[0].argmax(1).flatten()}) > 1  # not all tokens in one cluster


def test_the_centre_update_is_the_sum_of_the_assigned_values():
    kmax = _kmax().eval()
    x = torch.randn(2, 11, D)
    with torch.no_grad():
        centres, (a,) = kmax(x, return_assignment=True)
        v = kmax.to_v(kmax.norm_tokens(x))
        c = kmax.centres.expand(2, -1, -1) + kmax.update(a @ v)
        expected = c + kmax.ffn(kmax.norm_ffn(c))
    torch.testing.assert_close(centres, expected)


def test_permuting_tokens_leaves_the_centres_unchanged():
    kmax = _kmax(n_iters=2).eval()
    x, perm = torch.randn(2, 13, D), torch.randperm(13)
    with torch.no_grad():
        torch.testing.assert_close(kmax(x), kmax(x[:, perm]), atol=1e-5, rtol=1e-5)


def test_gradients_reach_the_assignment_logits_only_with_straight_through():
    for straight_through, expect in [(True, True), (False, False)]:
        kmax = _kmax(straight_through=straight_through).train()
        kmax(torch.randn(2, 9, D)).square().mean().backward()
        got = kmax.to_q.weight.grad is not None and kmax.to_q.weight.grad.abs().sum() > 0
        assert got == expect
        assert kmax.to_v.weight.grad.abs().sum() > 0


def test_the_reducer_learns_a_toy_summary():
    kmax = _kmax().train()
    readout = nn.Linear(K * D, 1)
    optimiser = torch.optim.Adam([*kmax.parameters(), *readout.parameters()], lr=3e-3)
    losses = []
    for step in range(150):
        x = torch.randn(32, 12, D, generator=torch.Generator().manual_seed(step))
        target = x[..., :1].sum(1)                                         # (B, 1)
        loss = nn.functional.mse_loss(readout(kmax(x).flatten(1)), target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) < 0.5 * sum(losses[:10]), (losses[:3], losses[-3:])
