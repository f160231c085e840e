"""Scoring forecasts for model selection: forecast scorers for GridSearchCV, splits that cannot work, held-out
rows with their history, the scale-free panel score, MASE in evaluate, and tsformers.metrics after import."""
from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GridSearchCV, KFold, TimeSeriesSplit

from tsformers import GateformerForecaster, NaiveForecaster, RollingOriginSplit, SeasonalNaiveForecaster, metrics
from tsformers.datasets import make_demo
from tsformers.model_selection import FORECAST_SCORING_NAMES, forecast_scoring, make_forecast_scorer

HORIZON, LOOKBACK, DAY = 24, 48, 24


@pytest.fixture(scope="module")
def demo():
    return make_demo(n_steps=400)     # hourly, three series with a daily season


def seasonal(season_length=DAY):
    return SeasonalNaiveForecaster(horizon=HORIZON, lookback=LOOKBACK, season_length=season_length)


def rolling(n_splits=2):
    return RollingOriginSplit(n_splits=n_splits, horizon=HORIZON, lookback=LOOKBACK)


# -- GridSearchCV -----------------------------------------------------------------------------------

@pytest.mark.parametrize("scoring", [make_forecast_scorer("mae"), make_forecast_scorer("mase", season=DAY),
                                     make_forecast_scorer("smape"), forecast_scoring("neg_mean_squared_error"),
                                     forecast_scoring("neg_root_mean_squared_error")])
def test_grid_search_with_a_forecast_scorer_picks_the_true_season_with_finite_scores(demo, scoring):
    search = GridSearchCV(seasonal(), {"season_length": [7, DAY]}, cv=rolling(), scoring=scoring).fit(demo)
    scores = search.cv_results_["mean_test_score"]
    assert np.isfinite(scores).all()
    assert search.best_params_ == {"season_length": DAY}
    assert scores[1] > scores[0]


def test_multi_metric_search_from_scikit_learn_names(demo):
    scoring = forecast_scoring(["neg_mean_absolute_error", "neg_mean_absolute_scaled_error"])
    search = GridSearchCV(seasonal(), {"season_length": [7, DAY]}, cv=rolling(), scoring=scoring,
                          refit="neg_mean_absolute_scaled_error").fit(demo)
    for name in scoring:
        assert np.isfinite(search.cv_results_[f"mean_test_{name}"]).all()
    assert search.best_params_ == {"season_length": DAY}


