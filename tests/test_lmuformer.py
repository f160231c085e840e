"""LMUFormer network and LMUFormerForecaster: shapes, causality, exact streaming, the spiking variant."""

import numpy as np
import pandas as pd
import pytest
import torch

from tsformers.backbone.spiking import SpikeRateCounter
from tsformers.estimators.lmuformer import LMUFormerForecaster
from tsformers.estimators.streaming import StreamingForecaster
from tsformers.models.lmuformer import CausalConv1d, LMUFormer


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def small(**kw):
    kw = {"lookback": 32, "horizon": 8, "n_vars": 3, "d_model": 12, "memory_size": 10} | kw
    return LMUFormer(**kw)


def trained_statistics(net: LMUFormer, n_vars: int = 3) -> LMUFormer:
    """Set BatchNorm's running statistics to the averages over a few training-mode passes, then eval mode.

    (Cumulative averages: with the default momentum, the initial variance of 1 would linger for
    many passes and, in the spiking model, silence every layer behind a sparse one.)
    """
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    net.train()
    with torch.no_grad():
        for _ in range(5):
            net(torch.randn(8, net.lookback, n_vars))                       # the tests feed randn too
    for norm in norms:
        norm.momentum = 0.1
    return net.eval()


CONFIGS = [
    {},
    {"channel_independent": False},
    {"n_layers": 2, "kernel_size": 5},
    {"spiking": True},
    {"spiking": True, "channel_independent": False},
]


@pytest.mark.parametrize("kw", CONFIGS)
def test_output_shape_and_finite(kw):
    net = small(**kw)
    y = net(torch.randn(4, 32, 3))
    assert y.shape == (4, 8, 3) and torch.isfinite(y).all()


def test_defaults_follow_the_paper():
    net = LMUFormer(lookback=96, horizon=24, n_vars=7)
    memory = net.blocks[0].lmu.memory
    assert (memory.order, memory.theta) == (64, 86.0)                     # memory_size = d_model; theta = tokens
    assert net.padded == 10                                                # ... after the 10 embedded from padding
    assert len(net.blocks) == 1 and len(net.tokenizer.convs) == 4
    assert net.blocks[0].ffn.fc1.out_features == 4 * 64
    spiking = LMUFormer(lookback=96, horizon=24, n_vars=7, spiking=True)
    assert spiking.blocks[0].lmu.memory.order == 128                     # 2·d_model when spiking
    assert spiking.blocks[0].lmu.in_lif.v_threshold == 0.5


def test_causal_conv_reads_only_the_past():
    conv = CausalConv1d(2, 3, kernel_size=3)
    x = torch.randn(1, 10, 2)
    y, state = conv(x)
    ref = torch.nn.functional.conv1d(torch.nn.functional.pad(x.mT, (2, 0)), conv.conv.weight).mT
    torch.testing.assert_close(y, ref)
    assert torch.equal(state, x[:, -2:])


@pytest.mark.parametrize("kw", CONFIGS)
def test_outputs_at_t_ignore_inputs_after_t(kw):
    """The features every token would forecast from, at step t, do not move when inputs after t change."""
    net = trained_statistics(small(**kw))
    feats = []
    net.blocks[-1].register_forward_hook(lambda mod, inp, out: feats.append(out[0]))
    x = torch.randn(2, 32, 3)
    x2 = x.clone()
    x2[:, 20:] += 3 * torch.randn(2, 12, 3)
    with torch.no_grad():
        net(x), net(x2)
    before, after = feats
    assert float((before[:, :20] - after[:, :20]).abs().max()) < 1e-5
    assert float((before[:, 20:] - after[:, 20:]).abs().max()) > 1e-3


@pytest.mark.parametrize("kw", CONFIGS)
def test_streaming_equals_the_window_forward(kw):
    net = trained_statistics(small(**kw))
    x = torch.randn(5, 32, 3)
    with torch.no_grad():
        y = net(x)
        state = net.advance(net.init_state(5), x)
        torch.testing.assert_close(net.forecast(state), y, rtol=0, atol=1e-5)
        # advance(advance(s, a), b) == advance(s, cat(a, b)), down to one step at a time
        split = net.advance(net.advance(net.init_state(5), x[:, :13]), x[:, 13:])
        stepped = net.init_state(5)
        for t in range(32):
            stepped = net.advance(stepped, x[:, t: t + 1])
    assert all(v.shape[0] == 5 for v in state.values())                  # batch first: one row per series
    for other in (split, stepped):
        assert other.keys() == state.keys()
        for k in state:
            torch.testing.assert_close(other[k], state[k], rtol=0, atol=1e-5)


def test_long_histories_stream_in_chunks():
    net = trained_statistics(small())
    x = torch.randn(2, 300, 3)
    with torch.no_grad():
        whole = net.advance(net.init_state(2), x)
        net.stream_chunk = 64                                              # 5 parallel passes instead of 1
        chunked = net.advance(net.init_state(2), x)
    for k in whole:
        torch.testing.assert_close(chunked[k], whole[k], rtol=0, atol=1e-4)


