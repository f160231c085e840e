"""Time axes and frame layouts as users write them (issue 23): periods, quarter text, float years, long frames
without id_col=, rows in any order, an unnamed time index. Each is checked against the same data written the
usual way (dates, sorted rows): the forecast values agree and the time axis comes back in the input's kind."""
from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest

from tsformers import BaseForecaster, LinearForecaster, NaiveForecaster, RollingOriginSplit

N = 40


def values(n=N, seed=0):
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.standard_normal(n)) + 0.3 * np.sin(np.arange(n))


def linear(**kw):
    return LinearForecaster(horizon=3, lookback=8, alpha=1.0, val_size=0, **kw)


def quarterly_periods(n=N):
    return pd.period_range("1959Q1", periods=n, freq="Q")


# periods -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("freq,start", [("Q", "1959Q1"), ("M", "2001-01"), ("Y", "1950"), ("W", "2020-01-06"),
                                        ("D", "2020-01-01")])
def test_a_period_index_forecasts_as_its_start_dates_and_comes_back_as_periods(freq, start):
    periods = pd.period_range(start, periods=N, freq=freq)
    y = values()
    by_period = linear().fit(pd.DataFrame({"y": y}, index=periods)).predict()
    by_date = linear().fit(pd.DataFrame({"y": y}, index=periods.to_timestamp(how="start"))).predict()
    np.testing.assert_allclose(by_period["y"].to_numpy(), by_date["y"].to_numpy())
    assert isinstance(by_period.index, pd.PeriodIndex) and by_period.index.freqstr == periods.freqstr
    assert list(by_period.index) == list(pd.period_range(periods[-1] + 1, periods=3, freq=periods.freqstr))
    assert by_period.index.name is None


def test_a_period_column_of_a_long_frame_comes_back_as_a_period_column():
    periods = quarterly_periods()
    long = pd.DataFrame({"unique_id": np.repeat(["a", "b"], N), "ds": np.tile(periods, 2),
                         "y": np.concatenate([values(seed=1), values(seed=2)])})
    assert long["ds"].dtype == "period[Q-DEC]"
    out = linear().fit(long).predict()
    dated = linear().fit(long.assign(ds=long["ds"].dt.to_timestamp(how="start"))).predict()
    np.testing.assert_allclose(out["y"].to_numpy(), dated["y"].to_numpy())
    assert out["ds"].dtype == "period[Q-DEC]"
    assert out["ds"].astype(str).tolist() == ["1969Q1", "1969Q2", "1969Q3"] * 2


def test_a_period_model_refuses_dates_at_predict_with_the_conversion():
    frame = pd.DataFrame({"y": values()}, index=quarterly_periods())
    model = NaiveForecaster(horizon=2).fit(frame)
    with pytest.raises(TypeError, match=r"periods of frequency 'Q-DEC'.*to_period\('Q-DEC'\)"):
        model.predict(frame.set_axis(frame.index.to_timestamp(how="start")))
    with pytest.raises(TypeError, match="periods of frequency 'Q-DEC'"):
        model.predict(frame.set_axis(frame.index.asfreq("M")))


def test_a_period_model_saved_and_loaded_still_forecasts_periods(tmp_path):
    frame = pd.DataFrame({"y": values()}, index=quarterly_periods())
    model = linear().fit(frame)
    model.save(tmp_path / "m")
    loaded = BaseForecaster.load(tmp_path / "m")
    assert loaded.schema_.time_kind == "period" and loaded.schema_.period_freq == "Q-DEC"
    pd.testing.assert_frame_equal(loaded.predict(), model.predict())
    pd.testing.assert_frame_equal(loaded.predict(frame.iloc[:-4]), model.predict(frame.iloc[:-4]))
    assert str(loaded.predict().index[0]) == "1969Q1"


def test_a_backtest_on_periods_writes_periods():
    frame = pd.DataFrame({"y": values()}, index=quarterly_periods()).rename_axis("quarter")
    out = NaiveForecaster(horizon=2).backtest(frame, n_windows=2)
    assert out["quarter"].dtype == "period[Q-DEC]" and out["cutoff"].dtype == "period[Q-DEC]"
    assert out["quarter"].astype(str).tolist() == ["1968Q1", "1968Q2", "1968Q3", "1968Q4"]


def test_rolling_origin_split_reads_a_period_index():
    frame = pd.DataFrame({"y": values()}, index=quarterly_periods())
    folds = list(RollingOriginSplit(n_splits=2, horizon=2, lookback=4).split(frame))
    assert [len(train) for train, _ in folds] == [N - 4, N - 2]


