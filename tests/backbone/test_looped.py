"""Looped transformer: parameters constant in T, T=0 is pre -> post, T changes the output."""

from __future__ import annotations

import torch

from tsformers.backbone import build

D = 32


def _looped(**kw):
    torch.manual_seed(0)
    return build("stack", "looped", d_model=D, n_heads=4, d_ff=64, n_layers=2, dropout=0.0, **kw).eval()


def _count(module):
    return sum(p.numel() for p in module.parameters())


def test_parameters_do_not_depend_on_the_number_of_loops():
    assert _count(_looped(n_loops=0)) == _count(_looped(n_loops=1)) == _count(_looped(n_loops=16))
    assert _count(_looped(n_pre=2)) > _count(_looped(n_pre=1))


def test_zero_loops_is_pre_then_post():
    stack = _looped(n_loops=0)
    x = torch.randn(2, 9, D)
    with torch.no_grad():
        expected = stack.post[0](stack.pre[0](x))
        torch.testing.assert_close(stack(x), expected)
        torch.testing.assert_close(_looped(n_loops=5)(x, n_loops=0), expected)


def test_the_output_changes_with_the_number_of_loops_set_after_construction():
    stack = _looped(n_loops=1)
    x = torch.randn(2, 9, D)
    with torch.no_grad():
        outs = []
        for t in (1, 2, 4):
            stack.n_loops = t
            outs.append(stack(x))
    assert not torch.allclose(outs[0], outs[1]) and not torch.allclose(outs[1], outs[2])


def test_input_injection_re_feeds_the_pre_block_output():
    stack = _looped(n_loops=3)
    x = torch.randn(2, 9, D)
    with torch.no_grad():
        plain = stack(x)
        stack.inject.fill_(1.0)
        injected = stack(x)
        e = stack.pre[0](x)
        h = e
        for _ in range(3):
            h = stack.loop(h + e)
        torch.testing.assert_close(injected, stack.post[0](h))
    assert not torch.allclose(plain, injected)
    assert _looped(input_injection=False).inject is None


def test_the_loop_block_gets_gradient_from_every_loop():
    stack = _looped(n_loops=3).train()
    stack(torch.randn(2, 9, D)).square().mean().backward()
    assert stack.loop.ffn.fc1.weight.grad.abs().sum() > 0 and stack.inject.grad.abs().sum() > 0