def test_a_long_history_forecasts_like_the_last_window():
    """The default theta keeps the window's padded first tokens out of the memory: from a 200-step state the
    forecast is the window's up to the memory's small tail; with theta = lookback it is not."""
    x = torch.randn(2, 200, 3)
    gaps = {}
    for theta in (None, 32):
        torch.manual_seed(0)
        net = trained_statistics(small(theta=theta))
        with torch.no_grad():
            streamed, window = net.forecast(net.advance(net.init_state(2), x)), net(x[:, -32:])
        gaps[theta] = float((streamed - window).abs().max())
    assert gaps[None] < 0.05 and gaps[32] > 5 * gaps[None], gaps


def test_the_memory_reaches_back_over_theta():
    """Only the LMU carries information beyond the convolutions' 11 steps: an early input must move the forecast."""
    net = trained_statistics(small())
    x = torch.randn(2, 32, 3)
    x2 = x.clone()
    x2[:, 3] += 5.0
    with torch.no_grad():
        assert float((net(x) - net(x2)).abs().max()) > 1e-4


def test_spiking_variant_trains_and_spikes_are_binary():
    net = small(spiking=True, d_model=16, memory_size=16, dropout=0.0)
    t = torch.arange(400, dtype=torch.float32)
    series = torch.stack([torch.sin(2 * torch.pi * t / 16), torch.cos(2 * torch.pi * t / 10),
                          torch.sin(2 * torch.pi * t / 8 + 1)], dim=-1)          # (400, 3)
    windows = series.unfold(0, 40, 6).permute(0, 2, 1)                          # (W, 40, 3)
    x, y = windows[:, :32], windows[:, 32:]
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    with torch.no_grad():
        first = float(torch.mean((net(x) - y) ** 2))
    for _ in range(40):
        loss = torch.mean((net(x) - y) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        last = float(torch.mean((net(x) - y) ** 2))
    assert last < 0.5 * first, (first, last)
    grads = [p.grad for p in net.tokenizer.convs[0].parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)              # the surrogate gradient reached
    with SpikeRateCounter(net) as counter:
        net.eval()(x)
    assert counter.binary and 0.0 < counter.rate < 1.0
    assert len(counter.per_layer) == 3 + 1 + 4 + 2                               # embedding, RPE, LMU cell, FFN


# -- the estimator --------------------------------------------------------------------------------

def _frame(n=360, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return pd.DataFrame({
        "date": pd.date_range("2024-01-01", periods=n, freq="h"),
        "a": np.sin(2 * np.pi * t / 24) + 0.1 * rng.standard_normal(n),
        "b": np.cos(2 * np.pi * t / 12) + 0.1 * rng.standard_normal(n) + 3.0,
    })


@pytest.fixture(scope="module")
def fitted():
    df = _frame()
    f = LMUFormerForecaster(horizon=6, lookback=24, d_model=8, memory_size=8, max_epochs=1, batch_size=64,
                            random_state=0).fit(df[:300])
    return f, df


def test_predict_on_exactly_lookback_rows_is_the_trained_window_forecast(fitted):
    f, df = fitted
    window = df[300:324]
    scaled = f.scaler_.transform(window[["a", "b"]].to_numpy()[None])
    with torch.no_grad():
        y = f.network_(torch.from_numpy(scaled.astype(np.float32))).double().numpy()
    expected = f.scaler_.inverse(y, 2)[0]
    np.testing.assert_allclose(f.predict(window)[["a", "b"]].to_numpy(), expected, atol=1e-4)


def test_future_covariates_need_a_lookback_as_long_as_the_horizon():
    df = _frame(200)
    with pytest.raises(ValueError, match="needs lookback >= horizon"):
        LMUFormerForecaster(horizon=30, lookback=24, d_model=8, max_epochs=0, future_covariates=["b"]).fit(df)


def test_estimator_builds_the_configured_network():
    f = LMUFormerForecaster(horizon=6, lookback=24, d_model=8, spiking=True, theta=12.0, max_epochs=0,
                            linear_base=False).fit(_frame(200))
    memory = f.network_.blocks[0].lmu.memory
    assert (memory.order, memory.theta) == (16, 12.0)
    assert isinstance(f, StreamingForecaster) and set(f.state_) >= {"readout", "blocks.0.lmu.memory"}


@pytest.mark.parametrize("channel_independent", [True, False])
def test_forecast_every_step_is_the_stepwise_streaming_forecast(channel_independent):
    net = trained_statistics(small(channel_independent=channel_independent))
    net.stream_chunk = 16
    x = torch.randn(2, 40, 3)
    with torch.no_grad():
        every, state = net.forecast_every_step(x)
        assert every.shape == (2, 40, 8, 3)
        for t in (0, 15, 16, 39):
            torch.testing.assert_close(every[:, t], net.forecast(net.advance(net.init_state(2), x[:, : t + 1])),
                                       rtol=0, atol=1e-5)
        torch.testing.assert_close(net.forecast(state), every[:, -1])
