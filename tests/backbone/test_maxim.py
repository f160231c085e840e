"""MAXIM multi-axis gMLP and cross-gating (backbone-catalog.md, section A): the axes each branch mixes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tsformers.backbone import build
from tsformers.backbone.mixers.maxim import AxisGatedMLP, CrossGatingBlock, MultiAxisGatedMLP

D = 16


def _dependency(module: nn.Module, n: int, width: int) -> torch.Tensor:
    """(N, N) boolean: entry [i, j] is True when output token i depends on input token j."""
    torch.manual_seed(0)
    x = torch.randn(1, n, width)
    jac = torch.autograd.functional.jacobian(lambda t: module(t), x)[0, :, :, 0]  # (N, C, N, C)
    return jac.abs().sum(dim=(1, 3)) > 0


def test_the_local_branch_never_mixes_across_block_boundaries():
    branch = AxisGatedMLP(D, size=4, mode="block").eval()
    dep = _dependency(branch, 16, D)
    block = torch.arange(16) // 4
    assert torch.equal(dep, block[:, None] == block[None, :])


def test_the_global_branch_mixes_only_tokens_congruent_mod_n_over_g():
    branch = AxisGatedMLP(D, size=4, mode="grid").eval()             # g = 4 rows, N/g = 4 columns
    dep = _dependency(branch, 16, D)
    offset = torch.arange(16) % 4
    assert torch.equal(dep, offset[:, None] == offset[None, :])
    branch = AxisGatedMLP(D, size=2, mode="grid").eval()             # g = 2, stride N/g = 6 for N = 12
    dep = _dependency(branch, 12, D)
    offset = torch.arange(12) % 6
    assert torch.equal(dep, offset[:, None] == offset[None, :])


def test_the_mixer_reaches_exactly_the_union_of_both_axes():
    mixer = MultiAxisGatedMLP(D, block_size=4, grid_size=4).eval()
    dep = _dependency(mixer, 16, D)
    i = torch.arange(16)
    same_block = (i[:, None] // 4) == (i[None, :] // 4)
    same_offset = (i[:, None] % 4) == (i[None, :] % 4)
    assert torch.equal(dep, same_block | same_offset)


def test_the_causal_form_only_looks_back_along_both_axes():
    mixer = MultiAxisGatedMLP(D, block_size=4, grid_size=4, causal=True).eval()
    dep = _dependency(mixer, 13, D)                                   # padded to 16 inside
    assert not dep.triu(1).any()
    assert dep[12, 0] and dep[12, 8] and not dep[12, 1]              # grid column of token 12: 0, 4, 8


@pytest.mark.parametrize("n", [1, 5, 16, 30])
def test_any_length_keeps_the_shape(n):
    mixer = build("mixer", "maxim_gmlp", d_model=D, n_heads=2, block_size=4, grid_size=3)
    x = torch.randn(2, n, D, requires_grad=True)
    y = mixer(x)
    assert y.shape == x.shape
    y.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_cross_gating_makes_each_stream_depend_on_the_other_and_learns():
    torch.manual_seed(0)
    fusion = build("fusion", "cross_gating", d_model=D, d_y=8, block_size=4, grid_size=2)
    assert isinstance(fusion, CrossGatingBlock)
    x, y = torch.randn(3, 10, D), torch.randn(3, 10, 8)
    x_out, y_out = fusion(x, y)
    assert x_out.shape == (3, 10, D) and y_out.shape == (3, 10, D)
    y2 = y.clone()
    y2[:, 3] += 1.0
    x_out2, _ = fusion(x, y2)
    assert not torch.allclose(x_out, x_out2)                          # x is gated by y
    with pytest.raises(AssertionError, match="same batch and token count"):
        fusion(x, y[:, :9])

    # toy task: x' must equal x where the covariate y is positive and 0 elsewhere
    optimiser = torch.optim.Adam(fusion.parameters(), lr=3e-3)
    losses = []
    for step in range(150):
        g = torch.Generator().manual_seed(step)
        x, y = torch.randn(16, 8, D, generator=g), torch.randn(16, 8, 8, generator=g)
        target = x * (y[..., :1] > 0)
        loss = nn.functional.mse_loss(fusion(x, y)[0], target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) < 0.5 * sum(losses[:10]), (losses[:3], losses[-3:])
