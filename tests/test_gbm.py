"""GBMForecaster and its tree network against scikit-learn's HistGradientBoostingRegressor.

The shared estimator contract (tests/test_estimators_contract.py) covers what it shares with every
forecaster; here: the torch walk of the trees equals ``HistGradientBoostingRegressor.predict`` (which
pins the private scikit-learn arrays it copies), the rows it is fitted on, early stopping on the
validation windows, what it learns, level shifts, saving, ONNX and the command line.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.ensemble import HistGradientBoostingRegressor

from tsformers import BaseForecaster, GBMForecaster, NaiveForecaster
from tsformers.cli import main
from tsformers.data.windows import validation_steps
from tsformers.estimators.registry import ESTIMATOR_NAMES, estimator_class
from tsformers.models.gbm import GBMWindow, TreeEnsemble

COLUMNS = ["load", "temp"]


def wide(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """Two hourly series, a daily cycle around different levels, with noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return pd.DataFrame({
        "date": pd.date_range("2024-01-01", periods=n, freq="h"),
        "load": 50 + 5 * np.sin(2 * np.pi * t / 24) + rng.standard_normal(n),
        "temp": 3 + np.cos(2 * np.pi * t / 24) + 0.3 * rng.standard_normal(n) + 0.01 * t,
    })


def forecast_values(forecast: pd.DataFrame) -> np.ndarray:
    return forecast[COLUMNS].to_numpy(dtype=float)


def small(**params) -> GBMForecaster:
    return GBMForecaster(**{"horizon": 8, "lookback": 36, "max_iter": 40, **params})


# -- the trees in torch ---------------------------------------------------------------------------------

@pytest.mark.parametrize("max_leaf_nodes, max_depth", [(2, None), (7, None), (31, None), (63, 4)])
def test_the_torch_walk_of_the_trees_is_the_regressors_predict(max_leaf_nodes, max_depth):
    rng = np.random.default_rng(max_leaf_nodes)
    n_shared, n_per_column, n_columns = 5, 2, 4
    shared, per_column = rng.standard_normal((1500, n_shared)), rng.standard_normal((n_columns, n_per_column))

    def joined(rows):          # every row with every column's features, as TreeEnsemble reads them
        return np.hstack([np.repeat(rows, n_columns, axis=0), np.tile(per_column, (len(rows), 1))])

    features = joined(shared)
    target = np.sin(2 * features[:, 0]) * features[:, 5] + features[:, 6] ** 2 + (features[:, 1] > 0.3) \
        + 0.1 * rng.standard_normal(len(features))
    regressor = HistGradientBoostingRegressor(max_iter=25, max_leaf_nodes=max_leaf_nodes, max_depth=max_depth,
                                              early_stopping=False).fit(features, target)
    trees = TreeEnsemble(max_trees=30, max_nodes=2 * max_leaf_nodes - 1)        # 5 unused trees of padding
    trees.set_trees([predictors[0].nodes for predictors in regressor._predictors],
                    regressor._baseline_prediction.item())
    assert trees.n_trees_ == 25 and trees.depth_ == max(p[0].get_max_depth() for p in regressor._predictors) > 0
    new = rng.standard_normal((700, n_shared)) * 2                              # also beyond the fitted range
    new[:50] = shared[:50]                                                      # and rows on the fitted values
    got = trees(torch.from_numpy(new), torch.from_numpy(per_column)).numpy()    # (700, 4)
    np.testing.assert_allclose(got.reshape(-1), regressor.predict(joined(new)), rtol=0, atol=1e-12)


def test_too_many_trees_or_nodes_for_the_buffers_are_refused():
    features = np.random.default_rng(0).standard_normal((300, 3))
    regressor = HistGradientBoostingRegressor(max_iter=5, max_leaf_nodes=8, early_stopping=False)
    regressor.fit(features, features[:, 0] ** 2)
    nodes = [predictors[0].nodes for predictors in regressor._predictors]
    with pytest.raises(ValueError, match="5 trees of up to 15 nodes do not fit buffers of 4 trees of 15 nodes"):
        TreeEnsemble(max_trees=4, max_nodes=15).set_trees(nodes, 0.0)
    with pytest.raises(ValueError, match="buffers of 5 trees of 7 nodes"):
        TreeEnsemble(max_trees=5, max_nodes=7).set_trees(nodes, 0.0)