# quarter text --------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["%YQ%q", "%Y-Q%q"])
@pytest.mark.parametrize("library", ["pandas", "polars"])
def test_quarter_text_is_read_as_quarters_and_written_back_as_the_same_text(fmt, library):
    periods = quarterly_periods()
    y = values()
    text = pd.DataFrame({"date": periods.strftime(fmt), "y": y})
    frame = pl.from_pandas(text) if library == "polars" else text
    out = linear().fit(frame).predict()
    reference = linear().fit(pd.DataFrame({"y": y}, index=periods)).predict()
    out = out.to_pandas() if library == "polars" else out
    np.testing.assert_allclose(out["y"].to_numpy(), reference["y"].to_numpy())
    assert out["date"].tolist() == pd.period_range("1969Q1", periods=3, freq="Q").strftime(fmt).tolist()


def test_text_that_is_neither_dates_nor_quarters_is_refused():
    frame = pd.DataFrame({"date": ["1959Q1", "1959Q2", "1959 third"], "y": [1.0, 2.0, 3.0]})
    with pytest.raises(TypeError, match="not ISO dates.*nor quarters like '1959Q1'"):
        NaiveForecaster(horizon=1).fit(frame)


# float years -------------------------------------------------------------------------------------

@pytest.mark.parametrize("library", ["pandas", "polars"])
def test_whole_float_years_are_integer_steps_written_back_as_floats(library):
    years = np.arange(1700.0, 1700.0 + N)
    y = values()
    sunspots = pd.DataFrame({"YEAR": years, "SUNACTIVITY": y})  # statsmodels' sunspots as loaded
    frame = pl.from_pandas(sunspots) if library == "polars" else sunspots
    out = linear().fit(frame).predict()
    out = out.to_pandas() if library == "polars" else out
    reference = linear(time_col="YEAR").fit(sunspots.assign(YEAR=years.astype(int))).predict()
    np.testing.assert_allclose(out["SUNACTIVITY"].to_numpy(), reference["SUNACTIVITY"].to_numpy())
    assert out["YEAR"].dtype == np.float64 and out["YEAR"].tolist() == [1740.0, 1741.0, 1742.0]
    assert reference["YEAR"].dtype == np.int64


def test_float_years_and_integer_years_are_the_same_axis_at_predict():
    frame = pd.DataFrame({"year": np.arange(1900.0, 1900.0 + N), "y": values()})
    model = NaiveForecaster(horizon=2).fit(frame)
    out = model.predict(frame.assign(year=frame["year"].astype(int)))
    assert out["year"].dtype == np.float64 and out["year"].tolist() == [1940.0, 1941.0]


def test_fractional_float_times_are_refused_naming_the_row():
    frame = pd.DataFrame({"year": [2000.0, 2000.25, 2000.5, 2000.75], "y": [1.0, 2.0, 3.0, 4.0]})
    with pytest.raises(TypeError, match=r"'year' holds numbers that are not whole \(2000.25 at row 1\)"):
        NaiveForecaster(horizon=1).fit(frame)


def test_macrodata_year_and_quarter_get_the_period_index_that_makes_one_axis():
    sm = pytest.importorskip("statsmodels.api")
    macro = sm.datasets.macrodata.load_pandas().data[["year", "quarter", "realgdp", "cpi"]]
    with pytest.raises(ValueError) as info:
        NaiveForecaster(horizon=4).fit(macro)
    message = str(info.value)
    fix = ("df.index = pd.PeriodIndex.from_fields(year=df.pop('year').astype(int), "
           "quarter=df.pop('quarter').astype(int), freq='Q')")
    assert "'year' repeats" in message and fix in message
    df = macro.copy()
    exec(fix, {"pd": pd, "df": df})  # the message's fix, as written
    out = NaiveForecaster(horizon=4).fit(df).predict()
    assert out.index.astype(str).tolist() == ["2009Q4", "2010Q1", "2010Q2", "2010Q3"]
    np.testing.assert_allclose(out["realgdp"], df["realgdp"].iloc[-1])


# long frames -------------------------------------------------------------------------------------

def long_frame():
    dates = pd.date_range("2024-01-01", periods=N, freq="D")
    return pd.DataFrame({"series": np.repeat(["north", "south", "east"], N), "date": np.tile(dates, 3),
                         "value": np.concatenate([values(seed=s) for s in range(3)])})


def test_a_long_frame_without_id_col_gets_the_exact_fix():
    with pytest.raises(ValueError) as info:
        NaiveForecaster(horizon=2).fit(long_frame())
    assert "looks like a long frame" in str(info.value) and "id_col='series'" in str(info.value)
    out = NaiveForecaster(horizon=2, id_col="series").fit(long_frame()).predict()  # the fix works as given
    assert out.columns.tolist() == ["series", "date", "value"] and len(out) == 6


def test_the_hint_names_target_when_other_text_columns_remain():
    frame = long_frame().assign(unit="MW")
    frame.loc[::2, "unit"] = "kW"
    with pytest.raises(ValueError, match=r"id_col='series', target=\['value'\]"):
        NaiveForecaster(horizon=2).fit(frame)


