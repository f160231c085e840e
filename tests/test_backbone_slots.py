"""The estimators take backbone parts by name in the slots their architecture has."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch

from tsformers import (AtlasForecaster, GateformerForecaster, GTrXLForecaster, LMUFormerForecaster,
                       PVClientForecaster)
from tsformers.backbone import BLOCK_SLOTS, available, build, order_free, streaming, with_block_slot
from tsformers.backbone.blocks import build_norm
from tsformers.datasets import make_demo
from tsformers.models.atlas import Atlas, memories as atlas_memories
from tsformers.models.gateformer import Gateformer
from tsformers.models.gtrxl import GTrXL, mixers as gtrxl_mixers
from tsformers.models.lmuformer import LMUFormer, memories as lmuformer_memories
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
    for mixer in order_free("mixer", standalone=True):
        yield pytest.param(Gateformer, {**gateformer, "variate_mixer": mixer}, id=f"gateformer-variate_mixer-{mixer}")
        yield pytest.param(PVClient, {**shape, "mixer": mixer}, id=f"pvclient-mixer-{mixer}")
    for stack in order_free("stack"):
        yield pytest.param(Gateformer, {**gateformer, "stack": stack}, id=f"gateformer-stack-{stack}")
        yield pytest.param(PVClient, {**shape, "stack": stack}, id=f"pvclient-stack-{stack}")
    for ffn in available("ffn"):
        yield pytest.param(PVClient, {**shape, "ffn": ffn}, id=f"pvclient-ffn-{ffn}")
    for norm in available("norm"):
        yield pytest.param(PVClient, {**shape, "norm": norm}, id=f"pvclient-norm-{norm}")


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


# -- ffn and norm slots of the standard block ------------------------------------------------------

def test_available_lists_the_parts_of_each_block_slot():
    assert available("ffn") == ["cofrnet", "conv", "mlp"]
    assert available("norm") == ["layernorm", "prepbn"]
    assert BLOCK_SLOTS == {"ffn": "mlp", "norm": "layernorm"}
    assert with_block_slot("ffn") == with_block_slot("norm") == ["adaptive_depth", "looped", "standard"]


@pytest.mark.parametrize("ffn", available("ffn"))
@pytest.mark.parametrize("norm", available("norm"))
def test_gateformer_builds_every_block_of_both_encoders_from_the_chosen_parts(ffn, norm):
    torch.manual_seed(0)
    model = Gateformer(lookback=32, horizon=8, n_vars=3, d_model=16, n_heads=2, d_ff=16, e_layers=2, ffn=ffn,
                       norm=norm)
    for encoder in (model.temporal_encoder, model.variate_encoder):
        for layer in encoder.layers:
            assert type(layer.ffn) is type(build("ffn", ffn, d_model=16, d_ff=16))
            assert type(layer.norm1) is type(layer.norm2) is type(build_norm(norm, 16))
    model(torch.randn(4, 32, 3)).sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_the_default_block_parts_are_the_networks_built_before_the_slots():
    """ffn="mlp", norm="layernorm" are the paper's parts: same modules, so saved weights still load."""
    torch.manual_seed(0)
    model = Gateformer(lookback=32, horizon=8, n_vars=3, d_model=16, n_heads=2, d_ff=16)
    layer = model.temporal_encoder.layers[0]
    assert type(layer.norm1) is torch.nn.LayerNorm and type(layer.ffn).__name__ == "FeedForward"
    assert {"temporal_encoder.layers.0.ffn.fc1.weight", "temporal_encoder.layers.0.norm1.weight"} <= set(
        model.state_dict())


