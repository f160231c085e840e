"""GateformerForecaster end to end: learning, data layouts, the model file, model selection.

The contract every exported forecaster meets (shapes and timestamps, get_params/clone,
save/load, determinism, not-fitted, score) is in tests/test_estimators_contract.py.
"""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import polars as pl
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV

from tsformers import GateformerForecaster, RollingOriginSplit
from tsformers.backbone import linear_base_of
from tsformers.data.windows import WindowDataset
from tsformers.datasets import make_demo

SMALL = dict(horizon=24, lookback=96, d_model=16, d_ff=32, n_heads=2, batch_size=32, learning_rate=2e-3,
             random_state=0)


@pytest.fixture(scope="module")
def demo():
    return make_demo(n_series=3, n_steps=24 * 7 * 5, seed=0)


@pytest.fixture(scope="module")
def fitted(demo):
    return GateformerForecaster(**SMALL, max_epochs=2).fit(demo)


def test_beats_the_naive_forecast_on_a_noisy_multi_seasonal_panel():
    df = make_demo(n_series=4, n_steps=24 * 7 * 8, seed=3)
    train, test = df.iloc[:-24], df.iloc[-24:]
    f = GateformerForecaster(**SMALL, max_epochs=6).fit(train)
    cols = [c for c in df.columns if c != "date"]
    pred = f.predict()[cols].to_numpy()
    naive = np.repeat(train[cols].to_numpy()[-1:], 24, axis=0)
    truth = test[cols].to_numpy()
    model_mse, naive_mse = np.mean((pred - truth) ** 2), np.mean((naive - truth) ** 2)
    assert model_mse < 0.4 * naive_mse, (model_mse, naive_mse)


def test_polars_and_pandas_give_the_same_forecast(demo):
    a = GateformerForecaster(**SMALL, max_epochs=1).fit(demo).predict()
    b = GateformerForecaster(**SMALL, max_epochs=1).fit(pl.from_pandas(demo)).predict()
    assert isinstance(b, pl.DataFrame)
    np.testing.assert_array_equal(a.drop(columns="date").to_numpy(), b.drop("date").to_numpy())


def test_long_layout_in_long_layout_out():
    df = make_demo(n_series=2, n_steps=400, layout="long")
    out = GateformerForecaster(**SMALL, max_epochs=1).fit(df).predict()
    assert list(out.columns) == ["unique_id", "ds", "y"] and len(out) == 48
    assert out.groupby("unique_id")["ds"].min().eq(df["ds"].max() + pd.Timedelta(hours=1)).all()


def test_unseen_series_in_predict_is_scaled_by_its_own_history():
    df = make_demo(n_series=2, n_steps=400, layout="long")
    f = GateformerForecaster(**SMALL, max_epochs=1).fit(df)
    new = df[df.unique_id == "series_0"].assign(unique_id="new", y=lambda d: d.y + 1000.0)
    out = f.predict(new)
    assert out["y"].between(900, 1100).all()


def test_a_saved_model_is_a_config_and_tensors_only(fitted, tmp_path):
    # identical forecasts after save/load, for every estimator: tests/test_estimators_contract.py
    path = fitted.save(tmp_path / "model")
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "manifest.json", "weights.pt"]
    config = json.loads((path / "config.json").read_text())
    assert config["estimator"] == "GateformerForecaster" and config["params"]["d_model"] == 16
    torch.load(path / "weights.pt", weights_only=True)  # tensors only


def test_save_replaces_an_old_model_and_refuses_other_directories(fitted, tmp_path):
    fitted.save(tmp_path / "m")
    fitted.save(tmp_path / "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"], "no staging directories left behind"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a tsformers model"):
        fitted.save(tmp_path / "other")
    assert (tmp_path / "other" / "notes.txt").read_text() == "keep me"
    with pytest.raises(FileNotFoundError, match="config.json"):
        GateformerForecaster.load(tmp_path / "other")


def test_bad_predict_data_names_the_problem(fitted, demo):
    with pytest.raises(ValueError, match="series_1"):
        fitted.predict(demo.drop(columns="series_1"))
    with pytest.raises(ValueError, match="lookback"):
        fitted.predict(demo.iloc[:95])
    with pytest.raises(ValueError, match="lookback \\+ horizon"):
        fitted.score(demo.iloc[:119])


def test_too_short_to_fit_names_the_lengths(demo):
    with pytest.raises(ValueError, match="119 rows, but lookback \\+ horizon = 120"):
        GateformerForecaster(**SMALL).fit(demo.iloc[:119])


def test_invalid_parameters_are_caught_in_fit_not_init(demo):
    f = GateformerForecaster(loss="rmsle", horizon=0)
    with pytest.raises(ValueError, match="horizon|loss"):
        f.fit(demo)
    with pytest.raises(ValueError, match="multiple of n_heads"):
        GateformerForecaster(**{**SMALL, "d_model": 10, "n_heads": 4}).fit(demo)


