"""ETSForecaster against statsmodels: the selection, the parameters and the forecast of the selected model.

The shared estimator contract (tests/test_estimators_contract.py) covers what it shares with every
forecaster; here: the AICc selection is statsmodels' over the same candidates, the forecast is
statsmodels' forecast of the selected model refitted to the window with its smoothing held, the
forms behave as their names say, per-series parameters, unseen series, saving, ONNX and refusals.
"""
from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from statsmodels.tsa.exponential_smoothing.ets import ETSModel

from tsformers import BaseForecaster, ETSForecaster, NaiveForecaster
from tsformers.cli import main
from tsformers.data.windows import validation_steps
from tsformers.estimators.registry import ESTIMATORS, estimator_class

PARAMETERS = ["smoothing_level", "smoothing_trend", "smoothing_seasonal", "damping_trend"]
FORMS = [(None, False, None), ("add", False, None), ("add", True, None), (None, False, "add"), ("add", False, "add"),
         ("add", True, "add")]   # (trend, damped, seasonal), as statsmodels takes them


def frame(n: int = 600, seed: int = 1) -> pd.DataFrame:
    """An hourly series with a daily cycle, a drift and a random walk in its level, around 5."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    y = 5 + 0.02 * t + np.sin(2 * np.pi * t / 24) + 0.3 * rng.standard_normal(n) \
        + np.cumsum(0.05 * rng.standard_normal(n))
    return pd.DataFrame({"date": pd.date_range("2024-01-01", periods=n, freq="h"), "y": y})


def statsmodels_fit(y: np.ndarray, trend, damped, seasonal, m: int = 24, fixed: dict | None = None):
    model = ETSModel(y, error="add", trend=trend, damped_trend=damped, seasonal=seasonal,
                     seasonal_periods=m if seasonal else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if fixed is None:
            return model, model.fit(disp=False)
        with model.fix_params({k: v for k, v in fixed.items() if k in model.param_names}):
            return model, model.fit(disp=False, maxiter=10000)


@pytest.mark.parametrize("form", FORMS, ids=lambda f: f"trend={f[0]},damped={f[1]},seasonal={f[2]}")
def test_the_forecast_is_statsmodels_refit_on_the_window_with_the_smoothing_held(form):
    trend, damped, seasonal = form
    df, horizon, lookback = frame(), 24, 96
    est = ETSForecaster(horizon=horizon, lookback=lookback, season_length=24, trend=trend, damped=damped,
                        seasonal=seasonal).fit(df)
    selected = est.selected_.iloc[0]
    mean, scale = est.scaler_.mean[0, 0], est.scaler_.scale[0, 0]
    # the smoothing parameters are statsmodels' fit of this form on the scaled training part
    n_train = len(df) - validation_steps(len(df), lookback, horizon, est.val_size)
    model, fitted = statsmodels_fit((df["y"].to_numpy()[:n_train] - mean) / scale, trend, damped, seasonal)
    expected = dict(zip(model.param_names, fitted.params))
    for name in PARAMETERS:
        if name in expected:
            assert selected[name] == pytest.approx(expected[name], rel=1e-6, abs=1e-9), name
        else:
            assert np.isnan(selected[name]), name
    assert selected["aicc"] == pytest.approx(fitted.aicc, rel=1e-9)
    # the forecast: statsmodels' over the last window, initial states estimated there, smoothing held
    window = (df["y"].to_numpy()[-lookback:] - mean) / scale
    _, refit = statsmodels_fit(window, trend, damped, seasonal, fixed=selected[PARAMETERS].to_dict())
    np.testing.assert_allclose(est.predict()["y"].to_numpy(), refit.forecast(horizon) * scale + mean,
                               rtol=0, atol=1e-4 * scale)


def test_the_selection_is_the_least_aicc_of_statsmodels_candidates():
    df = frame()
    est = ETSForecaster(horizon=12, lookback=96, season_length=24).fit(df)
    mean, scale = est.scaler_.mean[0, 0], est.scaler_.scale[0, 0]
    n_train = len(df) - validation_steps(len(df), 96, 12, est.val_size)
    y = (df["y"].to_numpy()[:n_train] - mean) / scale
    aicc = {form: statsmodels_fit(y, *form)[1].aicc for form in FORMS}
    trend, damped, seasonal = min(aicc, key=aicc.get)
    name = f"ETS(A,{'Ad' if damped else 'A' if trend else 'N'},{'A' if seasonal else 'N'})"
    assert est.selected_["model"].iloc[0] == name
    assert est.selected_["aicc"].iloc[0] == pytest.approx(min(aicc.values()), rel=1e-9)


def _two_shapes(n: int = 480, seed: int = 0) -> pd.DataFrame:
    """A daily cycle without trend, and a straight line with noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return pd.DataFrame({"date": pd.date_range("2024-01-01", periods=n, freq="h"),
                         "cycle": 10 + 3 * np.sin(2 * np.pi * t / 24) + 0.2 * rng.standard_normal(n),
                         "line": 2 + 0.1 * t + 0.2 * rng.standard_normal(n)})


