"""The seasonal cycle (``cycle=``): its period by the step, its phase means, and the forecast path around it."""
import numpy as np
import pandas as pd
import pytest
import torch

from tsformers import (AtlasForecaster, GateformerForecaster, GTrXLForecaster, LinearForecaster,
                       LMUFormerForecaster)
from tsformers.data.cycle import ORIGIN, SeasonalCycle, resolve, step_index
from tsformers.estimators.persistence import saved_params
from tsformers.estimators.saved import load_torch

DAY = 24


# -- the period and the phases ----------------------------------------------------------------------


@pytest.mark.parametrize("step, period", [("h", 24), ("15min", 96), ("10min", 144), ("30s", 2880), ("D", 7),
                                          ("B", 5), ("MS", 12), ("ME", 12), ("QS-DEC", 4), ("W-SUN", None),
                                          ("2D", None), ("YS", None), (1, None), (5, None)])
def test_auto_period_by_step(step, period):
    assert resolve("auto", step) == period


def test_explicit_period_and_none():
    assert resolve(168, "h") == 168
    assert resolve(144, 1) == 144            # an integer axis takes an explicit period
    assert resolve(None, "h") is None


@pytest.mark.parametrize("bad", ["daily", 1, 0, True, 2.5])
def test_bad_cycle_is_refused_with_the_fix(bad):
    with pytest.raises(ValueError, match="cycle=.*(period|pass)"):
        resolve(bad, "h")


def test_phases_count_from_a_monday_midnight():
    assert step_index(ORIGIN, "h") == 0 and ORIGIN.day_name() == "Monday"
    assert step_index(pd.Timestamp("2016-07-01 05:00"), "h") % 24 == 5                    # the hour
    assert step_index(pd.Timestamp("2016-07-01 05:45"), "15min") % 96 == 5 * 4 + 3
    assert step_index(pd.Timestamp("2026-12-06"), "D") % 7 == 6                           # a Sunday
    assert step_index(pd.Timestamp("2026-12-07"), "B") % 5 == 0                           # a Monday
    assert step_index(pd.Timestamp("2024-03-01"), "MS") % 12 == 2                         # March
    assert step_index(pd.Timestamp("1960-03-01"), "MS") % 12 == 2                         # before the origin
    assert step_index(pd.Timestamp("2024-03-01 07:00", tz="Asia/Tokyo"), "h") % 24 == 7   # wall-clock time
    assert step_index(290, 1) % 144 == 2 and step_index(30, 5) == 6                       # integer axes


def test_phase_means_against_a_loop():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(2, 53, 3))
    values[0, 4, 1] = values[1, 10:20, 0] = np.nan                    # gaps are left out of the means
    cycle = SeasonalCycle.fit(values, first_phase=3, period=5)
    for s in range(2):
        for p in range(5):
            rows = [t for t in range(53) if (3 + t) % 5 == p]
            np.testing.assert_allclose(cycle.profile[s, p], np.nanmean(values[s, rows], axis=0))
    np.testing.assert_array_equal(cycle.at(3, 53)[:, :5], cycle.profile[:, [3, 4, 0, 1, 2]])
    np.testing.assert_array_equal(cycle.from_starts(3, np.array([1, 0]), np.array([2, 7]), 4),
                                  cycle.profile[[[1], [0]], [[0, 1, 2, 3], [0, 1, 2, 3]]])
    again = SeasonalCycle.from_dict(cycle.to_dict())
    np.testing.assert_array_equal(again.profile, cycle.profile)
    with pytest.raises(ValueError, match="damaged"):
        SeasonalCycle.from_dict({"period": 4, "profile": cycle.profile.tolist()})


# -- estimators ---------------------------------------------------------------------------------------


def _daily(n_days=40, seed=0, start="2021-03-01", n_series=1):
    """Hourly series: an irregular daily profile (no sinusoid a short window could extend), a slow drift, noise."""
    rng = np.random.default_rng(seed)
    times = pd.date_range(start, periods=n_days * DAY, freq="h")
    frame = {"date": times}
    for k in range(n_series):
        profile = rng.normal(0, 2, DAY)
        frame[f"y{k}"] = (profile[times.hour] + np.linspace(0, 1, len(times)) + rng.normal(0, 0.3, len(times)))
    return pd.DataFrame(frame), times