def test_early_stopping_restores_the_best_epoch(demo):
    f = GateformerForecaster(**{**SMALL, "learning_rate": 0.05}, lr_schedule="constant", max_epochs=6,
                             patience=2, ensemble_size=1).fit(demo)   # one network's log and epochs
    val_losses = [row["val_loss"] for row in f.training_log_]
    # recompute the validation loss of the weights the estimator kept
    # the scaled values less their daily cycle (the default cycle="auto"), as the network reads them
    scaled = torch.from_numpy(f.prepare(make_demo(n_series=3, n_steps=840, seed=0)).scaled.astype(np.float32))
    val_steps = round(0.1 * 840)
    x, y = WindowDataset(scaled[:, -val_steps - 96:], 96, 24, 3).__getitems__(range(val_steps - 24 + 1))
    base = linear_base_of(f.network_)            # the default linear base: a share of the correction is kept
    chosen = float(base.share)
    with torch.inference_mode():
        kept = torch.mean((f.network_(x) - y) ** 2).item()
        base.keep_share(1.0)                     # all of it: the best epoch's network, as validation scored it
        best = torch.mean((f.network_(x) - y) ** 2).item()
    base.keep_share(chosen)
    assert best == pytest.approx(min(val_losses), rel=1e-4)
    assert kept <= best * (1 + 1e-5), "the share kept scores no worse than the best epoch on validation"


@pytest.mark.filterwarnings("ignore:.*could not find the monitored key")
def test_trainer_kwargs_reach_lightning(demo):
    f = GateformerForecaster(**SMALL, max_epochs=5, trainer_kwargs={"max_steps": 3}).fit(demo)
    # max_steps=3 ends every member's Trainer in its first epoch (the default fits a seed ensemble of two)
    assert [(row["member"], row["epoch"]) for row in f.training_log_] == [(0, 0), (1, 0)]


def test_rolling_origin_test_folds_carry_their_lookback():
    df = make_demo(n_steps=500)
    folds = list(RollingOriginSplit(n_splits=3, horizon=24, lookback=96).split(df))
    for k, (train, test) in enumerate(folds):
        origin = 500 - 24 * (3 - k)
        assert train.tolist() == list(range(origin))
        assert test.tolist() == list(range(origin - 96, origin + 24))
    long = make_demo(n_steps=500, layout="long")
    train, test = list(RollingOriginSplit(n_splits=1, horizon=24, lookback=96).split(long))[0]
    assert len(train) == 3 * 476 and len(test) == 3 * 120
    with pytest.raises(ValueError, match="too few"):
        list(RollingOriginSplit(n_splits=20, horizon=24, lookback=96).split(df))


def test_grid_search_with_rolling_origin_picks_the_setting_that_learns():
    df = make_demo(n_series=2, n_steps=700, seed=1)
    cv = RollingOriginSplit(n_splits=2, horizon=24, lookback=96, step=48)
    search = GridSearchCV(GateformerForecaster(**SMALL, max_epochs=3),
                          {"learning_rate": [1e-7, 5e-3]}, cv=cv, error_score="raise")
    search.fit(df)
    assert search.best_params_ == {"learning_rate": 5e-3}
    assert search.best_estimator_.predict().shape == (24, 3)


@pytest.mark.parametrize("code", [
    "import tsformers",
    "import tsformers, sys; m = tsformers.GateformerForecaster.load(sys.argv[1]); m.predict()",
])
def test_lightning_stays_out_of_import_and_predict(code, fitted, tmp_path):
    fitted.save(tmp_path / "m")
    probe = code + "; import sys; assert 'lightning' not in sys.modules, 'lightning was imported'"
    subprocess.run([sys.executable, "-c", probe, str(tmp_path / "m")], check=True)


def test_new_network_is_the_untrained_network_fit_builds_with_the_given_parameters_replaced():
    df = make_demo(n_steps=120)
    f = GateformerForecaster(horizon=6, lookback=24, max_epochs=0, d_model=16, d_ff=32, n_heads=2).fit(df)
    same = f.new_network().state_dict()
    assert same.keys() == f.network_.state_dict().keys()
    assert all(torch.equal(same[k], v) for k, v in f.network_.state_dict().items())   # seeded as fit seeds it
    smaller = f.new_network(d_model=8)
    assert sum(p.numel() for p in smaller.parameters()) < sum(p.numel() for p in f.network_.parameters())
    assert f.d_model == 16, "the estimator itself keeps its parameters"
    with pytest.raises(NotFittedError):
        GateformerForecaster().new_network()
