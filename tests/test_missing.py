"""Missing values by choice: error, interpolate, mask; fill_gaps; the fit report."""
import numpy as np
import pandas as pd
import pytest
import torch

from tsformers import GateformerForecaster
from tsformers.data.missing import interpolate_gaps, with_observed_mask
from tsformers.datasets import make_demo
from tsformers.training import ForecastingModule

SMALL = dict(horizon=12, lookback=48, d_model=16, d_ff=32, n_heads=2, batch_size=32, learning_rate=3e-3,
             lr_schedule="constant", random_state=0)


def with_gaps(df, fraction, seed=0, columns=None):
    rng = np.random.default_rng(seed)
    out = df.copy()
    for col in columns or [c for c in df.columns if c != "date"]:
        rows = rng.choice(np.arange(1, len(df) - 1), size=int(fraction * len(df)), replace=False)
        out.loc[rows, col] = np.nan
    return out


def test_error_mode_names_the_row_and_the_options():
    df = make_demo(n_steps=300)
    df.loc[40, "series_1"] = np.nan
    with pytest.raises(ValueError, match="'series_1'.*row 40.*missing='interpolate' or missing='mask'"):
        GateformerForecaster(**SMALL).fit(df)


def test_interpolation_reproduces_a_linear_gap_exactly():
    values = np.arange(10.0).reshape(1, 10, 1) * 3 + 1
    gappy = values.copy()
    gappy[0, 3:7, 0] = np.nan
    times = pd.date_range("2024", periods=10, freq="h")
    np.testing.assert_array_equal(interpolate_gaps(gappy, ["y"], [None], times, max_gap=4), values)
    with pytest.raises(ValueError, match="gap of 4 steps.*max_gap=3"):
        interpolate_gaps(gappy, ["y"], [None], times, max_gap=3)
    gappy[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="missing at its start"):
        interpolate_gaps(gappy, ["y"], [None], times, max_gap=None)


def test_observed_mask_channels_follow_the_masked_variables():
    v = np.array([[[1.0, np.nan, 5.0], [np.nan, 2.0, 6.0]]])  # 2 masked variables, 1 future covariate
    out = with_observed_mask(v, n_masked=2)
    np.testing.assert_array_equal(out[0], [[1, 0, 1, 0, 5], [0, 2, 0, 1, 6]])


def test_masked_loss_equals_the_loss_over_observed_points():
    module = ForecastingModule(torch.nn.Identity(), n_targets=2, loss="mse")
    pred = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    y = torch.tensor([[[2.0, float("nan")], [1.0, 4.0]]])
    assert module.masked_loss(pred, y).item() == pytest.approx(((1 - 2) ** 2 + (3 - 1) ** 2 + 0) / 3)


def test_interpolate_mode_fits_and_reports_what_it_filled():
    df = with_gaps(make_demo(n_steps=400), 0.02)
    f = GateformerForecaster(**SMALL, max_epochs=1, missing="interpolate", max_gap=3).fit(df)
    assert f.report_["interpolated"] == [int(df.drop(columns="date").isna().sum().sum())]
    assert f.report_["masked"] == [0]
    assert np.isfinite(f.predict().drop(columns="date").to_numpy()).all()


def test_fill_gaps_inserts_the_missing_timestamps_and_reports_them():
    df = make_demo(n_steps=400).drop(index=[100, 101, 250]).reset_index(drop=True)
    with pytest.raises(ValueError, match="fill_gaps=True"):
        GateformerForecaster(**SMALL, max_epochs=1).fit(df)
    f = GateformerForecaster(**SMALL, max_epochs=1, fill_gaps=True, missing="interpolate").fit(df)
    assert f.report_["inserted_timestamps"] == [3] and f.report_["interpolated"] == [9]
    assert f.predict()["date"].iloc[0] == df["date"].iloc[-1] + pd.Timedelta(hours=1)
    # predict data with a gap is filled the same way
    assert len(f.predict(df.iloc[:-1].drop(index=[200]))) == 12


def test_mask_mode_trained_on_20_percent_missing_targets_is_nearly_as_good_as_complete_data():
    df = make_demo(n_steps=24 * 7 * 6, seed=2)
    train, test = df.iloc[:-12], df.iloc[-12:]
    cols = [c for c in df.columns if c != "date"]
    complete = GateformerForecaster(**SMALL, max_epochs=5).fit(train)
    masked = GateformerForecaster(**SMALL, max_epochs=5, missing="mask").fit(with_gaps(train, 0.2))
    assert masked.report_["masked"] == [int(with_gaps(train, 0.2)[cols].isna().sum().sum())]
    # one observed-mask channel per variable, in each member of the default seed ensemble (behind its base)
    assert {member.network.n_vars for member in masked.network_.members} == {2 * len(cols)}
    err = {name: np.mean((m.predict(train)[cols].to_numpy() - test[cols].to_numpy()) ** 2)
           for name, m in [("complete", complete), ("masked", masked)]}
    naive = np.mean((np.repeat(train[cols].to_numpy()[-1:], 12, axis=0) - test[cols].to_numpy()) ** 2)
    assert err["masked"] < 1.5 * err["complete"] and err["masked"] < 0.5 * naive, (err, naive)
    forecast = masked.predict(with_gaps(train, 0.2, seed=1))
    assert np.isfinite(forecast[cols].to_numpy()).all(), "a forecast never contains NaN"


def test_interpolate_without_max_gap_fills_short_gaps_and_refuses_long_ones():
    """The default limit (DEFAULT_MAX_GAP = 3): a 3-step gap is filled, a 4-step outage is refused, naming the fix."""
    from tsformers import LinearForecaster
    from tsformers.data.missing import DEFAULT_MAX_GAP

    assert DEFAULT_MAX_GAP == 3
    df = make_demo(n_series=1, n_steps=300)
    short, long_ = df.copy(), df.copy()
    short.iloc[100:103, 1] = np.nan
    long_.iloc[100:104, 1] = np.nan
    f = LinearForecaster(horizon=6, lookback=24, missing="interpolate").fit(short)
    assert f.report_["interpolated"] == [3]
    with pytest.raises(ValueError, match=r"gap of 4 steps.*max_gap=3 \(the default\); pass max_gap=4"):
        LinearForecaster(horizon=6, lookback=24, missing="interpolate").fit(long_)
    assert LinearForecaster(horizon=6, lookback=24, missing="interpolate", max_gap=4).fit(long_).report_[
        "interpolated"] == [4]
