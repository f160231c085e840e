"""Plots: Forecaster.plot and tsformers.plotting.plot_backtest draw what the forecast and the backtest hold."""
import numpy as np
import pandas as pd
import polars as pl
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from tsformers import GateformerForecaster, LinearForecaster, LMUFormerForecaster, NaiveForecaster
from tsformers.datasets import make_demo
from tsformers.plotting import plot_backtest

TINY = dict(horizon=12, lookback=48, max_epochs=1, d_model=16, d_ff=16, n_heads=2, batch_size=64, random_state=0)


def by_gid(ax, gid):
    return [a for a in [*ax.lines, *ax.collections] if a.get_gid() == gid]


def assert_joined(history, forecast):
    """The forecast line starts at the history's last point: one line, no gap."""
    assert pd.Timestamp(forecast.get_xdata()[0]) == pd.Timestamp(history.get_xdata()[-1])
    assert forecast.get_ydata()[0] == history.get_ydata()[-1]


def band_values(band: PolyCollection):
    """The y values of a fill_between band: lower edge, then upper edge (reversed) in the path."""
    ys = band.get_paths()[0].vertices[:, 1]
    return ys


@pytest.fixture(scope="module")
def wide_model():
    return GateformerForecaster(**TINY, quantiles=[0.05, 0.25, 0.5, 0.75, 0.95]).fit(make_demo(n_steps=300))


def test_plot_draws_history_forecast_and_a_band_per_quantile_pair(wide_model):
    fig = wide_model.plot(level=[80])
    out = wide_model.predict(level=[80])
    assert isinstance(fig, Figure)
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["series_0", "series_1", "series_2"]
    for ax, target in zip(fig.axes, ["series_0", "series_1", "series_2"]):
        [history], [forecast] = by_gid(ax, "history"), by_gid(ax, "forecast")
        np.testing.assert_allclose(forecast.get_ydata()[1:], out[target])
        assert list(pd.to_datetime(forecast.get_xdata())[1:]) == list(out["date"])
        assert_joined(history, forecast)
        np.testing.assert_allclose(history.get_ydata(), wide_model.history_[0, :, int(target[-1])])
        assert len(history.get_ydata()) == 48
        for lo, hi in [("0.05", "0.95"), ("0.25", "0.75")]:          # two pairs around the median
            [band] = by_gid(ax, f"q{lo}-{hi}")
            ys = band_values(band)
            assert np.isclose(ys, out[f"{target}_q{lo}"].to_numpy()[:, None]).any(axis=1).all()
            assert np.isclose(ys, out[f"{target}_q{hi}"].to_numpy()[:, None]).any(axis=1).all()
        [interval] = by_gid(ax, "interval80")
        assert np.isclose(band_values(interval), out[f"{target}_hi80"].to_numpy()[:, None]).any(axis=1).all()
        assert len([c for c in ax.collections if isinstance(c, PolyCollection)]) == 3
    png = fig._repr_png_()                                   # displays itself in a notebook
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_of_a_long_panel_has_one_panel_per_series_selected_and_capped():
    df = make_demo(n_series=6, n_steps=200, layout="long")
    f = LMUFormerForecaster(horizon=12, lookback=48, d_model=8, memory_size=8, max_epochs=1).fit(df)
    fig = f.plot(max_series=4)
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["series_0", "series_1", "series_2", "series_3"]
    fig = f.plot(df, series=["series_5", "series_2"], n_history=20)
    out = f.predict(df)
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["series_2", "series_5"]
    for ax in fig.axes:
        key = ax.get_title(loc="left")
        [history], [forecast] = by_gid(ax, "history"), by_gid(ax, "forecast")
        np.testing.assert_allclose(forecast.get_ydata()[1:], out[out.unique_id == key].y)
        assert_joined(history, forecast)
        np.testing.assert_allclose(history.get_ydata(), df[df.unique_id == key].y.to_numpy()[-20:])
        assert not ax.collections                             # a point model without level: no bands
    with pytest.raises(ValueError, match="series_9"):
        f.plot(series=["series_9"])


def test_plot_backtest_draws_the_actuals_and_one_forecast_per_cutoff(wide_model):
    df = make_demo(n_steps=300)
    frame = wide_model.backtest(df, n_windows=3, step=6, level=80)
    fig = plot_backtest(frame, max_series=2)
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["series_0", "series_1"]
    for ax, target in zip(fig.axes, ["series_0", "series_1"]):
        rows = frame[frame.target == target]
        [actual] = by_gid(ax, "actual")
        truth = rows.drop_duplicates("date").sort_values("date")
        np.testing.assert_allclose(actual.get_ydata(), truth.actual)
        forecasts = by_gid(ax, "forecast")
        assert len(forecasts) == 3
        observed = truth.set_index("date").actual
        joined = 0
        for line, (cutoff, window) in zip(forecasts, rows.groupby("cutoff", sort=True)):
            ys = line.get_ydata()
            if cutoff in observed.index:   # an earlier window saw the value at this cutoff: the line starts there
                assert pd.Timestamp(line.get_xdata()[0]) == cutoff and ys[0] == observed[cutoff]
                ys, joined = ys[1:], joined + 1
            np.testing.assert_allclose(ys, window.forecast)
        assert joined == 2                 # windows 6 steps apart, 12 long: the 2nd and 3rd start inside the 1st
        assert len(by_gid(ax, "q0.05-0.95")) == 3 and len(by_gid(ax, "interval80")) == 3


