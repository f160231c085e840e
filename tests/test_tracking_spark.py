"""The pyfunc model on Spark (local mode): mlflow.pyfunc.spark_udf scores a panel, one packed row per series.

Marked ``spark``: `make test` leaves it out, `make test-spark` (a separate CI step that installs pyspark) runs it.
"""
import numpy as np
import pandas as pd
import pytest

pytestmark = [pytest.mark.spark,
              pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")]
mlflow = pytest.importorskip("mlflow")

import tsformers.tracking as tsf_tracking  # noqa: E402
from tsformers import GateformerForecaster  # noqa: E402
from tsformers.datasets import make_demo  # noqa: E402
from tsformers.tracking.spark import pack_series, spark_forecast, spark_udf  # noqa: E402


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    root = tmp_path_factory.mktemp("spark-mlflow")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    mlflow.set_experiment(experiment_id=mlflow.create_experiment("spark", (root / "artifacts").as_uri()))
    train = make_demo(n_series=4, n_steps=200, layout="long")
    model = GateformerForecaster(horizon=12, lookback=48, d_model=16, d_ff=16, n_heads=2, max_epochs=0).fit(train)
    with mlflow.start_run():
        tsf_tracking.log_model(model, "model", registered_model_name="spark-demo")
    yield model, "models:/spark-demo/1"
    mlflow.set_tracking_uri(previous)


def test_spark_forecast_scores_every_series_like_predict(spark, logged):
    model, uri = logged
    panel = make_demo(n_series=7, n_steps=90, layout="long", seed=4)  # other series than the fit's: scaled by their own
    forecast = spark_forecast(spark.createDataFrame(panel).repartition(3), uri).toPandas()
    forecast = forecast.sort_values(["unique_id", "ds"]).reset_index(drop=True)
    expected = model.predict(panel).sort_values(["unique_id", "ds"]).reset_index(drop=True)
    assert list(forecast.columns) == ["unique_id", "ds", "y"] and len(forecast) == 7 * 12
    assert (forecast.unique_id == expected.unique_id).all()
    assert pd.DatetimeIndex(forecast.ds).equals(pd.DatetimeIndex(expected.ds))
    np.testing.assert_allclose(forecast.y, expected.y, rtol=1e-6)  # other batch sizes: float32 rounding


def test_the_udf_maps_one_packed_row_to_one_forecast_row(spark, logged):
    model, uri = logged
    panel = make_demo(n_series=2, n_steps=60, layout="long", seed=1)
    packed = pack_series(spark.createDataFrame(panel), uri)
    names = ["unique_id", "ds", "y"]
    from pyspark.sql import functions as F

    rows = packed.select("unique_id", spark_udf(spark, uri)(F.struct(*names)).alias("f")).orderBy("unique_id").collect()
    assert [r.unique_id for r in rows] == ["series_0", "series_1"]
    expected = model.predict(panel)
    for row in rows:
        mine = expected[expected.unique_id == row.unique_id]
        np.testing.assert_allclose(row.f.y, mine.y, rtol=1e-6)
        assert pd.to_datetime(row.f.ds).equals(pd.DatetimeIndex(mine.ds))


def test_static_attributes_travel_once_per_series(spark, logged):
    df = make_demo(n_series=3, n_steps=120, layout="long")
    df["capacity"] = df.unique_id.map({"series_0": 1.0, "series_1": 4.0, "series_2": 2.0})
    model = GateformerForecaster(horizon=12, lookback=48, d_model=16, d_ff=16, n_heads=2, max_epochs=0,
                                 static="capacity").fit(df)
    with mlflow.start_run():
        tsf_tracking.log_model(model, "model", registered_model_name="spark-static")
    new = df.assign(unique_id=df.unique_id + "-new", capacity=df.capacity * 2)  # unseen series: their own capacity
    forecast = spark_forecast(spark.createDataFrame(new), "models:/spark-static/1").toPandas()
    forecast = forecast.sort_values(["unique_id", "ds"]).reset_index(drop=True)
    expected = model.predict(new).sort_values(["unique_id", "ds"]).reset_index(drop=True)
    np.testing.assert_allclose(forecast.y, expected.y, rtol=1e-6)
