"""SLAB (catalog A): simplified linear attention ``sla`` and progressive RepBN ``prepbn``."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tsformers.backbone import build
from tsformers.backbone.mixers.slab import PRepBN, SimplifiedLinearAttention

D, H = 32, 4


def _saved_bytes(fn) -> int:
    """Bytes of every tensor autograd saves for backward: the activation memory of ``fn``."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


@pytest.mark.parametrize("causal", [False, True])
def test_activation_memory_grows_linearly_in_n(causal):
    torch.manual_seed(0)
    sla = SimplifiedLinearAttention(D, n_heads=H, causal=causal)
    small = _saved_bytes(lambda: sla(torch.randn(1, 1024, D, requires_grad=True)))
    large = _saved_bytes(lambda: sla(torch.randn(1, 4096, D, requires_grad=True)))
    assert 3.5 < large / small < 4.5, large / small
    # the same measurement sees the quadratic growth of an explicit N×N score matrix
    def quadratic(n):
        q = torch.randn(1, n, D, requires_grad=True)
        return (q @ q.transpose(1, 2)).softmax(-1) @ q
    assert _saved_bytes(lambda: quadratic(1024)) * 10 < _saved_bytes(lambda: quadratic(4096))


def test_non_causal_equals_the_quadratic_formula():
    torch.manual_seed(0)
    sla = SimplifiedLinearAttention(D, n_heads=H, conv_kernel=0).eval()
    x = torch.randn(2, 10, D)
    q, k, v = (t.view(2, 10, H, D // H).transpose(1, 2) for t in sla.qkv(x).chunk(3, -1))
    scores = q.relu() @ k.relu().transpose(-1, -2)                              # (B, H, N, N)
    out = (scores @ v) / (scores.sum(-1, keepdim=True) + sla.eps)
    expected = sla.proj(out.transpose(1, 2).reshape(2, 10, D))
    torch.testing.assert_close(sla(x), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("n, chunk", [(37, 8), (5, 64), (16, 4)])
def test_causal_parallel_form_equals_the_step_by_step_recurrence(n, chunk):
    torch.manual_seed(0)
    sla = SimplifiedLinearAttention(D, n_heads=H, causal=True, conv_kernel=3, chunk_size=chunk).eval()
    x = torch.randn(2, n, D)
    with torch.no_grad():
        parallel = sla(x)
        state, steps = None, []
        for t in range(n):
            y, state = sla.step(x[:, t], state)
            steps.append(y)
    torch.testing.assert_close(torch.stack(steps, 1), parallel, atol=1e-5, rtol=1e-4)
    assert state["kv"].shape == (2, H, D // H, D // H)  # O(1) state, whatever n


def test_without_the_conv_it_is_order_free_and_with_it_not():
    torch.manual_seed(0)
    x, perm = torch.randn(2, 9, D), torch.randperm(9)
    free = build("mixer", "sla", d_model=D, n_heads=H, conv_kernel=0).eval()
    assert free.requires_order is False
    torch.testing.assert_close(free(x)[:, perm], free(x[:, perm]), atol=1e-5, rtol=1e-4)
    ordered = build("mixer", "sla", d_model=D, n_heads=H).eval()
    assert ordered.requires_order is True
    assert not torch.allclose(ordered(x)[:, perm], ordered(x[:, perm]), atol=1e-4)


def test_prepbn_is_layernorm_at_step_zero_and_repbn_after_the_decay():
    torch.manual_seed(0)
    norm = build("norm", "prepbn", d_model=D, warmup_steps=2, decay_steps=4)
    with torch.no_grad():
        norm.ln.weight.uniform_(0.5, 1.5)
        norm.repbn.eta.fill_(0.3)
    x = torch.randn(4, 6, D) * 3 + 1
    torch.testing.assert_close(norm(x), norm.ln(x))  # step 0 (a training forward counts one step)
    lams = []
    for _ in range(8):
        lams.append(norm.lam)
        norm(torch.randn(4, 6, D) * 3 + 1)
    assert lams[:2] == [1.0, 1.0] and lams[2:6] == [0.75, 0.5, 0.25, 0.0] and norm.lam == 0.0
    flat = x.reshape(-1, D)
    bn = (flat - flat.mean(0)) / torch.sqrt(flat.var(0, unbiased=False) + 1e-5)
    expected = (bn * norm.repbn.bn.weight + norm.repbn.bn.bias + 0.3 * flat).reshape(x.shape)
    torch.testing.assert_close(norm(x), expected, atol=1e-5, rtol=1e-4)   # training: batch statistics
    assert not torch.allclose(norm(x), norm.ln(x), atol=1e-2)


def test_prepbn_folds_into_the_next_linear_in_eval():
    torch.manual_seed(0)
    norm, linear = PRepBN(D, warmup_steps=0, decay_steps=3), nn.Linear(D, 20)
    with pytest.raises(ValueError, match="fold"):
        norm.fold_into(linear)
    for _ in range(6):  # decay and gather running statistics
        norm(torch.randn(8, 6, D) * 2 + 0.5)
    with torch.no_grad():
        norm.repbn.bn.weight.uniform_(0.5, 1.5)
        norm.repbn.bn.bias.uniform_(-1, 1)
    norm.eval()
    x = torch.randn(3, 7, D) * 2 + 0.5
    with torch.no_grad():
        torch.testing.assert_close(norm.fold_into(linear)(x), linear(norm(x)), atol=1e-5, rtol=1e-5)
