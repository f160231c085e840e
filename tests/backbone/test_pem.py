"""PEM prototype cross-attention (backbone-catalog.md, section A): only the argmax tokens matter."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tsformers.backbone import build

D, HEADS, K = 16, 4, 3


def _pem(**kwargs):
    torch.manual_seed(0)
    return build("reducer", "pem_xattn", d_model=D, n_heads=HEADS, n_queries=K, **kwargs).eval()


def test_shape_and_changing_a_non_selected_token_leaves_the_output_unchanged():
    pem = _pem()
    x = torch.randn(2, 30, D)
    out, index = pem(x, return_index=True)
    assert out.shape == (2, K, D) and index.shape == (2, HEADS, K)
    for b in range(2):
        chosen = set(index[b].flatten().tolist())
        assert len(chosen) < 30
        other, donor = [i for i in range(30) if i not in chosen][:2]
        changed = x.clone()
        changed[b, other] = x[b, donor]            # a copy of another loser: a new value, still not the argmax
        out2, index2 = pem(changed, return_index=True)
        assert torch.equal(index2, index)
        torch.testing.assert_close(out2, out, rtol=0, atol=0)
        chosen_token = next(iter(chosen))
        changed = x.clone()
        changed[b, chosen_token] += torch.randn(D)
        assert not torch.allclose(pem(changed)[b], out[b])                # a selected token does matter


def test_the_gradient_reaches_only_the_selected_tokens():
    pem = _pem().train()
    x = torch.randn(2, 25, D, requires_grad=True)
    out, index = pem(x, return_index=True)
    out.square().sum().backward()
    touched = x.grad.abs().sum(-1) > 0                                       # (B, N)
    for b in range(2):
        expected = torch.zeros(25, dtype=torch.bool)
        expected[index[b].flatten()] = True
        assert torch.equal(touched[b], expected)


def test_the_mask_keeps_masked_tokens_out():
    pem = _pem()
    x = torch.randn(2, 10, D)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[:, ::2] = False
    _, index = pem(x, mask=mask, return_index=True)
    assert (index % 2 == 1).all()
    with pytest.raises(AssertionError, match="mask must be"):
        pem(x, mask=mask[:, :5])


def test_the_reducer_learns_a_toy_task():
    # every token carries the series' level s along a fixed direction; whichever token a query
    # picks, the reduced tokens must expose s (the selection itself gets no gradient, by design)
    pem = _pem().train()
    readout = nn.Linear(K * D, 1)
    optimiser = torch.optim.Adam([*pem.parameters(), *readout.parameters()], lr=3e-3)
    direction = torch.randn(D, generator=torch.Generator().manual_seed(123))
    losses = []
    for step in range(150):
        g = torch.Generator().manual_seed(step)
        level = torch.randn(32, 1, generator=g)
        x = 0.5 * torch.randn(32, 12, D, generator=g) + level[:, :, None] * direction
        loss = nn.functional.mse_loss(readout(pem(x).flatten(1)), level)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) < 0.3 * sum(losses[:10]), (losses[:3], losses[-3:])