def test_a_block_part_is_refused_where_the_slot_cannot_take_it():
    shape = dict(lookback=32, horizon=8, n_vars=3, d_model=16, n_heads=2, d_ff=16)
    with pytest.raises(ValueError, match="unknown ffn 'prepbn'; available ffn names: cofrnet, conv, mlp"):
        Gateformer(**shape, ffn="prepbn")
    with pytest.raises(ValueError, match="unknown norm 'batchnorm'; available norm names: layernorm, prepbn"):
        Gateformer(**shape, norm="batchnorm")
    stacks = re.escape(str(with_block_slot("ffn")))
    with pytest.raises(ValueError, match=rf"ffn='conv' needs a stack whose blocks have a 'ffn' slot, and "
                                         rf"stack='wide' builds its own; pick a stack from {stacks}"):
        Gateformer(**shape, stack="wide", ffn="conv")
    Gateformer(**shape, stack="wide")  # the defaults go with any stack: it builds its own


def test_gateformer_refuses_a_part_in_fit_naming_the_parts_that_fit():
    f = GateformerForecaster(horizon=12, lookback=48, ffn="layernorm", max_epochs=1)  # __init__ only stores
    with pytest.raises(ValueError, match="available ffn names: cofrnet, conv, mlp"):
        f.fit(make_demo(n_steps=300))


@pytest.mark.parametrize("ffn, norm", [("conv", "prepbn"), ("cofrnet", "layernorm")])
def test_gateformer_block_parts_fit_and_survive_save_and_load(tmp_path, ffn, norm):
    df = make_demo(n_steps=400)
    f = GateformerForecaster(horizon=12, lookback=48, ffn=ffn, norm=norm, max_epochs=1, ensemble_size=1,
                             **GateformerForecaster.get_test_params()).fit(df)
    assert type(f.network_.network.temporal_encoder.layers[0].ffn) is type(build("ffn", ffn, d_model=16, d_ff=32))  # behind the linear base
    f.save(tmp_path / "m")
    g = GateformerForecaster.load(tmp_path / "m")
    assert (g.ffn, g.norm) == (ffn, norm)
    np.testing.assert_allclose(f.predict().select_dtypes("number").to_numpy(),
                               g.predict().select_dtypes("number").to_numpy(), rtol=1e-6)


@pytest.mark.parametrize("ffn", available("ffn"))
@pytest.mark.parametrize("norm", available("norm"))
@pytest.mark.parametrize("stack", ["standard", "looped"])
def test_pvclient_builds_every_encoder_block_from_the_chosen_parts(ffn, norm, stack):
    torch.manual_seed(0)
    model = PVClient(lookback=32, horizon=8, n_vars=3, n_heads=2, d_ff=16, e_layers=2, ffn=ffn, norm=norm,
                     stack=stack)
    blocks = model.encoder.layers if stack == "standard" else [model.encoder.loop]
    for layer in blocks:
        assert type(layer.ffn) is type(build("ffn", ffn, d_model=32, d_ff=16))
        assert type(layer.norm1) is type(layer.norm2) is type(build_norm(norm, 32))
    if stack == "standard":   # the paper's final norm is the slot's norm too
        assert type(model.encoder.norm) is type(build_norm(norm, 32))
    model(torch.randn(4, 32, 3)).sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_pvclient_default_block_parts_are_the_papers_post_ln_gelu_encoder():
    torch.manual_seed(0)
    model = PVClient(lookback=32, horizon=8, n_vars=3, n_heads=2, d_ff=16)
    layer = model.encoder.layers[0]
    assert type(layer).__name__ == "PostNormBlock" and type(layer.norm1) is torch.nn.LayerNorm
    assert type(layer.ffn).__name__ == "FeedForward" and isinstance(layer.ffn.act, torch.nn.GELU)
    assert type(model.encoder.norm) is torch.nn.LayerNorm
    assert {"encoder.layers.0.ffn.fc1.weight", "encoder.layers.0.norm1.weight", "encoder.norm.weight"} <= set(
        model.state_dict())


