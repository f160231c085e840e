"""GTrXL with ``kv_cache="sparse"``: ALISA's sparse KV cache in place of the segment memory at inference.

Exact while the stream fits the budget, bounded beyond it, and streamed exactly (pieces == whole ==
the full history); training, persistence, validation and ONNX behave as documented.
"""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.utils._param_validation import InvalidParameterError

from tsformers.estimators.base import BaseForecaster
from tsformers.estimators.gtrxl import GTrXLForecaster
from tsformers.models.gtrxl import GTrXL
from tsformers.runtime.sparse_kv import SparseKVCache

D, HEADS = 16, 2


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def net(**kw):
    kw = dict(lookback=64, horizon=5, n_vars=3, d_model=D, n_heads=HEADS, d_ff=32, n_layers=2, segment_len=8,
              mem_len=10, dropout=0.0) | kw
    return GTrXL(**kw).eval()


def same_weights(model, like):
    model.load_state_dict(like.state_dict())
    return model


def assert_same_state(a, b):
    assert set(a) == set(b)
    for key in a:
        if key.startswith(("kv_pos", "kv_seen")):
            assert torch.equal(a[key], b[key]), key          # the same tokens kept: the policy streamed exactly
        else:
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-5)


# -- the network --------------------------------------------------------------------------------------

