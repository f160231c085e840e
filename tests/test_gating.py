"""GTrXL's gating layers (Parisotto et al., ICML 2020): formulas, identity at init, registry names."""

import pytest
import torch

from tsformers.backbone import available, build
from tsformers.backbone.blocks import SigmoidGate
from tsformers.backbone.gating import (
    BIASED_GATES,
    GATES,
    GRUGate,
    HighwayGate,
    InputGate,
    OutputGate,
    ResidualGate,
    SigmoidTanhGate,
)

D = 12


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _xy():
    return torch.randn(4, 5, D), torch.randn(4, 5, D)


def _randomise(gate):
    """Non-trivial biases, so that the formulas are checked with every term in play."""
    with torch.no_grad():
        for p in gate.parameters():
            if p.ndim == 1:
                p.normal_()
    return gate


def test_every_variant_is_registered_under_its_name_next_to_gateformers_gate():
    assert set(GATES) <= set(available("gate"))
    assert "sigmoid" in available("gate")  # Gateformer's gate keeps its name
    assert type(build("gate", "sigmoid", d_model=D)) is SigmoidGate
    classes = {"gru": GRUGate, "input": InputGate, "output": OutputGate, "highway": HighwayGate,
               "sigmoid_tanh": SigmoidTanhGate, "residual": ResidualGate}
    for name, cls in classes.items():
        kwargs = {"bias": 1.0} if name in BIASED_GATES else {}
        gate = build("gate", name, d_model=D, **kwargs)
        assert type(gate) is cls
        if name in BIASED_GATES:
            assert torch.equal(gate.bias.detach(), torch.full((D,), 1.0))


def test_gru_gate_matches_the_paper_equations():
    gate = _randomise(GRUGate(D, bias=2.0))
    x, y = _xy()
    w_r, w_z, w_g = gate.w_rzg.weight.split(D)
    u_r, u_z = gate.u_rz.weight.split(D)
    r = torch.sigmoid(y @ w_r.T + x @ u_r.T)
    z = torch.sigmoid(y @ w_z.T + x @ u_z.T - gate.bias)
    h = torch.tanh(y @ w_g.T + (r * x) @ gate.u_g.weight.T)
    torch.testing.assert_close(gate(x, y), (1 - z) * x + z * h)


def test_other_variants_match_their_formulas():
    x, y = _xy()
    torch.testing.assert_close(ResidualGate(D)(x, y), x + y)
    g = InputGate(D)
    torch.testing.assert_close(g(x, y), torch.sigmoid(x @ g.w.weight.T) * x + y)
    g = _randomise(OutputGate(D))
    torch.testing.assert_close(g(x, y), x + torch.sigmoid(x @ g.w.weight.T - g.bias) * y)
    g = _randomise(HighwayGate(D))
    s = torch.sigmoid(x @ g.w.weight.T + g.bias)
    torch.testing.assert_close(g(x, y), s * x + (1 - s) * y)
    g = _randomise(SigmoidTanhGate(D))
    torch.testing.assert_close(g(x, y), x + torch.sigmoid(y @ g.w.weight.T - g.bias) * torch.tanh(y @ g.u.weight.T))


@pytest.mark.parametrize("name", sorted(BIASED_GATES))
def test_a_large_bias_shuts_the_gate_to_the_identity(name):
    x, y = _xy()
    shut = build("gate", name, d_model=D, bias=40.0)
    torch.testing.assert_close(shut(x, y), x, atol=1e-6, rtol=0)
    half = build("gate", name, d_model=D, bias=0.0)
    assert (half(x, y) - x).abs().max() > 0.1


def test_gru_update_gate_starts_near_sigmoid_minus_bg():
    """b_g = 2 puts the update gate z near sigmoid(-2) = 0.12 (x, y of unit scale, default init)."""
    gate = GRUGate(64, bias=2.0).requires_grad_(False)
    x, y = torch.randn(256, 64), torch.randn(256, 64)
    _, wz, _ = gate.w_rzg(y).chunk(3, dim=-1)
    _, uz = gate.u_rz(x).chunk(2, dim=-1)
    z = torch.sigmoid(wz + uz - gate.bias)
    assert abs(float(z.mean()) - float(torch.sigmoid(torch.tensor(-2.0)))) < 0.03
    # so the output stays close to x: |g - x| = z |h - x|
    out = gate(x, y)
    assert float((out - x).norm() / x.norm()) < 0.25


def test_gates_pass_gradients_to_both_inputs():
    for name in GATES:
        x, y = (t.requires_grad_() for t in _xy())
        build("gate", name, d_model=D)(x, y).square().sum().backward()
        assert x.grad.abs().sum() > 0 and y.grad.abs().sum() > 0, name
