"""Calendar features (``calendar=``): computed from the time axis, for the history and the horizon alike."""
import inspect

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

import tsformers
from tsformers import (AtlasForecaster, GateformerForecaster, GTrXLForecaster, LMUFormerForecaster,
                       NaiveForecaster)
from tsformers.data.calendar import FEATURES, encode, resolve

SMALL = dict(horizon=6, lookback=12, d_model=8, d_ff=16, n_heads=2, batch_size=32, max_epochs=1, random_state=0)
STREAM = dict(horizon=4, lookback=16, max_epochs=1, random_state=0)


def hourly(n=240, seed=0, start="2024-01-01"):
    rng = np.random.default_rng(seed)
    times = pd.date_range(start, periods=n, freq="h")
    return pd.DataFrame({"date": times, "y": np.sin(2 * np.pi * times.hour / 24) + 0.1 * rng.standard_normal(n),
                         "c": rng.standard_normal(n)})


def sin_cos(fraction):
    angle = 2 * np.pi * np.asarray(fraction, dtype=float)
    return np.stack([np.sin(angle), np.cos(angle)], axis=-1)


def network_inputs(forecaster):
    """Record the windows the (windowed) network reads."""
    seen = []
    forecaster.network_.register_forward_pre_hook(lambda module, args: seen.append(args[0].double().numpy()))
    return seen


# -- the encoding ------------------------------------------------------------------------------


def test_each_feature_is_the_sine_and_cosine_of_its_position_in_its_cycle():
    # Friday 15 March 2024 (a leap year), 06:30: ISO week 11 of a 52-week year, day 75 of 366
    t = pd.DatetimeIndex(["2024-03-15 06:30"])
    expected = {"minute": 30 / 60, "hour": 6 / 24, "dayofweek": 4 / 7, "dayofmonth": 14 / 31,
                "dayofyear": 74 / 366, "weekofyear": 10 / 52, "month": 2 / 12, "quarter": 0 / 4}
    assert set(expected) == set(FEATURES)
    for name, fraction in expected.items():
        np.testing.assert_allclose(encode(t, [name])[0], sin_cos(fraction), atol=1e-12, err_msg=name)
    assert encode(t, ["hour"])[0, 0] == pytest.approx(np.sin(2 * np.pi * 6 / 24))
    # the cycle closes: hour 23 lies as near hour 0 as hour 1 does, and 31 December next to 1 January
    hours = encode(pd.date_range("2024-01-01", periods=24, freq="h"), ["hour"])
    assert np.linalg.norm(hours[23] - hours[0]) == pytest.approx(np.linalg.norm(hours[1] - hours[0]))
    year_end = encode(pd.DatetimeIndex(["2023-12-31", "2024-01-01", "2024-01-02"]), ["dayofyear"])
    assert np.linalg.norm(year_end[0] - year_end[1]) < 1.01 * np.linalg.norm(year_end[2] - year_end[1])
    # ISO week 53 of 2020 (a 53-week year) is the last position of its cycle, 52 / 53
    np.testing.assert_allclose(encode(pd.DatetimeIndex(["2020-12-31"]), ["weekofyear"])[0], sin_cos(52 / 53))


def test_local_time_of_zoned_timestamps():
    t = pd.DatetimeIndex(["2024-07-01 06:00"]).tz_localize("Europe/Berlin")
    np.testing.assert_allclose(encode(t, ["hour"])[0], sin_cos(6 / 24))


@pytest.mark.parametrize("step, features", [
    ("15min", ["minute", "hour", "dayofweek", "dayofyear"]), ("h", ["hour", "dayofweek", "dayofyear"]),
    ("6h", ["hour", "dayofweek", "dayofyear"]), ("D", ["dayofweek", "dayofyear"]), ("B", ["dayofweek", "dayofyear"]),
    ("W-SUN", ["dayofyear"]), ("MS", ["month"]), ("ME", ["month"]), ("QS-OCT", ["quarter"])])
def test_auto_picks_the_features_that_vary_at_the_step(step, features):
    assert resolve("auto", step) == features


def test_features_that_do_not_apply_are_refused_naming_those_that_do():
    with pytest.raises(ValueError, match=r"\['hour'\] do not vary at the data's step 'D'.*apply: \['dayofweek'"):
        resolve(["hour", "dayofweek"], "D")
    with pytest.raises(ValueError, match=r"\['dayofmonth'\].*'MS'.*apply: \['dayofyear', 'weekofyear', 'month', "
                                         r"'quarter'\]"):
        resolve("dayofmonth", "MS")
    with pytest.raises(ValueError, match="no calendar feature varies.*'YS-JAN'"):
        resolve("auto", "YS-JAN")
    with pytest.raises(ValueError, match=r"unknown calendar feature\(s\) \['hours'\]; choose from"):
        resolve(["hours"], "h")
    with pytest.raises(ValueError, match="more than once"):
        resolve(["hour", "hour"], "h")
    assert resolve("hour", "h") == ["hour"] and resolve(None, "h") == []


