"""Inputs that used to give silent wrong results (issue 21): each is now refused with its cause, or read right."""
import threading

import numpy as np
import pandas as pd
import pytest
import torch

from tsformers import GateformerForecaster as G
from tsformers.data import PanelScaler, as_pandas, frame_to_panel, infer_schema
from tsformers.data.static import StaticEncoder
from tsformers.data.time import parse_times, time_range

KW = dict(horizon=4, lookback=16, max_epochs=0, d_model=16, d_ff=32, n_heads=2)


def long_frame(n=60, ids=("a", "b", "c"), seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"unique_id": np.repeat(list(ids), n),
                         "ds": np.tile(pd.date_range("2024-01-01", periods=n, freq="h"), len(ids)),
                         "y": rng.normal(size=n * len(ids))})


@pytest.fixture(scope="module")
def fitted():
    return G(**KW).fit(long_frame())


# 3: output columns that would overwrite input columns --------------------------------------------

def test_a_quantile_column_named_like_an_input_column_is_refused_at_fit():
    df = long_frame().assign(**{"y_q0.1": 1.0})
    with pytest.raises(ValueError, match=r"quantile 0.1 column of target 'y' would be named 'y_q0.1', which is "
                                         r"already the column 'y_q0.1' of the fit data"):
        G(**KW, quantiles=[0.1, 0.5, 0.9]).fit(df)


def test_an_interval_column_named_like_an_input_column_is_refused_at_predict():
    model = G(**KW).fit(long_frame().assign(y_lo80=lambda d: d.y * 2))
    with pytest.raises(ValueError, match=r"80% interval column of target 'y' would be named 'y_lo80', which is "
                                         r"already the column 'y_lo80' of the fit data.*another level"):
        model.predict(level=[80])
    assert model.predict(level=[90]).columns.tolist() == ["unique_id", "ds", "y", "y_lo90", "y_hi90", "y_lo80",
                                                          "y_lo80_lo90", "y_lo80_hi90"]


# 5: the dtypes fit refuses, predict refuses too, naming the column -------------------------------

@pytest.mark.parametrize("bad", [
    lambda y: y > 0,                                        # bool: used to forecast from 0/1
    lambda y: y.astype(str),                                # numeric text: used to be coerced
    lambda y: y.astype(object).where(y.index != 5, "abc"),  # used to be numpy's message, no column
])
def test_predict_refuses_what_fit_refuses_with_the_same_message(fitted, bad):
    df = long_frame()
    df["y"] = bad(df["y"])
    with pytest.raises(TypeError) as at_fit:
        G(**KW, target="y").fit(df)
    with pytest.raises(TypeError) as at_predict:
        fitted.predict(df)
    assert str(at_predict.value) == str(at_fit.value)
    assert str(at_fit.value).startswith(f"column 'y' has dtype {df['y'].dtype}, not numbers")


def test_nullable_numbers_read_their_missing_values_as_missing(fitted):
    df = long_frame()
    df["y"] = df["y"].astype("Float64")
    df.loc[7, "y"] = pd.NA
    with pytest.raises(ValueError, match="column 'y' has 1 missing values \\(NaN\\).*first at row 7"):
        fitted.predict(df)


def test_future_covariates_must_be_numbers():
    df = long_frame().assign(temp=1.0)
    model = G(**KW, target="y", future_covariates=["temp"]).fit(df)
    future = long_frame(n=64).groupby("unique_id").tail(4).assign(temp=True)[["unique_id", "ds", "temp"]]
    with pytest.raises(TypeError, match="column 'temp' has dtype bool, not numbers"):
        model.predict(future_df=future)


# 7: time zones -----------------------------------------------------------------------------------

def test_a_zoned_frame_on_a_naive_model_is_refused(fitted):
    df = long_frame()
    df["ds"] = df["ds"].dt.tz_localize("UTC")
    with pytest.raises(ValueError, match="time column 'ds' is in time zone 'UTC', but the model was fitted on "
                                         "timestamps without a time zone"):
        fitted.predict(df)


