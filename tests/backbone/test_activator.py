"""Activator (catalog A): a channel-only GLU, so its Jacobian is block-diagonal over tokens."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tsformers.backbone import build

D = 16


def test_the_jacobian_is_block_diagonal_over_tokens():
    torch.manual_seed(0)
    act = build("mixer", "activator", d_model=D, d_hidden=24).eval()
    x = torch.randn(1, 5, D)
    jac = torch.autograd.functional.jacobian(lambda t: act(t), x)[0, :, :, 0]  # (N, D, N, D)
    for i in range(5):
        for j in range(5):
            block = jac[i, :, j].abs().max()
            assert (block > 0) if i == j else (block == 0), (i, j)


def test_it_is_the_gated_unit():
    torch.manual_seed(0)
    act = build("mixer", "activator", d_model=D).eval()
    x = torch.randn(3, 4, D)
    u = F.layer_norm(F.gelu(act.proj_u(x)), (2 * D,), act.norm.weight, act.norm.bias)
    v = F.layer_norm(act.proj_v(x), (2 * D,), act.norm.weight, act.norm.bias)
    torch.testing.assert_close(act(x), act.proj_out(u * v))
