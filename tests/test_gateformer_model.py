"""Gateformer network: shapes, variate mixing, normalisation, gradients, parameter count."""

import pytest
import torch
from torch import nn

from tsformers.models import Gateformer


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def small(**kw):
    """A small Gateformer for quick checks."""
    kw = {"lookback": 48, "horizon": 12, "n_vars": 4, "d_model": 16, "n_heads": 2, "d_ff": 32} | kw
    return Gateformer(**kw)


@pytest.mark.parametrize(
    "lookback, horizon, n_vars, patch_len, stride",
    [(36, 12, 1, 8, 8), (48, 24, 3, 8, 8), (96, 96, 7, 8, 8), (50, 7, 3, 16, 8), (20, 5, 2, 6, 4)],
)
def test_output_shape(lookback, horizon, n_vars, patch_len, stride):
    model = small(lookback=lookback, horizon=horizon, n_vars=n_vars, patch_len=patch_len, stride=stride)
    y = model(torch.randn(3, lookback, n_vars))
    assert y.shape == (3, horizon, n_vars)
    assert torch.isfinite(y).all()


def test_rejects_wrong_input_shape():
    model = small()
    with pytest.raises(AssertionError, match="built for"):
        model(torch.randn(2, 48, 5))
    with pytest.raises(AssertionError, match="built for"):
        model(torch.randn(2, 40, 4))
    with pytest.raises(AssertionError, match="built for"):
        model(torch.randn(48, 4))


def test_unknown_variate_mixer_lists_choices():
    with pytest.raises(ValueError, match="full"):
        small(variate_mixer="no_such_mixer")


def test_variate_attention_mixes_variates():
    model = small().eval()
    x = torch.randn(2, 48, 4)
    x2 = x.clone()
    x2[:, :, 1] = torch.randn(2, 48)
    y, y2 = model(x), model(x2)
    others = [0, 2, 3]
    assert (y[..., others] - y2[..., others]).abs().max() > 1e-4


def test_without_variate_path_variates_are_independent():
    """Gate 2 fully open (z = v) bypasses the variate encoder: the rest is channel independent."""
    model = small().eval()
    with torch.no_grad():
        for proj in (model.variate_gate.proj_a, model.variate_gate.proj_b):
            proj.weight.zero_()
            proj.bias.fill_(20.0)  # sigmoid(40) == 1.0 in float32
    x = torch.randn(2, 48, 4)
    x2 = x.clone()
    x2[:, :, 1] = torch.randn(2, 48)
    y, y2 = model(x), model(x2)
    torch.testing.assert_close(y[..., [0, 2, 3]], y2[..., [0, 2, 3]], atol=1e-6, rtol=0)
    assert not torch.allclose(y[..., 1], y2[..., 1])


def test_per_variate_shift_equivariance():
    """Instance norm: adding c to variate j's window adds c to variate j's forecast, nothing else."""
    model = small().eval()
    x = torch.randn(2, 48, 4)
    shift = torch.tensor([0.0, 5.0, 0.0, -3.0])
    torch.testing.assert_close(model(x + shift), model(x) + shift, atol=1e-4, rtol=0)


def test_per_variate_scale_equivariance():
    """Scaling variate j's window scales its forecast (up to the eps inside the std)."""
    model = small().eval()
    x = torch.randn(2, 48, 4) + 2.0
    scale = torch.tensor([1.0, 3.0, 1.0, 0.5])
    torch.testing.assert_close(model(x * scale), model(x) * scale, atol=1e-3, rtol=1e-3)


def test_gradient_reaches_every_parameter():
    model = small(e_layers=2).train()
    model(torch.randn(4, 48, 4)).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"no gradient for {name}"
        assert p.grad.abs().sum() > 0, f"zero gradient for {name}"


def test_eval_is_deterministic_and_train_uses_dropout():
    model = small()
    x = torch.randn(2, 48, 4)
    model.eval()
    torch.testing.assert_close(model(x), model(x), atol=0, rtol=0)
    model.train()
    assert not torch.equal(model(x), model(x))


def _expected_params(*, lookback, horizon, d_model, d_ff, e_layers, patch_len, n_patches):
    D = d_model

    def linear(n_in, n_out):
        return n_in * n_out + n_out

    encoder_layer = 4 * linear(D, D) + linear(D, d_ff) + linear(d_ff, D) + 2 * 2 * D  # attention, FFN, 2 LayerNorms
    return (
        linear(lookback, D)            # global embedding
        + patch_len * D                # patch value embedding (no bias)
        + e_layers * encoder_layer     # temporal encoder
        + linear(D * n_patches, D)     # flatten head
        + 2 * linear(D, D)             # gate 1
        + e_layers * encoder_layer     # variate encoder
        + 2 * linear(D, D)             # gate 2
        + linear(D, horizon)           # projection head
    )


def test_parameter_count_etth1_h96():
    model = Gateformer(lookback=96, horizon=96, n_vars=7)  # paper defaults: e1, D64, d_ff 64, 4 heads, patch 8/8
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == _expected_params(lookback=96, horizon=96, d_model=64, d_ff=64, e_layers=1, patch_len=8, n_patches=13)
    assert n_params == 133_344


def test_parameter_count_etth1_h336():
    model = Gateformer(lookback=96, horizon=336, n_vars=7, e_layers=2, d_model=128, d_ff=128)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == _expected_params(lookback=96, horizon=336, d_model=128, d_ff=128, e_layers=2, patch_len=8, n_patches=13)


