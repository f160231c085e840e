"""The packed advance of a ragged panel: the per-span reference's states and forecasts in O(log length) calls."""
import numpy as np
import pandas as pd
import pytest

import tsformers.estimators.network_path as network_path
from tsformers import AtlasForecaster, GTrXLForecaster, LMUFormerForecaster
from tsformers.data.frames import Panel
from tsformers.estimators.forecasting import _advance_spans, _packed_channels, _packed_schedule, advance_panel

STREAM = dict(horizon=4, lookback=16, max_epochs=1, random_state=0, trainer_kwargs={"limit_train_batches": 2})
# (start hour, length): 20 series that start and end apart, at different hours of the day
SPANS = list(zip(np.random.default_rng(1).integers(0, 40, 20).tolist(),
                 np.random.default_rng(2).choice(np.arange(30, 100), 20, replace=False).tolist()))


def ragged_panel() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    parts = []
    for i, (start, n) in enumerate(SPANS):
        times = pd.date_range("2024-01-01", periods=n, freq="h") + pd.Timedelta(hours=start)
        parts.append(pd.DataFrame({"unique_id": f"s{i}", "date": times,
                                   "y": np.sin(2 * np.pi * times.hour / 24) + 0.1 * rng.standard_normal(n)}))
    return pd.concat(parts, ignore_index=True)


def counted(f) -> list:
    """Count the calls of ``f.network_.advance``; returns the list each call appends its batch and length to."""
    calls, advance = [], f.network_.advance
    f.network_.advance = lambda state, x: (calls.append(tuple(x.shape[:2])), advance(state, x))[1]
    return calls


@pytest.fixture(scope="module", params=[LMUFormerForecaster, GTrXLForecaster, AtlasForecaster],
                ids=lambda c: c.__name__)
def fitted(request):
    cls = request.param
    return cls(**{**cls.get_test_params(), **STREAM}, calendar=["hour"]).fit(ragged_panel())


def test_the_packed_advance_forecasts_as_the_per_span_reference_in_fewer_calls(fitted, monkeypatch):
    df = ragged_panel()
    calls = counted(fitted)
    packed = fitted.predict(df)
    packed_state = fitted._advance_panel(None, fitted.prepare(df).scaled_panel())
    n_packed = len(calls) // 2
    calls.clear()
    monkeypatch.setattr(network_path, "advance_panel", _advance_spans)
    reference = fitted.predict(df)
    reference_state = fitted._advance_panel(None, fitted.prepare(df).scaled_panel())
    assert len(calls) // 2 == len(SPANS)                                     # one call per distinct span
    lengths = np.array([n for _, n in SPANS])
    assert n_packed == len(_packed_schedule(lengths, 1024)) <= 8             # the shortest, then 64, 32, ..., 1
    pd.testing.assert_frame_equal(packed.drop(columns="y"), reference.drop(columns="y"))   # series order, times
    np.testing.assert_allclose(packed["y"], reference["y"], atol=1e-5)
    assert packed_state.keys() == reference_state.keys()
    for key, value in reference_state.items():
        np.testing.assert_allclose(packed_state[key].double(), value.double(), atol=1e-5, err_msg=key)


def test_updates_of_a_ragged_panel_continue_each_state_as_the_reference(fitted, monkeypatch):
    df = ragged_panel()
    new = pd.concat([part.iloc[-k:] for k, (_, part) in zip(range(2, 22), df.groupby("unique_id"))])
    old, new = fitted.prepare(df.drop(new.index)).scaled_panel(), fitted.prepare(new).scaled_panel()
    assert not new.aligned
    packed = fitted._advance_panel(fitted._advance_panel(None, old), new)
    monkeypatch.setattr(network_path, "advance_panel", _advance_spans)
    reference = fitted._advance_panel(fitted._advance_panel(None, old), new)
    for key, value in reference.items():
        np.testing.assert_allclose(packed[key].double(), value.double(), atol=1e-5, err_msg=key)


def test_the_schedule_takes_every_series_to_its_end_largest_chunks_first():
    lengths = np.array([1, 5, 1024 + 3, 2500, 700, 64])
    calls = _packed_schedule(lengths, 1024)
    assert [size for size, _ in calls] == [1, 1024, 1024, 512, 256, 128, 64, 32, 16, 8, 4, 2, 1]
    np.testing.assert_array_equal(sum(size * takes for size, takes in calls), lengths)   # no step past an end


def toy_panel():
    """Five series of 3 to 12 steps on a 15-step hourly grid (NaN outside their spans)."""
    first, last = np.array([0, 3, 5, 8, 2]), np.array([2, 7, 9, 14, 13])
    values = np.random.default_rng(0).normal(size=(5, 15, 2))
    inside = (np.arange(15) >= first[:, None]) & (np.arange(15) <= last[:, None])
    return Panel(values=np.where(inside[..., None], values, np.nan), times=pd.date_range("2024-01-01", periods=15,
                 freq="h"), series=list("abcde"), first=first, last=last)


def toy_channels(values, times):
    """The values and each step's hour: rows of one packed call come from different hours."""
    hours = np.broadcast_to(np.asarray(times.hour, dtype=np.float32)[None, :, None], (*values.shape[:2], 1))
    return np.concatenate([values.astype(np.float32), hours], axis=-1)


def toy_advance(state, x):
    """A running sum and the last (up to) 3 inputs: a numpy state that changes shape as it fills, as the ONNX
    engine's receptive graphs keep theirs."""
    return {"sum": state["sum"] + x.sum(axis=1), "last": np.concatenate([state["last"], x], axis=1)[:, -3:]}


def test_a_numpy_state_that_changes_shape_advances_as_the_reference():
    scaled = toy_panel()
    init = lambda rows: {"sum": np.zeros((len(rows), 3), np.float32), "last": np.zeros((len(rows), 0, 3), np.float32)}
    inputs, starts = _packed_channels(scaled, toy_channels)
    for s in range(5):      # each series' own rows and hours, one after the other
        alone = toy_channels(scaled.values[s:s + 1, scaled.first[s]: scaled.last[s] + 1],
                             scaled.times[scaled.first[s]: scaled.last[s] + 1])[0]
        np.testing.assert_array_equal(inputs[starts[s]: starts[s] + len(alone)], alone)
    packed = advance_panel(scaled, None, init, toy_channels, toy_advance)
    reference = _advance_spans(scaled, None, init, toy_channels, toy_advance)
    assert packed.keys() == reference.keys()
    for key in packed:
        np.testing.assert_allclose(packed[key], reference[key], atol=1e-5)
    np.testing.assert_allclose(packed["last"][3, :, -1], [12, 13, 14])          # series d's last hours
    with pytest.raises(ValueError, match="differ in shape"):                  # a state that grows with every step
        advance_panel(scaled, None, lambda rows: {"last": np.zeros((len(rows), 0, 3), np.float32)}, toy_channels,
                      lambda state, x: {"last": np.concatenate([state["last"], x], axis=1)})
