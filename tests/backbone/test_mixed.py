"""Mixed softmax/linear stack: layer i is softmax iff pattern[i] == 'S'."""

from __future__ import annotations

import pytest
import torch

from tsformers.backbone import build, build_class

D = 32


@pytest.mark.parametrize("pattern,n_layers", [("SLLS", 1), ("LS", 2), ("LLL", 1)])
def test_layer_i_is_softmax_iff_the_pattern_says_s(pattern, n_layers):
    torch.manual_seed(0)
    stack = build("stack", "mixed", d_model=D, n_heads=4, d_ff=64, n_layers=n_layers, dropout=0.0,
                  pattern=pattern).eval()
    softmax, linear = build_class("mixer", "full"), build_class("mixer", "sla")
    kinds = pattern * n_layers
    assert len(stack.layers) == len(kinds) and stack.layer_types == kinds
    for kind, layer in zip(kinds, stack.layers):
        assert isinstance(layer.mixer, softmax) == (kind == "S")
        assert isinstance(layer.mixer, linear) == (kind == "L")
    with torch.no_grad():
        assert stack(torch.randn(2, 9, D)).shape == (2, 9, D)


def test_the_linear_mixer_can_be_swapped_and_causal_holds():
    torch.manual_seed(0)
    stack = build("stack", "mixed", d_model=D, n_heads=4, d_ff=64, n_layers=1, pattern="SL", linear="sqa",
                  causal=True).eval()
    assert isinstance(stack.layers[1].mixer, build_class("mixer", "sqa"))
    x = torch.randn(1, 12, D)
    changed = x.clone()
    changed[:, 8:] += 3 * torch.randn_like(changed[:, 8:])
    with torch.no_grad():
        a, b = stack(x), stack(changed)
    torch.testing.assert_close(a[:, :8], b[:, :8], atol=1e-5, rtol=1e-4)
    assert not torch.allclose(a[:, 8:], b[:, 8:])