@pytest.mark.parametrize("block", ["identity_map", "post_norm"])
def test_a_window_of_mem_len_without_heavy_hitters_is_the_segment_memory(block):
    full = net(block=block)
    sparse = same_weights(net(block=block, kv_cache="sparse", kv_window=10, kv_global=0), full)
    x = torch.randn(2, 75, 3)                                  # far beyond the budget: evictions every step
    with torch.no_grad():
        torch.testing.assert_close(sparse(x), full(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("normalize", ["last_value", "none"])
def test_while_the_history_fits_the_budget_the_forecast_is_the_full_memorys(normalize):
    full = net(mem_len=40, normalize=normalize)                   # every token sees all before it
    sparse = same_weights(net(mem_len=10, normalize=normalize, kv_cache="sparse", kv_window=24, kv_global=16), full)
    x = torch.randn(3, 40, 3)
    with torch.no_grad():
        torch.testing.assert_close(sparse(x), full(x), rtol=1e-5, atol=1e-5)
        state = sparse.advance(sparse.init_state(3), x)
    assert state["memory.0"].shape[1] == 40 and torch.equal(state["kv_pos.1"][0], torch.arange(40))


def test_beyond_the_budget_the_cache_is_bounded_and_keeps_the_window_and_heavy_hitters():
    window, k_global = 6, 4
    model = net(kv_cache="sparse", kv_window=window, kv_global=k_global)
    x = torch.randn(2, 90, 3)
    with torch.no_grad():
        state = model.advance(model.init_state(2), x)
    assert int(state["kv_seen"][0]) == 90
    for i in range(2):
        assert state[f"memory.{i}"].shape == (2, window + k_global, D)
        pos = state[f"kv_pos.{i}"]
        assert (pos.diff(dim=1) > 0).all()                                    # in stream order
        assert torch.equal(pos[:, -window:], torch.arange(90 - window, 90).expand(2, -1))
        assert (pos[:, :k_global] < 90 - window).all()                       # the heavy hitters are older
    # the bound holds whatever the history's length: the state's size stops growing
    with torch.no_grad():
        longer = model.advance(state, torch.randn(2, 200, 3))
    assert {k: v.shape for k, v in longer.items()} == {k: v.shape for k, v in state.items()}


def test_updates_in_pieces_equal_one_update_and_the_forward_pass():
    model = net(kv_cache="sparse", kv_window=5, kv_global=3, segment_len=7)
    x = torch.randn(2, 80, 3)
    with torch.no_grad():
        whole = model.advance(model.init_state(2), x)
        pieces = model.init_state(2)
        for piece in x.split([1, 6, 13, 1, 30, 29], dim=1):
            pieces = model.advance(pieces, piece)
        assert_same_state(pieces, whole)
        torch.testing.assert_close(model(x), model.forecast(whole), rtol=1e-5, atol=1e-5)


def test_the_block_policy_is_the_token_by_token_cache():
    """SparseKVCache.attend_block over blocks of tokens == SparseKVCache.attend one token at a time."""
    cache, heads, d = SparseKVCache(window=3, k_global=2), 2, 4
    q, k, v = (torch.randn(2, heads, 25, d) for _ in range(3))
    state, outs = cache.init_state(2, heads, d), []
    for t in range(25):
        out, state = cache.attend(q[:, :, t:t + 1], k[:, :, t:t + 1], v[:, :, t:t + 1], state)
        outs.append(out)
    score, pos, seen = torch.zeros(2, 0), torch.zeros(2, 0, dtype=torch.long), torch.zeros(2, dtype=torch.long)
    keys, values, got = k[:, :, :0], v[:, :, :0], []
    for lo, hi in [(0, 4), (4, 5), (5, 25)]:
        keys, values = torch.cat([keys, k[:, :, lo:hi]], 2), torch.cat([values, v[:, :, lo:hi]], 2)
        probs, keep, score, pos = cache.attend_block(q[:, :, lo:hi] @ keys.mT * d ** -0.5, score, pos, seen)
        got.append(probs @ values)
        seen = seen + (hi - lo)
        index = keep[:, None, :, None].expand(-1, heads, -1, d)
        keys, values = keys.gather(2, index), values.gather(2, index)
    torch.testing.assert_close(torch.cat(got, 2), torch.cat(outs, 2), rtol=1e-5, atol=1e-6)
    assert torch.equal(pos, state["pos"])
    torch.testing.assert_close(score, state["score"])


def test_training_reads_the_segment_memory():
    model = net(kv_cache="sparse", kv_window=3, kv_global=1).train()
    full = same_weights(net(), model).train()
    assert not model.sparse and set(model.init_state(1)) == set(full.init_state(1))
    x = torch.randn(2, 50, 3)
    torch.testing.assert_close(model(x), full(x))
    assert model.eval().sparse


def test_the_cache_is_refused_with_a_recurrent_mixer_and_by_onnx():
    with pytest.raises(ValueError, match="mixer='xl_relative'"):
        net(kv_cache="sparse", mixer="sliding_window")
    assert "kv_cache='sparse'" in net(kv_cache="sparse").onnx_unsupported
    assert net(kv_cache="sparse").receptive_field is None


# -- the estimator ---------------------------------------------------------------------------------------

SMALL = dict(horizon=6, lookback=40, d_model=D, n_heads=HEADS, d_ff=32, n_layers=2, segment_len=8, mem_len=10,
             max_epochs=1, batch_size=32, learning_rate=1e-3, linear_base=False)
SPARSE = dict(kv_cache="sparse", kv_window=6, kv_global=4)


def frame(n=300, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return pd.DataFrame({
        "date": pd.date_range("2024-01-01", periods=n, freq="h"),
        "load": np.sin(2 * np.pi * t / 24) + 0.1 * rng.standard_normal(n),
        "temp": np.cos(2 * np.pi * t / 24) + 0.1 * rng.standard_normal(n),
        "price": 0.5 * np.sin(2 * np.pi * t / 12) + 0.1 * rng.standard_normal(n),
    })


def _values(out):
    return out[["load", "temp", "price"]].to_numpy(dtype=float)


@pytest.fixture(scope="module")
def fitted():
    torch.manual_seed(0)
    return GTrXLForecaster(**SMALL, **SPARSE).fit(frame().iloc[:250])


def copy_of(est):
    other = GTrXLForecaster(**est.get_params())
    other.__dict__.update({k: v for k, v in vars(est).items() if k.endswith("_")})
    return other


def test_the_estimator_streams_its_bounded_cache_exactly(fitted):
    df = frame()
    assert fitted.network_.kv.budget == 10 and fitted.state_["memory.0"].shape == (1, 10, D)
    whole, pieces = copy_of(fitted), copy_of(fitted)
    whole.update(df.iloc[250:])
    for lo, hi in [(250, 251), (251, 263), (263, 300)]:
        pieces.update(df.iloc[lo:hi])
    assert_same_state(pieces.state_, whole.state_)
    streamed = _values(whole.predict())
    np.testing.assert_allclose(_values(pieces.predict()), streamed, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_values(fitted.predict(df)), streamed, rtol=1e-5, atol=1e-5)  # the full history


def test_training_is_that_of_the_segment_memory_and_a_fitting_history_forecasts_alike(fitted):
    torch.manual_seed(0)
    plain = GTrXLForecaster(**SMALL).fit(frame().iloc[:250])
    for key, value in plain.network_.state_dict().items():
        torch.testing.assert_close(fitted.network_.state_dict()[key], value, rtol=0, atol=0)
    # a history of budget steps or fewer evicts nothing: the forecast of the full memory (mem_len >= it)
    untrained = {**SMALL, "max_epochs": 0}
    wide = GTrXLForecaster(**untrained, kv_cache="sparse", kv_window=30, kv_global=20).fit(frame().iloc[:250])
    full = GTrXLForecaster(**{**untrained, "mem_len": 50}).fit(frame().iloc[:250])
    for est in (wide, full):
        est.network_.load_state_dict(fitted.network_.state_dict())
    short = frame().iloc[:48]
    np.testing.assert_allclose(_values(wide.predict(short)), _values(full.predict(short)), rtol=1e-5, atol=1e-5)
    assert not np.allclose(_values(fitted.predict(short)), _values(full.predict(short)))  # a budget of 10 evicts


def test_save_and_load_keep_the_cache(fitted, tmp_path):
    path = fitted.save(tmp_path / "model")
    loaded = BaseForecaster.load(path)
    assert loaded.get_params()["kv_cache"] == "sparse" and loaded.network_.kv.window == 6
    assert_same_state(loaded.state_, fitted.state_)
    df = frame()
    mine = copy_of(fitted)
    np.testing.assert_allclose(_values(loaded.update(df.iloc[250:]).predict()),
                               _values(mine.update(df.iloc[250:]).predict()), rtol=1e-5, atol=1e-5)


def test_invalid_settings_are_refused_naming_the_fix(tmp_path):
    df = frame()
    with pytest.raises(InvalidParameterError, match="kv_cache"):
        GTrXLForecaster(**SMALL, kv_cache="dense").fit(df)
    with pytest.raises(InvalidParameterError, match="kv_window"):
        GTrXLForecaster(**SMALL, kv_cache="sparse", kv_window=0).fit(df)
    with pytest.raises(InvalidParameterError, match="kv_global"):
        GTrXLForecaster(**SMALL, kv_cache="sparse", kv_global=-1).fit(df)
    with pytest.raises(ValueError, match="set kv_cache='sparse'"):
        GTrXLForecaster(**SMALL, kv_window=8).fit(df)
    with pytest.raises(ValueError, match="kv_cache=None or mixer='xl_relative'"):
        GTrXLForecaster(**SMALL, kv_cache="sparse", mixer="sliding_window").fit(df)


def test_onnx_export_is_refused_with_the_reason(fitted, tmp_path):
    pytest.importorskip("onnx")
    from tsformers.runtime.onnx import OnnxExportError

    with pytest.raises(OnnxExportError, match="kv_cache='sparse'.*kv_cache=None"):
        fitted.export_onnx(tmp_path / "sparse.onnx")
    assert not (tmp_path / "sparse.onnx").exists()