def test_a_naive_or_other_zone_frame_on_a_zoned_model_is_refused_naming_the_fitted_zone():
    df = long_frame()
    df["ds"] = df["ds"].dt.tz_localize("Europe/Berlin")
    model = G(**KW).fit(df)
    assert model.schema_.time_zone == "Europe/Berlin"
    assert str(model.predict(df)["ds"].dt.tz) == "Europe/Berlin"
    naive = df.assign(ds=df["ds"].dt.tz_localize(None))
    with pytest.raises(ValueError, match=r"has no time zone \(naive\), but the model was fitted on time zone "
                                         r"'Europe/Berlin'.*tz_localize\('Europe/Berlin'\)"):
        model.predict(naive)
    with pytest.raises(ValueError, match=r"is in time zone 'UTC', but the model was fitted on time zone "
                                         r"'Europe/Berlin'.*tz_convert\('Europe/Berlin'\)"):
        model.predict(df.assign(ds=df["ds"].dt.tz_convert("UTC")))


def test_a_zoned_model_on_the_regular_fast_path_records_its_zone():
    df = long_frame()
    df["ds"] = df["ds"].dt.tz_localize("UTC")
    frame, backend = as_pandas(df)
    schema = infer_schema(frame, backend)
    frame_to_panel(frame, schema, fitting=True)
    assert schema.time_zone == "UTC"


def test_iso_dates_with_mixed_offsets_say_so():
    text = pd.Series(["2024-03-31T01:00:00+01:00", "2024-03-31T03:00:00+02:00"])
    with pytest.raises(ValueError, match=r"time column 'ds' holds ISO dates with mixed UTC offsets "
                                         r"\('2024-03-31T01:00:00\+01:00' at row 0, '2024-03-31T03:00:00\+02:00' at "
                                         r"row 1\).*pd.to_datetime\(df\['ds'\], utc=True\)"):
        parse_times(text, "ds")
    with pytest.raises(TypeError, match="not ISO dates"):  # text that is no date at all keeps its message
        parse_times(pd.Series(["2024-03-31", "yesterday"]), "ds")


# 8: threads --------------------------------------------------------------------------------------

def test_fits_in_threads_give_the_weights_of_serial_fits():
    df = long_frame()
    settings = dict(KW, max_epochs=1, batch_size=8, dropout=0.5, val_size=0)
    seeds = [0, 1]
    serial = {seed: G(**settings, random_state=seed).fit(df).network_.state_dict() for seed in (0, 1)}
    results, errors = [None] * len(seeds), []

    def fit(i):
        try:
            results[i] = G(**settings, random_state=seeds[i]).fit(df).network_.state_dict()
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=fit, args=(i,)) for i in range(len(seeds))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for seed, weights in zip(seeds, results):
        for name, tensor in serial[seed].items():
            torch.testing.assert_close(weights[name], tensor, rtol=0, atol=0, msg=f"{name}, seed {seed}")


# 9: integer time near int64's end ---------------------------------------------------------------

def test_future_steps_past_int64_are_refused_not_wrapped():
    df = long_frame()
    df["ds"] = np.tile(np.arange(np.iinfo(np.int64).max - 59, np.iinfo(np.int64).max + 1, dtype=np.int64), 3)
    model = G(**KW).fit(df)
    with pytest.raises(ValueError, match=r"the integer time axis runs past int64's range.*beyond "
                                         r"9223372036854775807, so the timestamps would wrap around"):
        model.predict()
    assert time_range(np.iinfo(np.int64).max - 2, 1, 3).tolist()[-1] == np.iinfo(np.int64).max  # the last one fits


# 10: tiny values ----------------------------------------------------------------------------------

def test_forecasts_scale_with_the_data_however_small():
    df = long_frame()
    tiny = df.assign(y=df["y"] * 1e-30)
    base = G(**KW).fit(df).predict()["y"].to_numpy()
    small = G(**KW).fit(tiny).predict()["y"].to_numpy()
    np.testing.assert_allclose(small, base * 1e-30, rtol=1e-9)