def test_pvclient_refuses_a_block_part_in_fit_naming_the_parts_that_fit():
    df = make_demo(n_steps=300)
    f = PVClientForecaster(horizon=12, lookback=48, norm="mlp", max_epochs=1)  # __init__ only stores
    with pytest.raises(ValueError, match="unknown norm 'mlp'; available norm names: layernorm, prepbn"):
        f.fit(df)
    stacks = re.escape(str(with_block_slot("norm")))
    with pytest.raises(ValueError, match=rf"norm='prepbn' needs a stack whose blocks have a 'norm' slot, and "
                                         rf"stack='wide' builds its own; pick a stack from {stacks}"):
        PVClientForecaster(horizon=12, lookback=48, stack="wide", norm="prepbn", max_epochs=1,
                           **PVClientForecaster.get_test_params()).fit(df)


@pytest.mark.parametrize("ffn, norm", [("conv", "prepbn"), ("cofrnet", "layernorm")])
def test_pvclient_block_parts_fit_and_survive_save_and_load(tmp_path, ffn, norm):
    df = make_demo(n_steps=400)
    f = PVClientForecaster(horizon=12, lookback=48, ffn=ffn, norm=norm, max_epochs=1, clip=False,
                           **PVClientForecaster.get_test_params()).fit(df)
    assert type(f.network_.encoder.layers[0].ffn) is type(build("ffn", ffn, d_model=48, d_ff=32))
    assert type(f.network_.encoder.layers[0].norm1) is type(build_norm(norm, 48))
    f.save(tmp_path / "m")
    g = PVClientForecaster.load(tmp_path / "m")
    assert (g.ffn, g.norm) == (ffn, norm)
    np.testing.assert_allclose(f.predict().select_dtypes("number").to_numpy(),
                               g.predict().select_dtypes("number").to_numpy(), rtol=1e-6)


# -- recurrent slots: GTrXL's mixer, LMUFormer's and ATLAS's memory ---------------------------------

def test_the_recurrent_slots_take_the_streaming_mixers():
    assert streaming("mixer") == ["identity", "mamba", "sla", "sliding_window"]
    assert gtrxl_mixers() == ["identity", "mamba", "sla", "sliding_window", "xl_relative"]
    assert lmuformer_memories() == ["identity", "lmu", "mamba", "sla", "sliding_window"]


@pytest.mark.parametrize("name", streaming("mixer"))
def test_a_streaming_mixer_scanned_in_pieces_is_its_causal_forward(name):
    torch.manual_seed(0)
    mixer = build("mixer", name, d_model=16, n_heads=2, causal=True).double().eval()
    x = torch.randn(3, 23, 16, dtype=torch.double)
    with torch.no_grad():
        pieces, state = [], mixer.init_scan(3)
        for piece in (x[:, :7], x[:, 7:8], x[:, 8:]):
            y, state = mixer.scan(piece, state)
            pieces.append(y)
        torch.testing.assert_close(torch.cat(pieces, dim=1), mixer(x), atol=1e-12, rtol=1e-10)


def test_the_recurrent_slots_refuse_a_mixer_without_a_streaming_state():
    with pytest.raises(ValueError, match=r"mixer='full' is not one of \['identity', 'mamba', 'sla', "
                                         r"'sliding_window', 'xl_relative'\]"):
        GTrXL(lookback=32, horizon=8, n_vars=2, mixer="full")
    with pytest.raises(ValueError, match=r"memory='full' is not one of \['identity', 'lmu', 'mamba', 'sla', "
                                         r"'sliding_window'\]"):
        LMUFormer(lookback=32, horizon=8, n_vars=2, memory="full")
    with pytest.raises(ValueError, match="spiking=True needs the spiking LMU cell"):
        LMUFormer(lookback=32, horizon=8, n_vars=2, memory="sla", spiking=True)
    with pytest.raises(ValueError, match=r"'mixer' parameter of GTrXLForecaster must be a str among"):
        GTrXLForecaster(horizon=8, lookback=32, mixer="full", max_epochs=1).fit(make_demo(n_steps=200))


