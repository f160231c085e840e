"""FcaFormer forward cross attention (backbone-catalog.md, section A): the cross path across depth."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tsformers.backbone import build
from tsformers.backbone.mixers.fcaformer import FcaStage, ForwardCrossAttention, TokenMerger

D, HEADS = 16, 4


def _stage(n_layers=3, **kwargs) -> FcaStage:
    torch.manual_seed(0)
    return build("stack", "fca_stage", d_model=D, n_heads=HEADS, d_ff=2 * D, n_layers=n_layers, dropout=0.0,
                 merge_stride=4, merge_kernel=5, **kwargs).eval()


def _plain(stage: FcaStage, x: torch.Tensor) -> torch.Tensor:
    """The same blocks with no cross tokens at all: a plain pre-norm attention stage."""
    for block in stage.blocks:
        x = block(x, None)
    return stage.norm(x)


def test_with_all_lsfs_zero_the_stage_equals_a_plain_stage():
    stage = _stage()
    x = torch.randn(2, 20, D)
    with torch.no_grad():
        assert not torch.allclose(stage(x), _plain(stage, x), atol=1e-4)   # the cross path is active
        for block in stage.blocks:
            block.mixer.lsf.zero_()
        torch.testing.assert_close(stage(x), _plain(stage, x), atol=1e-6, rtol=1e-5)


def test_block_three_gets_gradient_from_block_one_through_the_cross_path_alone():
    stage = _stage()
    x1 = stage.blocks[0](torch.randn(2, 20, D)).detach().requires_grad_()   # block 1's output
    s1 = stage.mergers[0](x1)                                    # its cross tokens (B, 5, D)
    x2 = stage.blocks[1](x1.detach(), [s1])                      # the direct path is cut here
    s2 = stage.mergers[1](x2)
    x3 = stage.blocks[2](x2, [s1, s2])
    (grad,) = torch.autograd.grad(x3.square().sum(), x1)
    assert grad.abs().sum() > 0
    # and with the LSFs switched off the same route carries nothing
    with torch.no_grad():
        for block in stage.blocks:
            block.mixer.lsf.zero_()
    s1 = stage.mergers[0](x1)
    x2 = stage.blocks[1](x1.detach(), [s1])
    x3 = stage.blocks[2](x2, [s1, stage.mergers[1](x2)])
    (grad,) = torch.autograd.grad(x3.square().sum(), x1)
    assert grad.abs().sum() == 0


def test_alone_without_cross_tokens_the_mixer_is_full_attention():
    torch.manual_seed(0)
    fca = build("mixer", "fca", d_model=D, n_heads=HEADS).eval()
    full = build("mixer", "full", d_model=D, n_heads=HEADS).eval()
    full.load_state_dict(fca.state_dict(), strict=False)
    x = torch.randn(2, 9, D)
    with torch.no_grad():
        torch.testing.assert_close(fca(x), full(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("causal", [False, True])
def test_token_merger_counts_and_causal_cover(causal):
    merger = TokenMerger(D, stride=4, kernel=7, causal=causal)
    for n in (1, 4, 5, 20, 21):
        assert merger(torch.randn(1, n, D)).shape == (1, (n - 1) // 4 + 1, D)
    if causal:  # cross token j depends on steps <= 4 j only
        x = torch.randn(1, 20, D, requires_grad=True)
        jac = torch.autograd.functional.jacobian(merger, x)[0, :, :, 0]    # (M, D, N, D)
        dep = jac.abs().sum(dim=(1, 3)) > 0                                 # (M, N)
        for j in range(dep.shape[0]):
            assert dep[j, : 4 * j + 1].any() and not dep[j, 4 * j + 1:].any()


def test_the_causal_stage_never_sees_the_future():
    stage = _stage(causal=True)
    x = torch.randn(2, 24, D)
    later = x.clone()
    later[:, 11:] += torch.randn_like(later[:, 11:])
    with torch.no_grad():
        a, b = stage(x), stage(later)
    torch.testing.assert_close(a[:, :11], b[:, :11], atol=1e-5, rtol=1e-4)
    assert not torch.allclose(a[:, 11:], b[:, 11:])


def test_shapes_at_any_length_limited_sources_and_a_clear_mixer_error():
    stage = _stage(n_layers=4, max_sources=2)
    assert [b.mixer.n_sources for b in stage.blocks] == [0, 1, 2, 2]
    for n in (1, 3, 16, 33):
        assert stage(torch.randn(2, n, D)).shape == (2, n, D)
    with pytest.raises(ValueError, match="fca"):
        build("stack", "fca_stage", d_model=D, n_heads=HEADS, d_ff=D, n_layers=2, mixer="maxim_gmlp")
    mixer = ForwardCrossAttention(D, n_heads=HEADS, n_sources=1)
    with pytest.raises(AssertionError, match="n_sources"):
        mixer(torch.randn(1, 8, D), cross=[torch.randn(1, 2, D)] * 2)


def test_the_stage_learns():
    stage = _stage(n_layers=3).train()
    head = nn.Linear(D, 1)
    optimiser = torch.optim.Adam([*stage.parameters(), *head.parameters()], lr=3e-3)
    losses = []
    for step in range(80):
        x = torch.randn(16, 12, D, generator=torch.Generator().manual_seed(step))
        target = x[:, :, :1].cumsum(dim=1) / 4                    # needs mixing over earlier tokens
        loss = nn.functional.mse_loss(head(stage(x)), target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) < 0.5 * sum(losses[:10]), (losses[:3], losses[-3:])