def _torch_layer(block) -> nn.TransformerEncoderLayer:
    """The nn.TransformerEncoderLayer(norm_first=True) that computes the same as our PreNormBlock."""
    d_model, d_ff = block.ffn.fc1.in_features, block.ffn.fc1.out_features
    layer = nn.TransformerEncoderLayer(d_model, block.mixer.n_heads, d_ff, batch_first=True, norm_first=True)
    attn = block.mixer
    with torch.no_grad():
        layer.self_attn.in_proj_weight.copy_(torch.cat([attn.to_q.weight, attn.to_k.weight, attn.to_v.weight]))
        layer.self_attn.in_proj_bias.copy_(torch.cat([attn.to_q.bias, attn.to_k.bias, attn.to_v.bias]))
        layer.self_attn.out_proj.load_state_dict(attn.to_out.state_dict())
        layer.linear1.load_state_dict(block.ffn.fc1.state_dict())
        layer.linear2.load_state_dict(block.ffn.fc2.state_dict())
        layer.norm1.load_state_dict(block.norm1.state_dict())
        layer.norm2.load_state_dict(block.norm2.state_dict())
    return layer.eval()


def test_matches_the_official_data_flow():
    """Re-run the steps of the official models/Gateformer.py with torch's encoder layers and our weights."""
    model = small(e_layers=2, lookback=36, patch_len=8, stride=8).eval()
    temporal = nn.Sequential(*[_torch_layer(b) for b in model.temporal_encoder.layers])
    variate = nn.Sequential(*[_torch_layer(b) for b in model.variate_encoder.layers])
    x = torch.randn(3, 36, 4) * 2 + 1

    means = x.mean(1, keepdim=True)
    stdev = torch.sqrt(torch.var(x - means, dim=1, keepdim=True, unbiased=False) + 1e-5)
    xn = (x - means) / stdev
    glob = model.global_embed[0](xn.permute(0, 2, 1))                                 # [B, N, D]
    patches = nn.functional.pad(xn.permute(0, 2, 1), (0, 8), mode="replicate").unfold(-1, 8, 8)
    tokens = model.patch_embed.value_embedding(patches.reshape(12, 5, 8))             # [B*N, P, D]
    tokens = tokens + model.patch_embed.position.pe[:5]
    enc = temporal(tokens).reshape(3, 4, 5, 16).permute(0, 1, 3, 2).flatten(-2)       # [B, N, D*P]
    temp = model.temporal_head[0](enc)
    g1 = model.time_gate
    gate = torch.sigmoid(g1.proj_a(glob) + g1.proj_b(temp))
    v = gate * glob + (1 - gate) * temp
    c = variate(v)
    g2 = model.variate_gate
    gate = torch.sigmoid(g2.proj_a(v) + g2.proj_b(c))
    z = gate * v + (1 - gate) * c
    expected = model.head(z).permute(0, 2, 1) * stdev + means

    torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-5)


# -- the temporal encoder's own slots: temporal_stack, temporal_reducer (issue 26) --------------------------------


def test_temporal_stack_arranges_the_temporal_encoder_alone():
    """An order-reading stack runs over each variate's ordered patches; the variate encoder keeps ``stack``."""
    from tsformers.backbone import build_class

    model = small(temporal_stack="sret", stack="looped")
    assert isinstance(model.temporal_encoder, build_class("stack", "sret"))
    assert isinstance(model.variate_encoder, build_class("stack", "looped"))
    plain = small()   # None: ``stack`` arranges both, as before the slot existed
    assert type(plain.temporal_encoder) is type(plain.variate_encoder) is build_class("stack", "standard")
    assert model(torch.randn(2, 48, 4)).shape == (2, 12, 4)


def test_an_order_reading_stack_is_refused_over_the_variates_and_pointed_to_temporal_stack():
    with pytest.raises(ValueError, match="needs ordered tokens.*temporal_stack='fit'"):
        small(stack="fit")


def test_temporal_stack_and_a_mixer_with_a_stage_of_its_own_go_together():
    assert type(small(temporal_mixer="fca", temporal_stack="fca_stage").temporal_encoder).__name__ == "FcaStage"
    with pytest.raises(ValueError, match=r"pick a temporal stack from \['fca_stage'\]"):
        small(temporal_mixer="fca", temporal_stack="fit")
    with pytest.raises(ValueError, match="runs its own mixer.*pick a temporal stack from"):
        small(temporal_stack="fca_stage")


@pytest.mark.parametrize("reducer", ["kmeans_xattn", "ltm", "pem_xattn", "qpool_stage", "resnas_stage"])
def test_temporal_reducer_halves_the_patch_tokens_before_the_flatten_head(reducer):
    model = small(temporal_reducer=reducer)          # lookback 48, patch_len = stride = 8: 7 patches (end padded)
    tokens = model.temporal_encoder(model.patch_embed(torch.randn(2, 4, 48)).flatten(0, 1))   # (B·N, P, D)
    assert tokens.shape == (8, 7, 16)
    assert model.temporal_reducer(tokens).shape == (8, 4, 16)                             # ceil(7 / 2)
    assert model.temporal_head[0].in_features == 16 * 4
    assert small().temporal_reducer is None and small().temporal_head[0].in_features == 16 * 7   # the paper's


def test_an_unknown_temporal_reducer_lists_the_ones_that_fit():
    with pytest.raises(ValueError, match=r"pick one of \['kmeans_xattn', 'ltm', 'pem_xattn', 'qpool_stage', "
                                         r"'resnas_stage'\] or None"):
        small(temporal_reducer="full")


def test_cswin_is_refused_as_temporal_mixer_with_the_reason():
    """Its cross needs a variates x patches grid; one variate's patches are a 1 x P grid, and columns are unordered."""
    with pytest.raises(ValueError, match="variates × patches grid.*'lepe'.*pick a temporal mixer from"):
        small(temporal_mixer="cswin")
