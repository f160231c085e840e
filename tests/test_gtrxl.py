"""GTrXL: relative attention, segment memory, gated blocks, the streaming network and its estimator.

The reference computations here are written independently of the implementation:
attention scores with an explicit distance lookup (no relative shift), one pass over
the whole sequence (no segments, no memory).
"""

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from sklearn.utils._param_validation import InvalidParameterError
from torch.utils.flop_counter import FlopCounterMode

from tsformers.backbone import KnownFutureHead
from tsformers.backbone import available, build
from tsformers.backbone.memory.segment import SegmentMemory
from tsformers.backbone.mixers.xl_relative import RelativeMultiHeadAttention, relative_shift, sinusoid
from tsformers.estimators.gtrxl import GTrXLForecaster
from tsformers.estimators.streaming import StreamingForecaster
from tsformers.models.gtrxl import GTrXL, IdentityMapXLBlock, PostNormXLBlock

D, HEADS = 16, 2


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def small(**kw):
    """A small GTrXL: receptive field 2 * 10 + 1 = 21 steps, segments of 8; it embeds the values unless told.

    The references below embed the values, the paper's tokens (``normalize="none"``).
    """
    kw = dict(lookback=64, horizon=6, n_vars=3, d_model=D, n_heads=HEADS, d_ff=32, n_layers=2, segment_len=8,
              mem_len=10, dropout=0.0, normalize="none") | kw
    return GTrXL(**kw).eval()


def randomised_attention(**kw):
    attn = RelativeMultiHeadAttention(D, n_heads=HEADS, **kw)
    with torch.no_grad():  # u and v start at zero; give them values so that both bias terms are checked
        attn.u.normal_()
        attn.v.normal_()
    return attn


# -- reference computations --------------------------------------------------------------

def naive_attention(attn, x, memory):
    """Transformer-XL's score for every (query, key) pair, looking up r at the pair's distance.

    score(i, j) = (q_i + u) k_j + (q_i + v) W_R r_{(M + i) - j}, masked outside 0 <= distance <= window.
    """
    n_memory, n_queries = memory.shape[1], x.shape[1]
    context = torch.cat([memory, x], dim=1)
    heads = lambda t: rearrange(t, "b n (h d) -> b h n d", h=attn.n_heads)  # noqa: E731
    q = heads(attn.to_q(x))
    k, v = (heads(t) for t in attn.to_kv(context).chunk(2, dim=-1))
    distance = torch.arange(n_queries)[:, None] + n_memory - torch.arange(context.shape[1])[None, :]  # (S, K)
    r = rearrange(attn.to_r(sinusoid(torch.arange(context.shape[1]), attn.d_model)), "k (h d) -> h k d",
                  h=attn.n_heads)                                                   # by distance 0..K-1
    r_pairs = r[:, distance.clamp(min=0)]                                           # (h, S, K, d)
    score = torch.einsum("bhsd,bhkd->bhsk", q + attn.u[:, None], k)
    score = score + torch.einsum("bhsd,hskd->bhsk", q + attn.v[:, None], r_pairs)
    allowed = distance >= 0
    if attn.window is not None:
        allowed &= distance <= attn.window
    weights = (score / math.sqrt(attn.d_head)).masked_fill(~allowed, float("-inf")).softmax(-1)
    return attn.to_out(rearrange(weights @ v, "b h s d -> b s (h d)"))


def reference_hidden(model, x):
    """The model's function on the whole sequence at once: every layer over all T steps, no memory."""
    empty = x.new_zeros(x.shape[0], 0, model.head.in_features)
    h = model.embed(x)
    for layer in model.layers:
        if isinstance(layer, IdentityMapXLBlock):
            y = layer.gate_attn(h, F.relu(naive_attention(layer.attn, layer.norm_attn(h), empty)))
            h = layer.gate_ff(y, F.relu(layer.ff(layer.norm_ff(y))))
        else:
            y = layer.norm_attn(layer.gate_attn(h, naive_attention(layer.attn, h, empty)))
            h = layer.norm_ff(layer.gate_ff(y, layer.ff(y)))
    return h


