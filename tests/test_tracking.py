"""MLflow tracking: autolog, the pyfunc model (from code, no pickle), a real tracking server, `mlflow models serve`."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

mlflow = pytest.importorskip("mlflow")

import tsformers.tracking as tsf_tracking  # noqa: E402
from tsformers import GateformerForecaster  # noqa: E402
from tsformers.batch.frames import example_from_frame, forecast_frame  # noqa: E402
from tsformers.cli import main  # noqa: E402
from tsformers.datasets import make_demo  # noqa: E402
from tsformers.estimators import base  # noqa: E402

TINY = dict(horizon=12, lookback=48, d_model=16, d_ff=16, n_heads=2, batch_size=64)
MLFLOW_BIN = Path(sys.executable).with_name("mlflow")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A SQLite tracking store for this module; every test logs into its own experiment under it."""
    root = tmp_path_factory.mktemp("mlflow")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    yield root
    tsf_tracking.autolog(disable=True)
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(previous)


@pytest.fixture
def experiment(store, request):
    """A fresh experiment whose artifacts stay under the store's folder; autolog is off again afterwards."""
    name = request.node.name
    mlflow.set_experiment(experiment_id=mlflow.create_experiment(name, (store / name).as_uri()))
    yield mlflow.get_experiment_by_name(name)
    tsf_tracking.autolog(disable=True)
    while mlflow.active_run():
        mlflow.end_run()


@pytest.fixture(scope="module")
def long_df():
    return make_demo(n_series=3, n_steps=240, layout="long", seed=2)


@pytest.fixture(scope="module")
def fitted(long_df):
    return GateformerForecaster(**TINY, max_epochs=0).fit(long_df)


def _runs(experiment):
    return mlflow.search_runs(experiment_ids=[experiment.experiment_id], output_format="list")


def _packed(df: pd.DataFrame) -> pd.DataFrame:
    groups = df.groupby("unique_id", sort=False)
    return pd.DataFrame({"unique_id": list(groups.groups), "ds": [g.ds.to_numpy() for _, g in groups],
                         "y": [g.y.to_numpy() for _, g in groups]})


