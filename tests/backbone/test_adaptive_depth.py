"""Adaptive depth: a forced depth runs exactly k blocks and returns exit k; labels; the gate."""

from __future__ import annotations

import torch

from tsformers.backbone import build
from tsformers.backbone.stacks.adaptive_depth import AdaptiveDepth

D, L = 32, 4


def _stack(**kw):
    torch.manual_seed(0)
    return build("stack", "adaptive_depth", d_model=D, n_heads=4, d_ff=64, n_layers=L, dropout=0.0, **kw).eval()


def _count_calls(stack):
    calls = [0] * L
    for i, layer in enumerate(stack.layers):
        layer.register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
    return calls


def test_a_forced_depth_runs_exactly_k_blocks_and_returns_exit_k():
    x = torch.randn(3, 6, D)
    for k in range(1, L + 1):
        stack = _stack()
        with torch.no_grad():
            exits = stack.exit_outputs(x)
            calls = _count_calls(stack)
            stack.forced_depth = k
            y = stack(x)
        assert calls == [1] * k + [0] * (L - k)
        torch.testing.assert_close(y, exits[k - 1])
    assert not torch.allclose(exits[0], exits[-1])


def test_the_gate_routes_each_window_to_its_own_depth():
    stack = _stack()
    x = torch.randn(4, 6, D)
    depths = torch.tensor([1, 3, 2, 3])
    stack.predict_depth = lambda _: depths                          # force the gate per window
    stack.gate_fitted.fill_(True)
    with torch.no_grad():
        exits = stack.exit_outputs(x)
        calls = _count_calls(stack)
        y = stack(x)
    for b, k in enumerate(depths.tolist()):
        torch.testing.assert_close(y[b], exits[k - 1][b])
    assert calls == [1, 1, 1, 0]                                    # the deepest window needs 3 blocks


def test_depth_labels_pick_the_first_good_enough_exit():
    losses = torch.tensor([[1.0, 0.50, 0.52, 0.49], [0.3, 0.31, 0.9, 0.9], [2.0, 1.5, 1.0, 0.5]])
    assert AdaptiveDepth.depth_labels(losses, tolerance=0.1).tolist() == [2, 1, 4]
    assert AdaptiveDepth.depth_labels(losses, tolerance=0.0).tolist() == [4, 1, 4]
    assert AdaptiveDepth.depth_labels(losses, cost_per_layer=0.05).tolist() == [2, 1, 4]


def test_the_gate_learns_depth_labels_and_plain_forward_is_full_depth_until_then():
    stack = _stack()
    x = torch.randn(64, 6, D)
    x[32:] *= 4                                                     # wide windows want depth 3
    labels = torch.where(torch.arange(64) < 32, 1, 3)
    with torch.no_grad():
        full = stack.exit_outputs(x)[-1]
        torch.testing.assert_close(stack(x), full)                  # gate not fitted yet: all layers
    stack.fit_gate(x, labels, steps=150)
    assert bool(stack.gate_fitted)
    assert (stack.predict_depth(x) == labels).float().mean() > 0.9
    assert abs(stack.exit_weights().sum().item() - 1) < 1e-6 and stack.exit_weights().diff().gt(0).all()