def hidden_states(model, x):
    """The model's final-layer states of every step, computed in segments with memory."""
    return model.encode(model.init_state(x.shape[0]), x)[0]


# -- relative positional attention ----------------------------------------------------------

def test_relative_shift_moves_each_distance_under_its_key():
    n_memory, n_queries = 5, 4
    n_keys = n_memory + n_queries
    i = torch.arange(n_queries)[:, None]
    by_distance = 1000 * i + (n_keys - 1 - torch.arange(n_keys))[None, :]   # column k holds distance K - 1 - k
    shifted = relative_shift(by_distance[None, None].float())[0, 0]
    distance = i + n_memory - torch.arange(n_keys)[None, :]
    valid = distance >= 0
    assert torch.equal(shifted[valid], (1000 * i + distance).float().expand(-1, n_keys)[valid])


@pytest.mark.parametrize("window", [None, 3, 7])
@pytest.mark.parametrize("n_memory", [0, 6])
def test_relative_attention_matches_the_per_pair_formula(window, n_memory):
    attn = randomised_attention(window=window).eval()
    x, memory = torch.randn(2, 5, D), torch.randn(2, n_memory, D)
    torch.testing.assert_close(attn(x, memory=memory if n_memory else None), naive_attention(attn, x, memory),
                               atol=1e-5, rtol=1e-4)


def test_relative_attention_is_registered_and_causal():
    assert "xl_relative" in available("mixer")
    attn = build("mixer", "xl_relative", d_model=D, n_heads=HEADS).eval()
    x = torch.randn(2, 9, D)
    x2 = x.clone()
    x2[:, 5] = torch.randn(2, D)
    out, out2 = attn(x), attn(x2)
    torch.testing.assert_close(out[:, :5], out2[:, :5])
    assert (out[:, 5:] - out2[:, 5:]).abs().amax(dim=(0, 2)).min() > 1e-4
    with pytest.raises(ValueError, match="causal"):
        RelativeMultiHeadAttention(D, n_heads=HEADS, causal=False)


def test_relative_attention_ignores_keys_beyond_the_window():
    attn = randomised_attention(window=3).eval()
    memory, x = torch.randn(1, 6, D), torch.randn(1, 4, D)
    memory2 = memory.clone()
    memory2[:, :2] = torch.randn(1, 2, D)     # distances >= 4 from every query
    torch.testing.assert_close(attn(x, memory=memory), attn(x, memory=memory2))


def test_shifting_a_sequence_in_time_leaves_attention_outputs_unchanged():
    """No absolute positions: the same window of content gives the same output wherever it sits."""
    attn = randomised_attention(window=4).eval()
    s = torch.randn(1, 12, D)
    shifted = torch.cat([torch.randn(1, 7, D), s], dim=1)            # s delayed by 7 steps
    out, out_shifted = attn(s), attn(shifted)
    torch.testing.assert_close(out[:, 4:], out_shifted[:, 7 + 4:])   # queries whose window lies inside s


# -- segment memory ------------------------------------------------------------------------------

def test_segment_memory_keeps_the_last_mem_len_states_detached():
    memory = SegmentMemory(n_layers=2, mem_len=5, d_model=D)
    state = memory.init(3)
    assert [tuple(v.shape) for v in state.values()] == [(3, 0, D), (3, 0, D)]
    seen, m = [], state["memory.0"]
    for length in (2, 4, 1, 7):
        hidden = torch.randn(3, length, D, requires_grad=True)
        seen.append(hidden.detach().clone())
        m = memory.update(m, hidden)
        assert not m.requires_grad
        hidden.data.zero_()                                   # the memory holds its own copy
        torch.testing.assert_close(m, torch.cat(seen, dim=1)[:, -5:])
    assert m.shape == (3, 5, D)
    assert "segment" in available("memory")