def test_autolog_logs_params_schema_losses_metrics_model_and_plot(experiment, long_df, tmp_path):
    tsf_tracking.autolog()
    # one network: a seed ensemble logs each member's epochs in turn (training_log_ names the member)
    f = GateformerForecaster(**TINY, max_epochs=3, patience=None, ensemble_size=1).fit(long_df)
    [run] = _runs(experiment)
    assert run.info.status == "FINISHED" and mlflow.active_run() is None
    assert run.data.tags["estimator"] == "GateformerForecaster"
    params = run.data.params
    assert {k: params[k] for k in ("horizon", "lookback", "d_model", "max_epochs", "loss")} == \
        {"horizon": "12", "lookback": "48", "d_model": "16", "max_epochs": "3", "loss": "mse"}
    assert {k: params[f"data_{k}"] for k in ("layout", "columns", "frequency", "n_series", "n_rows", "targets")} == \
        {"layout": "long", "columns": "unique_id,ds,y", "frequency": "h", "n_series": "3", "n_rows": "720",
         "targets": "y"}

    client = mlflow.MlflowClient()
    for key in ("train_loss", "val_loss"):  # one point per epoch, through Lightning's MLflow logger
        history = [m.value for m in client.get_metric_history(run.info.run_id, key)]
        np.testing.assert_allclose(history, [row[key] for row in f.training_log_], rtol=1e-6)
        assert len(history) == 3
    metrics = run.data.metrics
    assert metrics["best_val_loss"] == pytest.approx(min(r["val_loss"] for r in f.training_log_), rel=1e-6)
    assert metrics["epochs_trained"] == 3
    # the default linear base: the share of the correction the forecast keeps, chosen on validation
    assert metrics["correction_share"] == f.correction_share_ and metrics["network_used"] == f.network_used_
    groups = long_df.groupby("unique_id", sort=False)  # the last horizon of each series, from the rows before
    error = f.predict(groups.head(-12))["y"].to_numpy() - groups.tail(12)["y"].to_numpy()
    assert metrics["val_mse"] == pytest.approx(np.mean(error ** 2), rel=1e-9)
    assert metrics["val_mae"] == pytest.approx(np.mean(np.abs(error)), rel=1e-9)

    files = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, dst_path=str(tmp_path))
    assert (Path(files) / "forecast.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((Path(files) / "data_schema.json").read_text()) == f.schema_.to_dict()
    [model] = mlflow.search_logged_models(experiment_ids=[experiment.experiment_id], output_format="list")
    assert model.source_run_id == run.info.run_id
    pd.testing.assert_frame_equal(mlflow.pyfunc.load_model(model.model_uri).predict(long_df), f.predict(long_df))


def test_autolog_says_whether_a_linear_base_fit_kept_its_network(experiment, long_df):
    tsf_tracking.autolog()
    f = GateformerForecaster(**TINY, max_epochs=2, linear_base=True).fit(long_df)
    [run] = _runs(experiment)
    assert run.data.metrics["network_used"] == float(f.network_used_)
    assert run.data.metrics["correction_share"] == f.correction_share_
    groups = long_df.groupby("unique_id", sort=False)  # val_mse scores the forecast the fit kept
    error = f.predict(groups.head(-12))["y"].to_numpy() - groups.tail(12)["y"].to_numpy()
    assert run.data.metrics["val_mse"] == pytest.approx(np.mean(error ** 2), rel=1e-9)


def test_without_autolog_nothing_is_logged(experiment, long_df):
    tsf_tracking.autolog()
    tsf_tracking.autolog(disable=True)
    assert base.fit_listeners == []
    GateformerForecaster(**TINY, max_epochs=1).fit(long_df)
    assert _runs(experiment) == []


def test_import_and_predict_import_no_mlflow(fitted, tmp_path):
    fitted.save(tmp_path / "m")
    probe = ("import sys, tsformers; m = tsformers.GateformerForecaster.load(sys.argv[1]); m.predict(); "
             "assert 'mlflow' not in sys.modules, 'mlflow was imported'")
    subprocess.run([sys.executable, "-c", probe, str(tmp_path / "m")], check=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_autolog_logs_into_the_active_run_and_marks_a_failed_fit(experiment, long_df):
    from lightning.pytorch.callbacks import Callback

    tsf_tracking.autolog(log_models=False, log_plot=False)
    with mlflow.start_run() as outer:
        GateformerForecaster(**TINY, max_epochs=1).fit(long_df)
        assert mlflow.active_run().info.run_id == outer.info.run_id  # not ended by autolog
        with pytest.warns(RuntimeWarning, match="could not log the parameters"):  # MLflow params are write-once
            second = GateformerForecaster(**{**TINY, "d_model": 8}, max_epochs=1).fit(long_df)
        assert second.predict().shape == (36, 3), "a tracking failure does not fail the fit"
    assert mlflow.get_run(outer.info.run_id).data.params["d_model"] == "16"

    class Boom(Callback):
        def on_train_epoch_end(self, trainer, module):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        GateformerForecaster(**TINY, max_epochs=2, trainer_kwargs={"callbacks": [Boom()]}).fit(long_df)
    assert mlflow.active_run() is None
    failed = [r for r in _runs(experiment) if r.info.run_id != outer.info.run_id]
    assert [r.info.status for r in failed] == ["FAILED"]


def test_a_logged_model_forecasts_polars_frames_like_pandas(experiment, fitted, long_df):
    """Issue 21 item 17: polars goes in where tsformers reads the frame (MLflow's own pyfunc check takes pandas)."""
    import polars as pl

    with mlflow.start_run():
        info = tsf_tracking.log_model(fitted, "model")
    expected = mlflow.pyfunc.load_model(info.model_uri).predict(long_df)
    frame = pl.from_pandas(long_df)
    native = tsf_tracking.load_model(info.model_uri).predict(frame)
    assert isinstance(native, pl.DataFrame)
    pd.testing.assert_frame_equal(native.to_pandas(), expected, check_dtype=False)
    wrapper = mlflow.pyfunc.load_model(info.model_uri).unwrap_python_model()
    pd.testing.assert_frame_equal(wrapper.predict(None, frame), expected)


def test_log_model_is_a_pyfunc_model_from_code_with_signature_and_example(experiment, fitted, long_df, tmp_path):
    with mlflow.start_run():
        info = tsf_tracking.log_model(fitted, "model", registered_model_name="tiny")
    files = Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path)))
    assert not list(files.rglob("*.pkl")), "nothing is pickled"
    flavor = mlflow.models.Model.load(files / "MLmodel").flavors["python_function"]
    assert flavor["model_code_path"].endswith("model_code.py")
    assert (files / "artifacts" / "model" / "config.json").is_file()
    signature = mlflow.models.get_model_info("models:/tiny/1").signature
    assert signature.inputs.input_names() == ["unique_id", "ds", "y"]
    assert signature.outputs.input_names() == ["unique_id", "ds", "y"]
    example = json.loads((files / "input_example.json").read_text())
    assert example["columns"] == ["unique_id", "ds", "y"] and len(example["data"]) == 2 * 48

    model = mlflow.pyfunc.load_model("models:/tiny/1")
    pd.testing.assert_frame_equal(model.predict(long_df), fitted.predict(long_df))
    native = tsf_tracking.load_model("models:/tiny/1")
    assert type(native) is GateformerForecaster
    pd.testing.assert_frame_equal(native.predict(long_df), fitted.predict(long_df))

    packed = model.predict(_packed(long_df))  # the shape a Spark UDF sends: one row per series
    assert len(packed) == 3 and len(packed.y[0]) == 12
    expected = fitted.predict(long_df)
    np.testing.assert_array_equal(np.concatenate(packed.y.to_list()), expected.y.to_numpy())
    assert pd.to_datetime(np.concatenate(packed.ds.to_list())).equals(pd.DatetimeIndex(expected.ds))


