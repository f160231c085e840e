"""The ATLAS network and AtlasForecaster: shapes, streaming protocol, test-time memory, estimator behaviour."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from tsformers.backbone import linear_base_of
from tsformers.estimators.atlas import AtlasForecaster
from tsformers.models.atlas import LAYERS, Atlas


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def small(**kw):
    kw = {"lookback": 24, "horizon": 6, "n_vars": 3, "d_model": 16, "n_heads": 2, "d_ff": 32, "d_key": 4,
          "window": 8, "chunk_size": 4, "omega_window": 3, "n_persistent": 2} | kw
    return Atlas(**kw).eval()


# ---------------------------------------------------------------- the network


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("optimizer, channel_independent", [("muon", True), ("momentum", False)])
def test_output_shape_and_gradients(layer, optimizer, channel_independent):
    model = small(layer=layer, optimizer=optimizer, channel_independent=channel_independent).train()
    y = model(torch.randn(5, 24, 3))
    assert y.shape == (5, 6, 3) and torch.isfinite(y).all()
    y.square().mean().backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values()), \
        [n for n, g in grads.items() if g is None]
    assert grads["blocks.0.memory.memory.init_weights.0"].abs().sum() > 0


def test_rejects_wrong_input_shape():
    model = small()
    with pytest.raises(AssertionError, match="built for"):
        model(torch.randn(2, 24, 4))
    with pytest.raises(AssertionError, match="built for"):
        model(torch.randn(2, 20, 3))
    with pytest.raises(AssertionError, match="layer must be one of"):
        small(layer="mac")


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("channel_independent", [True, False])
def test_forward_is_forecast_after_advance_and_advance_splits(layer, channel_independent):
    model = small(layer=layer, channel_independent=channel_independent)
    model.segment_len = 16  # make advance() cut the long input into segments too
    x = torch.randn(2, 61, 3)
    with torch.no_grad():
        torch.testing.assert_close(model(x[:, -24:]), model.forecast(model.advance(model.init_state(2), x[:, -24:])))
        whole = model.advance(model.init_state(2), x)
        state = model.init_state(2)
        for a, b in [(0, 1), (1, 5), (5, 24), (24, 25), (25, 61)]:
            state = model.advance(state, x[:, a:b])
        assert state.keys() == whole.keys()
        for key in whole:
            torch.testing.assert_close(state[key], whole[key], rtol=1e-5, atol=1e-5, msg=key)
        torch.testing.assert_close(model.forecast(state), model.forecast(whole), rtol=1e-5, atol=1e-5)
        assert all(v.shape[0] == 2 for v in whole.values()), "the state's leading dimension is the batch"


@pytest.mark.parametrize("channel_independent", [True, False])
def test_channel_independence(channel_independent):
    """One stream per variable: changing variable 1 leaves the forecast of variable 0 alone; mixed, it does not."""
    model = small(channel_independent=channel_independent)
    x = torch.randn(2, 24, 3)
    x2 = x.clone()
    x2[..., 1] = torch.randn(2, 24)
    with torch.no_grad():
        moved = (model(x)[..., 0] - model(x2)[..., 0]).abs().max()
    assert (moved == 0) if channel_independent else (moved > 1e-4)
    state = model.init_state(2)
    assert state["block0.memory.w0"].shape[:2] == (2, 3 if channel_independent else 1)


def test_memory_carries_information_beyond_every_window():
    """With MAG, a step far beyond the attention windows and lookback still moves the forecast, unless frozen."""
    x = torch.randn(1, 200, 3)
    x2 = x.clone()
    x2[:, 5] = 3 * torch.randn(3)
    for frozen in (False, True):
        torch.manual_seed(0)
        model = small(layer="mag", frozen_memory=frozen)
        with torch.no_grad():
            a = model.forecast(model.advance(model.init_state(1), x))
            b = model.forecast(model.advance(model.init_state(1), x2))
        moved = (a - b).abs().max()
        if frozen:  # only the last 2 layers x (window - 1) + conv_kernel + lookback steps count
            assert moved == 0
        else:
            assert moved > 1e-4


@pytest.mark.parametrize("normalize", ["last_value", "none"])
def test_output_normalisation_uses_the_window_statistics(normalize):
    """y = (head(z) + linear((window - ref) / std)) * std + ref, ref the last value ("last_value") or the mean."""
    model = small(normalize=normalize)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
        x = torch.randn(2, 24, 3) * 4 + 7
        ref = x[:, -1:] if normalize == "last_value" else x.mean(dim=1, keepdim=True)
        std = torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + 1e-5)
        expected = (x - ref).div(std).mT @ model.linear.weight.T + model.linear.bias     # (B, N, H)
        torch.testing.assert_close(model(x), expected.mT * std + ref)
        model.linear = None                                                              # linear_path=False
        torch.testing.assert_close(model(x), ref.expand(2, 6, 3))


# ---------------------------------------------------------------- the estimator


def frame(n=240, seed=0, start="2024-01-01"):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return pd.DataFrame({
        "date": pd.date_range(start, periods=n, freq="h"),
        "a": np.sin(2 * np.pi * t / 12) + 0.1 * rng.standard_normal(n),
        "b": np.cos(2 * np.pi * t / 8) + 0.1 * rng.standard_normal(n),
    })


def estimator(**kw):
    params = AtlasForecaster.get_test_params() | {"horizon": 6, "lookback": 24, "max_epochs": 1} | kw
    return AtlasForecaster(**params)


@pytest.fixture(scope="module")
def fitted():
    torch.manual_seed(0)
    df = frame()
    return estimator().fit(df.iloc[:200]), df


def test_update_changes_the_memory_not_the_weights(fitted):
    est, df = fitted
    est = copy.deepcopy(est)
    weights = {k: v.clone() for k, v in est.network_.state_dict().items()}
    state = {k: v.clone() for k, v in est.state_.items()}
    before = est.predict()
    est.update(df.iloc[200:223])
    est.predict(df.iloc[150:223])
    for k, v in est.network_.state_dict().items():
        assert torch.equal(v, weights[k]), f"outer weight {k} changed"
    assert not torch.equal(est.state_["block0.memory.w0"], state["block0.memory.w0"]), "the memory did not learn"
    assert not torch.equal(est.state_["block0.memory.s0"], state["block0.memory.s0"])
    assert not np.allclose(est.predict().iloc[:, 1:].to_numpy(float), before.iloc[:, 1:].to_numpy(float))


@pytest.mark.parametrize("layer", LAYERS)
def test_every_layer_variant_through_the_estimator(layer):
    df = frame(n=120)
    est = estimator(layer=layer, optimizer="momentum", max_epochs=0, linear_base=False).fit(df)
    assert est.network_.blocks[0].__class__.__name__ == {"deep": "AtlasDeepBlock", "mag": "AtlasGatedBlock",
                                                         "mal": "AtlasLayeredBlock"}[layer]
    out = est.predict()
    assert out.shape == (6, 3) and np.isfinite(out[["a", "b"]].to_numpy()).all()


def test_frozen_memory_estimator_keeps_its_initial_memory():
    df = frame(n=120)
    est = estimator(frozen_memory=True, max_epochs=0, linear_base=False).fit(df)
    init = est.network_.blocks[0].memory.memory.init_weights[0]
    assert torch.equal(est.state_["block0.memory.w0"], init.expand_as(est.state_["block0.memory.w0"]))


def test_bad_parameters_are_rejected():
    df = frame(n=120)
    with pytest.raises(ValueError, match="multiple of n_heads"):
        estimator(d_model=15, n_heads=2).fit(df)
    with pytest.raises(ValueError, match="optimizer"):
        estimator(optimizer="adam").fit(df)
    with pytest.raises(ValueError, match="layer"):
        estimator(layer="mac").fit(df)
    with pytest.raises(ValueError, match="needs lookback >= horizon"):  # the horizon's covariates sit in the window
        estimator(future_covariates=["b"], target=["a"], lookback=4).fit(df)


# ---------------------------------------------------------------- the memory slot


def test_the_memory_slot_takes_the_memories_and_the_streaming_mixers():
    from tsformers.backbone import available, streaming
    from tsformers.models.atlas import memories

    assert memories() == ["identity", "lmu_cell", "mamba", "omega", "sla", "sliding_window"]
    assert {"omega", "lmu_cell"} <= set(available("memory")) and set(streaming("mixer")) <= set(memories())


@pytest.mark.parametrize("memory", ["identity", "lmu_cell", "mamba", "sla", "sliding_window"])
@pytest.mark.parametrize("layer", LAYERS)
def test_every_memory_is_built_in_every_block_and_advance_splits(memory, layer):
    from tsformers.backbone import build_class
    from tsformers.backbone.memory.layers import StreamingMemory

    model = small(layer=layer, memory=memory)
    part = model.blocks[0].memory
    assert isinstance(part, StreamingMemory)
    kind = "memory" if memory == "lmu_cell" else "mixer"
    assert isinstance(part.part, build_class(kind, memory))
    x = torch.randn(2, 45, 3)
    with torch.no_grad():
        whole = model.forecast(model.advance(model.init_state(2), x))
        state = model.init_state(2)
        for a, b in [(0, 1), (1, 9), (9, 24), (24, 45)]:
            state = model.advance(state, x[:, a:b])
        torch.testing.assert_close(model.forecast(state), whole, rtol=1e-5, atol=1e-5)


def test_the_memory_slot_trains_its_part():
    model = small(memory="sla").train()
    model(torch.randn(4, 24, 3)).square().mean().backward()
    grads = [p.grad for n, p in model.named_parameters() if n.startswith("blocks.0.memory.part.")]
    assert grads and all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_a_part_that_cannot_hold_the_memory_is_refused_naming_those_that_can():
    df = frame(n=120)
    names = r"\['identity', 'lmu_cell', 'mamba', 'omega', 'sla', 'sliding_window'\]"
    for other in ("segment", "lmu", "full", "nope"):
        with pytest.raises(ValueError, match=rf"memory='{other}' cannot hold ATLAS's memory.*{names}"):
            estimator(memory=other).fit(df)
        with pytest.raises(ValueError, match=rf"memory='{other}' is not one of {names}"):
            small(memory=other)
    with pytest.raises(ValueError, match="frozen_memory=True .* memory='sla' has no memory weights"):
        estimator(memory="sla", frozen_memory=True).fit(df)


def test_a_chosen_memory_survives_save_and_load(tmp_path):
    df = frame(n=160)
    est = estimator(memory="lmu_cell").fit(df.iloc[:140])
    est.update(df.iloc[140:])
    est.save(tmp_path / "m")
    loaded = AtlasForecaster.load(tmp_path / "m")
    assert loaded.memory == "lmu_cell" and linear_base_of(loaded.network_).network.memory == "lmu_cell"
    pd.testing.assert_frame_equal(loaded.predict(), est.predict())
    new = frame(n=10, seed=1, start="2024-01-07 16:00")
    pd.testing.assert_frame_equal(loaded.update(new).predict(), est.update(new).predict())
