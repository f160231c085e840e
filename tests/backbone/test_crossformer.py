"""CrossFormer's LSDA, DPB and CEL (backbone-catalog.md, section A): the mechanism of each."""

from __future__ import annotations

import pytest
import torch

from tsformers.backbone import build, build_class
from tsformers.backbone.mixers import FullAttention
from tsformers.backbone.mixers.crossformer import (CrossScaleEmbedding, DynamicPositionBias,
                                                   LongShortDistanceAttention, lsda_groups)

D, H = 32, 4


def _lsda(**kwargs):
    torch.manual_seed(0)
    return LongShortDistanceAttention(D, n_heads=H, **kwargs).eval()


def _influence(mixer, n, t, s):
    """How much output t moves when token s alone changes."""
    torch.manual_seed(1)
    x = torch.randn(2, n, D)
    changed = x.clone()
    changed[:, s] += 3 * torch.randn(2, D)
    with torch.no_grad():
        return (mixer(x)[:, t] - mixer(changed)[:, t]).abs().max().item()


def test_the_names_are_registered():
    assert build_class("mixer", "lsda") is LongShortDistanceAttention
    assert build_class("position_bias", "dpb") is DynamicPositionBias
    assert build_class("embedding", "cel") is CrossScaleEmbedding


def test_groups_cover_every_token_once_with_padding_marked():
    short = lsda_groups(10, "short", 4, 3)
    assert short.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, -1, -1]]
    long = lsda_groups(10, "long", 4, 3)
    assert long.tolist() == [[0, 3, 6, 9], [1, 4, 7, -1], [2, 5, 8, -1]]


@pytest.mark.parametrize("causal", [False, True])
def test_sda_output_ignores_tokens_outside_its_group(causal):
    mixer = _lsda(mode="short", group_size=4, causal=causal)
    n, t = 14, 5                                                       # group of t: tokens 4..7
    for s in range(n):
        inside = 4 <= s <= 7 and (not causal or s <= t)
        moved = _influence(mixer, n, t, s)
        assert (moved > 1e-4) if inside else (moved < 1e-6), (s, moved)


@pytest.mark.parametrize("causal", [False, True])
def test_lda_output_ignores_tokens_with_another_index_mod_interval(causal):
    mixer = _lsda(mode="long", interval=4, causal=causal)
    n, t = 17, 9                                                       # 9 mod 4 = 1: tokens 1, 5, 9, 13
    for s in range(n):
        inside = s % 4 == 1 and (not causal or s <= t)
        moved = _influence(mixer, n, t, s)
        assert (moved > 1e-4) if inside else (moved < 1e-6), (s, moved)


def test_one_group_without_position_bias_is_full_attention():
    mixer = _lsda(mode="short", group_size=16, position_bias=False)
    full = FullAttention(D, n_heads=H).eval()
    with torch.no_grad():
        for i, proj in enumerate((full.to_q, full.to_k, full.to_v)):
            proj.weight.copy_(mixer.qkv.weight[i * D:(i + 1) * D])
            proj.bias.copy_(mixer.qkv.bias[i * D:(i + 1) * D])
        full.to_out.load_state_dict(mixer.to_out.state_dict())
        x = torch.randn(3, 11, D)
        torch.testing.assert_close(mixer(x), full(x), atol=1e-5, rtol=1e-4)
        full.causal, mixer.causal = True, True
        torch.testing.assert_close(mixer(x), full(x), atol=1e-5, rtol=1e-4)


def test_padding_does_not_leak_into_real_tokens():
    # N = 5 with G = 4: the second group holds token 4 and three padding slots.
    mixer = _lsda(mode="short", group_size=4, position_bias=False)
    x = torch.randn(2, 5, D)
    with torch.no_grad():
        alone = mixer(x[:, 4:])                                        # a group of one token
        torch.testing.assert_close(mixer(x)[:, 4:], alone, atol=1e-5, rtol=1e-4)
        # a group of one token attends to itself only: the output is the value projection
        v = mixer.qkv(x[:, 4:])[..., 2 * D:]
        torch.testing.assert_close(alone, mixer.to_out(v), atol=1e-5, rtol=1e-4)


