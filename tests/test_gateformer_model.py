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


# -- the temporal stage from other papers' parts: cswin, tnt, crossvit (issue 26) ----------------------------------


def test_cswin_over_the_variates_x_patches_grid_keeps_the_variates_an_unordered_set():
    """Permuting the input's variates permutes the forecast's: CSWin's grid reads no order of the columns."""
    model = small(temporal_mixer="cswin", dropout=0.0).eval()
    x = torch.randn(2, 48, 4)
    perm = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        torch.testing.assert_close(model(x)[..., perm], model(x[..., perm]), atol=1e-5, rtol=1e-4)


def test_cswin_joins_the_variates_in_the_temporal_encoder():
    """Unlike a per-variate mixer, it lets one variate's patches change another's temporal tokens."""
    x = torch.randn(2, 48, 4)
    changed = x.clone()
    changed[:, :, 1] = torch.randn(2, 48)
    for mixer, joint in [("cswin", True), ("full", False)]:
        model = small(temporal_mixer=mixer, dropout=0.0).eval()
        with torch.no_grad():
            views = [model.patch_view(model.norm(v)[0].transpose(1, 2)) for v in (x, changed)]
        assert (not torch.allclose(views[0][:, 0], views[1][:, 0])) == joint, mixer


def test_cswin_is_refused_in_a_stack_that_regroups_the_rows():
    with pytest.raises(ValueError, match=r"temporal_stack='sret' cannot hold temporal_mixer='cswin'.*row whole.*"
                                         r"pick a temporal stack from \['deep', 'hybrid'"):
        small(temporal_mixer="cswin", temporal_stack="sret")
    with pytest.raises(ValueError, match=r"stack='adaptive_depth' arranges the temporal encoder too.*pick a stack "
                                         r"from \["):
        small(temporal_mixer="cswin", stack="adaptive_depth")
    assert small(temporal_mixer="cswin", temporal_stack="hybrid")(torch.randn(2, 48, 4)).shape == (2, 12, 4)


def test_tnt_blocks_carry_each_patchs_words_into_its_token():
    """With fixed sentence tokens, changing the words alone changes the temporal encoder's output."""
    from tsformers.backbone import build_class

    model = small(embedding="tnt_words", temporal_block="tnt", e_layers=2, dropout=0.0).eval()
    assert sum(isinstance(m, build_class("block", "tnt")) for m in model.modules()) == 2
    tokens, words = model.patch_embed.sentences_and_words(torch.randn(2, 4, 48))      # (B, N, P, D), (..., w, c)
    assert tokens.shape == (2, 4, 6, 16) and words.shape == (2, 4, 6, 8, 2)          # d_inner = ceil(16 / 8)
    tokens, words = tokens.flatten(0, 1), words.flatten(0, 1)
    other = words.clone()
    other[:, 2] = torch.randn_like(other[:, 2])                                        # patch 2's words alone
    with torch.no_grad():
        out, moved = model.temporal_encoder(tokens, words), model.temporal_encoder(tokens, other)
    assert out.shape == (8, 6, 16)
    assert not torch.allclose(out[:, 2], moved[:, 2])
    assert model(torch.randn(3, 48, 4)).shape == (3, 12, 4)


def test_tnt_blocks_need_the_words_and_arrange_themselves():
    with pytest.raises(ValueError, match="embedding='patch' does not make; set embedding='tnt_words'"):
        small(temporal_block="tnt")
    with pytest.raises(ValueError, match="temporal_stack='sret' cannot arrange; leave temporal_stack None"):
        small(temporal_block="tnt", embedding="tnt_words", temporal_stack="sret")
    with pytest.raises(ValueError, match=r"pick one of \['tnt'\] or None"):
        small(temporal_block="prenorm", embedding="tnt_words")


def test_crossvit_two_branches_replace_the_patches_encoder_and_head():
    from tsformers.backbone import build_class

    model = small(temporal_fusion="crossvit_two_branch", dropout=0.0).eval()
    assert model.patch_embed is None and model.temporal_encoder is None and model.temporal_head is None
    branches = model.temporal_view.branches
    assert isinstance(branches, build_class("fusion", "crossvit_two_branch"))
    assert (branches.cls_small.shape[-1], branches.cls_large.shape[-1]) == (16, 32)        # d_model, 2·d_model
    assert (branches.embed_small.patch_len, branches.embed_large.patch_len) == (8, 16)     # patch_len, 2·patch_len
    x = torch.randn(2, 4, 48)
    with torch.no_grad():
        expected = model.temporal_view.head(branches.features(x.reshape(8, 48))).reshape(2, 4, 16)
        torch.testing.assert_close(model.temporal_view(x), expected)
    assert model(torch.randn(2, 48, 4)).shape == (2, 12, 4)


def test_crossvit_two_branches_refuse_what_cannot_apply():
    with pytest.raises(ValueError, match="temporal_reducer='ltm' cannot apply; leave each at its default"):
        small(temporal_fusion="crossvit_two_branch", temporal_reducer="ltm")
    with pytest.raises(ValueError, match="longer than lookback=12; lower patch_len to at most 6"):
        small(temporal_fusion="crossvit_two_branch", lookback=12)
    with pytest.raises(ValueError, match=r"pick one of \['crossvit_two_branch'\] or None"):
        small(temporal_fusion="crossvit_fusion")
