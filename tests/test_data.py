"""The data layer: frames to panels and back, validation errors, windows, scaling, splits."""
import numpy as np
import pandas as pd
import polars as pl
import pytest
import torch

from tsformers.data import (PanelScaler, WindowDataset, as_pandas, frame_to_panel, infer_schema, panel_to_frame,
                            split_train_val, validation_steps)
from tsformers.data.time import future_times


def wide(n=60, start="2024-01-01", freq="h"):
    t = np.arange(n, dtype=float)
    return pd.DataFrame({"date": pd.date_range(start, periods=n, freq=freq), "a": t, "b": 10 + t, "c": -t})


def panel_of(df, **roles):
    frame, backend = as_pandas(df)
    schema = infer_schema(frame, backend, **roles)
    return frame_to_panel(frame, schema, fitting=True), schema


# windows -------------------------------------------------------------------------

def test_windows_match_a_hand_computed_example():
    # one series, 7 steps, 2 variables: v[t] = (t, 100 + t); lookback 3, horizon 2, 1 target
    v = torch.tensor([[[t, 100.0 + t] for t in range(7)]])
    ds = WindowDataset(v, lookback=3, horizon=2, n_targets=1)
    assert len(ds) == 7 - 3 - 2 + 1 == 3
    x, y = ds[0]
    assert x.tolist() == [[0, 100], [1, 101], [2, 102]]
    assert y.tolist() == [[3], [4]]
    x, y = ds[2]
    assert x.tolist() == [[2, 102], [3, 103], [4, 104]]
    assert y.tolist() == [[5], [6]]


def test_windows_are_views_and_batches_index_across_series():
    v = torch.arange(2 * 6 * 1, dtype=torch.float32).reshape(2, 6, 1)  # series 0: 0..5, series 1: 6..11
    ds = WindowDataset(v, lookback=2, horizon=1, n_targets=1)
    assert ds.windows.untyped_storage().data_ptr() == v.untyped_storage().data_ptr(), "windows must be a view"
    x, y = ds.__getitems__([0, 4, 5])  # 4 windows per series
    assert x.shape == (3, 2, 1) and y.shape == (3, 1, 1)
    assert x[:, :, 0].tolist() == [[0, 1], [6, 7], [7, 8]]
    assert y[:, 0, 0].tolist() == [2, 8, 9]


def test_validation_split_keeps_time_order_and_lookback_context():
    values = np.arange(20, dtype=float).reshape(1, 20, 1)
    steps = validation_steps(20, lookback=4, horizon=2, val_size=0.25)
    assert steps == 5
    train, val = split_train_val(values, lookback=4, val_steps=steps)
    assert train[0, :, 0].tolist() == list(range(15))
    assert val[0, :, 0].tolist() == list(range(11, 20))  # 4 context steps, then the 5 validation steps
    assert validation_steps(20, lookback=4, horizon=6, val_size=0.25) == 0  # room for no validation window
    assert validation_steps(20, lookback=10, horizon=6, val_size=0.25) == 0  # nor for a training window


def test_scaler_uses_given_part_and_survives_constant_series():
    values = np.stack([np.column_stack([np.arange(10.0), np.zeros(10)])])
    scaler = PanelScaler.fit(values[:, :5])
    np.testing.assert_allclose(scaler.mean, [[2.0, 0.0]])
    np.testing.assert_allclose(scaler.scale, [[np.std(np.arange(5.0)), 1.0]])
    np.testing.assert_allclose(scaler.inverse(scaler.transform(values)), values)


# frames in and out --------------------------------------------------------------------

def test_wide_pandas_and_polars_give_the_same_panel():
    df = wide()
    p1, s1 = panel_of(df)
    p2, s2 = panel_of(pl.from_pandas(df))
    assert s1.backend == "pandas" and s2.backend == "polars"
    assert s1.targets == ["a", "b", "c"] and s1.step == "h"
    np.testing.assert_array_equal(p1.values, p2.values)
    assert p1.values.shape == (1, 60, 3)


def test_long_frame_becomes_series_and_round_trips():
    df = wide().melt(id_vars="date", var_name="unique_id", value_name="y").rename(columns={"date": "ds"})
    panel, schema = panel_of(df)
    assert schema.layout == "long" and schema.id_col == "unique_id" and schema.time_col == "ds"
    assert panel.series == ["a", "b", "c"] and panel.values.shape == (3, 60, 1)
    np.testing.assert_array_equal(panel.values[1, :, 0], 10 + np.arange(60))
    times = future_times(panel.times[-1], schema.step, 2)
    out = panel_to_frame(np.zeros((3, 2, 1)), times, panel.series, schema, "polars")
    assert isinstance(out, pl.DataFrame) and out.columns == ["unique_id", "ds", "y"]
    assert out["ds"].to_list()[:2] == [pd.Timestamp("2024-01-03 12:00"), pd.Timestamp("2024-01-03 13:00")]


