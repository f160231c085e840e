"""Backbone parts: instance norm, patch embedding, attention, blocks, gate, registry."""

import pytest
import torch
from torch import nn

from tsformers.backbone import (
    FullAttention,
    InstanceNorm,
    PatchEmbedding,
    PostNormBlock,
    PreNormBlock,
    SigmoidGate,
    TransformerEncoder,
    available,
    build,
    register,
    registry,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ---------------------------------------------------------------- InstanceNorm


@pytest.mark.parametrize("affine", [False, True])
def test_instance_norm_standardises_and_inverts(affine):
    x = torch.randn(4, 96, 3) * torch.tensor([1.0, 10.0, 0.5]) + torch.tensor([5.0, -3.0, 100.0])
    norm = InstanceNorm(n_vars=3, affine=affine)
    x_norm, stats = norm(x)
    assert x_norm.shape == x.shape
    torch.testing.assert_close(x_norm.mean(dim=1), torch.zeros(4, 3), atol=1e-4, rtol=0)  # float32 at 100
    torch.testing.assert_close(x_norm.std(dim=1, unbiased=False), torch.ones(4, 3), atol=1e-3, rtol=0)
    torch.testing.assert_close(norm.inverse(x_norm, stats), x, atol=1e-4, rtol=1e-5)


def test_instance_norm_stats_are_detached_and_affine_is_learnable():
    x = torch.randn(2, 16, 3, requires_grad=True)
    norm = InstanceNorm(n_vars=3, affine=True)
    x_norm, (mean, std) = norm(x)
    assert not mean.requires_grad and not std.requires_grad
    assert mean.shape == std.shape == (2, 1, 3)
    with torch.no_grad():
        norm.weight.fill_(2.0)
        norm.bias.fill_(1.0)
    x_norm2, stats = norm(x)
    torch.testing.assert_close(x_norm2, 2 * x_norm + 1)
    torch.testing.assert_close(norm.inverse(x_norm2, stats), x, atol=1e-5, rtol=1e-5)


def test_instance_norm_affine_needs_n_vars():
    with pytest.raises(AssertionError, match="n_vars"):
        InstanceNorm(affine=True)


# ---------------------------------------------------------------- PatchEmbedding


def test_patch_count_formula():
    assert PatchEmbedding(16, patch_len=8, stride=8).n_patches(96) == 13
    assert PatchEmbedding(16, patch_len=16, stride=8).n_patches(96) == 12  # PatchTST's setting
    emb = PatchEmbedding(16, patch_len=8, stride=8)
    assert emb(torch.randn(2, 3, 96)).shape == (2, 3, 13, 16)
    assert emb(torch.randn(5, 36)).shape == (5, 5, 16)


def test_patches_pad_the_end_by_replication_then_unfold():
    emb = PatchEmbedding(4, patch_len=4, stride=2)
    x = torch.arange(10.0).repeat(2, 3, 1)  # (2, 3, 10): 0..9 in every series
    patches = emb.patches(x)
    expected = torch.tensor(
        [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7], [6, 7, 8, 9], [8, 9, 9, 9]], dtype=torch.float32
    )
    assert emb.n_patches(10) == 5
    assert patches.shape == (2, 3, 5, 4)
    torch.testing.assert_close(patches, expected.expand(2, 3, 5, 4))


def test_patch_embedding_is_linear_of_patches_plus_sinusoidal_position():
    emb = PatchEmbedding(4, patch_len=4, stride=2).eval()
    with torch.no_grad():
        emb.value_embedding.weight.copy_(torch.eye(4))
    x = torch.arange(10.0)[None]
    pos = torch.arange(5.0)  # 5 patches, D = 4: frequencies 1 and 1/100
    pe = torch.stack([torch.sin(pos), torch.cos(pos), torch.sin(pos / 100), torch.cos(pos / 100)], dim=-1)
    torch.testing.assert_close(emb(x)[0], emb.patches(x)[0] + pe)


def test_patch_embedding_rejects_too_short_series():
    with pytest.raises(AssertionError, match="too short"):
        PatchEmbedding(8, patch_len=16, stride=4)(torch.randn(2, 10))


# ---------------------------------------------------------------- attention and blocks


