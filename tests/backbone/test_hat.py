"""HAT's overlapping cross-attention and channel attention (backbone-catalog.md, section A)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tsformers.backbone import build_class
from tsformers.backbone.mixers import FullAttention
from tsformers.backbone.mixers.hat import ChannelAttention, OverlappingCrossAttention, ocab_windows

D, H = 32, 4


def _moved(mixer, x, s):
    """|Δ output| per token when token s alone changes: (N,)."""
    changed = x.clone()
    changed[:, s] += 3 * torch.randn(x.shape[0], D, generator=torch.Generator().manual_seed(s))
    with torch.no_grad():
        return (mixer(x) - mixer(changed)).abs().amax(dim=(0, 2))


def test_the_names_are_registered():
    assert build_class("mixer", "hat_ocab") is OverlappingCrossAttention
    assert build_class("mixer", "channel_attention") is ChannelAttention


def test_key_windows_extend_the_query_windows_by_half_the_overlap_each_side():
    qi, ki, left = ocab_windows(10, 4, 0.5, None)                       # M = 4, M_o = 6
    assert left == 1
    assert qi.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, -1, -1]]
    assert ki.tolist() == [[-1, 0, 1, 2, 3, 4], [3, 4, 5, 6, 7, 8], [7, 8, 9, -1, -1, -1]]


@pytest.mark.parametrize("causal", [False, True])
def test_output_changes_within_the_overlap_and_not_beyond(causal):
    torch.manual_seed(0)
    mixer = OverlappingCrossAttention(D, n_heads=H, window=4, overlap_ratio=1.0, causal=causal).eval()
    n = 16
    x = torch.randn(2, n, D)
    t = 6                                                              # window 4..7, keys 2..9 (γM/2 = 2)
    for s in range(n):
        visible = 2 <= s <= 9 and (not causal or s <= t)
        moved = _moved(mixer, x, s)[t].item()
        assert (moved > 1e-4) if visible else (moved < 1e-6), (s, moved)


def test_ocab_without_overlap_or_bias_is_window_attention_and_one_window_is_full_attention():
    torch.manual_seed(0)
    mixer = OverlappingCrossAttention(D, n_heads=H, window=16, overlap_ratio=0.5).eval()
    full = FullAttention(D, n_heads=H).eval()
    with torch.no_grad():
        mixer.relative_bias.zero_()
        for i, proj in enumerate((full.to_q, full.to_k, full.to_v)):
            proj.weight.copy_(mixer.qkv.weight[i * D:(i + 1) * D])
            proj.bias.copy_(mixer.qkv.bias[i * D:(i + 1) * D])
        full.to_out.load_state_dict(mixer.to_out.state_dict())
        x = torch.randn(2, 11, D)                                      # one query window, keys beyond masked
        torch.testing.assert_close(mixer(x), full(x), atol=1e-5, rtol=1e-4)


def test_the_relative_bias_depends_on_the_offset():
    torch.manual_seed(0)
    mixer = OverlappingCrossAttention(D, n_heads=H, window=4, overlap_ratio=0.5)
    index = mixer.bias_index                                           # (M, M_o)
    assert index.shape == (4, 6) and index.min() == 0 and index.max() == mixer.relative_bias.shape[1] - 1
    assert index[0, 1] == index[1, 2] == index[3, 4]                    # same offset, same entry
    x = torch.randn(1, 8, D)
    before = mixer(x)
    with torch.no_grad():
        mixer.relative_bias[:, 3] += 2.0
    assert not torch.allclose(before, mixer(x))


def test_channel_attention_matches_conv_then_squeeze_excitation():
    torch.manual_seed(0)
    mixer = ChannelAttention(D, compress_ratio=2, squeeze_factor=4).eval()
    x = torch.randn(2, 9, D)
    f = F.conv1d(x.transpose(1, 2), mixer.conv1.weight, mixer.conv1.bias, padding=1)
    f = F.conv1d(F.gelu(f), mixer.conv2.weight, mixer.conv2.bias, padding=1).transpose(1, 2)  # (B, N, D)
    s = f.mean(1, keepdim=True) @ mixer.squeeze.weight.T + mixer.squeeze.bias
    s = torch.sigmoid(F.relu(s) @ mixer.excite.weight.T + mixer.excite.bias)
    torch.testing.assert_close(mixer(x), f * s, atol=1e-5, rtol=1e-4)


def test_channel_attention_gates_channels_not_tokens():
    torch.manual_seed(0)
    mixer = ChannelAttention(D, compress_ratio=2, squeeze_factor=4).eval()
    x = torch.randn(1, 12, D)
    ratio = mixer(x) / mixer.features(x)                               # the gate, one value per channel
    torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio), atol=1e-5, rtol=1e-4)
    assert ((ratio > 0) & (ratio < 1)).all()
    assert ratio[0, 0].std() > 1e-4                                    # but different across channels


def test_causal_channel_attention_uses_prefix_means():
    torch.manual_seed(0)
    mixer = ChannelAttention(D, compress_ratio=2, squeeze_factor=4, causal=True).eval()
    x = torch.randn(1, 10, D)
    with torch.no_grad():
        full, prefix = mixer(x), mixer(x[:, :6])
    torch.testing.assert_close(full[:, :6], prefix, atol=1e-5, rtol=1e-4)


def test_channel_attention_refuses_a_mask():
    with pytest.raises(ValueError, match="mask"):
        ChannelAttention(D)(torch.randn(1, 4, D), mask=torch.ones(4, 4, dtype=torch.bool))