@pytest.mark.parametrize("library", ["pandas", "polars"])
def test_shuffled_rows_give_the_forecast_of_sorted_rows_and_leave_the_input_alone(library):
    ordered = long_frame()
    shuffled = ordered.sample(frac=1, random_state=3).reset_index(drop=True)
    before = shuffled.copy()
    first_seen = list(dict.fromkeys(shuffled["series"]))
    make = pl.from_pandas if library == "polars" else (lambda df: df)
    out = linear(id_col="series").fit(make(shuffled)).predict()
    out = out.to_pandas() if library == "polars" else out
    reference = linear(id_col="series").fit(ordered).predict()
    pd.testing.assert_frame_equal(shuffled, before)
    assert list(dict.fromkeys(out["series"])) == first_seen  # series in order of first appearance, times sorted
    assert out.groupby("series")["date"].apply(lambda t: t.is_monotonic_increasing).all()
    by_key = reference.set_index(["series", "date"])["value"]
    np.testing.assert_allclose(out.set_index(["series", "date"])["value"], by_key.loc[out.set_index(["series",
                                                                                                   "date"]).index])


def test_shuffled_rows_predict_update_and_backtest_as_sorted_rows():
    ordered = long_frame()
    shuffled = ordered.sample(frac=1, random_state=4).reset_index(drop=True)
    model = linear(id_col="series").fit(ordered)
    pd.testing.assert_frame_equal(model.predict(shuffled.sample(frac=1, random_state=5)).sort_values(
        ["series", "date"], ignore_index=True), model.predict(ordered).sort_values(["series", "date"],
                                                                                   ignore_index=True))
    sort = ["series", "cutoff", "date"]
    refit = linear(id_col="series").backtest(shuffled, n_windows=2, refit=True)
    expected = linear(id_col="series").backtest(ordered, n_windows=2, refit=True)
    pd.testing.assert_frame_equal(refit.sort_values(sort, ignore_index=True),
                                  expected.sort_values(sort, ignore_index=True))
    head = ordered.groupby("series").head(N - 2)
    tail = ordered.groupby("series").tail(2)
    updated = linear(id_col="series").fit(head).update(tail.iloc[::-1]).predict()
    pd.testing.assert_frame_equal(updated, linear(id_col="series").fit(head).update(tail).predict())


def test_duplicates_in_shuffled_rows_are_still_refused_naming_them():
    frame = pd.concat([long_frame(), long_frame().iloc[[45]]], ignore_index=True).sample(frac=1, random_state=0)
    rows = sorted(np.flatnonzero((frame["series"] == "south") & (frame["date"] == long_frame()["date"][45])))
    with pytest.raises(ValueError, match=rf"duplicate timestamp .* at rows {rows[0]} and {rows[1]} of series 'south'"):
        NaiveForecaster(horizon=2, id_col="series").fit(frame)


# an unnamed time index ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", [None, "when"])
def test_a_time_index_comes_back_named_as_it_came(name, tmp_path):
    index = pd.date_range("2024-01-01", periods=N + 1, freq="h", name=name)
    frame = pd.DataFrame({"y": values(N + 1)}, index=index)
    model = NaiveForecaster(horizon=2).fit(frame.iloc[:-1])
    outputs = [model.predict(), model.predict(frame), model.update(frame.iloc[-1:]).predict()]
    model.save(tmp_path / "m")
    outputs.append(BaseForecaster.load(tmp_path / "m").predict())
    for out in outputs:
        assert isinstance(out.index, pd.DatetimeIndex) and out.index.name == name
        assert out.columns.tolist() == ["y"]


def test_the_batch_frames_of_an_unnamed_index_and_of_periods_keep_their_time_column():
    from tsformers.batch.frames import example_from_history, forecast_frame, holdout_forecast

    dated = pd.DataFrame({"y": values()}, index=pd.date_range("2024-01-01", periods=N, freq="h"))
    model = NaiveForecaster(horizon=2).fit(dated)
    flat = forecast_frame(model, dated)  # a pyfunc output: the time index as the column the schema names
    assert flat.columns.tolist() == ["date", "y"] and flat["date"].iloc[0] == dated.index[-1] + pd.Timedelta("1h")
    assert holdout_forecast(model, dated)["date"].tolist() == list(dated.index[-2:])
    quarterly = NaiveForecaster(horizon=2, lookback=4).fit(pd.DataFrame({"y": values()}, index=quarterly_periods()))
    example = example_from_history(quarterly)
    assert example["date"].dtype == "period[Q-DEC]" and str(example["date"].iloc[-1]) == "1968Q4"
    assert str(quarterly.predict(example.set_index("date").rename_axis(None)).index[0]) == "1969Q1"
