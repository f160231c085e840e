"""Combiner (catalog A): every output depends on every input with an N×(b + N/b) score matrix."""

from __future__ import annotations

import pytest
import torch

from tsformers.backbone import build

D, H = 16, 2


def _dependence(mixer, n) -> torch.Tensor:
    """(N_out, N_in): the largest |∂y_i/∂x_j| over channels."""
    x = torch.randn(1, n, D, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda t: mixer(t), x)[0, :, :, 0]  # (N, D, N, D)
    return jac.abs().amax(dim=(1, 3))


@pytest.mark.parametrize("n", [16, 14])
def test_every_output_depends_on_every_input_and_block_local_attention_does_not(n):
    torch.manual_seed(0)
    combiner = build("mixer", "combiner", d_model=D, n_heads=H).double()
    assert (_dependence(combiner, n) > 1e-10).all()
    local = build("mixer", "combiner", d_model=D, n_heads=H, mode="local").double()
    local.load_state_dict(combiner.state_dict())
    dep = _dependence(local, n)
    assert not (dep > 1e-10).all()
    assert (dep[:4, 4:8] == 0).all() and (dep[:4, :4] > 0).all()  # blocks of ⌈√16⌉ = ⌈√14⌉ = 4


def test_causal_outputs_depend_on_every_earlier_input_only():
    torch.manual_seed(0)
    combiner = build("mixer", "combiner", d_model=D, n_heads=H, causal=True).double()
    dep = _dependence(combiner, 16) > 1e-10
    assert torch.equal(dep, torch.ones(16, 16, dtype=torch.bool).tril())


def test_the_score_matrix_is_n_by_b_plus_n_over_b():
    combiner = build("mixer", "combiner", d_model=D, n_heads=H)
    logits, _, _ = combiner.logits(torch.randn(2, 64, D))
    assert logits.shape == (2, H, 8, 8, 8 + 8)  # N = 64 rows in 8 blocks of 8, b + N/b = 16 columns
    logits, _, _ = build("mixer", "combiner", d_model=D, n_heads=H, block_size=4).logits(torch.randn(2, 64, D))
    assert logits.shape[-1] == 4 + 16


def test_with_equal_keys_in_each_block_it_is_full_attention():
    """If a block's keys are equal, its summary carries exactly the mass full attention gives it."""
    torch.manual_seed(0)
    combiner = build("mixer", "combiner", d_model=D, n_heads=H, block_size=4).eval()
    with torch.no_grad():  # keys from a constant (bias only), values free: keys equal everywhere
        combiner.to_qkv.weight[D:2 * D] = 0
        x = torch.randn(2, 12, D)
        q, k, v = combiner.to_qkv(x).chunk(3, -1)
        split = lambda t: t.view(2, 12, H, D // H).transpose(1, 2)  # noqa: E731
        full = torch.nn.functional.scaled_dot_product_attention(split(q), split(k), split(v))
        expected = combiner.to_out(full.transpose(1, 2).reshape(2, 12, D))
        torch.testing.assert_close(combiner(x), expected, atol=1e-5, rtol=1e-4)