def _recurrent_slot_cases():
    for mixer in gtrxl_mixers():
        yield pytest.param(GTrXLForecaster, {"mixer": mixer}, id=f"gtrxl-mixer-{mixer}")
    for memory in lmuformer_memories():
        yield pytest.param(LMUFormerForecaster, {"memory": memory}, id=f"lmuformer-memory-{memory}")
    for memory in atlas_memories():
        yield pytest.param(AtlasForecaster, {"memory": memory}, id=f"atlas-memory-{memory}")


@pytest.mark.parametrize("estimator, slot", list(_recurrent_slot_cases()))
def test_update_then_predict_is_predicting_from_the_full_history_with_every_accepted_part(estimator, slot):
    """Streaming stays exact whatever fills the recurrent slot: folding new rows into the state with
    ``update`` forecasts what running the recurrence over the whole history does."""
    df = make_demo(n_steps=330)
    params = {**estimator.get_test_params(), **slot}
    f = estimator(horizon=8, lookback=32, max_epochs=1, **params).fit(df.iloc[:-17])
    f.update(df.iloc[-17:-9]).update(df.iloc[-9:])
    streamed = f.predict().select_dtypes("number").to_numpy()
    whole = f.predict(df).select_dtypes("number").to_numpy()
    np.testing.assert_allclose(streamed, whole, rtol=1e-4, atol=1e-5)
    (name, part), = slot.items()
    assert getattr(f, name) == part


@pytest.mark.parametrize("network, slot", [(GTrXL, "mixer"), (LMUFormer, "memory"), (Atlas, "memory")])
def test_a_recurrent_slot_part_reads_the_history_through_its_state(network, slot):
    """With a streaming mixer the forecast depends on steps long before the last window (the state
    carries them), and it is the mixer that carries them: another mixer, other forecasts; the identity
    (the memory's ablation) carries nothing, so those steps cannot reach the forecast."""
    kwargs = dict(lookback=16, horizon=4, n_vars=2, d_model=16)
    if network is GTrXL:
        kwargs.update(n_heads=2, d_ff=16, n_layers=1, segment_len=4, mem_len=4)
    if network is Atlas:  # short tokens and window: only the memory can reach 32 steps back
        kwargs.update(n_heads=2, d_ff=16, conv_kernel=4, window=4, layer="mag")
    x = torch.randn(2, 40, 2)
    early = x.clone()
    early[:, :8] += torch.randn(2, 8, 2)                                  # steps 32 to 40 before the end
    forecasts = {}
    for name in streaming("mixer"):
        torch.manual_seed(0)
        model = network(**kwargs, **{slot: name}).eval()
        with torch.no_grad():
            forecasts[name] = model.forecast(model.advance(model.init_state(2), x))
            changed = model.forecast(model.advance(model.init_state(2), early))
        if name == "identity":  # only the convolutions' few steps and the last window reach the forecast
            torch.testing.assert_close(changed, forecasts[name], rtol=1e-6, atol=1e-6)
        elif name != "sliding_window":  # a window forgets; a recurrence does not (an untrained Mamba barely recalls)
            assert not torch.equal(forecasts[name], changed), name
    assert not torch.allclose(forecasts["sla"], forecasts["mamba"])


def test_an_old_recursive_gtrxl_model_file_loads_as_looped(tmp_path):
    import json

    from tsformers.estimators.modelfile import CONFIG_FILE, _write_manifest

    df = make_demo(n_steps=300)
    f = GTrXLForecaster(horizon=8, lookback=32, stack="looped", max_epochs=1, **GTrXLForecaster.get_test_params())
    f.fit(df).save(tmp_path / "m")
    config_file = tmp_path / "m" / CONFIG_FILE
    config = json.loads(config_file.read_text())
    config["params"]["stack"] = "recursive"                               # as tsformers wrote it before the rename
    config_file.write_text(json.dumps(config))
    _write_manifest(tmp_path / "m")                                        # the file as that version saved it
    g = GTrXLForecaster.load(tmp_path / "m")
    assert g.stack == "looped"
    np.testing.assert_allclose(f.predict().select_dtypes("number").to_numpy(),
                               g.predict().select_dtypes("number").to_numpy(), rtol=1e-6)


