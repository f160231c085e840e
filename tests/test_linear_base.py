"""The linear base of the streaming forecasters (``linear_base=True``): a fitted ridge map plus the network's correction.

References: the NLinear map computed here in numpy, ``LinearForecaster`` (the same closed-form
map), the forecast of the full history (exact streaming), and the map alone where the fit drops
the network.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from tsformers import AtlasForecaster, GTrXLForecaster, LinearForecaster, LMUFormerForecaster
from tsformers.backbone import LinearBase, StreamingLinearBase, linear_base_of
from tsformers.models.lmuformer import LMUFormer

H, L = 12, 48


def bumps(n=1200, seed=0):
    """Half-sine bumps of 24 steps, each with its own amplitude in [0.5, 2]: where a window ends inside a
    bump, the rest of it follows from the part seen, by a rule that depends on the phase, which one
    linear map of the window can only approximate."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    amplitude = rng.uniform(0.5, 2.0, n // 24 + 1)[t // 24]
    y = amplitude * np.abs(np.sin(np.pi * t / 24)) + 0.02 * rng.standard_normal(n)
    return pd.DataFrame({"date": pd.date_range("2024-01-01", periods=n, freq="h"), "y": y})


def two_variables(n=300, seed=1):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return pd.DataFrame({"date": pd.date_range("2024-01-01", periods=n, freq="h"),
                         "a": np.sin(2 * np.pi * t / 12) + 0.1 * rng.standard_normal(n) + 0.01 * t,
                         "b": np.cos(2 * np.pi * t / 8) + 0.1 * rng.standard_normal(n)})


def lmuformer(**kw):
    return LMUFormerForecaster(**({"horizon": H, "lookback": L, "d_model": 16, "memory_size": 16,
                                   "learning_rate": 3e-3, "random_state": 0} | kw))


def values(forecast, columns=("y",)):
    return forecast[list(columns)].to_numpy(float)


# -- the part ------------------------------------------------------------------------------------

def _wrapped(lookback=8, horizon=4, n_vars=3, n_targets=2, seed=0):
    torch.manual_seed(seed)
    network = LMUFormer(lookback=lookback, horizon=horizon, n_vars=n_vars, d_model=8, memory_size=8).eval()
    base = StreamingLinearBase(network, lookback=lookback, horizon=horizon, n_targets=n_targets)
    base.set_map(torch.randn(horizon, lookback) / lookback, torch.randn(horizon) * 0.1)
    with torch.no_grad():
        base.gate.copy_(torch.linspace(0.5, 1.5, horizon))
    return base.eval()


def test_the_forecast_is_the_map_plus_the_gated_correction_against_numpy():
    base = _wrapped()
    x = torch.randn(5, 8, 3)
    with torch.no_grad():
        y, network = base(x).numpy(), base.network(x).numpy()
    w, b, g = base.weight.numpy().copy(), base.bias.numpy().copy(), base.gate.detach().numpy().copy()
    xs = x.numpy()[..., :2]
    last = xs[:, -1:]
    expected = last + np.einsum("hl,bln->bhn", w, xs - last) + b[:, None] + g[:, None] * (network[..., :2] - last)
    np.testing.assert_allclose(y[..., :2], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y[..., 2:], network[..., 2:])  # a covariate's forecast stays the network's
    with base.alone(), torch.no_grad():   # the gate shut for the block only
        np.testing.assert_allclose(base(x).numpy()[..., :2], expected - g[:, None] * (network[..., :2] - last),
                                   rtol=1e-5, atol=1e-5)
    assert base.network_used and torch.equal(base.gate.detach(), torch.linspace(0.5, 1.5, 4))


