"""MetaFormer / PoolFormer (catalog A): pool is local and zero on constants; the block wraps any mixer."""

from __future__ import annotations

import pytest
import torch

from tsformers.backbone import build

D = 16


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("k", [3, 4, 5])
def test_pool_gives_zero_on_a_constant_sequence(k, causal):
    pool = build("mixer", "pool", d_model=D, pool_size=k, causal=causal)
    x = torch.randn(2, 1, D).expand(2, 11, D)  # includes the borders, where the padding is not counted
    assert pool(x).abs().max() < 1e-5
    assert pool(torch.randn(2, 11, D)).abs().max() > 0.1


@pytest.mark.parametrize("k", [3, 5])
def test_pool_output_at_t_depends_only_on_t_plus_minus_half_the_kernel(k):
    pool = build("mixer", "pool", d_model=D, pool_size=k)
    x = torch.randn(1, 12, D, requires_grad=True)
    t = 6
    pool(x)[0, t].sum().backward()
    touched = x.grad[0].abs().sum(-1) > 0
    assert touched.nonzero().flatten().tolist() == list(range(t - k // 2, t + k // 2 + 1))
    # the window average itself, at the border: the mean of the tokens that exist
    x = torch.arange(12.0).view(1, 12, 1).expand(1, 12, D)
    assert torch.allclose(pool(x)[0, 0], torch.full((D,), 1.0 if k == 5 else 0.5))  # mean(0..k//2) - 0


def test_causal_pool_only_looks_back():
    pool = build("mixer", "pool", d_model=D, pool_size=3, causal=True)
    x = torch.randn(1, 10, D, requires_grad=True)
    pool(x)[0, 5].sum().backward()
    assert (x.grad[0].abs().sum(-1) > 0).nonzero().flatten().tolist() == [3, 4, 5]


def test_mean_and_identity_baselines():
    x, kv = torch.randn(2, 5, D), torch.randn(2, 3, D)
    mean = build("mixer", "mean", d_model=D)
    torch.testing.assert_close(mean(x), x.mean(1, keepdim=True).expand_as(x))
    torch.testing.assert_close(mean(x, kv), kv.mean(1, keepdim=True).expand_as(x))
    running = build("mixer", "mean", d_model=D, causal=True)(x)
    torch.testing.assert_close(running[:, 2], x[:, :3].mean(1))
    keep = torch.tensor([[True, False, True, True, False]] * 2)
    torch.testing.assert_close(mean(x, mask=keep)[:, 0], x[:, [0, 2, 3]].mean(1))
    assert build("mixer", "identity", d_model=D)(x) is x


@pytest.mark.parametrize("mixer", ["pool", "identity", "mean", "full"])
def test_the_block_is_x_plus_scaled_mixer_then_x_plus_scaled_mlp(mixer):
    torch.manual_seed(0)
    block = build("block", "metaformer", d_model=D, n_heads=2, d_ff=32, mixer=mixer, layer_scale_init=0.5).eval()
    x = torch.randn(2, 9, D)
    h = x + 0.5 * block.mixer(block.norm1(x))
    torch.testing.assert_close(block(x), h + 0.5 * block.ffn(block.norm2(h)))
    # layer scale at zero makes the block the identity
    torch.nn.init.zeros_(block.scale1.scale)
    torch.nn.init.zeros_(block.scale2.scale)
    torch.testing.assert_close(block(x), x)


def test_the_block_takes_a_registered_norm():
    block = build("block", "metaformer", d_model=D, mixer="pool", norm="prepbn",
                  norm_kwargs={"warmup_steps": 0, "decay_steps": 10})
    assert type(block.norm1).__name__ == "PRepBN"
    assert block(torch.randn(2, 7, D)).shape == (2, 7, D)