def test_future_covariates_travel_as_rows_after_the_history(experiment):
    df = make_demo(n_series=2, n_steps=200, layout="long")
    df["hour"] = df.ds.dt.hour.astype(float)
    f = GateformerForecaster(**TINY, max_epochs=0, target="y", future_covariates="hour").fit(df)
    with pytest.raises(ValueError, match="input_example="):
        tsf_tracking.log_model(f, "model")
    history, truth = df.groupby("unique_id").head(-12), df.groupby("unique_id").tail(12)
    expected = f.predict(history, future_df=truth[["unique_id", "ds", "hour"]])
    with_future_rows = pd.concat([history, truth.assign(y=np.nan)]).sort_values(["unique_id", "ds"])
    pd.testing.assert_frame_equal(forecast_frame(f, with_future_rows), expected)
    example = example_from_frame(f, df)
    assert example.groupby("unique_id").y.apply(lambda y: y.isna().sum()).tolist() == [12, 12]
    with mlflow.start_run():
        info = tsf_tracking.log_model(f, "model", input_example=example)
    pd.testing.assert_frame_equal(mlflow.pyfunc.load_model(info.model_uri).predict(with_future_rows), expected)

    tsf_tracking.autolog()  # the plot and the validation metrics forecast with the future rows too
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        GateformerForecaster(**TINY, max_epochs=1, target="y", future_covariates="hour").fit(df)
    run = max(_runs(experiment), key=lambda r: r.info.start_time)
    assert {"val_mse", "val_mae"} <= set(run.data.metrics)
    assert [a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)] == ["data_schema.json",
                                                                                      "forecast.png"]


def test_static_attributes_are_optional_inputs_also_when_packed(experiment):
    df = make_demo(n_series=3, n_steps=150, layout="long")
    attributes = pd.DataFrame({"unique_id": ["series_0", "series_1", "series_2"], "region": ["n", "s", "n"]})
    df = df.merge(attributes, on="unique_id")
    f = GateformerForecaster(**TINY, max_epochs=0, static=["region"]).fit(df)
    with mlflow.start_run():
        info = tsf_tracking.log_model(f, "model")
    inputs = mlflow.models.get_model_info(info.model_uri).signature.inputs
    assert [(c.name, c.required) for c in inputs.inputs][-1] == ("region", False)
    model = mlflow.pyfunc.load_model(info.model_uri)
    pd.testing.assert_frame_equal(model.predict(df.drop(columns="region")), f.predict(df.drop(columns="region")))
    new = df[df.unique_id == "series_0"].assign(unique_id="new", region="s")  # an unseen series brings its own
    pd.testing.assert_frame_equal(model.predict(new), f.predict(new))
    packed = _packed(new).assign(region=["s"])
    np.testing.assert_array_equal(model.predict(packed).y[0], f.predict(new).y.to_numpy())