def test_long_frame_with_interleaved_rows_is_grouped_by_id():
    df = wide().melt(id_vars="date", var_name="unique_id", value_name="y").sort_values(["date", "unique_id"])
    panel, _ = panel_of(df, time_col="date")
    np.testing.assert_array_equal(panel.values[2, :, 0], -np.arange(60))


def test_datetime_index_is_the_time_axis():
    df = wide().set_index("date")
    panel, schema = panel_of(df)
    assert schema.time_in_index and schema.time_col == "date"
    out = panel_to_frame(np.ones((1, 3, 3)), future_times(panel.times[-1], schema.step, 3), [None], schema, "pandas")
    assert isinstance(out.index, pd.DatetimeIndex) and list(out.columns) == ["a", "b", "c"]


@pytest.mark.parametrize("freq, expected", [("MS", "2024-06-01"), ("ME", "2024-06-30"), ("QS", "2025-04-01"),
                                            ("15min", "2024-01-01 01:15"), ("D", "2024-01-06")])
def test_future_timestamps_follow_the_calendar(freq, expected):
    panel, schema = panel_of(wide(n=5, freq=freq))
    assert future_times(panel.times[-1], schema.step, 3)[0] == pd.Timestamp(expected)


def test_integer_time_steps():
    df = pd.DataFrame({"step": np.arange(0, 50, 5), "y": np.arange(10.0)})
    panel, schema = panel_of(df, time_col="step")
    assert schema.step == 5
    assert list(future_times(panel.times[-1], schema.step, 2)) == [50, 55]


def test_explicit_targets_and_covariates_order_variables():
    panel, schema = panel_of(wide(), target="b", covariates=["c"])
    assert schema.targets == ["b"] and schema.covariates == ["c"]
    np.testing.assert_array_equal(panel.values[0, :3], [[10, 0], [11, -1], [12, -2]])


# validation: every error names the problem and the fix -----------------------------------

def _error(df, exc=ValueError, fitting=True, schema=None, **roles):
    frame, backend = as_pandas(df)
    with pytest.raises(exc) as info:
        schema = schema or infer_schema(frame, backend, **roles)
        frame_to_panel(frame, schema, fitting=fitting)
    return str(info.value)


def test_nan_names_column_row_and_fix():
    df = wide()
    df.loc[17, "b"] = np.nan
    msg = _error(df)
    assert "'b'" in msg and "row 17" in msg and "nan" in msg.lower() and "interpolate" in msg


def test_inf_names_column():
    df = wide()
    df.loc[3, "c"] = -np.inf
    msg = _error(df)
    assert "'c'" in msg and "inf" in msg and "row 3" in msg


def test_duplicate_timestamps_name_the_rows():
    df = wide()
    df.loc[30, "date"] = df.loc[29, "date"]
    msg = _error(df)
    assert "duplicate" in msg and "rows 29 and 30" in msg and "drop_duplicates" in msg


def test_unsorted_timestamps_are_read_in_time_order():
    # Rows may come in any order (issue 23): they are read sorted by time, the caller's frame unchanged.
    df = wide().iloc[[0, 1, 3, 2] + list(range(4, 60))].reset_index(drop=True)
    before = df.copy()
    panel, _ = panel_of(df)
    reference, _ = panel_of(wide())
    np.testing.assert_array_equal(panel.values, reference.values)
    assert panel.times.equals(reference.times)
    pd.testing.assert_frame_equal(df, before)


def test_duplicate_timestamps_in_unsorted_rows_name_the_rows():
    df = wide().iloc[[0, 1, 5, 2, 3, 4, 5] + list(range(6, 60))].reset_index(drop=True)
    msg = _error(df)
    assert "duplicate" in msg and "rows 2 and 6" in msg


def test_irregular_spacing_names_the_row_and_the_usual_step():
    df = wide().drop(index=[20]).reset_index(drop=True)
    msg = _error(df)
    assert "irregular spacing" in msg and "row 20" in msg and "0 days 02:00:00" in msg and "0 days 01:00:00" in msg


def test_non_numeric_column_is_refused_not_dropped():
    df = wide().assign(city="Paris")
    msg = _error(df, TypeError)
    assert "city" in msg and "target=" in msg
    panel, schema = panel_of(df, target=["a", "b"])  # leaving it out explicitly works
    assert schema.targets == ["a", "b"]