def test_the_season_is_chosen_on_seasonal_data_and_the_trend_on_trending_data():
    est = ETSForecaster(horizon=24, lookback=96, season_length=24).fit(_two_shapes())
    models = dict(zip(est.selected_["target"], est.selected_["model"]))
    assert models["cycle"].endswith(",A)")                                      # a season
    assert models["line"].startswith("ETS(A,A") and models["line"].endswith(",N)")   # a trend, no season


def test_a_linear_trend_is_extrapolated_and_beats_the_last_value():
    df = _two_shapes(n=504)
    train, test = df.iloc[:-24], df.iloc[-24:]
    truth = test["line"].to_numpy()
    ets = ETSForecaster(horizon=24, lookback=96, season_length=24, target="line").fit(train).predict()["line"]
    naive = NaiveForecaster(horizon=24, target="line").fit(train).predict()["line"]
    assert np.diff(ets.to_numpy()).mean() == pytest.approx(0.1, rel=0.1)       # the slope carries on
    assert np.mean((ets - truth) ** 2) < 0.2 * np.mean((naive - truth) ** 2)


def test_a_constant_added_to_the_series_moves_the_forecast_by_that_constant():
    df = _two_shapes()
    shifted = df.assign(cycle=df["cycle"] + 1000.0, line=df["line"] - 50.0)
    make = lambda: ETSForecaster(horizon=24, lookback=96, season_length=24)   # noqa: E731
    base, moved = make().fit(df), make().fit(shifted)
    pd.testing.assert_frame_equal(moved.selected_, base.selected_, rtol=1e-6)
    np.testing.assert_allclose(moved.predict()["cycle"], base.predict()["cycle"] + 1000.0, rtol=0, atol=1e-3)
    np.testing.assert_allclose(moved.predict()["line"], base.predict()["line"] - 50.0, rtol=0, atol=1e-3)


def _long() -> pd.DataFrame:
    wide = _two_shapes()
    return pd.concat([pd.DataFrame({"unique_id": "cycle", "ds": wide["date"], "y": wide["cycle"]}),
                      pd.DataFrame({"unique_id": "line", "ds": wide["date"], "y": wide["line"]})], ignore_index=True)


def test_each_series_has_its_own_model_and_an_unseen_series_takes_the_new_series_model():
    df = _long()
    est = ETSForecaster(horizon=12, lookback=96, season_length=24).fit(df)
    selected = est.selected_.set_index("unique_id")
    assert list(selected.index) == ["cycle", "line"] and selected.loc["cycle", "model"] != selected.loc["line", "model"]
    # each series forecasts with its own parameters: the cycle's model on the line's rows is another forecast
    line_rows = df[df["unique_id"] == "line"]
    own = est.predict(line_rows)["y"].to_numpy()
    borrowed = est.predict(line_rows.assign(unique_id="cycle"))["y"].to_numpy()
    assert np.abs(own - borrowed).max() > 0.1
    # an unseen id forecasts with new_series_, the parameters of one fitted series (and any scale: ETS is affine)
    source = est.new_series_["from_series"].iloc[0]
    assert source in ("cycle", "line")
    columns = ["target", "model", *PARAMETERS, "aicc"]
    pd.testing.assert_series_equal(est.new_series_.iloc[0][columns], selected.loc[source][columns], check_names=False)
    unseen = est.predict(line_rows.assign(unique_id="new"))["y"].to_numpy()
    np.testing.assert_allclose(unseen, est.predict(line_rows.assign(unique_id=source))["y"], rtol=0, atol=1e-3)


