"""Dual-stream: structured head mixing, per-head LayerNorm, FFNs never write the token stream."""

from __future__ import annotations

import pytest
import torch

from tsformers.backbone import build
from tsformers.backbone.stacks.dual_stream import ChannelLayerNorm, HeadLinear

D, H = 32, 4


def _stack(**kw):
    torch.manual_seed(0)
    kw.setdefault("n_layers", 2)
    return build("stack", "dual_stream", d_model=D, n_heads=H, d_ff=64, dropout=0.0, **kw).eval()


def test_the_kronecker_projection_has_h_squared_parameters_and_is_kron_a_identity():
    torch.manual_seed(0)
    proj = HeadLinear(D, H, "kronecker")
    assert sum(p.numel() for p in proj.parameters()) == H * H
    expected = torch.kron(proj.weight, torch.eye(D // H))
    torch.testing.assert_close(proj.matrix(), expected)
    x = torch.randn(5, D)
    torch.testing.assert_close(proj(x), x @ expected.T)


def test_independent_mixing_is_block_diagonal_and_dense_is_full():
    torch.manual_seed(0)
    proj = HeadLinear(D, H, "independent")
    x = torch.randn(5, D)
    torch.testing.assert_close(proj(x), x @ proj.matrix().T)
    changed = x.clone()
    changed[:, :8] += 1.0                                          # head 0's input only
    assert torch.equal(proj(x)[:, 8:], proj(changed)[:, 8:])
    assert sum(p.numel() for p in HeadLinear(D, H, "dense").parameters()) == D * D


def test_the_channel_aware_layernorm_normalises_each_head_alone():
    norm = ChannelLayerNorm(D, H)
    x = torch.randn(3, D)
    changed = x.clone()
    changed[:, :8] *= 10                                           # rescale head 0
    torch.testing.assert_close(norm(x)[:, 8:], norm(changed)[:, 8:])
    assert not torch.allclose(torch.nn.functional.layer_norm(x, (D,))[:, 8:],
                              torch.nn.functional.layer_norm(changed, (D,))[:, 8:])


def _perturb_ffns(stack):
    with torch.no_grad():
        for layer in stack.layers:
            for p in layer.ffn.parameters():
                p.add_(torch.randn_like(p))


@pytest.mark.parametrize("mixing", ["independent", "kronecker", "dense"])
def test_perturbing_the_ffns_leaves_the_token_stream_unchanged(mixing):
    stack = _stack(mixing=mixing, attn_reads="token")
    x = torch.randn(2, 7, D)
    with torch.no_grad():
        t0, e0 = stack.streams(x)
        _perturb_ffns(stack)
        t1, e1 = stack.streams(x)
    torch.testing.assert_close(t0, t1)
    assert not torch.allclose(e0, e1)


def test_when_attention_reads_both_streams_the_ffn_reaches_the_token_stream_one_layer_later():
    x = torch.randn(2, 7, D)
    one, two = _stack(n_layers=1), _stack(n_layers=2)
    with torch.no_grad():
        t_one, t_two = one.streams(x)[0], two.streams(x)[0]
        _perturb_ffns(one), _perturb_ffns(two)
        torch.testing.assert_close(one.streams(x)[0], t_one)       # within a layer: attention runs first
        assert not torch.allclose(two.streams(x)[0], t_two)


def test_other_mixers_are_refused_and_causal_holds():
    with pytest.raises(ValueError, match="full"):
        build("stack", "dual_stream", d_model=D, n_heads=H, d_ff=64, n_layers=1, mixer="mamba")
    stack = _stack(causal=True)
    x = torch.randn(1, 10, D)
    changed = x.clone()
    changed[:, 6:] += 3 * torch.randn_like(changed[:, 6:])
    with torch.no_grad():
        a, b = stack(x), stack(changed)
    torch.testing.assert_close(a[:, :6], b[:, :6])
    assert not torch.allclose(a[:, 6:], b[:, 6:])
