"""Wide vs. deep presets: one block with all the heads, the same attention computation."""

from __future__ import annotations

import torch

from tsformers.backbone import TransformerEncoder, build

D = 32


def _stack(name, **kw):
    torch.manual_seed(0)
    kw.setdefault("n_layers", 3)
    return build("stack", name, d_model=D, n_heads=4, d_ff=64, dropout=0.0, **kw).eval()


def _attention_params(stack):
    return sum(p.numel() for layer in stack.layers for p in layer.mixer.parameters() if p.ndim == 2)  # weights


def test_the_wide_preset_is_one_block_with_total_heads_heads():
    wide = _stack("wide", total_heads=12)
    assert len(wide.layers) == 1 and wide.layers[0].mixer.n_heads == 12
    assert _stack("wide").layers[0].mixer.n_heads == 12                       # default: n_heads · n_layers
    deep = _stack("deep", total_heads=12)
    assert len(deep.layers) == 3 and all(layer.mixer.n_heads == 4 for layer in deep.layers)


def test_wide_and_deep_have_the_same_attention_computation_and_wide_is_smaller():
    wide, deep = _stack("wide"), _stack("deep")
    assert _attention_params(wide) == _attention_params(deep)
    assert sum(p.numel() for p in wide.parameters()) < sum(p.numel() for p in deep.parameters())
    x = torch.randn(2, 7, D)
    with torch.no_grad():
        assert wide(x).shape == deep(x).shape == x.shape


def test_the_deep_preset_at_its_defaults_is_the_standard_stack():
    deep = _stack("deep")
    torch.manual_seed(0)
    standard = TransformerEncoder(d_model=D, n_heads=4, d_ff=64, n_layers=3, dropout=0.0).eval()
    deep_sd = deep.state_dict()
    assert [tuple(v.shape) for v in deep_sd.values()] == [tuple(v.shape) for v in standard.state_dict().values()]
    standard.load_state_dict(dict(zip(standard.state_dict(), deep_sd.values())))
    x = torch.randn(2, 7, D)
    with torch.no_grad():
        torch.testing.assert_close(deep(x), standard(x))


def test_a_wide_block_with_a_fixed_head_dim_attends_per_head():
    wide = _stack("wide", n_layers=2, total_heads=8, head_dim=16)            # inner width 128 != D
    q = wide.layers[0].mixer.to_q
    assert (q.in_features, q.out_features) == (D, 128)
    x = torch.randn(2, 5, D, requires_grad=True)
    wide(x).sum().backward()
    assert torch.isfinite(x.grad).all()
