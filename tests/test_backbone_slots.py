"""The estimators take backbone parts by name in the slots their architecture has."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch

from tsformers import GateformerForecaster, GTrXLForecaster, PVClientForecaster
from tsformers.backbone import available, order_free
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


ORDERED_STACKS = sorted(set(available("stack")) - set(order_free("stack")))


def test_the_stacks_that_read_token_order_are_the_ones_that_group_scan_or_position_tokens():
    assert ORDERED_STACKS == ["fca_stage", "fit", "hybrid", "mixed", "sret", "three_phase"]


@pytest.mark.parametrize("stack", ORDERED_STACKS)
def test_an_ordered_stack_is_refused_over_variate_tokens(stack):
    accepted = re.escape(str(order_free("stack")))
    with pytest.raises(ValueError, match=rf"stack='{stack}' needs ordered tokens.*Gateformer.*{accepted}"):
        Gateformer(lookback=48, horizon=12, n_vars=3, stack=stack)
    with pytest.raises(ValueError, match=rf"stack='{stack}' needs ordered tokens.*PV-Client.*{accepted}"):
        PVClient(lookback=48, horizon=12, n_vars=3, stack=stack)


def _permuted_variates(model, n_vars):
    """A copy of ``model`` whose per-variate parameters (shape (n_vars,)) follow a permutation of the variates."""
    perm = torch.randperm(n_vars, generator=torch.Generator().manual_seed(2))
    permuted = copy.deepcopy(model)
    with torch.no_grad():
        for name, param in permuted.named_parameters():
            if param.shape == (n_vars,):
                param.copy_(dict(model.named_parameters())[name][perm])
    return perm, permuted


def _variate_slot_cases():
    shape = dict(lookback=32, horizon=8, n_vars=5, n_heads=2, d_ff=16, e_layers=2, dropout=0.0)
    gateformer = dict(shape, d_model=16, patch_len=8, stride=8)
    for mixer in order_free("mixer"):
        yield pytest.param(Gateformer, {**gateformer, "variate_mixer": mixer}, id=f"gateformer-variate_mixer-{mixer}")
        yield pytest.param(PVClient, {**shape, "mixer": mixer}, id=f"pvclient-mixer-{mixer}")
    for stack in order_free("stack"):
        yield pytest.param(Gateformer, {**gateformer, "stack": stack}, id=f"gateformer-stack-{stack}")
        yield pytest.param(PVClient, {**shape, "stack": stack}, id=f"pvclient-stack-{stack}")


@pytest.mark.parametrize("network, kwargs", list(_variate_slot_cases()))
def test_permuting_the_variates_permutes_the_forecast(network, kwargs):
    """Variate tokens are an unordered set: with every mixer and stack these slots accept, the forecast
    of permuted columns is the permuted forecast (per-variate weights follow their variate)."""
    torch.manual_seed(0)
    model = network(**kwargs).eval()
    with torch.no_grad():   # per-variate weights away from their equal initial values, so that they matter
        for param in model.parameters():
            if param.shape == (kwargs["n_vars"],):
                param.add_(torch.rand_like(param))
    perm, permuted = _permuted_variates(model, kwargs["n_vars"])
    x = torch.randn(3, kwargs["lookback"], kwargs["n_vars"])
    with torch.no_grad():
        torch.testing.assert_close(permuted(x[..., perm]), model(x)[..., perm], atol=1e-5, rtol=1e-4)


def test_an_unknown_part_name_lists_the_valid_ones():
    df = make_demo(n_steps=300)
    with pytest.raises(ValueError, match="available mixer names: .*full"):
        GateformerForecaster(horizon=12, lookback=48, temporal_mixer="nope", max_epochs=1).fit(df)
    with pytest.raises(ValueError, match="available stack names: .*standard"):
        GateformerForecaster(horizon=12, lookback=48, stack="nope", max_epochs=1).fit(df)


def test_looped_gtrxl_shares_one_layer_and_keeps_streaming_exact():
    kwargs = dict(lookback=32, horizon=8, n_vars=2, d_model=16, n_heads=2, d_ff=32, segment_len=8, mem_len=8)
    one = GTrXL(**kwargs, n_layers=1)
    looped = GTrXL(**kwargs, n_layers=3, stack="looped").eval()
    assert n_params(looped) == n_params(one)
    assert n_params(GTrXL(**kwargs, n_layers=3)) > 2 * n_params(one)
    x = torch.randn(2, 40, 2)
    with torch.no_grad():
        whole = looped(x)
        stepped = looped.forecast(looped.advance(looped.advance(looped.init_state(2), x[:, :13]), x[:, 13:]))
    torch.testing.assert_close(whole, stepped, atol=1e-5, rtol=1e-4)


def test_gtrxl_takes_registry_stack_names_and_refuses_the_others():
    from tsformers.models.gtrxl import STACKS

    assert set(STACKS) == {"standard", "looped"} and set(STACKS) <= set(available("stack"))
    kwargs = dict(lookback=32, horizon=8, n_vars=2, d_model=16, n_heads=2, d_ff=32, segment_len=8, mem_len=8)
    for other in ("recursive", "sret"):
        with pytest.raises(ValueError, match=rf"stacks \['looped', 'standard'\] only, got stack='{other}'"):
            GTrXL(**kwargs, stack=other)
        with pytest.raises(ValueError, match=rf"'stack' parameter of GTrXLForecaster must be a str among "
                                             rf"{{'(standard|looped)', '(standard|looped)'}}. Got '{other}'"):
            GTrXLForecaster(horizon=8, lookback=32, stack=other, max_epochs=1).fit(make_demo(n_steps=200))


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
    (GTrXLForecaster, {"stack": "looped"}),
    (PVClientForecaster, {"mixer": "full", "stack": "standard"}),
])
def test_the_other_slots_fit_and_predict(estimator, kwargs):
    df = make_demo(n_steps=400)
    f = estimator(horizon=12, lookback=48, max_epochs=1, **{**estimator.get_test_params(), **kwargs}).fit(df)
    assert f.predict().shape[0] == 12
