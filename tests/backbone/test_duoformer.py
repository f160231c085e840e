"""DuoFormer's scale-wise + patch-wise attention (backbone-catalog.md, section A)."""

from __future__ import annotations

import pytest
import torch

from tsformers.backbone import build_class
from tsformers.backbone.mixers import FullAttention
from tsformers.backbone.mixers.duoformer import DuoScaleAttention, duo_groups

D, H = 32, 4


def _twin(attn):
    full = FullAttention(D, n_heads=H).eval()
    with torch.no_grad():
        for i, proj in enumerate((full.to_q, full.to_k, full.to_v)):
            proj.weight.copy_(attn.qkv.weight[i * D:(i + 1) * D])
            proj.bias.copy_(attn.qkv.bias[i * D:(i + 1) * D])
        full.to_out.load_state_dict(attn.to_out.state_dict())
    return full


def _reach(mixer, n):
    x = torch.randn(1, n, D)
    jac = torch.autograd.functional.jacobian(lambda t: mixer(t), x)[0, :, :, 0]  # (N, D, N, D)
    return jac.abs().amax(dim=(1, 3))                                   # (N out, N in)


def test_the_name_is_registered():
    assert build_class("mixer", "duo_scale") is DuoScaleAttention


def test_groups():
    by_patch, by_scale = duo_groups(8, 3)
    assert by_patch.tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, -1]]
    assert by_scale.tolist() == [[0, 3, 6], [1, 4, 7], [2, 5, -1]]


@pytest.mark.parametrize("causal", [False, True])
def test_with_patch_wise_attention_off_patches_are_isolated(causal):
    torch.manual_seed(0)
    mixer = DuoScaleAttention(D, n_heads=H, n_scales=3, patch_wise=False, causal=causal).eval()
    n = 14                                                             # 5 patches, the last one has 2 tokens
    reach = _reach(mixer, n)
    for t in range(n):
        for s in range(n):
            visible = t // 3 == s // 3 and (not causal or s <= t)
            assert (reach[t, s] > 1e-6) if visible else (reach[t, s] == 0), (t, s)


def test_with_patch_wise_attention_on_patches_talk_through_their_scales():
    torch.manual_seed(0)
    mixer = DuoScaleAttention(D, n_heads=H, n_scales=3).eval()
    reach = _reach(mixer, 12)
    assert (reach > 1e-6).all()                                         # every token reaches every token
    torch.manual_seed(0)
    causal = DuoScaleAttention(D, n_heads=H, n_scales=3, causal=True).eval()
    reach = _reach(causal, 12)
    for t in range(12):
        for s in range(12):
            (p, sc), (q, sq) = divmod(t, 3), divmod(s, 3)
            visible = q <= p and sq <= sc                               # earlier patches, coarser-listed scales
            assert (reach[t, s] > 1e-6) if visible else (reach[t, s] == 0), (t, s)


def test_one_patch_of_all_scales_is_full_attention():
    torch.manual_seed(0)
    mixer = DuoScaleAttention(D, n_heads=H, n_scales=9, patch_wise=False).eval()
    full = _twin(mixer.scale_attn)
    x = torch.randn(2, 9, D)
    with torch.no_grad():
        torch.testing.assert_close(mixer(x), full(x), atol=1e-5, rtol=1e-4)


def test_one_scale_is_values_then_full_attention_over_patches():
    torch.manual_seed(0)
    mixer = DuoScaleAttention(D, n_heads=H, n_scales=1).eval()
    full = _twin(mixer.patch_attn)
    x = torch.randn(2, 7, D)
    with torch.no_grad():
        u = mixer.scale_attn.to_out(mixer.scale_attn.qkv(x)[..., 2 * D:])  # one token per patch: its value
        torch.testing.assert_close(mixer(x), u + full(x + u), atol=1e-5, rtol=1e-4)
