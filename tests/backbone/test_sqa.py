"""Sparse Query Attention (catalog A): H_q query heads, ≈H_q/H of MHA's attention FLOPs, MHA when H_q = H."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from tsformers.backbone import build, build_class

D, H, N = 64, 8, 128


def _attention_flops(mixer, x) -> int:
    """FLOPs of the N×N products only (q·kᵀ and weights·v), excluding the projections."""
    with FlopCounterMode(display=False) as counter:
        mixer(x)
    flops = counter.get_flop_counts()["Global"]
    return sum(v for op, v in flops.items() if "bmm" in str(op) or "attention" in str(op))


def test_the_score_tensor_has_h_q_heads_and_kv_heads_are_shared():
    torch.manual_seed(0)
    sqa = build("mixer", "sqa", d_model=D, n_heads=H)
    assert (sqa.n_query_heads, sqa.n_kv_heads) == (4, 2)
    scores, v = sqa.scores(torch.randn(2, 10, D), torch.randn(2, 6, D))
    assert scores.shape == (2, 4, 10, 6) and v.shape == (2, 4, 6, D // H)
    torch.testing.assert_close(v[:, 0], v[:, 1])  # query heads 0 and 1 read kv head 0
    assert sqa.to_k.out_features == 2 * (D // H) and sqa.to_out.in_features == 4 * (D // H)


@pytest.mark.parametrize("name, fraction", [("sqa", 1 / 2), ("ssqa", 1 / 2), ("xsqa", 1 / 4)])
def test_attention_flops_scale_by_h_q_over_h(name, fraction):
    torch.manual_seed(0)
    x = torch.randn(1, N, D)
    mha = build("mixer", "sqa", d_model=D, n_heads=H, n_query_heads=H, n_kv_heads=H)
    sparse = build("mixer", name, d_model=D, n_heads=H)
    ratio = _attention_flops(sparse, x) / _attention_flops(mha, x)
    assert ratio == pytest.approx(fraction, rel=0.01), ratio
    # MHA: two (N×N×d_head) products per head, 2 FLOPs per multiply-add
    assert _attention_flops(mha, x) == 2 * 2 * N * N * D


def test_presets_pick_their_head_counts():
    assert build_class("mixer", "ssqa").default_heads(8) == (4, 4)
    assert build_class("mixer", "xsqa").default_heads(8) == (2, 2)
    assert build_class("mixer", "xsqa").default_heads(2) == (1, 1)


@pytest.mark.parametrize("causal", [False, True])
def test_all_heads_reproduce_multi_head_attention_with_the_same_weights(causal):
    torch.manual_seed(0)
    full = build("mixer", "full", d_model=D, n_heads=H, causal=causal).eval()
    sqa = build("mixer", "sqa", d_model=D, n_heads=H, n_query_heads=H, n_kv_heads=H, causal=causal).eval()
    sqa.load_state_dict(full.state_dict())
    x, mask = torch.randn(2, 12, D), torch.rand(2, 1, 12, 12) > 0.3
    mask[..., 0] = True
    with torch.no_grad():
        torch.testing.assert_close(sqa(x), full(x), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(sqa(x, mask=mask), full(x, mask=mask), atol=1e-5, rtol=1e-4)
        if not causal:
            kv = torch.randn(2, 7, D)
            torch.testing.assert_close(sqa(x, kv), full(x, kv), atol=1e-5, rtol=1e-4)
