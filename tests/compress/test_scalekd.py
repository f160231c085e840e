"""compress.scalekd: the frequency view ignores constants; distillation yields a smaller, saveable student."""
import pytest
import torch

from tsformers import GateformerForecaster
from tsformers.compress.scalekd import CrossAttentionProjector, _gateformer, frequency_loss, gateformer_tail, scalekd, \
    spatial_loss
from tsformers.datasets import make_demo


def test_frequency_view_ignores_a_constant_added_to_all_tokens():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(3, 7, 5, generator=g), torch.randn(3, 7, 5, generator=g)
    base = frequency_loss(s, t)
    for c in (torch.full((1, 1, 5), 3.0), torch.randn(3, 1, 5, generator=g)):
        assert torch.allclose(frequency_loss(s + c, t), base, atol=1e-6)
        assert torch.allclose(frequency_loss(s, t - c), base, atol=1e-6)
        assert not torch.allclose(spatial_loss(s + c, t), spatial_loss(s, t))
    assert frequency_loss(s, s).item() < 1e-12 and base.item() > 0


def test_projector_shapes():
    proj = CrossAttentionProjector(8, 12, n_student=5, n_teacher=7, n_heads=4)
    assert proj(torch.randn(2, 5, 8)).shape == (2, 7, 12)


@pytest.fixture(scope="module")
def teacher():
    df = make_demo(n_series=1, n_steps=220, seed=5)
    # the network alone: behind the default linear base this one-epoch teacher's share is 0 (it would not
    # reach the forecast, and compress warns so)
    est = GateformerForecaster(horizon=4, lookback=16, d_model=16, n_heads=2, d_ff=32, max_epochs=1,
                               batch_size=64, random_state=0, linear_base=False, ensemble_size=1).fit(df)
    return est, df


def test_gateformer_tail_is_the_forward(teacher):
    est, _ = teacher
    m = _gateformer(est.network_).eval()
    x = torch.randn(2, 16, est.n_features_in_)
    tokens = {}
    h = m.temporal_encoder.register_forward_hook(lambda mod, i, o: tokens.setdefault("t", o))
    with torch.no_grad():
        y = m(x)
        h.remove()
        assert torch.allclose(gateformer_tail(m, x, tokens["t"]), y, atol=1e-6)


def test_scalekd_distils_a_smaller_student(teacher, tmp_path):
    est, df = teacher
    student = scalekd(est, df, epochs=1, d_model=8, d_ff=16)
    assert student.d_model == 8 and student.compression_[-1]["method"] == "scalekd"
    terms = student.compression_[-1]["last_terms"]
    assert {"task", "spatial", "frequency", "perception"} <= set(terms) and terms["perception"] > 0
    assert student.compression_[-1]["parameters_after"] < student.compression_[-1]["parameters_before"]
    assert not any("projector" in k for k in student.network_.state_dict())
    student.save(tmp_path / "s")
    assert GateformerForecaster.load(tmp_path / "s").predict().equals(student.predict())
