"""Score a large panel on Spark with ``mlflow.pyfunc.spark_udf`` and a logged tsformers model.

A Spark UDF maps each input row to one output row, while a forecast maps the
history of a series to ``horizon`` new rows. So the panel travels packed:
one row per series holding arrays over time (``collect_list``), the UDF
returns one row per series holding arrays over the horizon, and ``explode``
gives the long forecast back. Series are independent, so Spark spreads them
over its executors; each executor loads the model once.

>>> from tsformers.tracking.spark import spark_forecast
>>> forecast = spark_forecast(spark.read.parquet("history/"), "models:/pv/1")   # doctest: +SKIP
>>> forecast.write.parquet("forecast/")                                          # doctest: +SKIP

Timestamps are read and written in the Spark session's time zone
(``spark.sql.session.timeZone``); set it to the zone of the model's data (UTC for naive times).
"""
from __future__ import annotations

import mlflow


def spark_udf(spark, model_uri: str, *, env_manager: str = "local"):
    """``mlflow.pyfunc.spark_udf`` of a tsformers model, with the result type of its packed forecast.

    Call it on ``struct(id, time, variables...)`` of a packed frame (one row
    per series, arrays in the cells; see :func:`pack_series`). Returns one
    struct per series: the forecast timestamps (ISO strings, or integer steps)
    and one ``array<double>`` per target.
    """
    return _udf(spark, model_uri, _describe(model_uri)[0], env_manager)


def pack_series(df, model_uri: str):
    """One row per series of a long (or wide) Spark frame: the model's columns as arrays sorted by time."""
    return _pack(df, *_describe(model_uri))


def spark_forecast(df, model_uri: str, *, env_manager: str = "local"):
    """Forecast every series of the Spark frame ``df`` with the tsformers model at ``model_uri``.

    Parameters
    ----------
    df : pyspark.sql.DataFrame
        The history in the long (or wide) layout the model was fitted on.
    model_uri : str
        A model logged with :func:`tsformers.tracking.log_model` (``models:/name/1``, ``runs:/...``).
    env_manager : str, default="local"
        Passed to ``mlflow.pyfunc.spark_udf``.

    Returns
    -------
    pyspark.sql.DataFrame
        The forecast: the id column, the time column and one column per target,
        ``horizon`` rows per series.
    """
    from pyspark.sql import functions as F

    meta, names = _describe(model_uri)
    id_col, time_col, targets = meta["id_col"], meta["time_col"], meta["targets"]
    keys = [id_col] if id_col else []
    udf = _udf(df.sparkSession, model_uri, meta, env_manager)
    packed = _pack(df, meta, names)
    scored = packed.select(*keys, udf(F.struct(*[c for c in names if c in packed.columns])).alias("_f"))
    steps = scored.select(*keys, F.explode(F.arrays_zip(*[F.col(f"_f.{c}").alias(c) for c in [time_col, *targets]]))
                          .alias("_step"))
    time = F.col(f"_step.{time_col}")
    time = F.to_timestamp(time) if meta["time_kind"] == "datetime" else time
    return steps.select(*keys, time.alias(time_col), *[F.col(f"_step.{t}").alias(t) for t in targets])


def _udf(spark, model_uri: str, meta: dict, env_manager: str):
    time_type = "string" if meta["time_kind"] == "datetime" else "bigint"
    fields = [f"`{meta['time_col']}` array<{time_type}>"] + [f"`{t}` array<double>" for t in meta["targets"]]
    return mlflow.pyfunc.spark_udf(spark, model_uri, result_type=", ".join(fields), env_manager=env_manager)


def _pack(df, meta: dict, names: list[str]):
    from pyspark.sql import functions as F

    id_col, time_col = meta["id_col"], meta["time_col"]
    static = [c for c in meta.get("static", []) if c in df.columns]  # one value per series
    values = [c for c in names if c not in (id_col, time_col) and c not in meta.get("static", [])]
    rows = F.sort_array(F.collect_list(F.struct(time_col, *values))).alias("_rows")
    aggregates = [rows, *[F.first(c).alias(c) for c in static]]
    grouped = df.groupBy(id_col).agg(*aggregates) if id_col else df.agg(*aggregates)
    return grouped.select(*([id_col] if id_col else []), *[F.col(f"_rows.{c}").alias(c) for c in [time_col, *values]],
                          *static)


def _describe(model_uri: str) -> tuple[dict, list[str]]:
    """The tsformers metadata of a logged model and its input column names."""
    info = mlflow.models.get_model_info(model_uri)
    meta = info.metadata or {}
    if "tsformers_estimator" not in meta:
        raise ValueError(f"{model_uri} was not logged by tsformers.tracking.log_model (its metadata lacks "
                         f"'tsformers_estimator'); log the forecaster with tsformers.tracking.log_model.")
    return meta, info.signature.inputs.input_names()
