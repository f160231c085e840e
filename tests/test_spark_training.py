"""Training on Spark: ``spark_fit`` trains through pyspark's ``TorchDistributor`` as data-parallel training does.

Spark's local mode, ``local_mode=True``: ``TorchDistributor`` starts 2 CPU training processes with
``torchrun`` and Lightning's ``strategy="ddp"`` joins them. ``tests/test_ddp.py`` shows that a 2-process
DDP fit equals the single-process fit (``dropout=0``, the same global batch); here the Spark fit is held to
the same single-process fit, so all three agree. Weights are compared as ``tests/_equal_fits.py`` says; this
panel's series are univariate, so the variate attention's query and key are left out too (checked there).

Marked ``spark``: `make test-spark` runs it.
"""
import pandas as pd
import pytest
import torch

from tsformers import GateformerForecaster
from tsformers.datasets import make_demo
from tsformers.estimators.base import BaseForecaster

from _equal_fits import FLAT, ONE_VARIATE_FLAT, assert_forecast_ignores, assert_same_forecasts, assert_same_weights

pytestmark = [pytest.mark.spark,
              pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")]

if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
    pytest.skip("this torch build has no gloo backend for CPU processes", allow_module_level=True)

# A constant learning rate makes the validation loss rise after epoch 2, so early stopping ends the fit at epoch 3
# of 6 (at 0.05 instead, rounding differences grow: 2e-3 between the DDP and the single-process fit of this data).
# The network alone on patches of 8 (the default is 16), on the data with its daily cycle in (the default takes it
# out), one network (the default fits two), whose loss curve this is; the linear base's share under data
# parallelism: tests/test_ddp.py.
PARAMS = {**GateformerForecaster.get_test_params(), "horizon": 12, "lookback": 48, "dropout": 0.0, "batch_size": 30,
          "learning_rate": 0.01, "lr_schedule": "constant", "max_epochs": 6, "patience": 1, "random_state": 0,
          "linear_base": False, "patch_len": 8, "stride": 8, "cycle": None, "ensemble_size": 1}


@pytest.fixture(scope="module")
def panel():
    return make_demo(n_steps=300, layout="long")  # 3 series of 300 hourly steps


@pytest.fixture(scope="module")
def single_process_fit(panel):
    return GateformerForecaster(**PARAMS).fit(panel)


def test_spark_fit_equals_the_single_process_fit_and_is_a_usual_estimator(spark, panel, single_process_fit,
                                                                           tmp_path):
    from tsformers.tracking.spark import spark_fit

    one = single_process_fit
    estimator = GateformerForecaster(**PARAMS, trainer_kwargs={"gradient_clip_algorithm": "norm"})
    before = estimator.get_params()
    # repartitioned: the rows reach the driver in another order, and the series still train in the order of their ids
    fitted = spark_fit(estimator, spark.createDataFrame(panel).repartition(2), num_processes=2)

    assert fitted is estimator, "fitted in place, as fit does"
    assert fitted.get_params() == before, "the caller's parameters stay, not the training processes' settings"
    assert [row["epoch"] for row in fitted.training_log_] == [0, 1, 2, 3], "early stopping, as in one process"
    for a, b in zip(one.training_log_, fitted.training_log_, strict=True):
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-5)
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
    flat = {**FLAT, **ONE_VARIATE_FLAT}
    assert_forecast_ignores(one, flat)
    assert_same_weights(one.network_, fitted.network_, flat)
    assert_same_forecasts(fitted.predict().sort_values(["unique_id", "ds"]).reset_index(drop=True),
                          one.predict().sort_values(["unique_id", "ds"]).reset_index(drop=True))
    loaded = BaseForecaster.load(fitted.save(tmp_path / "model"))
    pd.testing.assert_frame_equal(loaded.predict(), fitted.predict())


def test_spark_fit_under_autolog_logs_one_run_with_the_first_process_losses(spark, panel, single_process_fit,
                                                                           tmp_path):
    mlflow = pytest.importorskip("mlflow")
    import tsformers.tracking as tracking
    from tsformers.tracking.spark import spark_fit

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")  # absolute: the training processes log here
    try:
        mlflow.set_experiment(experiment_id=mlflow.create_experiment("spark-fit", (tmp_path / "artifacts").as_uri()))
        tracking.autolog(log_plot=False, registered_model_name="spark-trained")
        fitted = spark_fit(GateformerForecaster(**PARAMS), spark.createDataFrame(panel), num_processes=2)
        [run] = mlflow.search_runs(output_format="list")
        history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "val_loss")
        assert run.info.status == "FINISHED"
        assert [m.value for m in history] == [row["val_loss"] for row in fitted.training_log_]
        assert run.data.metrics["epochs_trained"] == 4 and run.data.params["batch_size"] == "30"
        served = mlflow.pyfunc.load_model("models:/spark-trained/1").predict(panel)
    finally:
        tracking.autolog(disable=True)
        while mlflow.active_run():
            mlflow.end_run()
        mlflow.set_tracking_uri(previous)
    expected = single_process_fit.predict(panel)
    assert served["y"].to_numpy() == pytest.approx(expected["y"].to_numpy(), abs=1e-5)


def test_spark_fit_refuses_before_starting_processes(spark, panel):
    from tsformers.tracking.spark import spark_fit

    frame = spark.createDataFrame(panel)
    with pytest.raises(ValueError, match="batch_size=30 is the global batch.*4 training processes.*multiple of 4"):
        spark_fit(GateformerForecaster(**PARAMS), frame, num_processes=4)
    with pytest.raises(ValueError, match=r"trainer_kwargs sets \['devices', 'strategy'\].*remove them"):
        spark_fit(GateformerForecaster(**PARAMS, trainer_kwargs={"strategy": "ddp", "devices": 2}), frame,
                  num_processes=2)
    with pytest.raises(ValueError, match=r"max_epochs=0\) trains no network.*estimator.fit\(df.toPandas\(\)\)"):
        spark_fit(GateformerForecaster(**PARAMS | {"max_epochs": 0}), frame, num_processes=2)
    with pytest.raises(ValueError, match="num_processes=0"):
        spark_fit(GateformerForecaster(**PARAMS), frame, num_processes=0)
    with pytest.raises(TypeError, match="Spark DataFrame, got DataFrame.*estimator.fit"):
        spark_fit(GateformerForecaster(**PARAMS), panel, num_processes=2)
