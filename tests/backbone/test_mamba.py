"""Mamba (catalog A): the parallel scan equals the recurrence; cost linear in N."""

from __future__ import annotations

import pytest
import torch

from tsformers.backbone import build
from tsformers.backbone.mixers.mamba import Mamba, _linear_scan

D = 32


@pytest.mark.parametrize("n", [1, 2, 7, 16, 33])
def test_the_parallel_prefix_scan_equals_the_loop(n):
    torch.manual_seed(0)
    a, b = torch.rand(2, n, 3, 4), torch.randn(2, n, 3, 4)
    h, loop = torch.zeros(2, 3, 4), []
    for t in range(n):
        h = a[:, t] * h + b[:, t]
        loop.append(h)
    torch.testing.assert_close(_linear_scan(a, b), torch.stack(loop, 1), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("n", [1, 13, 40])
def test_forward_equals_the_step_by_step_recurrence(n):
    torch.manual_seed(0)
    mamba = build("mixer", "mamba", d_model=D, causal=True, d_state=8).eval()
    x = torch.randn(2, n, D)
    with torch.no_grad():
        parallel = mamba(x)
        state, steps = None, []
        for t in range(n):
            y, state = mamba.step(x[:, t], state)
            steps.append(y)
    torch.testing.assert_close(torch.stack(steps, 1), parallel, atol=1e-5, rtol=1e-4)
    assert state[1].shape == (2, 2 * D, 8)  # O(1) state whatever n


def test_unidirectional_is_causal_bidirectional_sees_both_sides():
    torch.manual_seed(0)
    x = torch.randn(1, 12, D)
    changed = x.clone()
    changed[:, 8] += 1.0
    uni, bi = Mamba(D).eval(), Mamba(D, bidirectional=True).eval()
    with torch.no_grad():
        torch.testing.assert_close(uni(x)[:, :8], uni(changed)[:, :8])
        assert (bi(x)[:, :8] - bi(changed)[:, :8]).abs().amax(-1).min() > 0
    with pytest.raises(ValueError, match="causal"):
        Mamba(D, causal=True, bidirectional=True)
    with pytest.raises(ValueError, match="bidirectional"):
        bi.step(x[:, 0])


def test_activation_memory_grows_linearly_in_n():
    torch.manual_seed(0)
    mamba = Mamba(16, d_state=4, expand=1)

    def saved(n):
        total = 0

        def pack(t):
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            mamba(torch.randn(1, n, 16, requires_grad=True))
        return total

    ratio = saved(2048) / saved(512)
    assert 3.5 < ratio < 4.5, ratio
