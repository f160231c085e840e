"""CSWin's cross-shaped windows and LePE (backbone-catalog.md, section A): the mechanism of each."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tsformers.backbone import build_class
from tsformers.backbone.mixers import FullAttention
from tsformers.backbone.mixers.cswin import CrossShapedWindowAttention, LePEWindowAttention, stripe_groups

D, H = 32, 4


def _moved(mixer, x, s, **kw):
    """|Δ output| per token when token s alone changes: (N,)."""
    changed = x.clone()
    changed[:, s] += 3 * torch.randn(x.shape[0], D, generator=torch.Generator().manual_seed(s))
    with torch.no_grad():
        return (mixer(x, **kw) - mixer(changed, **kw)).abs().amax(dim=(0, 2))


def test_the_names_are_registered():
    assert build_class("mixer", "cswin") is CrossShapedWindowAttention
    assert build_class("mixer", "lepe") is LePEWindowAttention


def test_stripes_are_variate_major_and_padded():
    idx, rows, cols = stripe_groups(3, 4, 2, "time")                   # 2 variates x 4 patches
    assert (rows, cols) == (2, 4)
    assert idx.tolist() == [[0, 1, 2, 3, 4, 5, 6, 7], [8, 9, 10, 11, -1, -1, -1, -1]]
    idx, rows, cols = stripe_groups(3, 4, 2, "variates")               # 3 variates x 2 patches
    assert (rows, cols) == (3, 2)
    assert idx.tolist() == [[0, 1, 4, 5, 8, 9], [2, 3, 6, 7, 10, 11]]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("lepe_kernel", [0, 3])
def test_a_token_ignores_every_token_outside_both_of_its_stripes(causal, lepe_kernel):
    torch.manual_seed(0)
    mixer = CrossShapedWindowAttention(D, n_heads=H, stripe_width=2, lepe_kernel=lepe_kernel, causal=causal).eval()
    c, p = 5, 7                                                        # neither a multiple of 2: padded stripes
    x = torch.randn(2, c * p, D)
    target = 2 * p + 3                                                 # token (c=2, p=3)
    for s in range(c * p):
        sc, sp = divmod(s, p)
        in_stripes = sc // 2 == 1 or sp // 2 == 1                      # variates {2, 3} or patches {2, 3}
        visible = in_stripes and (not causal or sp <= 3)
        moved = _moved(mixer, x, s, grid=(c, p))[target].item()
        assert (moved > 1e-4) if visible else (moved < 1e-6), ((sc, sp), moved)


def test_without_a_grid_half_the_heads_are_global_and_half_windowed():
    torch.manual_seed(0)
    mixer = CrossShapedWindowAttention(D, n_heads=H, stripe_width=3, lepe_kernel=0).eval()
    x = torch.randn(2, 12, D)
    moved = _moved(mixer, x, 0)
    assert (moved > 1e-4).all()                                         # every token reads token 0
    with torch.no_grad():
        mixer.to_out.weight[:, : D // 2] = 0                            # silence the global heads
    moved = _moved(mixer, x, 0)
    assert (moved[:3] > 1e-4).all() and (moved[3:] < 1e-6).all()       # only window 0..2 reads it


def test_a_grid_that_does_not_match_the_tokens_is_refused():
    mixer = CrossShapedWindowAttention(D, n_heads=H)
    with pytest.raises(ValueError, match="grid"):
        mixer(torch.randn(1, 12, D), grid=(5, 3))


def test_lepe_breaks_permutation_equivariance_and_without_it_equivariance_holds():
    x = torch.randn(2, 9, D)
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(3))
    for kernel, equivariant in [(0, True), (3, False)]:
        torch.manual_seed(0)
        mixer = LePEWindowAttention(D, n_heads=H, window=None, lepe_kernel=kernel).eval()
        with torch.no_grad():
            same = torch.allclose(mixer(x)[:, perm], mixer(x[:, perm]), atol=1e-5, rtol=1e-4)
        assert same == equivariant, kernel


def test_lepe_is_full_attention_plus_a_depthwise_conv_of_v():
    torch.manual_seed(0)
    mixer = LePEWindowAttention(D, n_heads=H, window=None, lepe_kernel=3).eval()
    full = FullAttention(D, n_heads=H).eval()
    with torch.no_grad():
        for i, proj in enumerate((full.to_q, full.to_k, full.to_v)):
            proj.weight.copy_(mixer.qkv.weight[i * D:(i + 1) * D])
            proj.bias.copy_(mixer.qkv.bias[i * D:(i + 1) * D])
        full.to_out.load_state_dict(mixer.to_out.state_dict())
        x = torch.randn(2, 10, D)
        v = full.to_v(x).transpose(1, 2)                               # (B, D, N)
        conv = mixer.lepe
        lepe = F.conv1d(v, conv.weight[:, :, 0], conv.bias, padding=1, groups=D).transpose(1, 2)
        torch.testing.assert_close(mixer(x), full(x) + lepe @ mixer.to_out.weight.T, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("causal", [False, True])
def test_lepe_windows_isolate_tokens(causal):
    torch.manual_seed(0)
    mixer = LePEWindowAttention(D, n_heads=H, window=4, causal=causal).eval()
    x = torch.randn(2, 10, D)
    for s in range(10):
        moved = _moved(mixer, x, s)
        for t in range(10):
            visible = t // 4 == s // 4 and (not causal or s <= t)
            assert (moved[t] > 1e-4) if visible else (moved[t] < 1e-6), (t, s)


@pytest.mark.parametrize("lepe_kernel", [0, 3])
def test_over_unordered_variates_a_token_sees_its_own_row_and_all_variates_near_its_patch(lepe_kernel):
    """Time stripes one variate wide, variate stripes all variates x stripe_width patches: the cross, no row order."""
    torch.manual_seed(0)
    mixer = CrossShapedWindowAttention(D, n_heads=H, stripe_width=2, lepe_kernel=lepe_kernel,
                                       unordered_variates=True).eval()
    c, p = 4, 7
    x = torch.randn(2, c * p, D)
    target = 2 * p + 3                                                 # token (c=2, p=3)
    for s in range(c * p):
        sc, sp = divmod(s, p)
        visible = sc == 2 or sp // 2 == 1                              # its own variate, or patches {2, 3}
        moved = _moved(mixer, x, s, grid=(c, p))[target].item()
        assert (moved > 1e-4) if visible else (moved < 1e-6), ((sc, sp), moved)


def test_over_unordered_variates_permuting_the_variates_permutes_the_output():
    torch.manual_seed(0)
    c, p = 5, 6
    x = torch.randn(2, c, p, D)
    perm = torch.tensor([3, 0, 4, 1, 2])
    for unordered, equivariant in [(True, True), (False, False)]:   # the ordered grid's stripes and LePE read rows
        mixer = CrossShapedWindowAttention(D, n_heads=H, stripe_width=2, unordered_variates=unordered).eval()
        with torch.no_grad():
            out = mixer(x.flatten(1, 2), grid=(c, p)).unflatten(1, (c, p))
            permuted = mixer(x[:, perm].flatten(1, 2), grid=(c, p)).unflatten(1, (c, p))
        assert torch.allclose(out[:, perm], permuted, atol=1e-5) == equivariant


def test_built_with_variates_it_takes_channel_independent_rows_and_runs_the_grid():
    """(B·C, P, D) rows, variate-minor, are each sample's C x P grid: the same numbers as the grid form."""
    torch.manual_seed(0)
    grid_form = CrossShapedWindowAttention(D, n_heads=H, unordered_variates=True).eval()
    rows_form = CrossShapedWindowAttention(D, n_heads=H, unordered_variates=True, variates=3).eval()
    rows_form.load_state_dict(grid_form.state_dict())
    x = torch.randn(2 * 3, 5, D)                                       # B = 2 samples of C = 3 variates
    with torch.no_grad():
        expected = grid_form(x.reshape(2, 3 * 5, D), grid=(3, 5)).reshape(6, 5, D)
        torch.testing.assert_close(rows_form(x), expected)
    with pytest.raises(ValueError, match="variates=3.*got 5 rows"):
        rows_form(torch.randn(5, 5, D))