# -- the parameter -------------------------------------------------------------------------------


def test_every_forecaster_with_known_future_inputs_takes_calendar():
    found = [getattr(tsformers, name) for name in tsformers.__all__ if name.endswith("Forecaster")]
    takes = {cls.__name__ for cls in found if isinstance(cls, type) and "calendar" in inspect.signature(cls).parameters}
    assert takes == {"GateformerForecaster", "PVClientForecaster", "LMUFormerForecaster", "GTrXLForecaster",
                     "AtlasForecaster"}
    f = GateformerForecaster(calendar=["hour", "dayofweek"])
    assert f.get_params()["calendar"] == ["hour", "dayofweek"]
    assert clone(f).calendar == ["hour", "dayofweek"] and GateformerForecaster().calendar is None
    assert "calendar :" in GateformerForecaster.__doc__ and "calendar :" in LMUFormerForecaster.__doc__


def test_an_integer_time_axis_is_refused():
    df = hourly(60).assign(date=np.arange(60))
    with pytest.raises(ValueError, match="calendar=\\['hour'\\] of GateformerForecaster: the time axis counts "
                                         "integer steps"):
        GateformerForecaster(**SMALL, calendar=["hour"]).fit(df)
    with pytest.raises(ValueError, match="'auto'.*integer steps"):
        GateformerForecaster(**SMALL, calendar="auto").fit(df)


def test_periods_take_the_features_of_their_step():
    periods = pd.period_range("1990Q1", periods=60, freq="Q")
    df = pd.DataFrame({"y": np.arange(60.0) % 4}, index=periods)
    f = GateformerForecaster(horizon=4, lookback=8, d_model=8, d_ff=16, n_heads=2, max_epochs=1,
                             calendar="auto").fit(df)
    assert f.schema_.calendar == ["quarter"]
    seen = network_inputs(f)
    out = f.predict()
    assert isinstance(out.index, pd.PeriodIndex) and out.index[0] == pd.Period("2005Q1", "Q")
    # the last row of the window holds the quarter of the last forecast step (2005Q4), led by the horizon
    np.testing.assert_allclose(seen[0][0, -1, -2:], sin_cos(3 / 4), atol=1e-6)
    with pytest.raises(ValueError, match=r"\['hour'\] .*do not vary.*apply: \['dayofyear', 'weekofyear', 'month', "
                                         r"'quarter'\]"):
        GateformerForecaster(horizon=4, lookback=8, max_epochs=1, calendar=["hour"]).fit(df)


# -- the channels --------------------------------------------------------------------------------


def test_channels_are_the_calendar_of_the_timestamps_a_horizon_ahead_unscaled_and_last():
    df = hourly(120)
    f = GateformerForecaster(**SMALL, target="y", covariates="c", calendar=["hour", "dayofweek"]).fit(df)
    assert f.schema_.calendar == ["hour", "dayofweek"]
    assert f.n_features_in_ == 2 + 4 and f.scaler_.mean.shape == (1, 2)  # the scaler holds y and c only
    data = f.prepare(df)
    led = df["date"] + pd.Timedelta(hours=f.horizon)
    expected = np.concatenate([sin_cos(led.dt.hour / 24), sin_cos(led.dt.day_of_week / 7)], axis=-1)
    np.testing.assert_allclose(data.inputs[0, :, -4:], expected, atol=1e-12)  # history rows, and the last ones
    np.testing.assert_allclose(data.inputs[0, :, :2], data.scaled[0], atol=1e-12)  # y and c, untouched
    # the forecast's window: its last row holds the last forecast step, without and with new data
    seen = network_inputs(f)
    f.predict()
    f.predict(df.iloc[:100])
    last_step = df["date"].iloc[-1] + pd.Timedelta(hours=f.horizon)
    np.testing.assert_allclose(seen[0][0, -1, -4:-2], sin_cos(last_step.hour / 24), atol=1e-6)
    window = df["date"].iloc[88:100] + pd.Timedelta(hours=f.horizon)
    np.testing.assert_allclose(seen[1][0, :, -4:-2], sin_cos(window.dt.hour / 24), atol=1e-6)


def test_calendar_comes_after_future_covariates_and_from_the_timestamps_with_or_without_future_df():
    df = hourly(120)
    f = GateformerForecaster(**SMALL, target="y", future_covariates="c", calendar="hour").fit(df.iloc[:114])
    future = df.iloc[114:][["date", "c"]]
    seen = network_inputs(f)
    f.predict(future_df=future)
    c_mean, c_scale = f.scaler_.mean[0, 1], f.scaler_.scale[0, 1]
    window = seen[0][0]                                  # channels: y, c led by the horizon, hour_sin, hour_cos
    assert window.shape == (12, 4)
    np.testing.assert_allclose(window[-6:, 1], (future["c"].to_numpy() - c_mean) / c_scale, atol=1e-5)
    np.testing.assert_allclose(window[:, 2:], sin_cos(df["date"].iloc[108:120].dt.hour / 24), atol=1e-6)
    with pytest.raises(ValueError, match="future_df="):
        f.predict()  # the future covariate still needs its values; the calendar does not
    only_calendar = GateformerForecaster(**SMALL, target="y", calendar="hour").fit(df[["date", "y"]])
    assert len(only_calendar.predict()) == 6  # no future_df: the horizon's timestamps follow from the step
    with pytest.raises(ValueError, match="fitted without future_covariates"):
        only_calendar.predict(future_df=future)


