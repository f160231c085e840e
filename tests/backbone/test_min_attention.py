"""Minimal attention (catalog A): symmetric scores, convex combinations without W_V/W_O."""

from __future__ import annotations

import pytest
import torch

from tsformers.backbone import build

D, H = 32, 4


def test_symmetric_scores_equal_their_transpose_with_about_half_the_parameters():
    torch.manual_seed(0)
    x = torch.randn(2, 9, D)
    sym = build("mixer", "min_attention", d_model=D, n_heads=H, symmetric=True)
    scores = sym.scores(x)
    torch.testing.assert_close(scores, scores.transpose(-1, -2))
    plain = build("mixer", "min_attention", d_model=D, n_heads=H)
    assert not torch.allclose(plain.scores(x), plain.scores(x).transpose(-1, -2))
    d = D // H
    assert sym.w_qk.numel() == H * d * (d + 1) // 2 and plain.w_qk.numel() == H * d * d
    assert sum(p.numel() for p in plain.parameters()) == H * d * d  # no W_Q, W_K, W_V, W_O


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("symmetric", [False, True])
def test_equal_tokens_give_that_token(symmetric, causal):
    torch.manual_seed(0)
    mixer = build("mixer", "min_attention", d_model=D, n_heads=H, symmetric=symmetric, causal=causal)
    v = torch.randn(2, 1, D)
    torch.testing.assert_close(mixer(v.expand(2, 7, D)), v.expand(2, 7, D))
    # outputs are convex combinations: inside the per-channel range of the inputs
    x = torch.randn(2, 7, D)
    y = mixer(x)
    assert (y <= x.amax(1, keepdim=True) + 1e-6).all() and (y >= x.amin(1, keepdim=True) - 1e-6).all()


def test_with_value_and_output_projections_it_is_not_convex():
    torch.manual_seed(0)
    mixer = build("mixer", "min_attention", d_model=D, n_heads=H, drop_vo=False)
    v = torch.randn(2, 1, D)
    assert not torch.allclose(mixer(v.expand(2, 7, D)), v.expand(2, 7, D), atol=1e-3)