@pytest.mark.parametrize("steps", [3, 8, 21])
def test_streaming_is_exact_for_histories_shorter_and_longer_than_the_lookback(steps):
    base = _wrapped()
    x = torch.randn(2, steps, 3)
    with torch.no_grad():
        whole = base(x)
        state = base.advance(base.init_state(2), x)
        pieces = base.init_state(2)
        for part in x.split(5, dim=1):
            pieces = base.advance(pieces, part)
        torch.testing.assert_close(base.forecast(state), whole, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(base.forecast(pieces), whole, rtol=1e-4, atol=1e-5)
    if steps < 8:  # a short window: the missing older steps count as the last value (no change)
        padded = torch.cat([x[:, -1:, :2].expand(-1, 8 - steps, -1), x[..., :2]], dim=1)        # (2, 8, 2)
        observed = (torch.arange(8) >= 8 - steps).float()[None, :, None]
        zeros_before = torch.cat([x.new_zeros(2, 8 - steps, 2), x[..., :2]], dim=1)
        torch.testing.assert_close(base.base(zeros_before, observed), base.base(padded))


def test_a_constant_moves_the_forecast_by_that_constant():
    base = _wrapped(n_targets=3)   # the network normalises by the last value too
    x = torch.randn(4, 8, 3)
    with torch.no_grad():
        torch.testing.assert_close(base(x + 7.5), base(x) + 7.5, rtol=1e-4, atol=1e-4)


class _NextStep(torch.nn.Module):
    """A windowed network: a linear map of the last step, the forecast of one step."""

    def __init__(self):
        super().__init__()
        self.map = torch.nn.Linear(3, 3)

    def forward(self, x):
        return self.map(x[:, -1:])


def test_the_windowed_form_wraps_a_network_without_a_state():
    network = _NextStep()
    base = LinearBase(network, lookback=4, horizon=1, n_targets=3)
    assert not hasattr(base, "advance") and not hasattr(base, "receptive_field")
    assert linear_base_of(network) is None and linear_base_of(base) is base
    x = torch.randn(2, 4, 3)
    with torch.no_grad():   # the map is zero until fitted: the last value plus the gated correction (0.1)
        torch.testing.assert_close(base(x), x[:, -1:] + 0.1 * (network(x) - x[:, -1:]))


# -- the estimators ------------------------------------------------------------------------------

def random_walk(n=3000, seed=0):
    """A random walk: the last value is the best forecast, which the map finds; nothing is left to learn."""
    steps = np.random.default_rng(seed).standard_normal(n)
    return pd.DataFrame({"date": pd.date_range("2024-01-01", periods=n, freq="h"), "y": np.cumsum(steps)})


def test_the_map_is_linear_forecasters_and_a_useless_network_is_dropped():
    """On a random walk an untrained network (learning rate 1e-9) only adds noise: the map alone wins on
    validation, the gate is shut, and the forecast is LinearForecaster's (same windows, same penalty)."""
    df = random_walk()
    est = lmuformer(max_epochs=1, learning_rate=1e-9, val_size=0.3).fit(df)   # many validation windows
    linear = LinearForecaster(horizon=H, lookback=L, val_size=0.3).fit(df)
    base = linear_base_of(est.network_)
    np.testing.assert_allclose(base.weight.numpy(), linear.network_.map.weight.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(base.bias.numpy(), linear.network_.map.bias.detach().numpy(), rtol=1e-6, atol=1e-7)
    assert est.network_used_ is False and est.correction_share_ == 0.0
    np.testing.assert_allclose(values(est.predict()), values(linear.predict()), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(values(est.predict(df.iloc[:500])), values(linear.predict(df.iloc[:500])),
                               rtol=1e-5, atol=1e-5)


def test_a_network_that_helps_is_kept_and_beats_the_map():
    """On the bumps the trained correction beats the map on validation, so it is kept. Measured here (seed 0,
    8 epochs, one thread), MSE of forecasts every 5 steps after the training part: linear 0.0284, with the
    correction 0.0263, the network alone 0.0404, the last value 0.357."""
    df = bumps()
    est = lmuformer(max_epochs=8, lr_schedule="cosine").fit(df.iloc[:1000])
    linear = LinearForecaster(horizon=H, lookback=L).fit(df.iloc[:1000])
    assert est.network_used_ is True
    y = df["y"].to_numpy()
    errors = {name: np.mean([np.mean((values(model.predict(df.iloc[:o]))[:, 0] - y[o:o + H]) ** 2)
                             for o in range(1000, len(df) - H + 1, 5)])
              for name, model in {"base": est, "linear": linear}.items()}
    assert errors["base"] < errors["linear"], errors


@pytest.mark.parametrize("cls", [LMUFormerForecaster, GTrXLForecaster, AtlasForecaster])
def test_every_streaming_estimator_has_it_by_default_and_update_stays_exact(cls, tmp_path):
    assert cls().linear_base is True
    df = two_variables()
    est = cls(**(cls.get_test_params() | {"horizon": 6, "lookback": 24, "max_epochs": 1})).fit(df.iloc[:250])
    assert isinstance(linear_base_of(est.network_), StreamingLinearBase)
    assert {"base.window", "base.seen"} <= set(est.state_)
    full = values(est.predict(df), ["a", "b"])
    est.update(df.iloc[250:270]).update(df.iloc[270:])
    np.testing.assert_allclose(values(est.predict(), ["a", "b"]), full, rtol=1e-4, atol=1e-5)
    est.save(tmp_path / "m")
    loaded = cls.load(tmp_path / "m")
    pd.testing.assert_frame_equal(loaded.predict(), est.predict())
    assert loaded.network_used_ == est.network_used_ and loaded.correction_share_ == est.correction_share_
    plain = cls(**(cls.get_test_params() | {"horizon": 6, "lookback": 24, "max_epochs": 0,
                                             "linear_base": False})).fit(df)
    assert linear_base_of(plain.network_) is None
    for attribute in ("network_used_", "correction_share_"):
        with pytest.raises(AttributeError, match=f"{attribute} is defined with linear_base=True only"):
            getattr(plain, attribute)


def test_a_smaller_network_for_compression_keeps_the_fitted_map():
    est = lmuformer(max_epochs=1).fit(bumps(400))
    student = est.new_network(d_model=8)
    torch.testing.assert_close(linear_base_of(student).weight, linear_base_of(est.network_).weight)


def test_without_validation_windows_the_map_is_chosen_by_leave_one_out_and_the_correction_kept_whole():
    """``val_size=0``: the map is LinearForecaster's without validation windows (its penalty chosen by leaving
    out one training window at a time) and, with nothing held out to choose a share on, the forecast keeps
    all of the trained correction, as a network trained without validation keeps its last epoch."""
    df = bumps(200)
    est = lmuformer(max_epochs=1, val_size=0).fit(df)
    linear = LinearForecaster(horizon=H, lookback=L, val_size=0).fit(df)
    torch.testing.assert_close(linear_base_of(est.network_).weight, linear.network_.map.weight.to(torch.float32))
    assert est.correction_share_ == 1.0 and est.network_used_
    with pytest.raises(ValueError, match=r"linear_base=True chooses the ridge penalty.*linear_base=False"):
        lmuformer(max_epochs=1, val_size=0, horizon=6, lookback=24).fit(df.iloc[:30])


def test_gateformer_has_it_by_default_and_falls_back_to_the_map(tmp_path):
    """The windowed form: on by default (``linear_base=False`` is the paper's network); an untrained network is
    dropped. On a
    noisy sine the map forecasts almost exactly, so every share of an untrained correction only adds error
    (validation MSE measured here: 0.0051 for the map alone, 0.0058 with a quarter of it). On a random walk,
    as above for LMUFormer, an untrained Gateformer's correction (towards the window's level) kept a quarter
    by 0.2% of validation MSE: the share follows the validation windows, noise included."""
    from tsformers import GateformerForecaster

    assert GateformerForecaster().linear_base is True
    # one network (the default fits a seed ensemble of two, each member with its base: tests/test_ensemble.py)
    alone = GateformerForecaster(horizon=H, lookback=L, d_model=16, max_epochs=1, linear_base=False, ensemble_size=1)
    assert linear_base_of(alone.fit(random_walk()).network_) is None
    df = random_walk()
    df["y"] = np.sin(2 * np.pi * np.arange(len(df)) / 24) + 0.05 * np.random.default_rng(0).standard_normal(len(df))
    est = GateformerForecaster(horizon=H, lookback=L, d_model=16, max_epochs=1, learning_rate=1e-9,
                               val_size=0.3, cycle=None,     # the sine in, not taken out as the daily cycle
                               ensemble_size=1).fit(df)
    assert type(linear_base_of(est.network_)) is LinearBase and est.network_used_ is False
    assert est.correction_share_ == 0.0
    linear = LinearForecaster(horizon=H, lookback=L, val_size=0.3).fit(df)
    np.testing.assert_allclose(values(est.predict(df.iloc[:500])), values(linear.predict(df.iloc[:500])),
                               rtol=1e-5, atol=1e-5)
    loaded = GateformerForecaster.load(est.save(tmp_path / "m"))
    pd.testing.assert_frame_equal(loaded.predict(), est.predict())
    # compressing a network that never reaches the forecast says so; the forecast is the map's, unchanged
    from tsformers import compress

    with pytest.warns(UserWarning, match=r"kept its linear base alone \(correction_share_ = 0\).*linear_base=False"):
        small = compress.quantize_dynamic(est)
    pd.testing.assert_frame_equal(small.predict(), est.predict())
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)   # a fit that uses its network compresses without it
        compress.quantize_dynamic(alone)


# -- the share of the correction --------------------------------------------------------------------

def _ridge(x, y, penalty=1e-3):
    """The ridge solution of x @ w = y (x's last column, each window's change at its last step, is zero)."""
    return torch.linalg.solve(x.T @ x + penalty * torch.eye(x.shape[1], dtype=x.dtype), x.T @ y)


class _WindowMLP(torch.nn.Module):
    """A small network over each channel's window: (B, L, C) -> (B, H, C)."""

    def __init__(self, lookback, horizon):
        super().__init__()
        self.mlp = torch.nn.Sequential(torch.nn.Linear(lookback, 32), torch.nn.GELU(), torch.nn.Linear(32, horizon))

    def forward(self, x):
        return self.mlp(x.mT).mT


@pytest.mark.parametrize("quantiles, noise", [(None, 0.5), ([0.1, 0.5, 0.9], 0.8)])
def test_the_fit_keeps_the_share_of_the_correction_with_the_lowest_validation_loss(quantiles, noise, monkeypatch):
    """The share kept is the argmin of the validation loss over 0, 1/4, 1/2, 3/4 and 1, computed here from each
    share's forecast of every validation window (MSE, or the pinball loss of a quantile head around the base,
    whose gaps are not linear in the share); the forecast is the map plus that share of the correction. On
    bumps under heavy noise (sd 0.5), with the ridge map of the training windows and 20 epochs at a high
    learning rate, the network and the map err differently, and a share between them scores below both
    (measured here, seed 0, MSE: 0.353 for the map, 0.341 for half, 0.346 for all of it; with the quantile
    head, noise sd 0.8, half too, by less: pinball 0.21877, 0.21866, 0.21882)."""
    from tsformers.backbone import QuantileHead
    from tsformers.training.fit import ChooseShare, fit_network
    from tsformers.training.losses import make_loss

    scored = []
    choose = ChooseShare.on_fit_end
    monkeypatch.setattr(ChooseShare, "on_fit_end", lambda self, *a: (choose(self, *a), scored.append(self.losses)))
    noisy = bumps(900)["y"].to_numpy() + noise * np.random.default_rng(1).standard_normal(900)
    y = torch.from_numpy(noisy.astype(np.float32))[None, :, None]                  # (1, T, 1)
    train, val = (y[:, :700], y[:, :700]), (y[:, 700 - L:], y[:, 700 - L:])
    torch.manual_seed(0)
    base = LinearBase(_WindowMLP(L, H), lookback=L, horizon=H, n_targets=1)
    seen = y[0, :700, 0].unfold(0, L + H, 1).double()                              # the training windows
    change = seen - seen[:, L - 1:L]                                              # from each one's last value
    solution = _ridge(torch.cat([change[:, :L], torch.ones(len(seen), 1, dtype=torch.float64)], 1),
                      change[:, L:])                                               # (L + 1, H)
    base.set_map(solution[:-1].T.float(), solution[-1].float())
    network = base if quantiles is None else QuantileHead(base, quantiles=quantiles, horizon=H, n_targets=1)
    fit_network(network, train, val, lookback=L, horizon=H, n_targets=1, loss="mse", learning_rate=1e-2,
                weight_decay=0.0, lr_schedule="constant", batch_size=32, max_epochs=20, patience=None,
                gradient_clip=None, seed=0, verbose=False, linear_base=base, quantiles=quantiles)
    windows = val[0][0, :, 0].unfold(0, L + H, 1)                                  # (W, L + H)
    x, truth = windows[:, :L, None], windows[:, L:, None]
    loss = make_loss("mse", quantiles)
    kept = float(base.share)
    network.eval()
    with torch.no_grad():
        forecast = network(x)
        losses = []
        for share in ChooseShare.SHARES:
            base.keep_share(share)
            losses.append(float(loss(network(x), truth)))
        base.keep_share(kept)
    np.testing.assert_allclose(scored[0], losses, rtol=1e-5)   # what the fit weighed is each share's own loss
    assert kept == ChooseShare.SHARES[int(np.argmin(losses))], losses
    if quantiles is None:   # (with quantiles the differences are too small to count on beyond this machine)
        assert 0.0 < kept < 1.0 and min(losses) < min(losses[0], losses[-1]), losses
        # the point forecast is linear in the share: the map plus that share of the correction
        with torch.no_grad():
            with base.alone():
                alone = base(x)
            base.keep_share(1.0)
            full = base(x)
            base.keep_share(kept)
        torch.testing.assert_close(forecast, alone + kept * (full - alone), rtol=1e-5, atol=1e-6)


def test_a_share_outside_zero_to_one_is_refused_and_models_saved_before_it_keep_all_of_the_correction():
    base = _wrapped()
    for share in (-0.1, 1.5):
        with pytest.raises(ValueError, match="from 0 to 1"):
            base.keep_share(share)
    x = torch.randn(5, 8, 3)
    expected = base(x)
    state = {k: v for k, v in base.state_dict().items() if k != "share"}          # a file written before the share
    fresh = _wrapped(seed=1)
    fresh.keep_share(0.0)
    fresh.load_state_dict(state)
    assert float(fresh.share) == 1.0
    torch.testing.assert_close(fresh(x), expected)


@pytest.mark.parametrize("quantiles", [None, [0.1, 0.5, 0.9]])
def test_choosing_the_share_runs_the_network_once_per_batch_and_scores_as_a_pass_per_share(quantiles, monkeypatch):
    """The share's validation losses are bit for bit those of a whole validation pass per share (the module's
    own validation step, share by share), while the wrapped network runs once per validation batch, not once
    per batch and share; around a quantile head too (the head runs per share: it is not linear in it)."""
    from tsformers.backbone import QuantileHead
    from tsformers.training.fit import ChooseShare, fit_network

    calls, scored, reference, batches = [], [], [], []
    choose = ChooseShare.on_fit_end

    def scored_both_ways(self, trainer, module):
        module.eval()
        with torch.no_grad():   # the reference: one whole validation pass per share
            losses = []
            for share in ChooseShare.SHARES:
                self.base.keep_share(share)
                module.on_validation_epoch_start()
                for i, batch in enumerate(trainer.datamodule.val_dataloader()):
                    module.validation_step(module.transfer_batch_to_device(batch, module.device, 0), i)
                losses.append(float(module.validation_loss()))
        module.train()
        reference.append(losses)
        batches.append(len(trainer.datamodule.val_dataloader()))
        calls.clear()
        choose(self, trainer, module)
        scored.append((self.losses, len(calls)))

    monkeypatch.setattr(ChooseShare, "on_fit_end", scored_both_ways)
    y = torch.from_numpy(bumps(900)["y"].to_numpy().astype(np.float32))[None, :, None]      # (1, T, 1)
    train, val = (y[:, :500], y[:, :500]), (y[:, 500 - L:], y[:, 500 - L:])
    torch.manual_seed(0)
    inner = _WindowMLP(L, H)
    inner.register_forward_hook(lambda *_: calls.append(1))
    base = LinearBase(inner, lookback=L, horizon=H, n_targets=1)
    network = base if quantiles is None else QuantileHead(base, quantiles=quantiles, horizon=H, n_targets=1)
    fit_network(network, train, val, lookback=L, horizon=H, n_targets=1, loss="mse", learning_rate=1e-2,
                weight_decay=0.0, lr_schedule="constant", batch_size=32, max_epochs=2, patience=None,
                gradient_clip=None, seed=0, verbose=False, linear_base=base, quantiles=quantiles)
    (losses, network_runs), = scored
    assert losses == reference[0], "the same sums in the same order: the same floats"
    assert len(set(losses)) == len(losses), "the shares differ, so the network's output was combined per share"
    assert batches[0] >= 2 and network_runs == batches[0]
