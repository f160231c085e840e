"""Hybrid SSM-attention stack: layer types follow the pattern; streaming equals the causal forward."""

from __future__ import annotations

import pytest
import torch

from tsformers.backbone import build, build_class

D = 32


def _stack(**kw):
    torch.manual_seed(0)
    return build("stack", "hybrid", d_model=D, n_heads=4, d_ff=64, dropout=0.0, **kw).eval()


@pytest.mark.parametrize("pattern,n_layers", [("MMMA", 1), ("MA", 2), ("AMM", 1)])
def test_layer_types_follow_the_pattern(pattern, n_layers):
    stack = _stack(pattern=pattern, n_layers=n_layers)
    mamba, full = build_class("mixer", "mamba"), build_class("mixer", "full")
    expected = pattern * n_layers
    assert stack.layer_types == expected and len(stack.layers) == len(expected)
    for kind, layer in zip(expected, stack.layers):
        assert isinstance(layer.mixer, mamba if kind == "M" else full)
    with torch.no_grad():
        assert stack(torch.randn(2, 9, D)).shape == (2, 9, D)


def test_the_attention_layers_use_the_given_mixer_and_bad_letters_are_refused():
    stack = _stack(n_layers=1, pattern="MA", mixer="sla")
    assert isinstance(stack.layers[1].mixer, build_class("mixer", "sla"))
    with pytest.raises(AssertionError, match="letters"):
        _stack(n_layers=1, pattern="MXA")


def test_streaming_with_a_kv_cache_equals_the_causal_forward():
    stack = _stack(n_layers=1, pattern="MAMA", causal=True)
    x = torch.randn(2, 11, D)
    with torch.no_grad():
        full = stack(x)
        state, outs = None, []
        for t in range(x.shape[1]):
            y, state = stack.step(x[:, t], state)
            outs.append(y)
    torch.testing.assert_close(torch.stack(outs, dim=1), full, atol=1e-5, rtol=1e-4)
    assert state[1][0].shape == (2, 4, 11, D // 4)                  # the K cache holds every token
    with pytest.raises(ValueError, match="causal"):
        _stack(n_layers=1).step(x[:, 0])