# -- adaptive_depth chosen by name: exits trained, gates fitted in fit, early exits at predict ----------------

def test_the_exits_losses_join_the_training_loss_weighted_by_depth():
    """Without them only the last exit learns: the first exit's norm would get no gradient."""
    from tsformers.training.module import ForecastingModule

    torch.manual_seed(0)
    network = PVClient(lookback=32, horizon=8, n_vars=3, n_heads=2, d_ff=16, e_layers=3, dropout=0.0,
                       stack="adaptive_depth")
    module = ForecastingModule(network, n_targets=3)
    x, y = torch.randn(4, 32, 3), torch.randn(4, 8, 3)
    stack, = network.depth_stacks()
    with torch.no_grad():
        at = []
        for k in (1, 2, 3):
            with network.at_depth(k):
                at.append(module.masked_loss(module(x), y))
        expected = at[2] + at[0] / 3 + 2 * at[1] / 3      # w_k / w_L = k / L, the forecast's own loss at weight 1
        torch.testing.assert_close(network.auxiliary_loss(lambda: module.masked_loss(module(x), y)) + at[2],
                                   expected)
    module.trainer = type("T", (), {"world_size": 1, "is_last_batch": True, "num_training_batches": 1})()
    module.log = lambda *a, **k: None
    module.training_step((x, y), 0).backward()
    assert stack.exits[0].weight.grad is not None and stack.exits[0].weight.grad.abs().sum() > 0


ADAPTIVE = [pytest.param(GateformerForecaster, {"ensemble_size": 1}, id="gateformer"),   # one network's gates
            pytest.param(PVClientForecaster, {"clip": False}, id="pvclient")]


@pytest.mark.parametrize("estimator, extra", ADAPTIVE)
def test_adaptive_depth_fits_its_gates_in_fit_and_exits_early_within_tolerance(tmp_path, estimator, extra):
    """ECO-M2F through an estimator: ``fit`` labels the training windows with their depth and fits the
    gates, ``mean_depth_`` reports the blocks they run, and on held-out windows some exit before the last
    block while the backtest MSE stays within 10% of the full depth's."""
    df = make_demo(n_steps=600)
    params = {**estimator.get_test_params(), "stack": "adaptive_depth", "e_layers": 3, **extra}
    f = estimator(horizon=12, lookback=48, max_epochs=2, **params).fit(df.iloc[:-120])
    stacks = f.network_.depth_stacks()                                # through Gateformer's linear base
    assert stacks and all(bool(s.gate_fitted) for s in stacks)
    assert 1 <= f.mean_depth_ < 3
    rows = [0, 0, 0]                                                   # windows (rows) each block of the last stack ran
    for i, layer in enumerate(stacks[-1].layers):
        layer.register_forward_hook(lambda _, args, out, i=i: rows.__setitem__(i, rows[i] + len(args[0])))
    adaptive = f.backtest(df, n_windows=40, step=3)
    assert rows[0] == 40 and rows[2] < 40                            # the easy windows left before the last block
    with f.network_.at_depth(3):
        full = f.backtest(df, n_windows=40, step=3)

    def mse(b):
        return float(np.mean((b["forecast"].to_numpy() - b["actual"].to_numpy()) ** 2))

    assert mse(adaptive) <= 1.10 * mse(full)
    f.save(tmp_path / "m")
    g = estimator.load(tmp_path / "m")
    assert g.mean_depth_ == pytest.approx(f.mean_depth_) and all(bool(s.gate_fitted) for s in g.network_.depth_stacks())
    np.testing.assert_allclose(f.predict().select_dtypes("number").to_numpy(),
                               g.predict().select_dtypes("number").to_numpy(), rtol=1e-6)


def test_a_standard_stack_records_no_depth():
    f = PVClientForecaster(horizon=12, lookback=48, max_epochs=1, clip=False,
                           **PVClientForecaster.get_test_params()).fit(make_demo(n_steps=300))
    assert not hasattr(f, "mean_depth_") and f.network_.depth_stacks() == []


