"""A saved model read without its estimator class (``load_torch``, the torch engine of ``tsformers forecast``):
the same network and the same forecast as ``BaseForecaster.load``, the same checks, and no scikit-learn."""
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tsformers import (AtlasForecaster, BaseForecaster, GateformerForecaster, GTrXLForecaster, LinearForecaster,
                       LMUFormerForecaster, ModelFileError, NaiveForecaster, PVClientForecaster,
                       SeasonalNaiveForecaster)
from tsformers.datasets import make_demo
from tsformers.estimators.saved import StreamingSavedModel, WindowedSavedModel, load_torch

ROOT = Path(__file__).resolve().parents[1]
FIT = {"horizon": 6, "lookback": 24, "max_epochs": 1, "random_state": 0}


def long_frame(n_series: int = 3, n_steps: int = 160) -> pd.DataFrame:
    df = make_demo(n_series=n_series, n_steps=n_steps, layout="long", seed=4)
    return df.assign(region=df["unique_id"].map({f"series_{i}": "north" if i % 2 else "south"
                                                for i in range(n_series)}),
                     temp=np.sin(np.arange(len(df)) / 7.0))


CASES = {
    "gateformer": lambda: GateformerForecaster(**FIT, **GateformerForecaster.get_test_params()),
    "gateformer_static_quantiles": lambda: GateformerForecaster(
        **FIT, **GateformerForecaster.get_test_params(), static=["region"], quantiles=[0.1, 0.5, 0.9]),
    "pvclient_static_future": lambda: PVClientForecaster(
        **FIT, **PVClientForecaster.get_test_params(), static=["region"], future_covariates=["temp"], clip=False),
    "lmuformer_future": lambda: LMUFormerForecaster(**FIT, **LMUFormerForecaster.get_test_params(),
                                                    future_covariates=["temp"]),
    "gtrxl_static": lambda: GTrXLForecaster(**FIT, **GTrXLForecaster.get_test_params(), static=["region"]),
    "atlas_quantiles": lambda: AtlasForecaster(**FIT, **AtlasForecaster.get_test_params(), quantiles=[0.2, 0.8]),
    "naive": lambda: NaiveForecaster(horizon=6),
    "seasonal_naive": lambda: SeasonalNaiveForecaster(horizon=6, lookback=24, season_length=12),
    "linear": lambda: LinearForecaster(horizon=6, lookback=24),
}


def predict_args(model, df: pd.DataFrame) -> dict:
    """The history (each series cut 6 steps before its end, one series shorter: a ragged panel for the
    streaming models) and, with future covariates, their values over the horizon."""
    from_end = df.groupby("unique_id").cumcount(ascending=False)
    cut = df[from_end >= 6]
    cut = cut[~((cut["unique_id"] == "series_0") & (cut.index < cut.index.min() + 20))]
    args = {"df": cut}
    if model.schema_.future_covariates:
        args["future_df"] = df[from_end < 6][["unique_id", "ds", "temp"]]
    return args


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_saved_model_read_without_its_estimator_forecasts_as_the_estimator(case, tmp_path):
    est = CASES[case]().set_params(target="y")
    uses = any(est.get_params().get(k) for k in ("static", "future_covariates"))
    df = long_frame()
    df = df if uses else df.drop(columns=["region", "temp"])     # the extra columns only where the model reads them
    model = est.fit(df)
    path = model.save(tmp_path / "model")
    saved = load_torch(path)
    streaming = type(model).__name__ in ("LMUFormerForecaster", "GTrXLForecaster", "AtlasForecaster")
    assert type(saved) is (StreamingSavedModel if streaming else WindowedSavedModel)
    loaded = BaseForecaster.load(path)
    assert saved.network_.state_dict().keys() == loaded.network_.state_dict().keys()
    args = predict_args(model, df)
    pd.testing.assert_frame_equal(saved.predict(**args), loaded.predict(**args))
    pd.testing.assert_frame_equal(saved.predict(**args), model.predict(**args), atol=1e-5)


