"""Train and score tsformers models on Spark.

**Training** (:func:`spark_fit`): pyspark's own ``TorchDistributor`` starts the
training processes (on the driver, or as a barrier job on the executors) and
Lightning's DDP strategy trains the estimator across them, with the
data-parallel semantics of ``docs/scaling.md``. The fitted estimator comes back
to the driver.

>>> from tsformers.tracking.spark import spark_fit
>>> model = spark_fit(GateformerForecaster(horizon=24), spark.read.parquet("history/"),
...                   num_processes=4, local_mode=False)                          # doctest: +SKIP

**Scoring** (:func:`spark_forecast`) with ``mlflow.pyfunc.spark_udf`` and a logged model.
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
MLflow is imported when a function needs it: :func:`spark_fit` needs it only with
``tsformers.tracking.autolog()`` on.
"""
from __future__ import annotations

import os
import pickle


#: Trainer settings that spark_fit derives from the processes TorchDistributor starts.
DISTRIBUTOR_SETTINGS = ("accelerator", "devices", "num_nodes", "strategy")


def spark_fit(estimator, df, *, num_processes: int = 1, local_mode: bool = True, use_gpu: bool = False,
              static_df=None):
    """Fit ``estimator`` on the panel of the Spark frame ``df``, trained by pyspark's ``TorchDistributor``.

    ``TorchDistributor`` (``pyspark.ml.torch.distributor``) starts ``num_processes`` training
    processes through ``torchrun``: on the driver (``local_mode=True``) or in a barrier job on the
    executors (``local_mode=False``, one Spark task per machine share). Each runs ``fit`` under
    Lightning's ``strategy="ddp"``, which reads its rank from ``torchrun``'s environment, so the fit
    is the data-parallel fit of ``docs/scaling.md``: ``batch_size`` is the global batch split over
    the processes, losses, early stopping and the best epoch are decided over all of them, and with
    ``dropout=0`` it gives the single-process fit's weights to float rounding.

    The panel is collected to the driver (``toPandas``, through Arrow) and every training process
    holds all of it, as each takes its share of every batch of windows: it must fit in the memory
    of the driver and of each process, as for ``fit``. With ``tsformers.tracking.autolog()`` on, the
    fit is logged as any fit is: one run, the per-epoch losses from the first training process, then
    the parameters, metrics and model from the driver; on a cluster the tracking URI must then be
    reachable from the executors.

    Parameters
    ----------
    estimator : BaseForecaster
        An estimator that trains a network (``max_epochs >= 1``). It is fitted in place, as ``fit``
        fits it, and keeps its own parameters; its ``trainer_kwargs`` reach the Trainer (precision,
        callbacks...), except ``accelerator``, ``devices``, ``num_nodes`` and ``strategy``, which
        follow from ``num_processes`` and ``use_gpu``.
    df : pyspark.sql.DataFrame
        The history, long or wide, as ``fit`` takes it (``unique_id``, ``ds``, ``y``...). Timestamps
        are read in the session's time zone (``spark.sql.session.timeZone``).
    num_processes : int, default=1
        Training processes (``TorchDistributor(num_processes=...)``): CPU processes, or GPUs with
        ``use_gpu=True``. ``estimator.batch_size`` must be a multiple of it.
    local_mode : bool, default=True
        Train on the driver (True) or on the executors (False; the cluster needs ``num_processes``
        free task slots, and ``checkpoint_dir``, if set, must be storage all executors share).
    use_gpu : bool, default=False
        One GPU per process (``accelerator="gpu"``); Spark must assign them
        (``spark.task.resource.gpu.amount``, or ``spark.driver.resource.gpu.amount`` in local mode).
    static_df : pandas or Spark DataFrame, optional
        Static attributes, as ``fit`` takes them.

    Returns
    -------
    BaseForecaster
        ``estimator``, fitted: ``predict``, ``save`` and ``tsformers.tracking.log_model`` work as
        after ``fit``.

    Raises
    ------
    TypeError
        ``df`` is not a Spark DataFrame.
    ValueError
        ``num_processes`` is not a positive integer, ``batch_size`` is not a multiple of it,
        ``trainer_kwargs`` sets what the distributor decides, or the estimator trains no network.
    RuntimeError
        Training failed in a training process (``TorchDistributor`` quotes its last output lines).
    """
    try:
        from pyspark.ml.torch.distributor import TorchDistributor
        from pyspark.sql import DataFrame as SparkDataFrame
    except ModuleNotFoundError as err:
        raise ImportError("spark_fit needs pyspark: pip install 'tsformers[spark]'.") from err
    from tsformers.estimators import base

    _check_spark_fit(estimator, df, num_processes, SparkDataFrame)
    panel = _collect_panel(df, estimator)
    static = static_df.toPandas() if isinstance(static_df, SparkDataFrame) else static_df
    params = estimator.get_params(deep=False)
    trainer_kwargs = dict(params["trainer_kwargs"] or {})
    listeners = list(base.fit_listeners)
    for listener in listeners:  # autolog: its run and Lightning logger, which the first process logs through
        trainer_kwargs = listener.before_training(estimator, trainer_kwargs)
    distributor = TorchDistributor(num_processes=num_processes, local_mode=local_mode, use_gpu=use_gpu)
    try:
        payload = distributor.run(_fit_in_training_process, type(estimator), params, trainer_kwargs, use_gpu,
                                  panel, static)
    except BaseException:
        for listener in listeners:
            listener.fail(estimator)
        raise
    fitted = pickle.loads(payload)  # noqa: S301 - written by the training process this call started
    for name in [k for k in vars(estimator) if k not in params]:  # as fit does: no state of an earlier fit stays
        delattr(estimator, name)
    vars(estimator).update({k: v for k, v in vars(fitted).items() if k not in params})
    for listener in listeners:
        listener.after_fit(estimator, panel)
    return estimator