def test_an_adaptive_depth_model_is_not_exported_to_onnx(tmp_path):
    f = PVClientForecaster(horizon=12, lookback=48, max_epochs=1, stack="adaptive_depth", e_layers=2, clip=False,
                           **PVClientForecaster.get_test_params()).fit(make_demo(n_steps=300))
    f.save(tmp_path / "m")
    with pytest.raises(ValueError, match="adaptive_depth.*torch engine"):
        f.export_onnx(tmp_path / "m")


# -- fca: its cross tokens in Gateformer's temporal encoder, refused over variates ------------------------------

def test_fca_as_temporal_mixer_gets_its_cross_tokens_from_its_stage():
    from tsformers.backbone.mixers.fcaformer import FcaStage

    torch.manual_seed(0)
    shape = dict(lookback=64, horizon=8, n_vars=3, d_model=16, n_heads=2, d_ff=16, e_layers=3, dropout=0.0)
    model = Gateformer(**shape, temporal_mixer="fca").eval()
    assert isinstance(model.temporal_encoder, FcaStage) and type(model.variate_encoder).__name__ == "TransformerEncoder"
    assert [block.mixer.n_sources for block in model.temporal_encoder.blocks] == [0, 1, 2]
    cross = []                                                       # what the later blocks attend to besides their own
    for block in model.temporal_encoder.blocks:
        block.mixer.register_forward_hook(lambda m, args, kwargs, out: cross.append(len(kwargs["cross"])),
                                          with_kwargs=True)
    x = torch.randn(2, 64, 3)
    with torch.no_grad():
        y = model(x)
        for block in model.temporal_encoder.blocks:                  # the cross path matters: without it, other output
            block.mixer.lsf.zero_()
        assert not torch.allclose(model(x), y)
    assert cross[:3] == [0, 1, 2]
    assert "fca" in order_free("mixer") and "fca" not in order_free("mixer", standalone=True)


def test_fca_is_refused_where_it_would_get_no_cross_tokens():
    shape = dict(lookback=32, horizon=8, n_vars=3, n_heads=2, d_ff=16)
    choices = re.escape(str(order_free("mixer", standalone=True)))
    with pytest.raises(ValueError, match=rf"variate_mixer='fca' attends to cross tokens that only stack 'fca_stage' "
                                         rf"makes.*use it as temporal_mixer, or pick a variate mixer from {choices}"):
        Gateformer(**shape, d_model=16, variate_mixer="fca")
    with pytest.raises(ValueError, match=rf"mixer='fca' attends to cross tokens.*pick one of {choices}"):
        PVClient(**shape, mixer="fca")
    with pytest.raises(ValueError, match=r"temporal_mixer='fca' gets its cross tokens only inside stack 'fca_stage'"
                                         r".*stack='looped' cannot"):
        Gateformer(**shape, d_model=16, temporal_mixer="fca", stack="looped")
    with pytest.raises(ValueError, match=r"ffn='conv' needs a stack whose blocks have a 'ffn' slot, and "
                                         r"stack='fca_stage' builds its own"):
        Gateformer(**shape, d_model=16, temporal_mixer="fca", ffn="conv")
    with pytest.raises(ValueError, match="attends to cross tokens"):   # in fit, through the estimator
        PVClientForecaster(horizon=8, lookback=32, mixer="fca", max_epochs=1, clip=False,
                           **PVClientForecaster.get_test_params()).fit(make_demo(n_steps=200))


def test_gateformer_fits_with_fca_over_time():
    f = GateformerForecaster(horizon=12, lookback=48, temporal_mixer="fca", e_layers=2, max_epochs=1, ensemble_size=1,
                             **GateformerForecaster.get_test_params()).fit(make_demo(n_steps=300))
    assert type(f.network_.network.temporal_encoder).__name__ == "FcaStage" and f.predict().shape[0] == 12