def test_a_wide_model_round_trips_through_pyfunc(experiment):
    wide = make_demo(n_series=3, n_steps=150)
    f = GateformerForecaster(**TINY, max_epochs=0).fit(wide)
    with mlflow.start_run():
        info = tsf_tracking.log_model(f, "model")
    assert mlflow.models.get_model_info(info.model_uri).signature.inputs.input_names() == list(wide.columns)
    pd.testing.assert_frame_equal(mlflow.pyfunc.load_model(info.model_uri).predict(wide), f.predict(wide))


# -- a real tracking server and a real scoring server -------------------------------------------------


def _server_env() -> dict:
    """The environment of a server: this one, with this Python's scripts (uvicorn) first on the PATH."""
    return {**os.environ, "OMP_NUM_THREADS": "1",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(url: str, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}: {proc.stdout.read()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {seconds} s")


def _stop(proc: subprocess.Popen) -> None:
    """Stop a server started in its own process group, and everything it started (uvicorn workers)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`mlflow server` on loopback with a SQLite backend and a local artifact store; stopped at the end."""
    root = tmp_path_factory.mktemp("server")
    port = _free_port()
    proc = subprocess.Popen(
        [str(MLFLOW_BIN), "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, env=_server_env(),
        cwd=root)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_until_up(f"{url}/health", proc)
        yield url
    finally:
        _stop(proc)


@pytest.fixture
def on_server(server, monkeypatch):
    previous = mlflow.get_tracking_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    mlflow.set_tracking_uri(server)
    yield server
    tsf_tracking.autolog(disable=True)
    mlflow.set_tracking_uri(previous)


def test_train_logs_and_registers_on_a_tracking_server_and_forecast_reads_it_back(on_server, long_df, tmp_path,
                                                                                  capsys):
    long_df.to_parquet(tmp_path / "train.parquet")
    job = {"data": "train.parquet", "estimator": "GateformerForecaster", "model_dir": "model",
           "params": {**TINY, "max_epochs": 2}, "mlflow": {"experiment": "server", "registered_model_name": "demo"}}
    (tmp_path / "job.json").write_text(json.dumps(job))
    assert main(["train", "--config", str(tmp_path / "job.json")]) == 0
    summary = json.loads(capsys.readouterr().out)  # stdout holds the summary only
    assert summary["registered_model_uri"] == "models:/demo/1" and summary["tracking_uri"] == on_server
    run = mlflow.get_run(summary["run_id"])
    assert run.info.status == "FINISHED" and run.data.params["max_epochs"] == "2"

    saved = GateformerForecaster.load(tmp_path / "model")  # what `train` saved next to what it registered
    new = make_demo(n_series=3, n_steps=100, layout="long", seed=9)
    expected = saved.predict(new)
    pd.testing.assert_frame_equal(mlflow.pyfunc.load_model("models:/demo/1").predict(new), expected)
    new.to_parquet(tmp_path / "new.parquet")
    args = ["forecast", "--input", str(tmp_path / "new.parquet"), "--output", str(tmp_path / "f.parquet")]
    assert main(args + ["--model", "models:/demo/1"]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "f.parquet"), expected, check_dtype=False)
    assert main(args + ["--model", "models:/demo/7"]) == 2
    assert "no model at models:/demo/7" in capsys.readouterr().err


def test_mlflow_models_serve_answers_with_the_forecast(on_server, fitted, long_df, tmp_path):
    mlflow.set_experiment("serve")
    with mlflow.start_run():
        info = tsf_tracking.log_model(fitted, "model", registered_model_name="served")
    port = _free_port()
    proc = subprocess.Popen([str(MLFLOW_BIN), "models", "serve", "-m", "models:/served/1", "--env-manager", "local",
                             "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env=_server_env(), cwd=tmp_path)
    try:
        _wait_until_up(f"http://127.0.0.1:{port}/ping", proc)
        body = {"dataframe_split": json.loads(long_df.to_json(orient="split", index=False, date_format="iso"))}
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = pd.DataFrame(json.loads(response.read())["predictions"])
    finally:
        _stop(proc)
    expected = fitted.predict(long_df)
    assert list(answer.columns) == ["unique_id", "ds", "y"] and str(info.registered_model_version) == "1"
    np.testing.assert_allclose(answer.y.to_numpy(), expected.y.to_numpy(), rtol=1e-12)
    assert pd.DatetimeIndex(pd.to_datetime(answer.ds)).equals(pd.DatetimeIndex(expected.ds))


def test_log_model_after_autolog_registers_the_logged_model_in_its_run(experiment, long_df, capfd):
    """Outside a run: an unchanged autologged forecaster is registered as logged (one copy, with its run);
    after ``update`` it is logged again into the same run; a never-logged one gets a run of its own."""
    from tsformers import NaiveForecaster

    tsf_tracking.autolog()
    model = NaiveForecaster(horizon=12).fit(long_df)
    assert "Downloading artifacts" not in capfd.readouterr().err, "a quiet fit prints no MLflow progress bars"
    (fit_run,) = _runs(experiment)
    tsf_tracking.autolog(disable=True)

    info = tsf_tracking.log_model(model, "model", registered_model_name="autologged")
    assert info.registered_model_version == 1 and info.run_id == fit_run.info.run_id
    client = mlflow.MlflowClient()
    version = client.get_model_version("autologged", "1")
    assert version.run_id == fit_run.info.run_id, "the registered version keeps its lineage"
    assert len(_runs(experiment)) == 1
    logged = mlflow.search_logged_models(experiment_ids=[experiment.experiment_id], output_format="list")
    assert len(logged) == 1, "no second copy of an unchanged model"

    later = make_demo(n_series=3, n_steps=243, layout="long", seed=2)
    model.update(later.groupby("unique_id").tail(3))
    changed = tsf_tracking.log_model(model, "model", registered_model_name="autologged")
    assert changed.run_id == fit_run.info.run_id and changed.model_uri != info.model_uri
    assert client.get_model_version("autologged", "2").run_id == fit_run.info.run_id

    fresh = NaiveForecaster(horizon=12).fit(long_df)          # never logged: a run of its own
    own = tsf_tracking.log_model(fresh, "model", registered_model_name="fresh")
    assert own.run_id not in (None, fit_run.info.run_id)
    assert client.get_model_version("fresh", "1").run_id == own.run_id
    assert mlflow.active_run() is None, "the run log_model opened is ended"


def test_only_the_first_training_process_opens_the_tracking_store(tmp_path, monkeypatch):
    # every training process of a multi-process fit rebuilds autolog's logger; only the first one logs, so only
    # it opens the store (an MLFlowLogger opens it as it is built, creating and migrating a fresh one)
    from lightning.fabric.utilities.rank_zero import rank_zero_only
    from lightning.pytorch.loggers import MLFlowLogger
    from lightning.pytorch.loggers.logger import DummyLogger

    from tsformers.tracking.autologging import _run_logger

    uri = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    assert isinstance(_run_logger("0" * 32, uri), DummyLogger)
    assert not (tmp_path / "store.db").exists()                      # the store was not opened
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    first = _run_logger("0" * 32, uri)
    assert isinstance(first, MLFlowLogger)
    assert (tmp_path / "store.db").exists()


def test_autolog_logs_each_member_of_a_seed_ensemble_under_its_own_names(experiment, long_df):
    # every member's Trainer counts its steps from 0: under one name two curves would interleave
    tsf_tracking.autolog()
    f = GateformerForecaster(**TINY, max_epochs=2, patience=None, ensemble_size=3).fit(long_df)
    [run] = _runs(experiment)
    client = mlflow.MlflowClient()
    for member, prefix in ((0, ""), (1, "member_1/"), (2, "member_2/")):
        rows = [row for row in f.training_log_ if row["member"] == member]
        for key in ("train_loss", "val_loss"):
            history = client.get_metric_history(run.info.run_id, prefix + key)
            np.testing.assert_allclose([m.value for m in history], [row[key] for row in rows], rtol=1e-6)
    assert run.data.metrics["epochs_trained"] == 6
    assert not any(key.startswith("member_0") for key in run.data.metrics)