def test_the_fitted_network_forecasts_what_the_regressor_predicts_on_the_same_rows(monkeypatch):
    kept = {}
    fit = HistGradientBoostingRegressor.fit

    def keep(self, *args, **kwargs):
        kept["regressor"] = self
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(HistGradientBoostingRegressor, "fit", keep)
    est = small().fit(wide())
    windows = torch.from_numpy(est.prepare(wide(seed=5)).windows_before(np.zeros(20, dtype=int),
                                                                        np.arange(100, 300, 10)).astype(np.float32))
    got = est.network_(windows).double().numpy()                               # (20, H, 2)
    lags = windows.double()[:, :-1] - windows.double()[:, -1:]                 # (20, L - 1, 2)
    rows = [np.append(lags[b, :, v].numpy(), h + 1) for b in range(20) for h in range(8) for v in range(2)]
    expected = kept["regressor"].predict(np.array(rows)).reshape(20, 8, 2) + windows.double().numpy()[:, -1:]
    np.testing.assert_allclose(got, expected, rtol=1e-6)                        # float32 output
    assert est.n_trees_ == kept["regressor"].n_iter_


# -- the rows, early stopping --------------------------------------------------------------------------------

def test_the_rows_are_each_window_variable_and_step_relative_to_the_last_value(monkeypatch):
    seen = {}
    fit = HistGradientBoostingRegressor.fit

    def keep(self, X, y, **kwargs):
        seen.update(X=X, y=y, **kwargs, estimator=self)
        return fit(self, X, y, **kwargs)

    monkeypatch.setattr(HistGradientBoostingRegressor, "fit", keep)
    df, lookback, horizon = wide(), 36, 8
    est = small(lookback=lookback, horizon=horizon).fit(df)
    scaled = est.scaler_.transform(df[COLUMNS].to_numpy()[None])[0]            # (n, 2)
    cut = len(df) - validation_steps(len(df), lookback, horizon, 0.1)
    expected = []
    for start in range(cut - lookback - horizon + 1):                         # every training window ...
        window = scaled[start:start + lookback]
        for v in range(2):                                                     # ... variable ...
            for h in range(horizon):                                           # ... and step: all under the cap
                expected.append(np.append(window[:-1, v] - window[-1, v],
                                          [h + 1, scaled[start + lookback + h, v] - window[-1, v]]))
    expected = np.array(expected)
    assert seen["X"].shape == (len(expected), lookback)
    np.testing.assert_allclose(seen["X"], expected[:, :-1], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(seen["y"], expected[:, -1], rtol=1e-6, atol=1e-6)
    # the validation rows: the windows after the training part in time, with early stopping on them
    n_val_windows = len(df) - (cut - lookback) - lookback - horizon + 1
    assert seen["X_val"].shape == (n_val_windows * 2 * horizon, lookback)
    assert seen["estimator"].early_stopping is True
    assert est.feature_names_ == [f"lag_{j}" for j in range(lookback - 1, 0, -1)] + ["step"]
    assert 0 < est.validation_loss_ < np.var(seen["y_val"])


def test_rows_beyond_max_samples_are_a_random_draw(monkeypatch):
    sizes = []
    fit = HistGradientBoostingRegressor.fit
    monkeypatch.setattr(HistGradientBoostingRegressor, "fit",
                        lambda self, X, y, **kw: sizes.append((len(X), len(kw["X_val"]))) or fit(self, X, y, **kw))
    a = small(max_samples=1000).fit(wide())
    b = small(max_samples=1000, random_state=1).fit(wide())
    assert sizes == [(1000, 250), (1000, 250)]
    assert not np.array_equal(forecast_values(a.predict()), forecast_values(b.predict()))


def test_early_stopping_stops_on_the_validation_windows_and_without_them_all_rounds_run():
    noise = wide().assign(load=np.random.default_rng(1).standard_normal(400),
                          temp=np.random.default_rng(2).standard_normal(400))
    stopped = small(max_iter=200, learning_rate=0.3).fit(noise)                 # nothing to learn: stops early
    assert stopped.n_trees_ < 200
    everything = small(max_iter=30, val_size=0).fit(noise)
    assert everything.n_trees_ == 30 and np.isnan(everything.validation_loss_)


# -- what it learns ------------------------------------------------------------------------------------

def test_learns_a_season_the_last_value_misses():
    df = wide(1200)
    train, test = df.iloc[:-24], df.iloc[-24:]
    est = GBMForecaster(horizon=24, lookback=72, max_iter=100).fit(train)
    truth = test[COLUMNS].to_numpy()
    naive = np.repeat(train[COLUMNS].to_numpy()[-1:], 24, axis=0)
    assert np.mean((forecast_values(est.predict()) - truth) ** 2) < 0.3 * np.mean((naive - truth) ** 2)
    scores = est.backtest(df.iloc[-300:], n_windows=8, step=24)
    naive_scores = NaiveForecaster(horizon=24).fit(train).backtest(df.iloc[-300:], n_windows=8, step=24)
    assert np.mean((scores["forecast"] - scores["actual"]) ** 2) < \
        0.3 * np.mean((naive_scores["forecast"] - naive_scores["actual"]) ** 2)


def test_a_level_never_seen_in_training_moves_the_forecast_by_the_shift():
    df = wide()
    est = small().fit(df)
    shifted = df.assign(load=df["load"] + 1000.0, temp=df["temp"] - 250.0)     # far outside the training values
    moved = forecast_values(est.predict(shifted)) - forecast_values(est.predict(df))
    np.testing.assert_allclose(moved, np.broadcast_to([1000.0, -250.0], moved.shape), rtol=1e-5)


# -- saving, ONNX, the command line, refusals ---------------------------------------------------------------

def test_save_load_gives_identical_forecasts_and_attributes(tmp_path):
    df = wide()
    est = small().fit(df)
    forecast = est.predict(level=[80, 95])
    path = est.save(tmp_path / "model")
    loaded = BaseForecaster.load(path)
    assert type(loaded) is GBMForecaster and loaded.get_params() == est.get_params()
    pd.testing.assert_frame_equal(loaded.predict(level=[80, 95]), forecast)
    pd.testing.assert_frame_equal(loaded.predict(df.iloc[:200]), est.predict(df.iloc[:200]))
    assert (loaded.n_trees_, loaded.validation_loss_, loaded.feature_names_) == \
        (est.n_trees_, est.validation_loss_, est.feature_names_)
    assert loaded.network_.trees.depth_ == est.network_.trees.depth_ > 0      # read back from the weights
    assert torch.load(path / "weights.pt", weights_only=True)["network"]["trees.n_trees"] == est.n_trees_


def test_onnx_export_forecasts_what_the_torch_network_does(tmp_path):
    pytest.importorskip("onnxruntime", reason="ONNX export needs tsformers[onnx]")
    pytest.importorskip("onnxscript", reason="ONNX export needs tsformers[onnx]")
    df = wide()
    est = small(max_iter=20).fit(df)                                            # 3 groups of trees, the last short
    assert est.n_trees_ == 20
    path = est.save(tmp_path / "model")
    est.export_onnx(path)
    onnx = BaseForecaster.load(path, engine="onnx")
    for frame in (df, df.iloc[:150]):
        np.testing.assert_allclose(forecast_values(onnx.predict(frame)), forecast_values(est.predict(frame)),
                                   rtol=1e-6, atol=1e-5)


def test_train_and_forecast_from_the_command_line(tmp_path, capsys):
    assert "GBMForecaster" in ESTIMATOR_NAMES and estimator_class("gbm") is GBMForecaster
    df = wide()
    df.to_csv(tmp_path / "train.csv", index=False)
    assert main(["train", "--data", str(tmp_path / "train.csv"), "--estimator", "GBM", "--param", "horizon=6",
                 "--param", "lookback=24", "--param", "max_iter=10", "--model-dir", str(tmp_path / "model")]) == 0
    assert json.loads(capsys.readouterr().out)["estimator"] == "GBMForecaster"
    assert main(["forecast", "--model", str(tmp_path / "model"), "--input", str(tmp_path / "train.csv"),
                 "--output", str(tmp_path / "f.csv")]) == 0
    written = pd.read_csv(tmp_path / "f.csv", parse_dates=["date"])
    pd.testing.assert_frame_equal(written, GBMForecaster.load(tmp_path / "model").predict(df), check_dtype=False)


@pytest.mark.parametrize("param, value", [("lookback", 1), ("max_leaf_nodes", 1), ("max_iter", 0),
                                          ("l2_regularization", -1.0), ("max_samples", 0)])
def test_bad_settings_are_refused_naming_the_parameter(param, value):
    with pytest.raises(ValueError, match=f"'{param}' parameter of GBMForecaster must be"):
        small(**{param: value}).fit(wide())


def test_targets_only_and_no_masks():
    with pytest.raises(TypeError, match="covariates"):
        GBMForecaster(horizon=6, covariates=["temp"])
    with pytest.raises(ValueError, match="'missing' parameter"):
        small(missing="mask").fit(wide())


def test_the_network_refuses_a_window_without_lags():
    with pytest.raises(ValueError, match="lookback must be at least 2"):
        GBMWindow(horizon=4, lookback=1, max_trees=3, max_leaf_nodes=4)

