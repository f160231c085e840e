"""The contract every registered token mixer and stacking scheme meets (backbone-catalog.md, section 0).

Each test runs over ``available("mixer")`` / ``available("stack")``, so a part is checked
the moment it is registered. The mechanism of each part (the catalog's own test idea)
is tested next to it, in the part's test module.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tsformers.backbone import available, build, build_class, order_free
from tsformers.backbone.embeddings import InstanceNorm, PatchEmbedding
from tsformers.backbone.mixers import CAUSAL_CROSS, CAUSAL_SELF, CROSS, SELF

D, HEADS = 32, 4
MIXERS = available("mixer")
STACKS = available("stack")


def _self_causal(name: str) -> bool:
    """The pattern the shared tests build a mixer in: non-causal self-attention when it has one."""
    return SELF not in build_class("mixer", name).patterns


def _mixer(name: str, causal: bool | None = None, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    causal = _self_causal(name) if causal is None else causal
    return build("mixer", name, d_model=D, n_heads=HEADS, dropout=0.0, causal=causal, **kwargs).eval()


def test_the_registry_lists_exactly_the_registered_classes():
    import tsformers.backbone.mixers as package

    for name in MIXERS:
        cls = build_class("mixer", name)
        assert cls.__module__.startswith(("tsformers.backbone.mixers", "tsformers.backbone.memory")), cls
    assert "full" in MIXERS and MIXERS == sorted(MIXERS)
    assert package.FullAttention is build_class("mixer", "full")


def test_an_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="available mixer names: .*full"):
        build("mixer", "no_such_mixer", d_model=D)
    with pytest.raises(ValueError, match="available stack names: .*standard"):
        build("stack", "no_such_stack", d_model=D)


def test_order_free_answers_for_the_kinds_that_declare_it():
    assert "full" in order_free("mixer") and "sliding_window" not in order_free("mixer")
    assert "standard" in order_free("stack") and "sret" not in order_free("stack")
    with pytest.raises(ValueError, match=r"gate parts .* do not declare requires_order.*declare it: .*mixer.*stack"):
        order_free("gate")


@pytest.mark.parametrize("name", MIXERS)
def test_mixer_describes_itself(name):
    cls = build_class("mixer", name)
    assert cls.__doc__ and cls.paper and cls.complexity.startswith("O(")
    assert cls.patterns and set(cls.patterns) <= {SELF, CAUSAL_SELF, CROSS, CAUSAL_CROSS}
    assert isinstance(cls.requires_order, bool) and isinstance(cls.mixes_tokens, bool)


@pytest.mark.parametrize("name", MIXERS)
@pytest.mark.parametrize("shape", [(2, 16), (3, 12), (1, 48)])
def test_mixer_keeps_the_shape_and_has_finite_gradients(name, shape):
    mixer = _mixer(name).train()
    x = torch.randn(*shape, D, requires_grad=True)
    y = mixer(x)
    assert y.shape == x.shape
    y.square().mean().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in mixer.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", MIXERS)
def test_mixer_built_at_one_length_runs_at_another(name):
    mixer = _mixer(name)
    with torch.no_grad():
        mixer(torch.randn(2, 16, D))
        assert mixer(torch.randn(2, 48, D)).shape == (2, 48, D)


@pytest.mark.parametrize("name", [m for m in MIXERS if not build_class("mixer", m).requires_order])
def test_an_order_free_mixer_is_permutation_equivariant(name):
    mixer = _mixer(name)
    x = torch.randn(2, 7, D)
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(mixer(x)[:, perm], mixer(x[:, perm]), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", [m for m in MIXERS if CAUSAL_SELF in build_class("mixer", m).patterns])
def test_a_causal_mixer_ignores_the_future(name):
    mixer = _mixer(name, causal=True)
    x = torch.randn(2, 24, D)
    t = 10
    future_changed = x.clone()
    future_changed[:, t + 1:] += torch.randn_like(future_changed[:, t + 1:]) * 3
    with torch.no_grad():
        a, b = mixer(x), mixer(future_changed)
    torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1], atol=1e-5, rtol=1e-4)
    assert not torch.allclose(a[:, t + 1:], b[:, t + 1:])


def test_a_mixer_without_a_causal_form_refuses_causal():
    from tsformers.backbone.mixers._base import check_causal

    class SelfOnly:
        patterns = frozenset({SELF, CROSS})

    with pytest.raises(ValueError, match="no causal form.*causal=False"):
        check_causal(SelfOnly, True)
    check_causal(SelfOnly, False)
    # every registered mixer without a causal pattern (none today) refuses causal=True
    for name in [m for m in MIXERS if build_class("mixer", m).patterns.isdisjoint({CAUSAL_SELF, CAUSAL_CROSS})]:
        with pytest.raises(ValueError, match="causal"):
            build("mixer", name, d_model=D, n_heads=HEADS, causal=True)


@pytest.mark.parametrize("name", MIXERS)
def test_cross_attention_where_supported_and_a_clear_error_elsewhere(name):
    cls = build_class("mixer", name)
    mixer = _mixer(name)
    x, kv = torch.randn(2, 16, D), torch.randn(2, 24, D)
    wanted = CAUSAL_CROSS if getattr(mixer, "causal", False) else CROSS
    if wanted in cls.patterns:
        with torch.no_grad():
            assert mixer(x, kv).shape == (2, 16, D)
    else:
        with pytest.raises(ValueError, match="cross|kv"):
            mixer(x, kv)


@pytest.mark.parametrize("name", [m for m in MIXERS if not build_class("mixer", m).mixes_tokens])
def test_a_channel_only_mixer_has_a_block_diagonal_jacobian(name):
    mixer = _mixer(name)
    x = torch.randn(1, 6, D)
    jac = torch.autograd.functional.jacobian(lambda t: mixer(t), x)[0, :, :, 0]  # (N, D, N, D)
    off_diagonal = jac.clone()
    for i in range(6):
        off_diagonal[i, :, i] = 0
    assert off_diagonal.abs().max() == 0


# --------------------------------------------------------------------------------------- stacks


@pytest.mark.parametrize("name", STACKS)
def test_stack_keeps_the_shape_and_trains(name):
    torch.manual_seed(0)
    stack = build("stack", name, d_model=D, n_heads=HEADS, d_ff=2 * D, n_layers=2, dropout=0.0)
    assert stack.__doc__
    x = torch.randn(2, 16, D, requires_grad=True)
    y = stack(x)
    assert y.shape == x.shape
    y.square().mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", STACKS)
def test_stack_declares_whether_it_reads_token_order_and_means_it(name):
    """``requires_order`` False: permutation-equivariant with an order-free mixer (variate tokens may
    use it); True: permuting the tokens changes more than their order (variate slots refuse it)."""
    assert isinstance(build_class("stack", name).requires_order, bool)
    torch.manual_seed(0)
    stack = build("stack", name, d_model=D, n_heads=HEADS, d_ff=2 * D, n_layers=2, dropout=0.0).eval()
    x = torch.randn(2, 8, D)
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        equivariant = torch.allclose(stack(x)[:, perm], stack(x[:, perm]), atol=1e-5, rtol=1e-4)
    assert equivariant != build_class("stack", name).requires_order
    assert (name in order_free("stack")) == equivariant


# ------------------------------------------------------------------- learning in a small forecaster


class PatchForecaster(nn.Module):
    """The smallest forecaster with a mixer slot: patches -> one block of the mixer -> flatten -> horizon."""

    def __init__(self, lookback, horizon, *, mixer="full", stack="standard", causal=False, d_model=D):
        super().__init__()
        self.norm = InstanceNorm()
        self.embed = PatchEmbedding(d_model, patch_len=8, stride=8, dropout=0.0)
        n_patches = self.embed.n_patches(lookback)
        self.position = nn.Parameter(torch.randn(n_patches, d_model) * 0.02)
        self.encoder = build("stack", stack, d_model=d_model, n_heads=HEADS, d_ff=2 * d_model, n_layers=1,
                             dropout=0.0, mixer=mixer, causal=causal)
        self.head = nn.Linear(n_patches * d_model, horizon)

    def forward(self, x):                                          # (B, L, 1)
        x, stats = self.norm(x)
        tokens = self.embed(x.transpose(1, 2))[:, 0] + self.position  # (B, P, D)
        y = self.head(self.encoder(tokens).flatten(1))[..., None]   # (B, H, 1)
        return self.norm.inverse(y, stats)


def seasonal_windows(lookback=48, horizon=12, n=400, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n + lookback + horizon + 200)
    series = 2 * np.sin(2 * np.pi * t / 12) + np.sin(2 * np.pi * t / 5) + 0.1 * rng.standard_normal(t.size)
    windows = np.lib.stride_tricks.sliding_window_view(series, lookback + horizon)
    w = torch.tensor(windows, dtype=torch.float32)[..., None]
    return (w[:n, :lookback], w[:n, lookback:]), (w[n + 100:, :lookback], w[n + 100:, lookback:])


def train_small(model, train, steps=150):
    torch.manual_seed(0)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = train
    for step in range(steps):
        batch = torch.arange(step * 32, step * 32 + 32) % len(x)
        loss = nn.functional.mse_loss(model(x[batch]), y[batch])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


@pytest.mark.parametrize("name", [m for m in MIXERS if m != "full"] + ["full"])
def test_each_mixer_learns_a_seasonal_panel_better_than_the_naive_forecast(name):
    train, (x_test, y_test) = seasonal_windows()
    torch.manual_seed(0)
    model = train_small(PatchForecaster(48, 12, mixer=name, causal=_self_causal(name)), train)
    with torch.no_grad():
        mse = nn.functional.mse_loss(model(x_test), y_test).item()
    naive = nn.functional.mse_loss(x_test[:, -1:].expand_as(y_test), y_test).item()
    assert mse < 0.3 * naive, (mse, naive)


@pytest.mark.parametrize("name", STACKS)
def test_each_stack_learns_a_seasonal_panel_better_than_the_naive_forecast(name):
    train, (x_test, y_test) = seasonal_windows()
    torch.manual_seed(0)
    model = train_small(PatchForecaster(48, 12, stack=name), train)
    with torch.no_grad():
        mse = nn.functional.mse_loss(model(x_test), y_test).item()
    naive = nn.functional.mse_loss(x_test[:, -1:].expand_as(y_test), y_test).item()
    assert mse < 0.3 * naive, (mse, naive)