def test_save_load_gives_identical_forecasts_and_selection_and_intervals_widen(tmp_path):
    df = _long()
    est = ETSForecaster(horizon=12, lookback=96, season_length=24).fit(df)
    forecast = est.predict(level=[80, 95])
    assert (forecast["y_lo95"] <= forecast["y_lo80"]).all() and (forecast["y_lo80"] < forecast["y"]).all()
    assert (forecast["y"] < forecast["y_hi80"]).all() and (forecast["y_hi80"] <= forecast["y_hi95"]).all()
    path = est.save(tmp_path / "model")
    loaded = BaseForecaster.load(path)
    assert type(loaded) is ETSForecaster and loaded.get_params() == est.get_params()
    pd.testing.assert_frame_equal(loaded.predict(level=[80, 95]), forecast)
    pd.testing.assert_frame_equal(loaded.selected_, est.selected_)
    pd.testing.assert_frame_equal(loaded.new_series_, est.new_series_)
    pd.testing.assert_frame_equal(loaded.backtest(df, n_windows=2), est.backtest(df, n_windows=2))


def test_onnx_export_forecasts_what_the_torch_network_does_per_series(tmp_path):
    pytest.importorskip("onnxruntime", reason="ONNX export needs tsformers[onnx]")
    df = _long()
    est = ETSForecaster(horizon=12, lookback=96, season_length=24).fit(df)
    path = est.save(tmp_path / "model")
    est.export_onnx(path)
    onnx = BaseForecaster.load(path, engine="onnx")
    new = df.assign(unique_id=df["unique_id"].replace({"line": "new"}))     # a fitted series and an unseen one
    for data in (None, new):
        np.testing.assert_allclose(onnx.predict(data)["y"], est.predict(data)["y"], rtol=1e-5, atol=1e-4)
    with pytest.raises(AttributeError, match="engine='torch'"):
        onnx.selected_


def test_the_estimator_is_in_the_registry_and_trains_from_the_command_line(tmp_path, capsys):
    assert ETSForecaster in ESTIMATORS and estimator_class("ets") is ETSForecaster
    df = _two_shapes()
    df.to_csv(tmp_path / "train.csv", index=False)
    assert main(["train", "--data", str(tmp_path / "train.csv"), "--estimator", "ETS", "--param", "horizon=12",
                 "--param", "season_length=24", "--model-dir", str(tmp_path / "model")]) == 0
    assert json.loads(capsys.readouterr().out)["estimator"] == "ETSForecaster"
    assert main(["forecast", "--model", str(tmp_path / "model"), "--input", str(tmp_path / "train.csv"),
                 "--output", str(tmp_path / "f.csv")]) == 0
    written = pd.read_csv(tmp_path / "f.csv", parse_dates=["date"])
    pd.testing.assert_frame_equal(written, ETSForecaster.load(tmp_path / "model").predict(df), check_dtype=False)


# -- refusals ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("settings, message", [
    (dict(seasonal="add"), r"seasonal='add' needs the period.*season_length="),
    (dict(season_length=48, lookback=24), r"season_length=48 is longer than lookback=24.*lookback >= 48"),
    (dict(trend=None, damped=True), r"damped=True damps a trend, but trend=None"),
    (dict(trend="multiplicative"), r"'trend' parameter of ETSForecaster must be"),
    (dict(seasonal="mul", season_length=24), r"'seasonal' parameter of ETSForecaster must be"),
    (dict(season_length=0), r"'season_length' parameter of ETSForecaster must be"),
    (dict(missing="mask"), r"'missing' parameter"),
])
def test_bad_settings_are_refused_before_the_data_is_read(settings, message):
    with pytest.raises(ValueError, match=message):
        ETSForecaster(**{"horizon": 6, "lookback": 24, **settings}).fit(_two_shapes())


def test_a_forced_season_needs_two_seasons_in_the_training_part():
    with pytest.raises(ValueError, match=r"seasonal='add' needs two full seasons \(96 rows\).*target 'cycle'"):
        ETSForecaster(horizon=6, lookback=48, season_length=48, seasonal="add").fit(_two_shapes(n=100))
    # "auto" leaves the season out where two do not fit
    est = ETSForecaster(horizon=6, lookback=48, season_length=48).fit(_two_shapes(n=100))
    assert est.selected_["model"].str.endswith(",N)").all()


def test_the_estimator_reads_targets_only():
    with pytest.raises(TypeError, match="covariates"):
        ETSForecaster(horizon=6, covariates=["temp"])