def _check_spark_fit(estimator, df, num_processes, spark_frame_type) -> None:
    """Refuse, before any process starts, what the training processes would refuse (or train wrongly)."""
    from tsformers.estimators.base import BaseForecaster

    if not isinstance(df, spark_frame_type):
        raise TypeError(f"spark_fit trains on a Spark DataFrame, got {type(df).__name__}; for a pandas or polars "
                        f"frame call estimator.fit(df) (trainer_kwargs={{'strategy': 'ddp_spawn', 'devices': N}} "
                        f"trains it on N processes).")
    if not isinstance(num_processes, int) or isinstance(num_processes, bool) or num_processes < 1:
        raise ValueError(f"num_processes={num_processes!r}: give the number of training processes, an integer >= 1.")
    if not isinstance(estimator, BaseForecaster):
        raise TypeError(f"spark_fit fits a tsformers forecaster, got {type(estimator).__name__}.")
    if not estimator._tags.get("trainable", True) or not estimator.max_epochs:
        raise ValueError(f"{type(estimator).__name__}(max_epochs={estimator.max_epochs}) trains no network, so "
                         f"there is nothing to distribute: fit it on the driver with "
                         f"estimator.fit(df.toPandas()).")
    taken = sorted(set(estimator.trainer_kwargs or {}) & set(DISTRIBUTOR_SETTINGS))
    if taken:
        raise ValueError(f"trainer_kwargs sets {taken}: spark_fit sets {list(DISTRIBUTOR_SETTINGS)} from "
                         f"num_processes and use_gpu (strategy='ddp' under TorchDistributor's torchrun); "
                         f"remove them from trainer_kwargs.")
    if estimator.batch_size % num_processes:
        raise ValueError(f"batch_size={estimator.batch_size} is the global batch, split evenly over the "
                         f"{num_processes} training processes; choose a multiple of {num_processes}.")


def _collect_panel(df, estimator):
    """The Spark frame as pandas, its series in the order of their ids.

    A long frame's series are numbered in the order they first appear, which decides the windows'
    numbering and so each epoch's batches; Spark's row order depends on its partitioning. Sorted by
    id, the fit is the same however the frame was partitioned (and equals ``fit`` on the sorted frame).
    """
    panel = df.toPandas()
    id_col = estimator.id_col or ("unique_id" if "unique_id" in panel.columns else None)  # as fit detects it
    if id_col is not None and id_col in panel.columns:
        panel = panel.sort_values(id_col, kind="stable", ignore_index=True)
    return panel


def _fit_in_training_process(estimator_class, params: dict, trainer_kwargs: dict, use_gpu: bool, panel,
                             static_df) -> bytes:
    """What each training process runs: fit under DDP, then return the first process's estimator, pickled.

    ``torchrun`` has set the ranks in the environment, so Lightning's DDP strategy joins them; the
    Trainer is told the machine's share (``LOCAL_WORLD_SIZE``) and the number of machines.
    Every process returns the same bytes, the first process's (broadcast): TorchDistributor has all
    processes of a machine write their return values to one file, so they must not differ.
    """
    import torch.distributed as dist

    world, local = int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_WORLD_SIZE"])
    settings = {"accelerator": "gpu" if use_gpu else "cpu", "devices": local, "num_nodes": world // local,
                "strategy": "ddp"}
    estimator = estimator_class(**{**params, "trainer_kwargs": {**trainer_kwargs, **settings}})
    started_here = world > 1 and not dist.is_initialized()
    if started_here:
        # Started here (torchrun's environment), so the group is this function's: the fit joins it and leaves it
        # alone, the fitted estimator travels over it, and it ends here before the process exits.
        dist.init_process_group("nccl" if use_gpu else "gloo")
    estimator.fit(panel, static_df=static_df)
    # The Trainer's settings (and the loggers rebuilt here) stay here: the driver keeps the caller's parameters.
    estimator.set_params(trainer_kwargs=None)
    payload = [pickle.dumps(estimator) if int(os.environ["RANK"]) == 0 else None]
    if world > 1:
        dist.broadcast_object_list(payload, src=0)
    if started_here:   # not after a failure: another process may still be inside a collective
        dist.destroy_process_group()
    return payload[0]


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
    import mlflow

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
    import mlflow

    info = mlflow.models.get_model_info(model_uri)
    meta = info.metadata or {}
    if "tsformers_estimator" not in meta:
        raise ValueError(f"{model_uri} was not logged by tsformers.tracking.log_model (its metadata lacks "
                         f"'tsformers_estimator'); log the forecaster with tsformers.tracking.log_model.")
    return meta, info.signature.inputs.input_names()
