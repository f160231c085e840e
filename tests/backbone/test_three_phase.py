"""Three-phase prior: norm-preserving per-channel rotation; one phase at θ=0 is the plain block."""

from __future__ import annotations

import math

import torch
from torch import nn

from tsformers.backbone import PreNormBlock, build
from tsformers.backbone.stacks.three_phase import GivensRotation, ThreePhaseBlock, phase_partition

D = 32


def test_the_rotation_preserves_each_channels_norm_and_turns_channel_i_by_its_phase():
    c, rest = phase_partition(D, 3, horn=True)
    assert (c, rest) == (10, 2)
    rot = GivensRotation(3, c, theta=0.3)
    x = torch.randn(4, 5, D)
    y = rot(x)
    for i in range(3):
        torch.testing.assert_close(y[..., i * c:(i + 1) * c].norm(dim=-1), x[..., i * c:(i + 1) * c].norm(dim=-1))
    torch.testing.assert_close(y[..., 3 * c:], x[..., 3 * c:])                     # DC dims untouched
    angles = rot.angles().detach()
    torch.testing.assert_close(angles, torch.tensor([0.3, 0.3 + 2 * math.pi / 3, 0.3 + 4 * math.pi / 3]))
    # pair (0, 1) of channel 1 turned by its angle
    a, b = x[..., c], x[..., c + 1]
    phi = angles[1]
    torch.testing.assert_close(y[..., c], torch.cos(phi) * a - torch.sin(phi) * b)
    assert not torch.allclose(y[..., :3 * c], x[..., :3 * c])


def test_one_phase_at_theta_zero_is_the_plain_rmsnorm_block():
    torch.manual_seed(0)
    block = ThreePhaseBlock(D, n_heads=4, d_ff=64, n_phases=1, theta=0.0, horn=False).eval()
    plain = PreNormBlock(D, n_heads=4, d_ff=64, dropout=0.0).eval()
    plain.norm1, plain.norm2 = nn.RMSNorm(D, eps=1e-6), nn.RMSNorm(D, eps=1e-6)
    plain.load_state_dict({k: v for k, v in block.state_dict().items() if not k.startswith("rotation")})
    x = torch.randn(2, 7, D)
    with torch.no_grad():
        torch.testing.assert_close(block(x), plain(x))
        three = ThreePhaseBlock(D, n_heads=4, d_ff=64, n_phases=3, horn=False).eval()
        three.load_state_dict(block.state_dict())
        assert not torch.allclose(three(x), plain(x))


def test_the_per_channel_norm_isolates_channels():
    block = ThreePhaseBlock(D, n_heads=4, d_ff=64, n_phases=3, horn=True)
    x = torch.randn(3, D)
    changed = x.clone()
    changed[:, :10] *= 7
    torch.testing.assert_close(block.norm1(x)[:, 10:], block.norm1(changed)[:, 10:])


def test_the_horn_profile_is_written_into_the_dc_dim():
    torch.manual_seed(0)
    stack = build("stack", "three_phase", d_model=D, n_heads=4, d_ff=64, n_layers=1, dropout=0.0).eval()
    seen = {}
    stack.layers[0].register_forward_pre_hook(lambda _, args: seen.setdefault("x", args[0]))
    x = torch.zeros(1, 4, D)
    with torch.no_grad():
        stack(x)
    torch.testing.assert_close(seen["x"][0, :, -1], torch.tensor([1.0, 1 / 2, 1 / 3, 1 / 4]))
    assert seen["x"][..., :-1].abs().max() == 0
    assert sum(p.numel() for n, p in stack.named_parameters() if n.endswith("theta")) == 1