def test_scale_floor_is_relative_and_constants_still_work():
    values = np.zeros((4, 5, 1))
    values[0, :, 0] = 1e-30 * np.arange(5)       # varies, at a tiny magnitude
    values[1, :, 0] = 7.0                         # constant
    values[2, :, 0] = 0.0                         # constant zero
    values[3, :, 0] = np.nan                      # never observed
    scaler = PanelScaler.fit(values)
    np.testing.assert_allclose(scaler.scale[:, 0], [1e-30 * np.std(np.arange(5.0)), 7.0, 1.0, 1.0])
    kept = scaler.select(np.arange(3))
    restored = kept.inverse(kept.transform(values[:3]))
    np.testing.assert_allclose(restored, values[:3], rtol=1e-12, atol=0)
    static = StaticEncoder.fit(pd.DataFrame({"area": [1e-30, 3e-30]}, index=["a", "b"]))
    assert static.numeric["area"] == pytest.approx([2e-30, 1e-30], rel=1e-12)


# 11: a target never observed ---------------------------------------------------------------------

def test_a_target_never_observed_in_a_series_is_refused():
    df = long_frame().assign(y2=1.0)
    df.loc[df["unique_id"] == "b", "y2"] = np.nan
    with pytest.raises(ValueError, match="target 'y2' of series 'b' has no observed value \\(all 60 are missing\\)"):
        G(**KW, missing="mask").fit(df)
    model = G(**KW, missing="mask").fit(long_frame())
    new = long_frame(ids=["d"]).assign(y=np.nan)
    with pytest.raises(ValueError, match="target 'y' of series 'd' has no observed value"):
        model.predict(new)
    # a fitted series was observed in the fit data: new rows may all be missing, and are masked
    gap = long_frame(n=61).groupby("unique_id").tail(1).assign(y=np.nan)
    model.update(gap)
    assert np.isfinite(model.predict()["y"]).all()


# 12: ids -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("ids, dtype", [([True, False], bool), ([1.5, 2.5], np.float64), ([3, 4], np.int64),
                                        (["p", "q"], None)])
def test_ids_keep_their_type_in_the_forecast(ids, dtype):
    df = long_frame(ids=ids)
    out = G(**KW).fit(df).predict()
    assert out["unique_id"].tolist()[::4] == ids
    if dtype is not None:
        assert out["unique_id"].dtype == dtype
    else:
        assert out["unique_id"].dtype == df["unique_id"].dtype


@pytest.mark.parametrize("ids", [[1, "1", 1.0], [True, 2, 3], pd.Categorical([1, "1", "2"])])
def test_ids_of_mixed_types_are_refused(ids):
    df = long_frame(ids=[0, 1, 2])
    df["unique_id"] = np.repeat(np.asarray(ids, dtype=object), 60)
    if isinstance(ids, pd.Categorical):
        df["unique_id"] = pd.Categorical(df["unique_id"])
    with pytest.raises(TypeError, match=r"id column 'unique_id' mixes (values|categories) of types .*"
                                        r"convert them to one type first"):
        G(**KW).fit(df)


@pytest.mark.parametrize("ids, dtype", [([True, False], bool), ([1.5, 2.5], np.float64), ([3, 4], np.int64)])
def test_ids_keep_their_type_in_the_backtest(ids, dtype):
    df = long_frame(ids=ids)
    frames = G(**KW).fit(df).backtest(df, n_windows=2)
    assert frames["unique_id"].dtype == dtype and set(frames["unique_id"]) == set(ids)


# 5, through the packed (pyfunc) form: the same refusal, naming the column -------------------------

@pytest.mark.parametrize("value", ["abc", True])
def test_a_packed_frame_refuses_values_that_are_not_numbers_naming_the_column(fitted, value):
    from tsformers.batch.frames import unpack

    packed = pd.DataFrame({"unique_id": ["a"], "ds": [["2024-01-01T00:00:00", "2024-01-01T01:00:00"]],
                           "y": [[1.0, value]]})
    with pytest.raises(TypeError, match=r"column 'y' holds .* not numbers"):
        unpack(packed, fitted.schema_)
    packed["y"] = [[1.0, None]]
    assert np.isnan(unpack(packed, fitted.schema_)["y"].to_numpy()[1])
