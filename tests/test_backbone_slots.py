"""The estimators take backbone parts by name in the slots their architecture has."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tsformers import GateformerForecaster, GTrXLForecaster, PVClientForecaster
from tsformers.datasets import make_demo
from tsformers.models.gateformer import Gateformer
from tsformers.models.gtrxl import GTrXL
from tsformers.models.pvclient import PVClient


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def test_gateformer_mixer_slots_change_the_network():
    torch.manual_seed(0)
    plain = Gateformer(lookback=48, horizon=12, n_vars=3, d_model=16, n_heads=2, d_ff=16)
    windowed = Gateformer(lookback=48, horizon=12, n_vars=3, d_model=16, n_heads=2, d_ff=16,
                          temporal_mixer="sliding_window")
    assert type(plain.temporal_encoder.layers[0].mixer).__name__ == "FullAttention"
    assert type(windowed.temporal_encoder.layers[0].mixer).__name__ == "SlidingWindowAttention"
    assert type(windowed.variate_encoder.layers[0].mixer).__name__ == "FullAttention"
    assert windowed(torch.randn(2, 48, 3)).shape == (2, 12, 3)


def test_an_ordered_mixer_is_refused_over_variate_tokens():
    with pytest.raises(ValueError, match="needs ordered tokens.*temporal_mixer"):
        Gateformer(lookback=48, horizon=12, n_vars=3, variate_mixer="sliding_window")
    with pytest.raises(ValueError, match="needs ordered tokens"):
        PVClient(lookback=48, horizon=12, n_vars=3, mixer="sliding_window")


def test_an_unknown_part_name_lists_the_valid_ones():
    df = make_demo(n_steps=300)
    with pytest.raises(ValueError, match="available mixer names: .*full"):
        GateformerForecaster(horizon=12, lookback=48, temporal_mixer="nope", max_epochs=1).fit(df)
    with pytest.raises(ValueError, match="available stack names: .*standard"):
        GateformerForecaster(horizon=12, lookback=48, stack="nope", max_epochs=1).fit(df)


def test_recursive_gtrxl_shares_one_layer_and_keeps_streaming_exact():
    kwargs = dict(lookback=32, horizon=8, n_vars=2, d_model=16, n_heads=2, d_ff=32, segment_len=8, mem_len=8)
    one = GTrXL(**kwargs, n_layers=1)
    recursive = GTrXL(**kwargs, n_layers=3, stack="recursive").eval()
    assert n_params(recursive) == n_params(one)
    assert n_params(GTrXL(**kwargs, n_layers=3)) > 2 * n_params(one)
    x = torch.randn(2, 40, 2)
    with torch.no_grad():
        whole = recursive(x)
        stepped = recursive.forecast(recursive.advance(recursive.advance(recursive.init_state(2), x[:, :13]),
                                                       x[:, 13:]))
    torch.testing.assert_close(whole, stepped, atol=1e-5, rtol=1e-4)


def test_a_slot_survives_save_and_load(tmp_path):
    df = make_demo(n_steps=400)
    f = GateformerForecaster(horizon=12, lookback=48, temporal_mixer="sliding_window", max_epochs=1,
                             **GateformerForecaster.get_test_params()).fit(df)
    f.save(tmp_path / "m")
    g = GateformerForecaster.load(tmp_path / "m")
    assert g.temporal_mixer == "sliding_window"
    np.testing.assert_allclose(f.predict().select_dtypes("number").to_numpy(),
                               g.predict().select_dtypes("number").to_numpy(), rtol=1e-6)


@pytest.mark.parametrize("estimator, kwargs", [
    (GTrXLForecaster, {"stack": "recursive"}),
    (PVClientForecaster, {"mixer": "full", "stack": "standard"}),
])
def test_the_other_slots_fit_and_predict(estimator, kwargs):
    df = make_demo(n_steps=400)
    f = estimator(horizon=12, lookback=48, max_epochs=1, **{**estimator.get_test_params(), **kwargs}).fit(df)
    assert f.predict().shape[0] == 12
