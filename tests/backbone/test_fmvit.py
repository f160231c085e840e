"""FMViT's multi-frequency mixing (backbone-catalog.md, section A)."""

from __future__ import annotations

import pytest
import torch

from tsformers.backbone import build_class
from tsformers.backbone.mixers.fmvit import FrequencyMixing, pool_tokens

D, H = 32, 4


def _mixer(**kwargs):
    torch.manual_seed(0)
    return FrequencyMixing(D, n_heads=H, **kwargs).eval()


def test_the_name_is_registered():
    assert build_class("mixer", "fm_mix") is FrequencyMixing


@pytest.mark.parametrize("n, r, m", [(12, 3, 4), (13, 3, 5), (7, 2, 4), (1, 4, 1)])
def test_the_low_frequency_score_matrix_is_n_by_n_over_r(n, r, m):
    mixer = _mixer(pool_ratio=r)
    x = torch.randn(2, n, D)
    assert mixer.low_frequency_scores(x).shape == (2, H, n, m)
    assert mixer(x).shape == (2, n, D)


def test_pooling_averages_windows_and_the_partial_last_one():
    x = torch.arange(7.0).view(1, 7, 1).expand(1, 7, 2)
    assert pool_tokens(x, 3)[0, :, 0].tolist() == [1.0, 4.0, 6.0]


def test_low_frequency_path_is_softmax_attention_over_the_pooled_tokens():
    mixer = _mixer(pool_ratio=3)
    x = torch.randn(2, 10, D)
    with torch.no_grad():
        scores = mixer.low_frequency_scores(x)                         # (B, h, N, M)
        pooled = pool_tokens(x, 3)
        v = mixer.to_kv(pooled)[..., D:].view(2, -1, H, D // H).transpose(1, 2)  # (B, h, M, d)
        expected = (scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 10, D)
        torch.testing.assert_close(mixer.low_frequency(x), expected, atol=1e-5, rtol=1e-4)


def test_tokens_reach_the_low_frequency_path_of_others_only_through_their_window_mean():
    mixer = _mixer(pool_ratio=4)
    x = torch.randn(1, 12, D)
    swapped = x.clone()
    swapped[:, [4, 6]] = x[:, [6, 4]]                                  # reorder inside window 1 (tokens 4..7)
    shifted = x.clone()
    shifted[:, 4] += 1.0                                               # change window 1's mean
    with torch.no_grad():
        base = mixer.low_frequency(x)
        others = [t for t in range(12) if t not in (4, 6)]
        torch.testing.assert_close(mixer.low_frequency(swapped)[:, others], base[:, others])
        assert not torch.allclose(mixer.low_frequency(shifted)[:, others], base[:, others])


def test_the_high_frequency_path_is_local():
    mixer = _mixer(kernel_size=3)
    x = torch.randn(1, 12, D)
    changed = x.clone()
    changed[:, 6] += 1.0
    with torch.no_grad():
        moved = (mixer.high_frequency(changed) - mixer.high_frequency(x)).abs().amax(dim=(0, 2))
    assert (moved[5:8] > 0).all() and (moved[:5] == 0).all() and (moved[8:] == 0).all()


def test_causal_tokens_read_only_finished_windows():
    mixer = _mixer(pool_ratio=3, causal=True)
    x = torch.randn(2, 11, D)
    with torch.no_grad():
        low = mixer.low_frequency(x)
        assert (low[:, :2] == 0).all() and (low[:, 2:].abs() > 0).any(-1).all()
        for length in (7, 9):                                          # inside a window, on a border
            torch.testing.assert_close(mixer(x)[:, :length], mixer(x[:, :length]), atol=1e-5, rtol=1e-4)


def test_a_mask_is_refused():
    with pytest.raises(ValueError, match="mask"):
        _mixer()(torch.randn(1, 4, D), mask=torch.ones(4, 4, dtype=torch.bool))
