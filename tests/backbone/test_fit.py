"""FIT: groups talk only through the global latent layers; padding; causality."""

from __future__ import annotations

import torch

from tsformers.backbone import build

D = 32


def _fit(**kw):
    torch.manual_seed(0)
    kw.setdefault("n_layers", 2)
    return build("stack", "fit", d_model=D, n_heads=4, d_ff=64, dropout=0.0, group_size=4, **kw).eval()


def _change_group(x, g, size=4):
    changed = x.clone()
    changed[:, g * size:(g + 1) * size] += torch.randn_like(changed[:, g * size:(g + 1) * size])
    return changed


def test_without_global_layers_a_group_only_changes_itself():
    x = torch.randn(2, 16, D)
    stack = _fit(n_global=0)
    with torch.no_grad():
        a, b = stack(x), stack(_change_group(x, 1))
    torch.testing.assert_close(a[:, :4], b[:, :4])
    torch.testing.assert_close(a[:, 8:], b[:, 8:])
    assert not torch.allclose(a[:, 4:8], b[:, 4:8])


def test_with_global_layers_every_group_hears_the_change():
    x = torch.randn(2, 16, D)
    stack = _fit(n_global=1)
    with torch.no_grad():
        a, b = stack(x), stack(_change_group(x, 1))
    for g in (0, 2, 3):
        assert not torch.allclose(a[:, 4 * g:4 * g + 4], b[:, 4 * g:4 * g + 4])


def test_padding_is_invisible_to_the_real_tokens(monkeypatch):
    import types

    import torch.nn.functional as F

    from tsformers.backbone.stacks import fit as fit_module

    x = torch.randn(2, 10, D)                                        # 3 groups, the last padded by 2
    stack = _fit(n_global=1)
    with torch.no_grad():
        y = stack(x)
        assert y.shape == x.shape and torch.isfinite(y).all()

        def noisy_pad(t, pad, *args, **kwargs):                      # pad with garbage instead of zeros
            out = F.pad(t, pad, *args, **kwargs)
            out[:, t.shape[1]:] = torch.randn_like(out[:, t.shape[1]:]) * 10
            return out

        monkeypatch.setattr(fit_module, "F", types.SimpleNamespace(pad=noisy_pad))
        torch.testing.assert_close(stack(x), y, atol=1e-5, rtol=1e-4)


def test_causal_fit_ignores_the_future():
    stack = _fit(n_global=1, causal=True)
    x = torch.randn(2, 16, D)
    changed = x.clone()
    changed[:, 7:] += torch.randn_like(changed[:, 7:]) * 3           # from the middle of group 1 on
    with torch.no_grad():
        a, b = stack(x), stack(changed)
    torch.testing.assert_close(a[:, :7], b[:, :7])
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def test_any_registered_mixer_works_with_a_padded_group():
    torch.manual_seed(0)
    stack = build("stack", "fit", d_model=D, n_heads=4, d_ff=64, n_layers=1, group_size=4, mixer="mamba").eval()
    x = torch.randn(2, 10, D)
    with torch.no_grad():
        y = stack(x)
        changed = x.clone()
        changed[:, 9] += torch.randn(2, D)                             # the last, short group
        assert y.shape == x.shape and not torch.allclose(stack(changed)[:, 8:], y[:, 8:])