def test_memory_is_detached_no_gradient_reaches_the_previous_segment():
    block = IdentityMapXLBlock(D, n_heads=HEADS, d_ff=32, mem_len=6, dropout=0.0, gating="gru", gate_bias=2.0)
    memory = torch.randn(2, 6, D, requires_grad=True)
    x = torch.randn(2, 4, D, requires_grad=True)
    block(x, memory).square().sum().backward()
    assert memory.grad is None
    assert x.grad.abs().sum() > 0

    model = small().train()
    series = torch.randn(2, 40, 3, requires_grad=True)          # segments [0, 8), ..., [32, 40)
    model(series).square().sum().backward()
    assert torch.count_nonzero(series.grad[:, :32]) == 0
    assert series.grad[:, 32:].abs().amin(dim=(0, 2)).min() > 0
    # ... yet the earlier segments do shape the forecast, through the memory
    model.eval()
    earlier = series.detach().clone()
    earlier[:, 25:32] += 1.0
    assert (model(earlier) - model(series.detach())).abs().max() > 1e-3


# -- gated blocks -----------------------------------------------------------------------------------

def _block_deviation(block):
    x, memory = torch.randn(8, 32, 64), torch.randn(8, 16, 64)
    with torch.no_grad():
        return float((block(x, memory) - x).norm() / x.norm())


def test_gated_blocks_start_close_to_the_identity_map():
    deviation = {}
    for bias in (0.0, 2.0, 6.0):
        torch.manual_seed(0)
        block = IdentityMapXLBlock(64, n_heads=4, d_ff=128, mem_len=16, dropout=0.0, gating="gru", gate_bias=bias)
        deviation[bias] = _block_deviation(block.eval())
    assert deviation[2.0] < 0.3, deviation         # the paper's b_g = 2: z ~ 0.12 in both gates
    assert deviation[6.0] < 0.02, deviation
    assert deviation[0.0] > 2 * deviation[2.0] > 4 * deviation[6.0], deviation


@pytest.mark.parametrize("gating", ["gru", "output", "highway", "sigmoid_tanh"])
def test_every_biased_gating_starts_the_stack_near_identity(gating):
    torch.manual_seed(0)
    block = IdentityMapXLBlock(64, n_heads=4, d_ff=128, mem_len=16, dropout=0.0, gating=gating, gate_bias=2.0)
    assert _block_deviation(block.eval()) < 0.3


def test_unknown_block_or_gating_lists_the_choices():
    with pytest.raises(AssertionError, match="identity_map"):
        small(block="pre")
    with pytest.raises(AssertionError, match="gru"):
        small(gating="sigmoid")


# -- segments with memory = the full sequence -----------------------------------------------------

@pytest.mark.parametrize("block", ["identity_map", "post_norm"])
@pytest.mark.parametrize("gating", ["gru", "residual", "highway"])
def test_segments_with_memory_equal_the_full_sequence_reference(block, gating):
    model = small(block=block, gating=gating)
    x = torch.randn(2, 45, 3)                                       # 5 full segments of 8 and one of 5
    with torch.no_grad():
        expected = reference_hidden(model, x)
        torch.testing.assert_close(hidden_states(model, x), expected, atol=2e-5, rtol=1e-4)
        forecast = rearrange(model.head(model.norm(expected[:, -1])), "b (h n) -> b h n", n=3) + x[:, -1:]
        torch.testing.assert_close(model(x), forecast, atol=2e-5, rtol=1e-4)


def test_causal_within_and_across_segments():
    model = small()
    x = torch.randn(2, 48, 3)
    x2 = x.clone()
    x2[:, 20] += 1.0                                                # inside the third segment [16, 24)
    with torch.no_grad():
        h, h2 = hidden_states(model, x), hidden_states(model, x2)
    change = (h - h2).abs().amax(dim=(0, 2))
    assert change[:20].max() == 0
    assert change[20:24].min() > 1e-4                               # later steps of the same segment
    assert change[24:31].min() > 1e-4                               # next segment, through the memory
    assert change[31:41].min() > 1e-7                               # 11 to 20 steps on: through layer 2 only
    # beyond the receptive field (2 layers x 10 steps) the change has left every window
    assert change[41:].max() == 0