def test_the_full_attention_mask_is_honoured_inside_groups():
    mixer = _lsda(mode="short", group_size=4)
    x = torch.randn(2, 8, D)
    mask = torch.ones(8, 8, dtype=torch.bool)
    mask[:, 1] = False                                                 # nobody may read token 1
    changed = x.clone()
    changed[:, 1] += 5
    with torch.no_grad():
        a, b = mixer(x, mask=mask), mixer(changed, mask=mask)
    torch.testing.assert_close(a[:, [0, 2, 3]], b[:, [0, 2, 3]])


def test_dpb_depends_on_the_offset_only_and_extends_to_any_length():
    torch.manual_seed(0)
    dpb = DynamicPositionBias(H, d_model=D)
    small, large = dpb.pairwise(4), dpb.pairwise(9)                    # (H, 4, 4), (H, 9, 9)
    assert small.shape == (H, 4, 4) and large.shape == (H, 9, 9)
    torch.testing.assert_close(large[:, :4, :4], small)               # same offsets, same bias
    torch.testing.assert_close(large[:, 2, 0], large[:, 7, 5])         # offset 2 wherever it is
    assert not torch.allclose(large[:, 2, 0], large[:, 0, 2])          # i - j, not |i - j|
    torch.testing.assert_close(dpb(torch.tensor([[3.0]]))[0], large[:, 3, 0])


def test_dpb_changes_lsda_outputs_and_learns():
    with_bias, without = _lsda(group_size=4), _lsda(group_size=4, position_bias=False)
    without.load_state_dict({k: v for k, v in with_bias.state_dict().items() if not k.startswith("position")})
    x = torch.randn(2, 8, D)
    assert not torch.allclose(with_bias(x), without(x))
    with_bias(x).square().sum().backward()
    assert with_bias.position.head[-1].weight.grad.abs().sum() > 0


def test_cel_single_kernel_is_a_linear_patch_embedding():
    torch.manual_seed(0)
    cel = CrossScaleEmbedding(2, 16, patch_len=4, kernel_mults=(1,), norm=False)
    x = torch.randn(3, 2, 18)                                          # 18 // 4 = 4 patches
    patches = x[..., :16].unfold(-1, 4, 4)                              # (B, C, P, 4)
    w = cel.projs[0].weight                                            # (16, C, 4)
    expected = torch.einsum("bcpk,dck->bpd", patches, w) + cel.projs[0].bias
    torch.testing.assert_close(cel(x), expected, atol=1e-5, rtol=1e-4)


def test_cel_splits_dims_and_each_kernel_sees_its_centred_span():
    torch.manual_seed(0)
    cel = CrossScaleEmbedding(1, 32, patch_len=4, norm=False)          # kernels 4, 8, 16, 32
    assert cel.dims == [16, 8, 4, 4] and cel.kernels == [4, 8, 16, 32]
    x = torch.randn(1, 1, 64)
    assert cel(x).shape == (1, 16, 32)
    p = 7                                                              # patch 7 spans steps 28..31
    for i, (k, start) in enumerate(zip(cel.kernels, [0, 16, 24, 28])):
        lo = 4 * p - (k - 4) // 2                                      # first step the kernel reads
        hi = lo + k
        dims = slice(start, start + cel.dims[i])
        for step, inside in [(lo, True), (hi - 1, True), (lo - 1, False), (hi, False)]:
            if not 0 <= step < 64:
                continue
            changed = x.clone()
            changed[..., step] += 1.0
            moved = (cel(changed) - cel(x))[0, p, dims].abs().max().item()
            assert (moved > 0) if inside else (moved == 0), (k, step, moved)


def test_cel_builds_from_the_registry_and_is_normalised():
    cel = build("embedding", "cel", in_ch=3, d_model=24, patch_len=6, kernel_mults=(1, 2, 4))
    out = cel(torch.randn(2, 3, 50))
    assert out.shape == (2, 8, 24)
    torch.testing.assert_close(out.mean(-1), torch.zeros(2, 8), atol=1e-5, rtol=0)
