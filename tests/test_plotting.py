"""Plots: Forecaster.plot and tsformers.plotting.plot_backtest draw what the forecast and the backtest hold."""
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from tsformers import GateformerForecaster, LMUFormerForecaster
from tsformers.datasets import make_demo
from tsformers.plotting import plot_backtest

TINY = dict(horizon=12, lookback=48, max_epochs=1, d_model=16, d_ff=16, n_heads=2, batch_size=64, random_state=0)


def by_gid(ax, gid):
    return [a for a in [*ax.lines, *ax.collections] if a.get_gid() == gid]


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
        np.testing.assert_allclose(forecast.get_ydata(), out[target])
        assert list(pd.to_datetime(forecast.get_xdata())) == list(out["date"])
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
        np.testing.assert_allclose(forecast.get_ydata(), out[out.unique_id == key].y)
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
        for line, (_, window) in zip(forecasts, rows.groupby("cutoff", sort=True)):
            np.testing.assert_allclose(line.get_ydata(), window.forecast)
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