def test_the_calendar_explains_what_a_short_window_cannot():
    """A pulse at 8-11 o'clock: a 6-hour window of zeros cannot say when the next one comes; the hour can."""
    rng = np.random.default_rng(0)
    times = pd.date_range("2024-01-01", periods=24 * 40, freq="h")
    y = ((times.hour >= 8) & (times.hour < 12)).astype(float) + 0.1 * rng.standard_normal(len(times))
    df = pd.DataFrame({"date": times, "y": y})
    settings = dict(horizon=6, lookback=6, patch_len=6, stride=6, d_model=32, d_ff=64, n_heads=2, batch_size=32,
                    learning_rate=3e-3, max_epochs=10, patience=None, lr_schedule="constant", random_state=0,
                    cycle=None)           # the daily cycle taken out would tell the hour as well (test_cycle.py)
    errors = {}
    for calendar in (None, ["hour"]):
        f = GateformerForecaster(**settings, calendar=calendar).fit(df.iloc[: 24 * 30])
        held_out = f.backtest(df, n_windows=40, step=6)  # the last 10 days, after the fit data
        errors[str(calendar)] = float(np.mean((held_out["forecast"] - held_out["actual"]) ** 2))
    assert errors["['hour']"] < 0.6 * errors["None"], errors


# -- a model's life: save, load, ONNX, ragged panels, streaming -------------------------------------


def test_save_and_load_rebuild_the_same_channels(tmp_path):
    df = hourly(120)
    f = GateformerForecaster(**SMALL, target="y", covariates="c", calendar="auto").fit(df)
    loaded = GateformerForecaster.load(f.save(tmp_path / "m"))
    assert loaded.schema_.calendar == ["hour", "dayofweek", "dayofyear"] and loaded.calendar == "auto"
    pd.testing.assert_frame_equal(loaded.predict(), f.predict())
    pd.testing.assert_frame_equal(loaded.predict(df.iloc[:90]), f.predict(df.iloc[:90]))


def test_onnx_forecasts_equal_torch_with_calendar(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    df = hourly(120)
    f = GateformerForecaster(**SMALL, target="y", calendar=["hour"]).fit(df[["date", "y"]])
    path = f.save(tmp_path / "m")
    f.export_onnx(path)
    onnx = GateformerForecaster.load(path, engine="onnx")
    np.testing.assert_allclose(onnx.predict()["y"], f.predict()["y"], atol=1e-4)


def test_series_that_end_apart_keep_their_own_timestamps():
    a, b = hourly(100, seed=1), hourly(90, seed=2)
    df = pd.concat([a.assign(unique_id="a"), b.assign(unique_id="b")])[["unique_id", "date", "y"]]
    f = GateformerForecaster(**SMALL, calendar=["hour"]).fit(df)
    seen = network_inputs(f)
    stored, given = f.predict(), f.predict(df)
    pd.testing.assert_frame_equal(stored, given)
    for s, end in enumerate([a["date"].iloc[-1], b["date"].iloc[-1]]):
        np.testing.assert_allclose(seen[0][s, -1, -2:], sin_cos((end.hour + f.horizon) % 24 / 24), atol=1e-6)


@pytest.mark.parametrize("cls", [LMUFormerForecaster, GTrXLForecaster, AtlasForecaster], ids=lambda c: c.__name__)
def test_streaming_reads_the_calendar_at_every_step_and_stays_exact(cls):
    df = hourly(160)[["date", "y"]]
    f = cls(**{**cls.get_test_params(), **STREAM}, calendar=["hour"]).fit(df.iloc[:140])
    steps = []
    advance = f.network_.advance
    f.network_.advance = lambda state, x: (steps.append(x.double().numpy()), advance(state, x))[1]
    full = f.predict(df)
    np.testing.assert_allclose(steps[0][0, :, -2:], sin_cos(((df["date"].dt.hour + f.horizon) % 24) / 24),
                               atol=1e-6)
    f.network_.advance = advance
    f.update(df.iloc[140:150]).update(df.iloc[150:])
    np.testing.assert_allclose(f.predict()["y"], full["y"], atol=1e-5)


def test_baselines_take_no_calendar():
    assert "calendar" not in inspect.signature(NaiveForecaster).parameters
    f = NaiveForecaster(horizon=3, lookback=4).fit(hourly(30)[["date", "y"]])
    assert f.schema_.calendar == []