@pytest.mark.parametrize("normalize", ["none", "last_value"])
def test_the_forecast_does_not_depend_on_absolute_time(normalize):
    """A stream that started earlier gives the same forecast once the receptive field is covered."""
    model = small(gate_bias=0.0, normalize=normalize)
    size = model.receptive_field
    x = torch.randn(2, size, 3)
    stream = torch.cat([torch.randn(2, 37, 3), x], dim=1)         # x delayed by 37 steps
    with torch.no_grad():
        torch.testing.assert_close(model(stream), model(x), atol=2e-5, rtol=1e-4)
        # the receptive field is exact: its oldest step matters, the step before it does not
        inside, outside = stream.clone(), stream.clone()
        inside[:, -size] += 5.0
        outside[:, -size - 1] += 5.0
        assert (model(inside) - model(stream)).abs().max() > 1e-4
        torch.testing.assert_close(model(outside), model(stream))


# -- streaming protocol ------------------------------------------------------------------------------

@pytest.mark.parametrize("normalize", ["none", "last_value"])
def test_forward_equals_forecast_of_advance_for_any_split(normalize):
    model = small(normalize=normalize)
    x = torch.randn(3, 64, 3)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(model.forecast(model.advance(model.init_state(3), x)), expected)
        state = model.init_state(3)
        for piece in x.split([5, 1, 17, 30, 11], dim=1):
            state = model.advance(state, piece)
        torch.testing.assert_close(model.forecast(state), expected, atol=2e-5, rtol=1e-4)
        state = model.init_state(3)
        for t in range(64):
            state = model.advance(state, x[:, t:t + 1])
        torch.testing.assert_close(model.forecast(state), expected, atol=2e-5, rtol=1e-4)


def test_with_last_value_normalisation_the_forecast_moves_with_the_level_of_the_series():
    x = torch.randn(2, 40, 3)
    shift = torch.tensor([3.0, -7.0, 0.5])
    with torch.no_grad():
        model = small(normalize="last_value")
        torch.testing.assert_close(model(x + shift), model(x) + shift, atol=1e-5, rtol=1e-5)
        # embedding the values themselves does not: a level the training never saw changes the forecast's shape
        plain = small(normalize="none")
        assert ((plain(x + shift) - shift) - plain(x)).abs().max() > 1e-3


def test_state_is_bounded_and_update_cost_does_not_grow_with_history():
    model = small()
    x = torch.randn(2, 400, 3)
    new = torch.randn(2, 1, 3)
    flops, sizes = [], []
    with torch.no_grad():
        for history in (30, 400):
            state = model.advance(model.init_state(2), x[:, :history])
            sizes.append({k: tuple(v.shape) for k, v in state.items()})
            counter = FlopCounterMode(display=False)
            with counter:
                model.advance(state, new)
            flops.append(counter.get_total_flops())
    assert sizes[0] == sizes[1]
    assert sizes[1]["memory.0"] == (2, 10, D)
    assert flops[0] == flops[1] > 0


def test_state_keeps_no_view_of_the_inputs():
    model = small()
    x = torch.randn(2, 20, 3)
    with torch.no_grad():
        state = model.advance(model.init_state(2), x)
    pointer = x.untyped_storage().data_ptr()
    assert all(v.untyped_storage().data_ptr() != pointer for v in state.values())
    with pytest.raises(AssertionError, match="advance"):
        model.forecast(model.init_state(2))


# -- estimator --------------------------------------------------------------------------------------

HORIZON, LOOKBACK = 6, 40
# the paper's network alone (linear_base=False): these tests read its parts; tests/test_linear_base.py has the base
SMALL = dict(horizon=HORIZON, lookback=LOOKBACK, d_model=D, n_heads=HEADS, d_ff=32, n_layers=2, segment_len=8,
             mem_len=10, max_epochs=1, batch_size=32, learning_rate=1e-3, linear_base=False)