def test_scikit_learn_string_scoring_still_cannot_score_a_forecaster(demo):
    """The string scorers call metric(y, predict(X)) with no y: every fold is NaN before tsformers code runs,
    which is why forecast_scoring exists. Should scikit-learn ever score these, the docs must change."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search = GridSearchCV(seasonal(), {"season_length": [7, DAY]}, cv=rolling(),
                              scoring="neg_mean_absolute_error").fit(demo)
    assert np.isnan(search.cv_results_["mean_test_score"]).all()


def test_forecast_scoring_refuses_an_unknown_name_and_maps_every_known_one():
    with pytest.raises(ValueError, match="make_forecast_scorer"):
        forecast_scoring("r2")
    for name, metric in FORECAST_SCORING_NAMES.items():
        assert forecast_scoring(name).metric == metric
    with pytest.raises(ValueError, match="level="):
        make_forecast_scorer("coverage")
    with pytest.raises(ValueError, match="metric must be one of"):
        make_forecast_scorer("r2")


# -- the scorers equal the metrics of a backtest, by hand ---------------------------------------------

@pytest.fixture(scope="module")
def fold(demo):
    train, test = list(rolling(n_splits=1).split(demo))[0]
    return demo.iloc[train], demo.iloc[test]


@pytest.mark.parametrize("metric", ["mse", "mae", "rmse", "smape"])
def test_scorer_is_the_negated_pooled_metric_of_the_one_window_backtest(fold, metric):
    train, test = fold
    f = seasonal().fit(train)
    bt = f.backtest(test, n_windows=1)
    expected = getattr(metrics, metric)(bt.actual, bt.forecast)
    assert make_forecast_scorer(metric)(f, test) == pytest.approx(-expected, rel=1e-12)


def test_mase_scorer_is_the_mean_of_each_series_mase_over_its_context(fold):
    train, test = fold
    f = seasonal().fit(train)
    bt = f.backtest(test, n_windows=1)
    context = test.iloc[:LOOKBACK]                      # the test fold's rows before the forecast
    by_hand = [metrics.mase(bt[bt.target == name].actual, bt[bt.target == name].forecast, context[name], season=DAY)
               for name in ["series_0", "series_1", "series_2"]]
    assert make_forecast_scorer("mase", season=DAY)(f, test) == pytest.approx(-np.mean(by_hand), rel=1e-12)


def test_coverage_scorer_is_the_calibration_error_of_the_conformal_interval(fold):
    train, test = fold
    f = NaiveForecaster(horizon=HORIZON, lookback=LOOKBACK).fit(train)
    bt = f.backtest(test, n_windows=1, level=80)
    share = metrics.coverage(bt.actual, bt.lo80, bt.hi80)
    assert make_forecast_scorer("coverage", level=80)(f, test) == pytest.approx(-abs(share - 0.8), rel=1e-12)


def test_pinball_scorer_is_the_pinball_loss_of_the_quantiles(fold):
    train, test = fold
    f = GateformerForecaster(horizon=HORIZON, lookback=LOOKBACK, max_epochs=1, quantiles=[0.1, 0.5, 0.9],
                             **GateformerForecaster.get_test_params()).fit(train)
    bt = f.backtest(test, n_windows=1)
    expected = metrics.pinball_loss(bt.actual, bt[["q0.1", "q0.5", "q0.9"]], [0.1, 0.5, 0.9])
    assert make_forecast_scorer("pinball")(f, test) == pytest.approx(-expected, rel=1e-6)
    with pytest.raises(ValueError, match="quantiles="):
        make_forecast_scorer("pinball")(seasonal().fit(train), test)


# -- splits that cannot work: a clear error naming RollingOriginSplit, not NaN --------------------------

@pytest.mark.parametrize("scoring", [None, make_forecast_scorer("mae")])
def test_time_series_split_folds_too_short_for_the_lookback_say_to_use_rolling_origin_split(demo, scoring):
    cv = TimeSeriesSplit(n_splits=3, test_size=48)      # test folds of 48 rows < lookback + horizon = 72
    with pytest.raises(ValueError, match="too short to score.*RollingOriginSplit"):
        GridSearchCV(seasonal(), {"season_length": [7, DAY]}, cv=cv, scoring=scoring, error_score="raise").fit(demo)


@pytest.mark.filterwarnings("ignore:One or more of the test scores are non-finite")
def test_a_failing_fold_is_reported_in_the_warning_with_the_default_error_score(demo):
    with pytest.warns(UserWarning, match="RollingOriginSplit"):
        GridSearchCV(seasonal(), {"season_length": [7, DAY]}, cv=TimeSeriesSplit(n_splits=3, test_size=48),
                     scoring=make_forecast_scorer("mae")).fit(demo)


def test_time_series_split_of_a_long_frame_mixes_series_and_is_refused():
    long = make_demo(n_steps=400, layout="long")        # rows series by series: row folds split series apart
    with pytest.raises(ValueError, match="not in the training fold.*RollingOriginSplit"):
        GridSearchCV(seasonal(), {"season_length": [7, DAY]}, cv=TimeSeriesSplit(n_splits=3),
                     scoring=make_forecast_scorer("mae"), error_score="raise").fit(long)


def test_kfold_trains_after_the_test_fold_and_is_refused(demo):
    with pytest.raises(ValueError, match="trained on.*RollingOriginSplit"):
        GridSearchCV(seasonal(), {"season_length": [7, DAY]}, cv=KFold(n_splits=3),
                     scoring=make_forecast_scorer("mae"), error_score="raise").fit(demo)


def test_rolling_origin_split_of_a_long_frame_scores_every_series(demo):
    long = make_demo(n_steps=400, layout="long")
    search = GridSearchCV(seasonal(), {"season_length": [7, DAY]}, cv=rolling(),
                          scoring=make_forecast_scorer("mase", season=DAY), error_score="raise").fit(long)
    assert search.best_params_ == {"season_length": DAY}
    wide = GridSearchCV(seasonal(), {"season_length": [7, DAY]}, cv=rolling(),
                        scoring=make_forecast_scorer("mase", season=DAY), error_score="raise").fit(demo)
    np.testing.assert_allclose(search.cv_results_["mean_test_score"], wide.cv_results_["mean_test_score"],
                               rtol=1e-9)


# -- score(test, history=...) ------------------------------------------------------------------------

def test_score_of_held_out_rows_with_their_history_equals_the_score_of_both(demo):
    train, test = demo.iloc[:300], demo.iloc[300:300 + HORIZON]
    f = seasonal().fit(train)
    with pytest.raises(ValueError, match="history="):
        f.score(test)                                   # the held-out rows alone lack the lookback context
    joined = pd.concat([train, test])
    for metric in ["mse", "mase"]:
        assert f.score(test, history=train, metric=metric) == f.score(joined, metric=metric)
    long = make_demo(n_steps=400, layout="long")
    long_train, long_test = long.groupby("unique_id").head(300), long.groupby("unique_id").nth(slice(300, 324))
    g = seasonal().fit(long_train)
    assert g.score(long_test, history=long_train) == pytest.approx(f.score(joined), rel=1e-12)


def test_score_refuses_a_history_that_overlaps_the_rows(demo):
    f = seasonal().fit(demo.iloc[:300])
    with pytest.raises(ValueError, match="history must end before df starts"):
        f.score(demo.iloc[300:324], history=demo.iloc[:301])


# -- the scale-free panel score ------------------------------------------------------------------------

def test_panel_mase_is_unchanged_when_one_series_is_a_thousand_times_larger_while_pooled_mse_is_not(demo):
    larger = demo.assign(series_1=demo.series_1 * 1000)
    f, g = NaiveForecaster(horizon=HORIZON, lookback=LOOKBACK), NaiveForecaster(horizon=HORIZON, lookback=LOOKBACK)
    f.fit(demo.iloc[:300])
    g.fit(larger.iloc[:300])
    assert g.score(larger, metric="mase") == pytest.approx(f.score(demo, metric="mase"), rel=1e-9)
    assert g.score(larger) < 1000 * f.score(demo)       # pooled raw-unit MSE: the large series decides


def test_score_default_stays_the_negative_pooled_mse(demo):
    f = seasonal().fit(demo.iloc[:300])
    bt = f.backtest(demo, n_windows=1)
    assert f.score(demo) == pytest.approx(-metrics.mse(bt.actual, bt.forecast), rel=1e-12)
    with pytest.raises(ValueError, match="level is the interval level"):
        f.score(demo, level=80)


# -- evaluate and the metrics module -----------------------------------------------------------------

@pytest.mark.parametrize("layout", ["wide", "long"])
def test_evaluate_reports_mase_as_metrics_mase_by_hand(layout):
    df = make_demo(n_steps=400, layout=layout)
    f = seasonal().fit(df.groupby("unique_id").head(300) if layout == "long" else df.iloc[:300])
    bt = f.backtest(df, n_windows=2)
    id_col = "target" if layout == "wide" else "unique_id"
    table = metrics.evaluate(bt, by=id_col, history=df, season=DAY).set_index(id_col)
    for name in ["series_0", "series_1", "series_2"]:
        part = bt[bt[id_col] == name]
        if layout == "wide":
            past = df.loc[df.date <= part.cutoff.min(), name]
        else:
            series = df[df.unique_id == name]
            past = series.loc[series.ds <= part.cutoff.min(), "y"]
        assert table.loc[name, "mase"] == pytest.approx(metrics.mase(part.actual, part.forecast, past, season=DAY),
                                                        rel=1e-12)
    overall = metrics.evaluate(bt, history=df, season=DAY)
    assert overall.mase[0] == pytest.approx(table.mase.mean(), rel=1e-12)   # equal counts: the mean of the series
    assert "mase" not in metrics.evaluate(bt).columns


def test_evaluate_mase_needs_the_history_of_every_series(demo):
    f = seasonal().fit(demo.iloc[:300])
    bt = f.backtest(demo, n_windows=1)
    with pytest.raises(ValueError, match="series_2"):
        metrics.evaluate(bt, history=demo.drop(columns="series_2"))


def test_metrics_is_reachable_after_import_tsformers():
    subprocess.run([sys.executable, "-c", "import tsformers; tsformers.metrics.mase; tsformers.metrics.evaluate; "
                    "tsformers.model_selection.make_forecast_scorer"], check=True)