def test_a_cycle_the_window_cannot_see_is_learned():
    # lookback 6 of a 24-step profile: the plain map cannot know the rest of the day; with the cycle out it need not
    df, _ = _daily()
    train, test = df.iloc[:-5 * DAY], df
    errors = {}
    for cycle in (None, "auto"):
        est = LinearForecaster(horizon=DAY, lookback=6, cycle=cycle).fit(train)
        errors[cycle] = _mse(est, test)
    assert errors["auto"] < 0.3 * errors[None]
    assert errors["auto"] < 0.2          # about the noise (0.09) plus the drift over a day


def _mse(est, df, n=4):
    out = est.backtest(df, n_windows=n, step=DAY)
    return float(np.mean((out["forecast"] - out["actual"]) ** 2))


def test_profile_is_the_training_part_phase_means_and_the_forecast_adds_it_back():
    df, times = _daily(n_days=20)
    est = GateformerForecaster(horizon=DAY, lookback=48, max_epochs=1, d_model=16, n_heads=2, d_ff=16,
                               val_size=5 * DAY).fit(df)
    assert est.cycle_.period == DAY
    scaled = (df["y0"].to_numpy() - est.scaler_.mean[0, 0]) / est.scaler_.scale[0, 0]
    train_hours = times.hour[:-5 * DAY]                               # the validation part stays unseen
    expected = [scaled[:-5 * DAY][train_hours == h].mean() for h in range(DAY)]
    np.testing.assert_allclose(est.cycle_.profile[0, :, 0], expected)
    # predict = network(window less the cycle) + the cycle of the next day, in the data's units
    window = scaled[-48:] - est.cycle_.profile[0, times.hour[-48:], 0]
    with torch.no_grad():
        out = est.network_(torch.tensor(window, dtype=torch.float32)[None, :, None])[0, :, 0].double().numpy()
    future_hours = pd.date_range(times[-1], periods=DAY + 1, freq="h")[1:].hour
    scale, mean = est.scaler_.scale[0, 0], est.scaler_.mean[0, 0]
    expected_forecast = (out + est.cycle_.profile[0, future_hours, 0]) * scale + mean
    np.testing.assert_allclose(est.predict()["y0"].to_numpy(), expected_forecast, rtol=1e-5, atol=1e-5)
    # a backtest's last window is the forecast from the same origin
    back = est.backtest(df, n_windows=1)
    np.testing.assert_allclose(back["forecast"].to_numpy(), est.predict(df.iloc[:-DAY])["y0"].to_numpy(), rtol=1e-5)


def test_forecasts_survive_save_and_load_and_old_files_take_no_cycle(tmp_path):
    df, _ = _daily(n_days=20)
    est = GateformerForecaster(horizon=DAY, lookback=48, max_epochs=1, d_model=16, n_heads=2, d_ff=16).fit(df)
    est.save(tmp_path / "m")
    loaded = GateformerForecaster.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.cycle_.profile, est.cycle_.profile)
    pd.testing.assert_frame_equal(loaded.predict(level=80), est.predict(level=80))
    pd.testing.assert_frame_equal(loaded.predict(df.iloc[:300]), est.predict(df.iloc[:300]))
    assert saved_params("GateformerForecaster", {"horizon": 24})["cycle"] is None


def test_auto_takes_no_cycle_from_fewer_than_two_periods_and_an_explicit_one_needs_a_period():
    df, _ = _daily(n_days=2)                                          # 48 rows: 38 training rows at val_size 10
    small = dict(horizon=4, lookback=8, max_epochs=1, d_model=8, n_heads=2, d_ff=8, val_size=10)
    assert GateformerForecaster(**small).fit(df).cycle_ is None        # auto: 38 < 2 periods of 24
    assert GateformerForecaster(**small, cycle=24).fit(df).cycle_.period == 24
    with pytest.raises(ValueError, match="38 training steps.*fewer than one period of 40 steps.*shorter period"):
        GateformerForecaster(**small, cycle=40).fit(df)
    assert GateformerForecaster(**small, cycle=None).fit(df).cycle_ is None


def test_integer_axis_takes_an_explicit_period_only():
    df, _ = _daily(n_days=10)
    df["date"] = np.arange(len(df))
    assert LinearForecaster(horizon=DAY, lookback=48, cycle="auto").fit(df).cycle_ is None
    est = LinearForecaster(horizon=DAY, lookback=48, cycle=DAY).fit(df)
    assert est.cycle_.period == DAY and np.abs(est.cycle_.profile).max() > 0.5


