"""Reading a frame whose series all follow the step is checked in one pass (``frames._regular_panel``): it must
give exactly the panel and schema of the series-by-series path, and leave every irregular frame to that path's
errors."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tsformers.data import frames
from tsformers.data.frames import frame_to_panel, infer_schema
from tsformers.data.time import parse_times


def long_frame(starts, lengths, *, dates=True, freq="h", seed=0):
    rng = np.random.default_rng(seed)
    parts = []
    for i, (start, n) in enumerate(zip(starts, lengths)):
        if dates:
            t = pd.date_range(pd.Timestamp("2024-01-01") + start * pd.tseries.frequencies.to_offset(freq),
                              periods=n, freq=freq)
        else:
            t = 10 + 5 * (start + np.arange(n))
        parts.append(pd.DataFrame({"id": f"s{i}", "t": t, "y": rng.standard_normal(n),
                                   "x": rng.standard_normal(n)}))
    return pd.concat(parts, ignore_index=True)


def read_both(df, monkeypatch, **schema_kw):
    """(panel, schema) from the one-pass path and from the series-by-series path, each fitting then reading."""
    out = []
    for fast in (True, False):
        with monkeypatch.context() as m:
            if not fast:
                m.setattr(frames, "_regular_panel", lambda *a, **k: None)
            schema = infer_schema(df, "pandas", time_col="t", id_col="id", **schema_kw)
            fitted = frame_to_panel(df, schema, fitting=True)
            again = frame_to_panel(df, schema, fitting=False)
            out.append((fitted, again, schema.to_dict()))
    return out


def assert_same_panel(a, b):
    np.testing.assert_array_equal(a.values, b.values)  # NaN positions included
    assert a.times.equals(b.times) and type(a.times) is type(b.times)
    assert list(a.series) == list(b.series) and list(a.inserted) == list(b.inserted)
    np.testing.assert_array_equal(a.first, b.first)
    np.testing.assert_array_equal(a.last, b.last)


@pytest.mark.parametrize("dates", [True, False])
@pytest.mark.parametrize("starts,lengths", [([0, 0, 0], [30, 30, 30]),      # aligned
                                            ([0, 7, 3], [30, 20, 40]),      # ragged starts and ends
                                            ([0, 5], [12, 1])])             # a one-row series
def test_one_pass_gives_the_series_by_series_panel_and_schema(monkeypatch, dates, starts, lengths):
    (fast_fit, fast_read, fast_schema), (slow_fit, slow_read, slow_schema) = read_both(
        long_frame(starts, lengths, dates=dates), monkeypatch)
    assert_same_panel(fast_fit, slow_fit)
    assert_same_panel(fast_read, slow_read)
    assert fast_schema == slow_schema


def test_one_pass_is_taken_for_a_regular_panel(monkeypatch):
    calls = []
    original = frames._regular_panel
    monkeypatch.setattr(frames, "_regular_panel", lambda *a, **k: calls.append(original(*a, **k)) or calls[-1])
    df = long_frame([0, 2], [20, 20])
    schema = infer_schema(df, "pandas", time_col="t", id_col="id")
    frame_to_panel(df, schema, fitting=True)
    assert calls and calls[-1] is not None


def test_steps_of_varying_length_use_the_series_by_series_path(monkeypatch):
    df = long_frame([0, 1], [14, 14], freq="MS")
    schema = infer_schema(df, "pandas", time_col="t", id_col="id")
    assert frames._regular_panel(parse_times(df["t"], "t"), df[["y", "x"]].to_numpy(),
                                 df.groupby("id", sort=False).indices, schema, fitting=True) is None
    (fast, _, _), (slow, _, _) = read_both(df, monkeypatch)
    assert_same_panel(fast, slow)


@pytest.mark.parametrize("damage,message", [
    (lambda df: df.drop(index=25), "irregular spacing of series 's1'"),
    (lambda df: pd.concat([df, df.iloc[[22]]]).sort_index(kind="stable").reset_index(drop=True),
     "duplicate timestamp"),
])
def test_an_irregular_series_still_gets_the_error_that_names_its_row(damage, message):
    good = long_frame([0, 0], [20, 20])
    schema = infer_schema(good, "pandas", time_col="t", id_col="id")
    frame_to_panel(good, schema, fitting=True)
    with pytest.raises(ValueError, match=message):
        frame_to_panel(damage(good), schema, fitting=False)


def test_rows_in_any_order_give_the_panel_of_sorted_rows(monkeypatch):
    good = long_frame([0, 3], [20, 20])
    rest = good.iloc[1:].sample(frac=1, random_state=0)
    shuffled = pd.concat([good.iloc[:1], rest], ignore_index=True)  # series 's0' still appears first
    (fast, again, _), (slow, _, _) = read_both(shuffled, monkeypatch)
    (sorted_fast, _, _), _ = read_both(good, monkeypatch)
    assert_same_panel(fast, sorted_fast)
    assert_same_panel(again, sorted_fast)
    assert_same_panel(slow, sorted_fast)


def test_a_series_off_the_common_grid_is_refused():
    good = long_frame([0, 0], [20, 20])
    schema = infer_schema(good, "pandas", time_col="t", id_col="id")
    frame_to_panel(good, schema, fitting=True)
    shifted = good.copy()
    shifted.loc[shifted["id"] == "s1", "t"] += pd.Timedelta("30min")
    with pytest.raises(ValueError, match="off the common time grid"):
        frame_to_panel(shifted, schema, fitting=False)
