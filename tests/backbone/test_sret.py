"""SReT: shared weights across loops, sliced group attention, a deterministic permutation."""

from __future__ import annotations

import torch

from tsformers.backbone import build

D = 32


def _sret(**kw):
    torch.manual_seed(0)
    kw.setdefault("n_layers", 1)
    return build("stack", "sret", d_model=D, n_heads=4, d_ff=64, dropout=0.0, **kw).eval()


def _count(module, skip_nll: bool):
    return sum(p.numel() for n, p in module.named_parameters() if not (skip_nll and n.startswith("nlls")))


def test_parameters_do_not_grow_with_the_loops_except_the_nlls():
    counts = [_count(_sret(n_loops=t), skip_nll=True) for t in (1, 2, 5)]
    assert counts[0] == counts[1] == counts[2]
    with_nll = [_count(_sret(n_loops=t), skip_nll=False) for t in (1, 2, 5)]
    assert with_nll[0] < with_nll[1] < with_nll[2]
    nll = with_nll[1] - with_nll[0]
    assert with_nll[2] - with_nll[0] == 4 * nll


def test_without_permutation_groups_do_not_interact():
    x = torch.randn(2, 12, D)
    changed = x.clone()
    changed[:, 6:] += torch.randn(2, 6, D)                          # group 2 of 2
    stack = _sret(n_loops=3, groups_first=2, groups_recursive=2, permute=None)
    with torch.no_grad():
        a, b = stack(x), stack(changed)
    torch.testing.assert_close(a[:, :6], b[:, :6])
    assert not torch.allclose(a[:, 6:], b[:, 6:])


def test_with_the_strided_permutation_groups_do_interact_and_uneven_n_works():
    x = torch.randn(2, 12, D)
    changed = x.clone()
    changed[:, 6:] += torch.randn(2, 6, D)
    stack = _sret(n_loops=2, groups_first=2, groups_recursive=2, permute="strided")
    with torch.no_grad():
        assert not torch.allclose(stack(x)[:, :6], stack(changed)[:, :6])
        assert stack(torch.randn(3, 7, D)).shape == (3, 7, D)


def test_one_pass_touches_only_its_group_even_for_uneven_n():
    x = torch.randn(1, 7, D)
    changed = x.clone()
    changed[:, 4:] += torch.randn_like(changed[:, 4:])              # tensor_split(7, 2): [0..3], [4..6]
    stack = _sret(n_loops=1, groups_first=2)
    with torch.no_grad():
        a, b = stack(x), stack(changed)
    torch.testing.assert_close(a[:, :4], b[:, :4])
    assert not torch.allclose(a[:, 4:], b[:, 4:])


def test_the_forecast_is_reproducible_with_either_permutation():
    x = torch.randn(2, 10, D)
    for permute in ("strided", "seeded"):
        stack = _sret(n_loops=3, permute=permute)
        with torch.no_grad():
            torch.testing.assert_close(stack(x), stack(x), rtol=0, atol=0)
    perm = _sret(permute="seeded").permutation(10)
    assert sorted(perm.tolist()) == list(range(10)) and perm.tolist() != list(range(10))


def test_the_strided_permutation_keeps_a_causal_mixer_causal():
    stack = _sret(n_loops=2, causal=True)
    x = torch.randn(1, 12, D)
    changed = x.clone()
    changed[:, 8:] += 2 * torch.randn_like(changed[:, 8:])
    with torch.no_grad():
        a, b = stack(x), stack(changed)
    torch.testing.assert_close(a[:, :8], b[:, :8])
    assert not torch.allclose(a[:, 8:], b[:, 8:])
