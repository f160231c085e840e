"""The backbone's dropout: torch's dropout in distribution, scale and gradient, with a mask drawn from random bits."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from tsformers import GateformerForecaster, GTrXLForecaster, LMUFormerForecaster
from tsformers.backbone.dropout import Dropout, apply_dropout, keep_mask


def _dropped_share(p: float) -> float:
    """The probability with which an element is dropped: p on a grid of 2**-15."""
    return round(p * 2**15) / 2**15


@pytest.mark.parametrize("p", [0.1, 0.25, 0.5, 0.9])
def test_each_element_is_dropped_with_probability_p_in_every_lane(p):
    torch.manual_seed(0)
    n = 4 * 250_000
    kept = keep_mask(torch.Size([n]), p).view(-1, 4).double()         # a column per 16-bit lane of a draw
    expected = 1.0 - _dropped_share(p)
    sd = math.sqrt(expected * (1 - expected) / (n // 4))
    # every lane, the last included (its int16 has the int64's sign bit, which random_ leaves 0), keeps 1 - p
    for lane_rate in kept.mean(0).tolist():
        assert abs(lane_rate - expected) < 5 * sd
    # neighbouring elements are drawn independently: both kept as often as the product says
    both = (kept[:, 0] * kept[:, 1]).mean().item()
    assert abs(both - expected**2) < 5 * math.sqrt(expected**2 * (1 - expected**2) / (n // 4))


def test_kept_values_are_scaled_like_torch_and_the_mean_is_kept():
    torch.manual_seed(1)
    x = torch.rand(512, 300) + 0.5                                      # no zeros, so a zero means dropped
    out = apply_dropout(x, 0.2, training=True)
    kept = out != 0
    torch.testing.assert_close(out[kept], x[kept] / 0.8)
    ref = torch.nn.functional.dropout(x, 0.2, training=True)
    assert abs(kept.double().mean().item() - (ref != 0).double().mean().item()) < 0.005
    assert abs(out.mean().item() - x.mean().item()) < 0.01


def test_the_gradient_passes_the_kept_elements_scaled_and_stops_at_the_dropped():
    torch.manual_seed(2)
    x = (torch.rand(64, 33) + 0.5).requires_grad_()
    out = apply_dropout(x, 0.3, training=True)
    grad = torch.randn_like(out)
    out.backward(grad)
    kept = (out != 0).to(grad.dtype)
    torch.testing.assert_close(x.grad, grad * kept / 0.7)


def test_a_seed_fixes_the_mask_and_another_seed_changes_it():
    x = torch.ones(1000, 17)
    torch.manual_seed(3)
    first = apply_dropout(x, 0.1)
    torch.manual_seed(3)
    again = apply_dropout(x, 0.1)
    torch.manual_seed(4)
    other = apply_dropout(x, 0.1)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_nothing_is_dropped_in_eval_mode_or_at_p_0_and_everything_at_p_1():
    x = torch.randn(8, 5)
    assert apply_dropout(x, 0.3, training=False) is x
    assert apply_dropout(x, 0.0, training=True) is x
    assert torch.equal(apply_dropout(x, 1.0, training=True), torch.zeros_like(x))
    module = Dropout(0.5).eval()
    assert module(x) is x


def test_a_probability_outside_0_1_is_refused():
    with pytest.raises(ValueError, match="between 0 and 1"):
        apply_dropout(torch.ones(3), 1.5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        Dropout(-0.1)                                                   # torch's own check, same message


def test_non_contiguous_input_gets_a_mask_of_its_shape():
    torch.manual_seed(5)
    x = (torch.rand(40, 30) + 1.0).t()                                  # (30, 40), not contiguous
    out = apply_dropout(x, 0.5)
    assert out.shape == x.shape
    kept = out != 0
    torch.testing.assert_close(out[kept], x[kept] * 2)


def test_the_module_is_torch_dropout_with_the_same_state():
    module = Dropout(0.1)
    assert isinstance(module, nn.Dropout)
    assert module.state_dict() == {} and "p=0.1" in repr(module)


@pytest.mark.parametrize("estimator", [GateformerForecaster, LMUFormerForecaster, GTrXLForecaster])
def test_the_fitted_networks_use_it_for_every_dropout(estimator):
    t = np.arange(240)
    frame = pd.DataFrame({"t": t, "a": np.sin(2 * np.pi * t / 24), "b": np.cos(2 * np.pi * t / 12)})
    fitted = estimator(lookback=24, horizon=8, max_epochs=1, random_state=0, time_col="t").fit(frame)
    dropouts = [m for m in fitted.network_.modules() if isinstance(m, nn.Dropout)]
    assert dropouts, "the network has dropout layers"
    assert all(type(m) is Dropout for m in dropouts), [type(m) for m in dropouts if type(m) is not Dropout]