def frame(n=300, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return pd.DataFrame({
        "date": pd.date_range("2024-01-01", periods=n, freq="h"),
        "load": np.sin(2 * np.pi * t / 24) + 0.1 * rng.standard_normal(n),
        "temp": np.cos(2 * np.pi * t / 24) + 0.1 * rng.standard_normal(n),
        "price": 0.5 * np.sin(2 * np.pi * t / 12) + 0.1 * rng.standard_normal(n),
    })


@pytest.fixture(scope="module")
def fitted():
    torch.manual_seed(0)
    return GTrXLForecaster(**SMALL).fit(frame().iloc[:250])


def _values(out):
    return out[["load", "temp", "price"]].to_numpy(dtype=float)


def test_estimator_is_streaming_and_builds_the_network(fitted):
    assert issubclass(GTrXLForecaster, StreamingForecaster)
    assert isinstance(fitted.network_, GTrXL)
    assert fitted.network_.receptive_field <= LOOKBACK
    assert set(fitted.state_) == {"memory.0", "memory.1", "last_hidden", "last_value"}
    assert fitted.state_["memory.0"].shape == (1, 10, D)


def test_the_streamed_forecast_reads_only_the_last_receptive_field_steps(fitted):
    est = GTrXLForecaster(**SMALL)
    est.__dict__.update({k: v for k, v in vars(fitted).items() if k.endswith("_")})  # same fitted model, own state
    df = frame()
    est.update(df.iloc[250:])   # update == predicting from the full history: tests/test_estimators_contract.py
    streamed = _values(est.predict())
    # a window of lookback rows (>= receptive_field) gives the forecast of the whole history
    np.testing.assert_allclose(streamed, _values(est.predict(df.iloc[-LOOKBACK:])), rtol=1e-4, atol=1e-5)
    # and so does the windowed network that training uses
    window = est.scaler_.transform(df[["load", "temp", "price"]].to_numpy()[None, -LOOKBACK:])
    with torch.no_grad():
        y = est.network_(torch.from_numpy(window.astype(np.float32))).double().numpy()
    np.testing.assert_allclose(streamed, est.scaler_.inverse(y, 3)[0], rtol=1e-4, atol=1e-5)
    assert not np.allclose(streamed, _values(fitted.predict()))  # the update did move the forecast


def test_block_and_gating_are_chosen_by_name():
    est = GTrXLForecaster(**{**SMALL, "max_epochs": 0}, block="post_norm", gating="highway").fit(frame())
    layer = est.network_.layers[0]
    assert type(layer) is PostNormXLBlock and type(layer.gate_attn).__name__ == "HighwayGate"
    assert np.isfinite(_values(est.predict())).all()
    with pytest.raises(InvalidParameterError, match="gating"):
        GTrXLForecaster(**SMALL, gating="sigmoid").fit(frame())
    with pytest.raises(InvalidParameterError, match="block"):
        GTrXLForecaster(**SMALL, block="prenorm").fit(frame())


def test_the_default_normalisation_reaches_the_network_and_keeps_update_exact():
    df = frame()
    est = GTrXLForecaster(**{**SMALL, "max_epochs": 1}).fit(df.iloc[:250])
    assert est.network_.normalize == "last_value" and est.network_.receptive_field == 2 * 10 + 2
    full = _values(est.predict(df))
    np.testing.assert_allclose(_values(est.update(df.iloc[250:]).predict()), full, rtol=1e-4, atol=1e-5)


def test_long_lookback_in_many_segments_trains():
    est = GTrXLForecaster(**{**SMALL, "lookback": 160, "segment_len": 16, "mem_len": 40}).fit(frame(400))
    assert np.isfinite(est.training_log_[-1]["train_loss"])
    assert np.isfinite(_values(est.predict())).all()


def test_future_covariates_stay_out_of_the_recurrence():
    """Known-future covariates reach the forecast only (KnownFutureHead): the layers see the other channels."""
    df = frame().assign(calendar=np.arange(300) % 24)
    est = GTrXLForecaster(**SMALL, future_covariates=["calendar"]).fit(df)
    assert isinstance(est.network_, KnownFutureHead) and est.network_.network.embed[0].in_features == 3