def test_non_numeric_target_is_refused():
    msg = _error(wide().assign(city="Paris"), TypeError, target=["a", "city"])
    assert "'city'" in msg and "pd.to_numeric" in msg


def test_unknown_column_in_target_lists_the_columns():
    msg = _error(wide(), target=["a", "zzz"])
    assert "zzz" in msg and "target=" in msg and "'date'" in msg


def test_empty_frame():
    assert "empty" in _error(wide().iloc[:0])


def test_missing_time_column_says_time_col():
    assert "time_col" in _error(pd.DataFrame({"x": [1.0, 2.0, 3.0]}))


def test_unparseable_text_dates():
    df = wide().assign(date=["not a date"] * 60)
    assert "pd.to_datetime" in _error(df, TypeError)


def test_ragged_long_panel_keeps_each_series_span():
    df = wide().melt(id_vars="date", var_name="unique_id", value_name="y")
    df = df[~((df.unique_id == "b") & (df.date > df.date.min() + pd.Timedelta(hours=50)))]  # b ends early
    df = df[~((df.unique_id == "c") & (df.date < df.date.min() + pd.Timedelta(hours=10)))]  # c starts late
    panel, _ = panel_of(df)
    assert panel.values.shape == (3, 60, 1) and not panel.aligned
    assert panel.first.tolist() == [0, 0, 10] and panel.last.tolist() == [59, 50, 59]
    assert np.isnan(panel.values[1, 51:]).all() and np.isnan(panel.values[2, :10]).all()
    np.testing.assert_array_equal(panel.tail(2)[:, :, 0], [[58, 59], [59, 60], [-58, -59]])
    assert [str(t) for t in panel.ends] == ["2024-01-03 11:00:00", "2024-01-03 02:00:00", "2024-01-03 11:00:00"]


def test_a_series_off_the_common_grid_is_refused():
    df = wide().melt(id_vars="date", var_name="unique_id", value_name="y")
    shifted = df.unique_id == "b"
    df.loc[shifted, "date"] = df.loc[shifted, "date"] + pd.Timedelta(minutes=30)
    assert "off the common time grid" in _error(df)


def test_predict_frame_must_match_fit_columns():
    _, schema = panel_of(wide())
    msg = _error(wide().drop(columns=["b"]), fitting=False, schema=schema)
    assert "'b'" in msg and "missing" in msg
    msg = _error(wide().assign(d=1.0), fitting=False, schema=schema)
    assert "'d'" in msg and "not in the data the model was fitted on" in msg


def test_predict_frame_must_follow_the_fitted_step():
    _, schema = panel_of(wide())
    msg = _error(wide(freq="30min"), fitting=False, schema=schema)
    assert "regular at another step" in msg and "'h' (hourly)" in msg and "'30min'" in msg


def test_not_a_frame():
    with pytest.raises(TypeError, match="pandas or polars DataFrame"):
        as_pandas(np.zeros((3, 3)))


@pytest.mark.parametrize("freq, next_two", [("QS-JAN", ["2025-04-01", "2025-07-01"]),
                                            ("QE-DEC", ["2025-06-30", "2025-09-30"]),
                                            ("YS-JAN", ["2029-01-01", "2030-01-01"]),
                                            ("YE-DEC", ["2029-12-31", "2030-12-31"])])
def test_quarterly_and_yearly_inputs_give_calendar_spaced_future_timestamps(freq, next_two):
    start = "2024-01-01" if freq.startswith(("QS", "YS")) else "2024-03-31" if freq.startswith("Q") else "2024-12-31"
    n = 5
    panel, schema = panel_of(wide(n=n, start=start, freq=freq))
    future = future_times(panel.times[-1], schema.step, 2)
    assert [str(t.date()) for t in future] == next_two


def test_data_regular_at_another_step_says_so_rather_than_irregular():
    """Monthly rows for a quarterly model are not gaps to fill: the message names both steps and the resample."""
    from tsformers import NaiveForecaster
    from tsformers.datasets import make_demo

    model = NaiveForecaster(horizon=4).fit(make_demo(n_steps=40, freq="QS"))
    with pytest.raises(ValueError, match=r"model's step is 'QS-JAN' \(quarterly\), and this data's is 'MS' "
                                         r"\(monthly\)\. Resample it"):
        model.predict(make_demo(n_steps=60, freq="MS"))
    hourly = NaiveForecaster(horizon=12).fit(make_demo(n_steps=300))
    with pytest.raises(ValueError, match="irregular spacing: row 150"):      # a real gap keeps its message
        hourly.predict(make_demo(n_steps=300).drop(index=[150]))