def test_a_compressed_model_is_rebuilt_with_its_edits(tmp_path):
    from tsformers.compress.baselines import quantize_dynamic

    df = make_demo(n_series=2, n_steps=160)
    # the network alone, so the forecast depends on the edited network (behind a linear base whose share is 0
    # it would not, and the edits would go untested); one network, which compression edits
    model = GateformerForecaster(**FIT, **{**GateformerForecaster.get_test_params(), "linear_base": False,
                                           "ensemble_size": 1}).fit(df)
    small = quantize_dynamic(model)
    path = small.save(tmp_path / "int8")
    assert json.loads((path / "config.json").read_text())["network_edits"]
    pd.testing.assert_frame_equal(load_torch(path).predict(df), BaseForecaster.load(path).predict(df))


def test_it_forecasts_from_a_history_only_and_says_what_to_load_for_more(tmp_path):
    df = make_demo(n_series=1, n_steps=120)
    path = NaiveForecaster(horizon=4).fit(df).save(tmp_path / "m")
    saved = load_torch(path)
    with pytest.raises(ValueError, match=r"forecasts from a history: pass it.*NaiveForecaster.load\(path\)"):
        saved.predict()
    with pytest.raises(ValueError, match=r"conformal intervals.*NaiveForecaster.load\(path\)"):
        saved.predict(df, level=[80])


def test_damage_and_other_estimators_are_refused_as_load_refuses_them(tmp_path):
    from tsformers import ETSForecaster

    df = make_demo(n_series=1, n_steps=120)
    path = LinearForecaster(horizon=4, lookback=24).fit(df).save(tmp_path / "linear")
    config = json.loads((path / "config.json").read_text())
    config["params"]["lookback"] = 48                               # a network its weights do not fit
    (tmp_path / "bad").mkdir()
    for file in path.iterdir():
        (tmp_path / "bad" / file.name).write_bytes(file.read_bytes())
    (tmp_path / "bad" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFileError):
        load_torch(tmp_path / "bad")
    with pytest.raises(ModelFileError):
        BaseForecaster.load(tmp_path / "bad")
    ets = ETSForecaster(horizon=4, lookback=48).fit(df).save(tmp_path / "ets")
    with pytest.raises(ValueError, match=r"ETSForecaster, which is read with its estimator class"):
        load_torch(ets)


def test_the_builders_are_the_estimators_and_no_parameter_hides_an_attribute():
    """Each estimator the reader knows: its streaming kind and static tag as the table says, and none of its
    parameters is a name the reader uses for something else (it sets the parameters as attributes)."""
    from tsformers.estimators.forecasting import FORECAST_SETTINGS
    from tsformers.estimators.networks import NETWORKS
    from tsformers.estimators.registry import estimator_class
    from tsformers.estimators.streaming import StreamingForecaster

    for name, network in NETWORKS.items():
        cls = estimator_class(name)
        assert network.streaming == issubclass(cls, StreamingForecaster), name
        assert network.reads_static == cls._tags["static"], name
        reader = StreamingSavedModel if network.streaming else WindowedSavedModel
        for parameter in inspect.signature(cls).parameters:
            if parameter not in (*FORECAST_SETTINGS, "horizon", "lookback"):
                assert not hasattr(reader, parameter), (name, parameter)


def test_the_torch_engine_of_forecast_imports_no_scikit_learn_lightning_or_mlflow(tmp_path):
    df = make_demo(n_series=2, n_steps=160)
    path = GTrXLForecaster(**FIT, **GTrXLForecaster.get_test_params()).fit(df).save(tmp_path / "model")
    df.to_csv(tmp_path / "history.csv", index=False)
    code = (f"import sys\nfrom tsformers.cli import main\n"
            f"status = main(['forecast', '--model', {str(path)!r}, '--input', {str(tmp_path / 'history.csv')!r}, "
            f"'--output', {str(tmp_path / 'f.csv')!r}])\n"
            f"print('HEAVY=' + ','.join(sorted({{m.split('.')[0] for m in sys.modules}} & "
            f"{{'sklearn', 'lightning', 'pytorch_lightning', 'mlflow', 'torch'}})))\n"
            f"raise SystemExit(status)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert "HEAVY=torch\n" in done.stdout
    expected = BaseForecaster.load(path).predict(df)
    written = pd.read_csv(tmp_path / "f.csv", parse_dates=["date"])
    np.testing.assert_allclose(written.drop(columns="date").to_numpy(), expected.drop(columns="date").to_numpy(),
                               rtol=1e-6, atol=1e-6)
