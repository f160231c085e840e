"""Sliding-window attention: the blocked O(N·w) path equals the dense band-masked reference."""

from __future__ import annotations

import pytest
import torch

from tsformers.backbone import build


def window_attention(causal, window=16):
    torch.manual_seed(0)
    m = build("mixer", "sliding_window", d_model=32, n_heads=4, causal=causal, window=window, n_persistent=2).eval()
    with torch.no_grad():
        m.rel_bias.normal_()
    return m


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n", [65, 200, 257])
def test_blocked_equals_dense(causal, n):
    m = window_attention(causal)
    x = torch.randn(3, n, 32)
    with torch.no_grad():
        torch.testing.assert_close(m(x), m._forward_dense(x), atol=1e-5, rtol=1e-4)


def test_the_blocked_path_never_scores_more_than_three_windows_of_keys(monkeypatch):
    m = window_attention(causal=False)
    widths = []
    original = m._attend

    def spy(x, context, distance, allowed):
        widths.append(context.shape[1])
        return original(x, context, distance, allowed)

    monkeypatch.setattr(m, "_attend", spy)
    with torch.no_grad():
        m(torch.randn(1, 4096, 32))
    assert widths and max(widths) <= 3 * m.window


def test_blocked_gradients_match_dense():
    m = window_attention(causal=True)
    x = torch.randn(2, 100, 32, requires_grad=True)
    g1, = torch.autograd.grad(m(x).square().sum(), x)
    g2, = torch.autograd.grad(m._forward_dense(x).square().sum(), x)
    torch.testing.assert_close(g1, g2, atol=1e-4, rtol=1e-4)