def _copy_into(ours, ref: nn.TransformerEncoderLayer):
    """Copy a reference layer's weights into a PreNormBlock/PostNormBlock with mixer "full"."""
    attn = ours.mixer
    wq, wk, wv = ref.self_attn.in_proj_weight.chunk(3)
    bq, bk, bv = ref.self_attn.in_proj_bias.chunk(3)
    pairs = [
        (attn.to_q.weight, wq), (attn.to_k.weight, wk), (attn.to_v.weight, wv),
        (attn.to_q.bias, bq), (attn.to_k.bias, bk), (attn.to_v.bias, bv),
        (attn.to_out.weight, ref.self_attn.out_proj.weight), (attn.to_out.bias, ref.self_attn.out_proj.bias),
        (ours.ffn.fc1.weight, ref.linear1.weight), (ours.ffn.fc1.bias, ref.linear1.bias),
        (ours.ffn.fc2.weight, ref.linear2.weight), (ours.ffn.fc2.bias, ref.linear2.bias),
        (ours.norm1.weight, ref.norm1.weight), (ours.norm1.bias, ref.norm1.bias),
        (ours.norm2.weight, ref.norm2.weight), (ours.norm2.bias, ref.norm2.bias),
    ]
    with torch.no_grad():
        for dst, src in pairs:
            dst.copy_(src)


@pytest.mark.parametrize("norm_first, block_cls", [(True, PreNormBlock), (False, PostNormBlock)])
@pytest.mark.parametrize("batch, n_tokens, d_model, n_heads, d_ff", [(3, 13, 64, 4, 64), (2, 7, 32, 8, 96)])
def test_block_equals_torch_transformer_encoder_layer(norm_first, block_cls, batch, n_tokens, d_model, n_heads, d_ff):
    ref = nn.TransformerEncoderLayer(d_model, n_heads, d_ff, dropout=0.1, batch_first=True, norm_first=norm_first)
    with torch.no_grad():  # non-trivial LayerNorm parameters, so that copying them is checked too
        for norm in (ref.norm1, ref.norm2):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    ours = block_cls(d_model, n_heads=n_heads, d_ff=d_ff, dropout=0.1)
    _copy_into(ours, ref)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    ref.eval(), ours.eval()
    x = torch.randn(batch, n_tokens, d_model)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-6, rtol=1e-5)


def test_encoder_stack_layers_and_final_norm():
    enc = TransformerEncoder(d_model=16, n_heads=2, d_ff=32, n_layers=3, final_norm=True)
    assert len(enc.layers) == 3 and all(isinstance(layer, PreNormBlock) for layer in enc.layers)
    assert isinstance(enc.norm, nn.LayerNorm)
    assert isinstance(TransformerEncoder(d_model=16, n_heads=2, d_ff=32, n_layers=1).norm, nn.Identity)
    post = TransformerEncoder(d_model=16, n_heads=2, d_ff=32, n_layers=2, block="postnorm", activation="gelu")
    assert all(isinstance(layer, PostNormBlock) for layer in post.layers)
    assert post(torch.randn(2, 5, 16)).shape == (2, 5, 16)


def test_the_standard_stack_repeats_the_metaformer_block_by_name():
    from tsformers.backbone.mixers.metaformer import MetaFormerBlock

    x = torch.randn(2, 5, 16)
    torch.manual_seed(0)
    meta = TransformerEncoder(d_model=16, n_heads=2, d_ff=32, n_layers=2, dropout=0.0, block="metaformer").eval()
    torch.manual_seed(0)
    pre = TransformerEncoder(d_model=16, n_heads=2, d_ff=32, n_layers=2, dropout=0.0).eval()
    assert all(isinstance(layer, MetaFormerBlock) for layer in meta.layers)
    assert all(isinstance(layer.mixer, FullAttention) for layer in meta.layers)   # the stack's mixer, not pool
    # LayerScale starts at 1e-5 (PoolFormer's): each residual branch adds almost nothing at init
    assert (meta(x) - x).abs().max() < 1e-4
    assert (pre(x) - x).abs().max() > 0.1
    # with layer scale 0.5 the stack is the paper's formula, block after block
    torch.manual_seed(0)
    meta = TransformerEncoder(d_model=16, n_heads=2, d_ff=32, n_layers=2, dropout=0.0, block="metaformer",
                              block_kwargs={"layer_scale_init": 0.5}).eval()
    h = x
    for block in meta.layers:
        h = h + 0.5 * block.mixer(block.norm1(h))
        h = h + 0.5 * block.ffn(block.norm2(h))
    torch.testing.assert_close(meta(x), h)


def test_a_block_without_the_chosen_part_or_the_stack_interface_is_refused():
    shape = dict(d_model=16, n_heads=2, d_ff=32, n_layers=1)
    with pytest.raises(ValueError, match=r"ffn='conv' needs a block with a 'ffn' slot.*\['postnorm', 'prenorm'\]"):
        TransformerEncoder(**shape, block="metaformer", ffn="conv")
    with pytest.raises(ValueError, match="ffn_kwargs=.*block='metaformer' has a fixed one"):
        TransformerEncoder(**shape, block="metaformer", ffn_kwargs={"activation": "gelu"})
    with pytest.raises(ValueError, match=r"block='tnt' does not take.*\['metaformer', 'postnorm', 'prenorm'\]"):
        TransformerEncoder(**shape, block="tnt")
    meta = TransformerEncoder(**shape, block="metaformer", norm="prepbn")   # its norm slot works
    assert type(meta.layers[0].norm1).__name__ == "PRepBN"


