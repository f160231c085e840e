"""ModelComparison: several forecasters side by side in neuralforecast's layout, equal to each one's own output."""
import numpy as np
import polars as pl
import pytest
from sklearn.base import clone

from tsformers import GateformerForecaster, LinearForecaster, NaiveForecaster, SeasonalNaiveForecaster
from tsformers.comparison import ModelComparison
from tsformers.datasets import make_demo

H = 12


def baselines(**kwargs):
    return [NaiveForecaster(horizon=H, **kwargs), SeasonalNaiveForecaster(horizon=H, season_length=24, **kwargs),
            LinearForecaster(horizon=H, lookback=48, **kwargs)]


@pytest.fixture(scope="module")
def long_df():
    return make_demo(n_series=3, n_steps=300, layout="long")


@pytest.fixture(scope="module")
def wide_df():
    return make_demo(n_series=3, n_steps=300)


def test_predict_has_neuralforecasts_columns_and_equals_each_models_own_predict(long_df):
    gate = GateformerForecaster(**GateformerForecaster.get_test_params(), horizon=H, lookback=48, max_epochs=1,
                                quantiles=[0.1, 0.5, 0.9])
    models = [*baselines(), gate]
    comparison = ModelComparison(models).fit(long_df)
    out = comparison.predict(level=[95, 80])
    names = ["NaiveForecaster", "SeasonalNaiveForecaster", "LinearForecaster"]
    expected = ["unique_id", "ds"]
    for name in names:
        expected += [name, f"{name}-lo-95", f"{name}-lo-80", f"{name}-hi-80", f"{name}-hi-95"]
    expected += ["GateformerForecaster", "GateformerForecaster_ql0.1", "GateformerForecaster_ql0.5",
                 "GateformerForecaster_ql0.9", "GateformerForecaster-lo-95", "GateformerForecaster-lo-80",
                 "GateformerForecaster-hi-80", "GateformerForecaster-hi-95"]
    assert list(out.columns) == expected
    assert len(out) == 3 * H and not out.duplicated(["unique_id", "ds"]).any()
    assert out["ds"].dtype == long_df["ds"].dtype
    for name, model in zip([*names, "GateformerForecaster"], models):
        own = clone(model).fit(long_df).predict(level=[80, 95]).sort_values(["unique_id", "ds"],
                                                                             kind="stable")
        assert list(out["unique_id"]) == list(own["unique_id"]) and list(out["ds"]) == list(own["ds"])
        np.testing.assert_allclose(out[name], own["y"], rtol=1e-6)
        for level in ("80", "95"):
            np.testing.assert_allclose(out[f"{name}-lo-{level}"], own[f"y_lo{level}"], rtol=1e-6)
            np.testing.assert_allclose(out[f"{name}-hi-{level}"], own[f"y_hi{level}"], rtol=1e-6)
    np.testing.assert_allclose(out["GateformerForecaster_ql0.9"], own["y_q0.9"], rtol=1e-6)
    assert list(comparison.models_) == [*names, "GateformerForecaster"]
    assert all(hasattr(m, "network_") for m in comparison.models_.values())
    assert not any(hasattr(m, "network_") for m in models)          # the given estimators are cloned, not fitted


def test_cross_validation_equals_each_models_own_backtest(long_df):
    comparison = ModelComparison(baselines())
    cv = comparison.cross_validation(long_df, n_windows=3, step_size=6, level=80)
    names = ["NaiveForecaster", "SeasonalNaiveForecaster", "LinearForecaster"]
    models = [f"{n}{s}" for n in names for s in ("", "-lo-80", "-hi-80")]
    assert list(cv.columns) == ["unique_id", "ds", "cutoff", *models, "y"]
    assert len(cv) == 3 * 3 * H and not cv.duplicated(["unique_id", "ds", "cutoff"]).any()
    assert list(cv.index) == list(range(len(cv)))
    assert cv.equals(cv.sort_values(["unique_id", "cutoff", "ds"]).reset_index(drop=True))
    assert cv["cutoff"].dtype == cv["ds"].dtype == long_df["ds"].dtype
    for name, model in zip(names, baselines()):
        own = clone(model).backtest(long_df, n_windows=3, step=6, level=80)
        own = own.sort_values(["unique_id", "cutoff", "ds"], kind="stable").reset_index(drop=True)
        for ours, theirs in [("unique_id", "unique_id"), ("ds", "ds"), ("cutoff", "cutoff")]:
            assert list(cv[ours]) == list(own[theirs])
        np.testing.assert_allclose(cv["y"], own["actual"])
        np.testing.assert_allclose(cv[name], own["forecast"])
        np.testing.assert_allclose(cv[f"{name}-lo-80"], own["lo80"])
        np.testing.assert_allclose(cv[f"{name}-hi-80"], own["hi80"])
    # the cutoffs are the last timestamp each window saw: the final window forecasts each series' last H steps
    last = cv[cv["cutoff"] == cv["cutoff"].max()]
    assert (last.groupby("unique_id")["ds"].max() == long_df.groupby("unique_id")["ds"].max()).all()
    assert not hasattr(comparison, "models_")                      # cross_validation fits clones of its own


def test_cross_validation_with_refit_equals_the_backtests_with_refit(long_df):
    models = baselines()[1:]
    cv = ModelComparison(models).cross_validation(long_df, n_windows=2, refit=True)
    for name, model in zip(["SeasonalNaiveForecaster", "LinearForecaster"], models):
        own = model.backtest(long_df, n_windows=2, refit=True).sort_values(["unique_id", "cutoff", "ds"],
                                                                           kind="stable")
        np.testing.assert_allclose(cv[name], own["forecast"])
        assert list(cv["cutoff"]) == list(own["cutoff"])
    with pytest.raises(ValueError, match="refit must be True or False"):
        ModelComparison(models).cross_validation(long_df, refit=2)