def test_a_series_unseen_in_fit_gets_its_own_history_s_cycle():
    df, _ = _daily(n_days=15, n_series=2)
    long = df.melt(id_vars="date", var_name="unique_id", value_name="y")
    est = LinearForecaster(horizon=DAY, lookback=48, cycle="auto").fit(long[long.unique_id == "y0"])
    new = long[long.unique_id == "y1"]
    own = LinearForecaster(horizon=DAY, lookback=48, cycle="auto", alpha=est.alpha_).fit(new)
    data = est.prepare(new)
    scaled = (new["y"].to_numpy() - data.scaler.mean[0, 0]) / data.scaler.scale[0, 0]
    hours = pd.DatetimeIndex(new["date"]).hour
    np.testing.assert_allclose(data.cycle.profile[0, :, 0], [scaled[hours == h].mean() for h in range(DAY)])
    assert np.corrcoef(data.cycle.profile[0, :, 0], own.cycle_.profile[0, :, 0])[0, 1] > 0.95


# -- the streaming estimators ---------------------------------------------------------------------------

#: small networks of the three streaming estimators (the recurrence alone: no linear base around it)
STREAMING = {"lmuformer": (LMUFormerForecaster, dict(d_model=16)),
             "gtrxl": (GTrXLForecaster, dict(d_model=16, n_heads=2, d_ff=16, n_layers=1, segment_len=24, mem_len=24)),
             "atlas": (AtlasForecaster, dict(d_model=16, conv_kernel=4))}


@pytest.mark.parametrize("name", list(STREAMING))
def test_streaming_recurrence_reads_the_values_less_the_cycle_and_stays_exact(name, tmp_path):
    cls, small = STREAMING[name]
    df, times = _daily(n_days=20)
    assert cls().get_params()["cycle"] is None                       # off by default: not measured as the default
    est = cls(horizon=DAY, lookback=48, max_epochs=1, linear_base=False, cycle="auto", **small).fit(df.iloc[:-37])
    assert est.cycle_.period == DAY
    est.update(df.iloc[-37:])               # not a whole number of days: each row is taken at its own phase
    pd.testing.assert_frame_equal(est.predict(), est.predict(df), atol=1e-5)
    # the forecast is the network's from the state, plus the cycle of the next day, in the data's units
    with torch.no_grad():
        out = est._forecast_from(est.state_, None)[0, :, 0].double().numpy()
    future_hours = pd.date_range(times[-1], periods=DAY + 1, freq="h")[1:].hour
    scale, mean = est.scaler_.scale[0, 0], est.scaler_.mean[0, 0]
    expected = (out + est.cycle_.profile[0, future_hours, 0]) * scale + mean
    np.testing.assert_allclose(est.predict()["y0"].to_numpy(), expected, rtol=1e-5, atol=1e-5)
    # the state is the recurrence over the scaled values less the profile at each row's hour
    scaled = (df["y0"].to_numpy() - mean) / scale - est.cycle_.profile[0, times.hour, 0]
    np.testing.assert_allclose(est.prepare(df).scaled[0, :, 0], scaled, rtol=1e-6, atol=1e-6)
    est.save(tmp_path / "m")
    loaded = cls.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.cycle_.profile, est.cycle_.profile)
    pd.testing.assert_frame_equal(loaded.predict(), est.predict())
    # the saved-model reader (the batch command's torch engine) takes the same cycle out of a new history
    pd.testing.assert_frame_equal(load_torch(tmp_path / "m").predict(df), est.predict(df))


@pytest.mark.parametrize("name", list(STREAMING))
def test_streaming_estimators_with_the_cycle_forecast_a_day_their_window_cannot_see(name):
    # lookback 6 of an irregular 24-step profile: the defaults (linear base around the network) cannot know the
    # rest of the day from the window; with the cycle out they need not
    cls, small = STREAMING[name]
    df, _ = _daily()
    train = df.iloc[:-5 * DAY]
    errors = {cycle: _mse(cls(horizon=DAY, lookback=6, max_epochs=1, cycle=cycle, **small).fit(train), df)
              for cycle in (None, "auto")}
    assert errors["auto"] < 0.5 * errors[None]
    assert errors["auto"] < 0.3          # about the noise (0.09) plus the drift over a day