def test_plot_backtest_of_a_long_polars_frame():
    import polars as pl

    df = make_demo(n_series=3, n_steps=160, layout="long")
    f = GateformerForecaster(**TINY).fit(df)
    frame = f.backtest(pl.from_pandas(df), n_windows=2)
    fig = plot_backtest(frame)
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["series_0", "series_1", "series_2"]
    assert all(len(by_gid(ax, "forecast")) == 2 and not ax.collections for ax in fig.axes)


def test_the_autolog_forecast_figure_shows_the_quantile_band(wide_model):
    pytest.importorskip("mlflow")
    from tsformers.tracking.autologging import forecast_figure
    from tsformers.batch.frames import holdout_forecast

    df = make_demo(n_steps=300)
    fig = forecast_figure(wide_model, df, holdout_forecast(wide_model, df), n_series=2)
    assert len(fig.axes) == 2 and all(len(ax.collections) == 1 for ax in fig.axes)   # the 0.05-0.95 band


def test_plots_say_which_series_were_left_out_and_how_to_show_them():
    df = make_demo(n_series=8, n_steps=200, layout="long")
    f = NaiveForecaster(horizon=12).fit(df)
    fig = f.plot()
    assert len(fig.axes) == 4
    assert fig.get_suptitle() == ("NaiveForecaster: 12-step forecast\nshowing 4 of 8 series (left out: series_4, "
                                  "series_5, series_6, ...); pass series=[...] to choose which, or max_series=8 "
                                  "to show all")
    fig = f.plot(series=["series_1", "series_6", "series_7"], max_series=2)   # counted over the series asked for
    assert "showing 2 of 3 series (left out: series_7)" in fig.get_suptitle()
    assert "showing" not in f.plot(max_series=8).get_suptitle()
    assert "showing" not in f.plot(series=["series_1", "series_6"]).get_suptitle()   # nothing asked for is missing
    frame = f.backtest(df, n_windows=2)
    assert "showing 4 of 8 series (left out: series_4, series_5, series_6, ...)" in \
        plot_backtest(frame).get_suptitle()
    assert "showing" not in plot_backtest(frame, max_series=8).get_suptitle()


def test_plot_backtest_with_its_history_joins_every_forecast_to_the_value_at_its_cutoff():
    df = make_demo(n_steps=300)
    f = LinearForecaster(horizon=12, lookback=48).fit(df.iloc[:250])
    frame = f.backtest(df, n_windows=3)                    # side by side: no window sees another's cutoff
    alone = plot_backtest(frame, max_series=1).axes[0]
    assert [len(line.get_ydata()) for line in by_gid(alone, "forecast")] == [12, 13, 13]
    fig = plot_backtest(pl.from_pandas(frame), series=["series_2"], history=pl.from_pandas(df), n_history=20)
    [ax] = fig.axes
    [history] = by_gid(ax, "history")
    first = frame.date.min()
    before = df[df.date < first].tail(20)
    np.testing.assert_allclose(history.get_ydata(), before.series_2)
    assert list(pd.to_datetime(history.get_xdata())) == list(before.date)
    truth = df.set_index("date").series_2
    lines = by_gid(ax, "forecast")
    assert len(lines) == 3
    for line, (cutoff, window) in zip(lines, frame[frame.target == "series_2"].groupby("cutoff", sort=True)):
        assert pd.Timestamp(line.get_xdata()[0]) == cutoff and line.get_ydata()[0] == truth[cutoff]
        np.testing.assert_allclose(line.get_ydata()[1:], window.forecast)
    assert pd.Timestamp(lines[0].get_xdata()[0]) == pd.Timestamp(history.get_xdata()[-1])   # no gap
    with pytest.raises(ValueError, match="history has no column 'series_2'"):
        plot_backtest(frame, series=["series_2"], history=df[["date", "series_0"]])


def test_the_forecast_line_starts_at_the_last_observed_value_only_when_it_is_observed():
    from tsformers.plotting import _joined

    times = pd.date_range("2024-01-01", periods=3, freq="h")
    x, y = _joined(times[:2], np.array([1.0, np.nan]), times[2:], np.array([5.0]))
    assert list(x) == list(times[2:]) and list(y) == [5.0]
    x, y = _joined(times[:2], np.array([1.0, 2.0]), times[2:], np.array([5.0]))
    assert list(x) == list(times[1:]) and list(y) == [2.0, 5.0]
