"""TiC's MSA-Conv (backbone-catalog.md, section A): attention inside a kernel's receptive field."""

from __future__ import annotations

import pytest
import torch

from tsformers.backbone import build_class
from tsformers.backbone.mixers import FullAttention
from tsformers.backbone.mixers.msa_conv import MSAConv, kernel_offsets

D, H = 32, 4


def _mixer(**kwargs):
    torch.manual_seed(0)
    return MSAConv(D, n_heads=H, **kwargs).eval()


def _full_twin(mixer):
    full = FullAttention(D, n_heads=H).eval()
    with torch.no_grad():
        for i, proj in enumerate((full.to_q, full.to_k, full.to_v)):
            proj.weight.copy_(mixer.qkv.weight[i * D:(i + 1) * D])
            proj.bias.copy_(mixer.qkv.bias[i * D:(i + 1) * D])
        full.to_out.load_state_dict(mixer.to_out.state_dict())
    return full


def test_the_name_is_registered():
    assert build_class("mixer", "msa_conv") is MSAConv


def test_kernel_offsets():
    assert kernel_offsets(3, 1, 0, False) == [-1, 0, 1]
    assert kernel_offsets(3, 2, 1, False) == [-1, 1, 3]
    assert kernel_offsets(4, 2, 0, False) == [-2, 0, 2, 4]
    assert kernel_offsets(3, 2, 0, True) == [-4, -2, 0]


@pytest.mark.parametrize("kwargs", [dict(kernel_size=3, dilation=2), dict(kernel_size=4, dilation=3, shift=-2),
                                    dict(kernel_size=3, dilation=2, causal=True)])
def test_output_at_t_depends_only_on_the_tokens_of_its_kernel(kwargs):
    mixer = _mixer(**kwargs)
    n = 20
    x = torch.randn(1, n, D)
    jac = torch.autograd.functional.jacobian(lambda t: mixer(t), x)[0, :, :, 0]  # (N, D, N, D)
    reach = jac.abs().amax(dim=(1, 3))                                  # (N out, N in)
    for t in range(n):
        kernel = {t + o for o in mixer.offsets if 0 <= t + o < n}
        kernel.add(t)                                                  # the query itself, even when shifted away
        for s in range(n):
            assert (reach[t, s] > 1e-6) if s in kernel else (reach[t, s] == 0), (t, s)


@pytest.mark.parametrize("causal", [False, True])
def test_it_equals_full_attention_under_the_kernel_mask(causal):
    mixer = _mixer(kernel_size=5, dilation=2, causal=causal)
    full = _full_twin(mixer)
    n = 17
    pos = torch.arange(n)
    band = torch.zeros(n, n, dtype=torch.bool)
    for o in mixer.offsets:
        band |= pos[None, :] - pos[:, None] == o
    x = torch.randn(3, n, D)
    with torch.no_grad():
        torch.testing.assert_close(mixer(x), full(x, mask=band), atol=1e-5, rtol=1e-4)


def test_a_one_tap_kernel_returns_the_projected_values():
    mixer = _mixer(kernel_size=1)
    x = torch.randn(2, 7, D)
    with torch.no_grad():
        torch.testing.assert_close(mixer(x), mixer.to_out(mixer.qkv(x)[..., 2 * D:]), atol=1e-5, rtol=1e-4)


def test_built_at_32_runs_at_96_and_is_local():
    mixer = _mixer(kernel_size=3, dilation=2)
    assert mixer(torch.randn(2, 32, D)).shape == (2, 32, D)
    x = torch.randn(2, 96, D)
    with torch.no_grad():
        long, crop = mixer(x), mixer(x[:, 40:70])
    torch.testing.assert_close(long[:, 42:68], crop[:, 2:28], atol=1e-5, rtol=1e-4)  # away from the crop's edges


def test_a_causal_window_cannot_look_ahead():
    with pytest.raises(ValueError, match="shift"):
        MSAConv(D, n_heads=H, causal=True, shift=1)