def test_full_attention_causal_does_not_look_ahead():
    attn = FullAttention(16, n_heads=4, causal=True).eval()
    x = torch.randn(2, 10, 16)
    t = 4
    x2 = x.clone()
    x2[:, t + 1 :] = torch.randn(2, 10 - t - 1, 16)
    y, y2 = attn(x), attn(x2)
    torch.testing.assert_close(y[:, : t + 1], y2[:, : t + 1])
    assert not torch.allclose(y[:, t + 1 :], y2[:, t + 1 :])
    # the same with an explicit all-True mask (the causal mask is combined with it)
    torch.testing.assert_close(attn(x, mask=torch.ones(10, 10, dtype=torch.bool)), y)


def test_full_attention_non_causal_sees_everything_and_is_permutation_equivariant():
    attn = FullAttention(16, n_heads=4).eval()
    x = torch.randn(2, 6, 16)
    x2 = x.clone()
    x2[:, -1] += 1.0
    assert not torch.allclose(attn(x)[:, 0], attn(x2)[:, 0])
    perm = torch.randperm(6)
    torch.testing.assert_close(attn(x[:, perm]), attn(x)[:, perm], atol=1e-6, rtol=1e-5)


def test_full_attention_cross_attends_to_context():
    attn = FullAttention(16, n_heads=2).eval()
    x, context = torch.randn(2, 5, 16), torch.randn(2, 9, 16)
    y = attn(x, context)
    assert y.shape == (2, 5, 16)
    # a query's output depends on the context only, not on the other queries
    torch.testing.assert_close(attn(x[:, :1], context), y[:, :1])
    # a mask that hides all but the first context token = attending to that token alone
    mask = torch.zeros(5, 9, dtype=torch.bool)
    mask[:, 0] = True
    torch.testing.assert_close(attn(x, context, mask=mask), attn(x, context[:, :1]))


def test_full_attention_rejects_indivisible_heads():
    with pytest.raises(AssertionError, match="divisible"):
        FullAttention(10, n_heads=3)


# ---------------------------------------------------------------- SigmoidGate


def test_sigmoid_gate_open_returns_first_input():
    gate = SigmoidGate(8)
    with torch.no_grad():
        for proj in (gate.proj_a, gate.proj_b):
            proj.weight.zero_()
            proj.bias.fill_(20.0)  # sigmoid(40) == 1.0 in float32
    a, b = torch.randn(3, 5, 8), torch.randn(3, 5, 8)
    torch.testing.assert_close(gate(a, b), a, atol=0, rtol=0)


def test_sigmoid_gate_matches_formula():
    gate = SigmoidGate(8)
    a, b = torch.randn(3, 5, 8), torch.randn(3, 5, 8)
    g = torch.sigmoid(a @ gate.proj_a.weight.T + gate.proj_a.bias + b @ gate.proj_b.weight.T + gate.proj_b.bias)
    torch.testing.assert_close(gate(a, b), g * a + (1 - g) * b)
    assert sum(p.numel() for p in gate.parameters()) == 2 * (8 * 8 + 8)


# ---------------------------------------------------------------- registry


def test_registry_lists_and_builds():
    assert "full" in available("mixer")
    assert available("mixer") == sorted(available("mixer"))
    assert {"mixer", "block", "gate"} <= set(available())
    attn = build("mixer", "full", d_model=16, n_heads=2)
    assert type(attn) is FullAttention
    assert type(build("gate", "sigmoid", d_model=8)) is SigmoidGate
    assert type(build("block", "prenorm", d_model=8, n_heads=2, d_ff=16)) is PreNormBlock


def test_registry_errors_list_the_choices():
    with pytest.raises(ValueError, match=r"unknown mixer 'nope'.*full"):
        build("mixer", "nope", d_model=16)
    with pytest.raises(ValueError, match=r"unknown kind 'nope'.*mixer"):
        available("nope")
    with pytest.raises(ValueError, match="unknown mixer 'nope'"):
        PreNormBlock(8, n_heads=2, d_ff=16, mixer="nope")


def test_register_rejects_a_taken_name(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", {k: dict(v) for k, v in registry._REGISTRY.items()})

    @register("mixer", "test_only")
    class Mixer(nn.Module):
        pass

    assert "test_only" in available("mixer")
    with pytest.raises(ValueError, match="already registered"):
        register("mixer", "full")(Mixer)