def test_a_wide_frame_becomes_one_series_per_target_column(wide_df):
    comparison = ModelComparison(baselines()[:2]).fit(wide_df)
    out = comparison.predict(level=80)
    assert list(out.columns)[:2] == ["unique_id", "date"]            # the time column keeps its name
    assert sorted(set(out["unique_id"])) == ["series_0", "series_1", "series_2"]
    own = NaiveForecaster(horizon=H).fit(wide_df).predict(level=80)
    for series in ["series_0", "series_1", "series_2"]:
        rows = out[out["unique_id"] == series]
        assert list(rows["date"]) == list(own["date"])
        np.testing.assert_allclose(rows["NaiveForecaster"], own[series])
        np.testing.assert_allclose(rows["NaiveForecaster-hi-80"], own[f"{series}_hi80"])
    cv = comparison.cross_validation(wide_df, n_windows=2)
    assert list(cv.columns) == ["unique_id", "date", "cutoff", "NaiveForecaster", "SeasonalNaiveForecaster", "y"]
    truth = wide_df.melt(id_vars="date", var_name="unique_id", value_name="value")
    merged = cv.merge(truth, on=["unique_id", "date"], how="left", validate="many_to_one")
    np.testing.assert_allclose(merged["y"], merged["value"])          # y is the target column's value there


def test_covariates_of_a_wide_frame_are_not_series_and_a_datetime_index_becomes_the_time_column(wide_df):
    frame = wide_df.set_index("date")
    models = [NaiveForecaster(horizon=H, target=["series_0", "series_1"]),
              LinearForecaster(horizon=H, lookback=48, target=["series_0", "series_1"])]
    out = ModelComparison(models).fit(frame).predict()
    assert list(out.columns) == ["unique_id", "date", "NaiveForecaster", "LinearForecaster"]
    assert sorted(set(out["unique_id"])) == ["series_0", "series_1"]


def test_a_long_frame_keeps_its_column_names_and_polars_stays_polars(long_df):
    frame = long_df.rename(columns={"unique_id": "store", "ds": "week", "y": "sales"})
    models = {"last": NaiveForecaster(horizon=H, id_col="store", time_col="week", target="sales"),
              "linear": LinearForecaster(horizon=H, lookback=48, id_col="store", time_col="week", target="sales")}
    comparison = ModelComparison(models)
    out = comparison.fit(pl.from_pandas(frame)).predict()
    assert isinstance(out, pl.DataFrame)
    assert out.columns == ["store", "week", "last", "linear"]
    cv = comparison.cross_validation(pl.from_pandas(frame), n_windows=1)
    assert isinstance(cv, pl.DataFrame) and cv.columns == ["store", "week", "cutoff", "last", "linear", "sales"]


def test_names_that_cannot_be_distinct_columns_are_refused(long_df):
    with pytest.raises(ValueError, match="more than one NaiveForecaster.*dict"):
        ModelComparison([NaiveForecaster(horizon=H), NaiveForecaster(horizon=H, lookback=2)]).fit(long_df)
    both = ModelComparison({"a": NaiveForecaster(horizon=H), "b": NaiveForecaster(horizon=H, lookback=2)})
    assert list(both.fit(long_df).predict().columns) == ["unique_id", "ds", "a", "b"]
    with pytest.raises(ValueError, match="interval column"):
        ModelComparison({"m-lo-80": NaiveForecaster(horizon=H)}).fit(long_df)
    with pytest.raises(ValueError, match=r"repeat the key columns"):
        ModelComparison({"y": NaiveForecaster(horizon=H)}).fit(long_df)
    with pytest.raises(TypeError, match="non-empty strings"):
        ModelComparison({1: NaiveForecaster(horizon=H)}).fit(long_df)
    with pytest.raises(TypeError, match="not a tsformers forecaster"):
        ModelComparison([NaiveForecaster(horizon=H), object()]).fit(long_df)
    with pytest.raises(ValueError, match="models is empty"):
        ModelComparison([]).fit(long_df)


def test_models_that_would_not_line_up_are_refused_before_training(long_df, wide_df):
    with pytest.raises(ValueError, match="different horizons"):
        ModelComparison([NaiveForecaster(horizon=12), LinearForecaster(horizon=24)]).fit(long_df)
    two_targets = long_df.assign(z=long_df["y"] * 2)
    with pytest.raises(ValueError, match="2 target columns.*target='y'"):
        ModelComparison(baselines()[:1]).fit(two_targets)
    with pytest.raises(ValueError, match="read the frame differently"):
        ModelComparison([NaiveForecaster(horizon=H, target="y"),
                         LinearForecaster(horizon=H, lookback=48, target="z")]).fit(two_targets)
    one_target = ModelComparison([NaiveForecaster(horizon=H, target="y")]).fit(two_targets).predict()
    assert list(one_target.columns) == ["unique_id", "ds", "NaiveForecaster"]


def test_it_is_a_scikit_learn_estimator(long_df):
    comparison = ModelComparison({"naive": NaiveForecaster(horizon=H)})
    copy = clone(comparison)
    assert copy.get_params()["models"]["naive"].horizon == H and copy.models["naive"] is not comparison.models["naive"]
    assert "models" in repr(comparison)
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        comparison.predict()
