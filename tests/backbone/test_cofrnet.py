"""CoFrGeNet Cffn (catalog A): continuants equal nested evaluation; the custom backward passes gradcheck."""

from __future__ import annotations

import pytest
import torch

from tsformers.backbone import build
from tsformers.backbone.mixers.cofrnet import ContinuedFraction, continuants, continued_fraction

D = 8


def _nested(a):
    """1/(a_1 + 1/(a_2 + … + 1/a_d)), evaluated from the inside out (d divisions)."""
    f = 1 / a[-1]
    for k in range(a.shape[0] - 2, -1, -1):
        f = 1 / (a[k] + f)
    return f


@pytest.mark.parametrize("depth", [1, 2, 3, 6])
def test_continuants_equal_the_nested_evaluation(depth):
    torch.manual_seed(0)
    a = torch.rand(depth, 5, 7) * 2 + 0.2                         # positive: no poles
    torch.testing.assert_close(continued_fraction(a), _nested(a), atol=1e-5, rtol=1e-5)
    a = torch.randn(depth, 200, dtype=torch.float64) * 2          # any sign, away from the poles
    ok = continuants(a)[-1].abs() > 0.1
    torch.testing.assert_close(continued_fraction(a)[ok], _nested(a)[ok], atol=1e-5, rtol=1e-5)
    assert continuants(torch.tensor([[2.0], [3.0], [4.0]]))[:, 0].tolist() == [1, 4, 13, 30]  # 1/(2+1/(3+1/4)) = 13/30


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_the_custom_backward_passes_gradcheck_and_matches_autograd(depth):
    torch.manual_seed(0)
    a = (torch.rand(depth, 3, 4, dtype=torch.float64) * 2 + 0.3).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: ContinuedFraction.apply(t, 0.0), (a,))
    mixed_signs = torch.randn(depth, 30, dtype=torch.float64)
    mixed_signs = mixed_signs[:, continuants(mixed_signs)[-1].abs() > 0.3].requires_grad_()
    assert torch.autograd.gradcheck(lambda t: ContinuedFraction.apply(t, 1e-2), (mixed_signs,))
    grad = torch.randn(3, 4, dtype=torch.float64)
    (custom,) = torch.autograd.grad(continued_fraction(a), a, grad)
    (reference,) = torch.autograd.grad(_nested(a), a, grad)
    torch.testing.assert_close(custom, reference)


def test_the_pole_guard_keeps_values_finite():
    a = torch.tensor([[1.0], [-1.0]], requires_grad=True)         # 1/(1 + 1/(-1)) = 1/0
    y = continued_fraction(a, 1e-2)
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(a.grad).all() and y.item() == pytest.approx(-1 / 1e-2)


@pytest.mark.parametrize("combine", ["dense", "diagonal"])
def test_the_ffn_acts_per_token_with_the_stated_parameter_count(combine):
    torch.manual_seed(0)
    ffn = build("ffn", "cofrnet", d_model=D, n_ladders=3, depth=4, combine=combine).double()
    n_params = sum(p.numel() for p in ffn.parameters())
    expected = 2 * (D * D + D) + 2 * 4 * 3 * D + (3 * D * D if combine == "dense" else 3 * D)
    assert n_params == expected
    x = torch.randn(2, 5, D, dtype=torch.float64, requires_grad=True)
    ffn(x)[0, 2].sum().backward()
    assert (x.grad[0, [0, 1, 3, 4]] == 0).all() and (x.grad[0, 2] != 0).any() and (x.grad[1] == 0).all()
    assert torch.autograd.gradcheck(ffn, (torch.randn(1, 3, D, dtype=torch.float64, requires_grad=True),))
