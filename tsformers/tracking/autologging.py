"""``autolog()``: every ``fit`` of a tsformers forecaster logs itself to MLflow.

One run per fit (or the active run, when the fit happens inside
``with mlflow.start_run():``) receives

- the estimator's parameters and its name (tag ``estimator``);
- the data schema: layout, columns, frequency, number of series and rows
  (params ``data_*``; the whole schema as ``data_schema.json``);
- per-epoch ``train_loss`` / ``val_loss`` (and ``epoch``), through Lightning's
  ``MLFlowLogger`` added to the Trainer; a seed ensemble's member k > 0 under
  ``member_k/train_loss`` and so on;
- the final validation metrics: ``best_val_loss`` (the best epoch's, scaled, as
  trained) and, in the data's units, ``val_mse`` / ``val_mae`` of forecasting the
  last ``horizon`` steps of the fit data (inside the validation part) from the
  steps before them; ``epochs_trained``; with ``linear_base=True``,
  ``correction_share`` (the share of the network's correction the forecast keeps, 0 to 1)
  and ``network_used`` (1, or 0 where the fit kept the linear map alone); below a share of 1
  ``best_val_loss`` is the best epoch's with all of the correction, and ``val_mse`` the forecast's;
- the model, as a pyfunc model (see :func:`tsformers.tracking.log_model`);
- ``forecast.png``: the last ``horizon`` steps of a few series, observed and forecast from
  the ``lookback`` steps before them (with the band of the outermost quantiles of a
  quantile model).

It works through the estimators' fit listeners
(``tsformers.estimators.base.fit_listeners``): without ``autolog()`` nothing
is logged and MLflow is not imported.
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import warnings

import mlflow
import numpy as np
import pandas as pd

from tsformers.backbone.heads import linear_bases_of
from tsformers.batch.frames import example_from_frame, holdout_forecast
from tsformers.data.frames import as_pandas, time_as_column

MAX_PARAM_CHARS = 500


def autolog(*, log_models: bool = True, log_plot: bool = True, n_plot_series: int = 3,
            registered_model_name: str | None = None, disable: bool = False) -> None:
    """Log every tsformers ``fit`` from now on to the active MLflow tracking URI.

    Parameters
    ----------
    log_models : bool, default=True
        Log the fitted model as a pyfunc model named ``model``.
    log_plot : bool, default=True
        Log ``forecast.png``.
    n_plot_series : int, default=3
        How many series (or target columns of a wide frame) the plot shows.
    registered_model_name : str, optional
        Also register every logged model under this name (a new version per fit).
    disable : bool, default=False
        Stop logging (undo an earlier ``autolog()``).

    Examples
    --------
    >>> import tsformers.tracking
    >>> tsformers.tracking.autolog()            # doctest: +SKIP
    >>> GateformerForecaster(horizon=24).fit(df)   # doctest: +SKIP
    """
    from tsformers.estimators import base

    base.fit_listeners[:] = [x for x in base.fit_listeners if not isinstance(x, AutologListener)]
    if not disable:
        base.fit_listeners.append(AutologListener(log_models=log_models, log_plot=log_plot,
                                                  n_plot_series=n_plot_series,
                                                  registered_model_name=registered_model_name))


class AutologListener:
    """The fit listener of :func:`autolog`: opens the run, adds the Lightning logger, logs after the fit."""

    def __init__(self, *, log_models: bool, log_plot: bool, n_plot_series: int, registered_model_name: str | None):
        self.log_models, self.log_plot, self.n_plot_series = log_models, log_plot, n_plot_series
        self.registered_model_name = registered_model_name
        self._runs: dict[int, tuple[str, bool]] = {}  # id(estimator) -> (run id, whether this listener opened it)

    def before_training(self, estimator, trainer_kwargs: dict) -> dict:
        run_id, _ = self._open_run(estimator)
        logger = _run_logger(run_id)
        existing = trainer_kwargs.get("logger")
        if existing in (None, True, False):
            trainer_kwargs["logger"] = logger
        else:
            trainer_kwargs["logger"] = [*(existing if isinstance(existing, (list, tuple)) else [existing]), logger]
        trainer_kwargs["callbacks"] = [*trainer_kwargs.get("callbacks", []), _fail_run_callback(self, estimator)]
        return trainer_kwargs

    def after_fit(self, estimator, df) -> None:
        run_id, opened = self._open_run(estimator)
        del self._runs[id(estimator)]
        try:
            self._log(estimator, df)
        finally:
            if opened:
                mlflow.end_run()

    def fail(self, estimator) -> None:
        """End the run this listener opened for ``estimator`` as FAILED (training raised)."""
        run_id, opened = self._runs.pop(id(estimator), (None, False))
        if opened and mlflow.active_run() is not None and mlflow.active_run().info.run_id == run_id:
            mlflow.end_run(status="FAILED")

    def _open_run(self, estimator) -> tuple[str, bool]:
        if id(estimator) not in self._runs:
            active = mlflow.active_run()
            if active is not None:
                self._runs[id(estimator)] = (active.info.run_id, False)
            else:
                run = mlflow.start_run(run_name=type(estimator).__name__)
                self._runs[id(estimator)] = (run.info.run_id, True)
        return self._runs[id(estimator)]

    def _log(self, estimator, df) -> None:
        frame, _ = as_pandas(df)
        holdout = functools.cache(lambda: holdout_forecast(estimator, frame))  # shared by metrics and plot
        steps = [("parameters", lambda: _log_params(estimator)),
                 ("data schema", lambda: _log_schema(estimator, frame)),
                 ("validation metrics", lambda: mlflow.log_metrics(final_metrics(estimator, holdout)))]
        if self.log_models:
            steps.append(("model", lambda: _log_model(estimator, frame, self.registered_model_name)))
        if self.log_plot:
            steps.append(("forecast plot", lambda: mlflow.log_figure(
                forecast_figure(estimator, frame, holdout(), self.n_plot_series), "forecast.png")))
        with contextlib.ExitStack() as stack:
            if not getattr(estimator, "verbose", False):
                stack.enter_context(_quiet_mlflow())
            for what, step in steps:
                try:
                    step()
                except Exception as err:  # tracking must not break a fit that succeeded
                    warnings.warn(f"tsformers autolog could not log the {what}: {type(err).__name__}: {err}",
                                  RuntimeWarning, stacklevel=2)


@contextlib.contextmanager
def _quiet_mlflow():
    """MLflow without its artifact progress bars and INFO lines (a fit with ``verbose=False`` prints nothing)."""
    variable = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before, logger = os.environ.get(variable), logging.getLogger("mlflow")
    level = logger.level
    os.environ[variable] = "false"
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)
        if before is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = before


def _log_params(estimator) -> None:
    mlflow.set_tag("estimator", type(estimator).__name__)
    mlflow.log_params({name: _param_value(value) for name, value in estimator.get_params().items()})


def _log_schema(estimator, frame) -> None:
    mlflow.log_params(data_params(estimator.schema_, n_rows=len(frame)))
    mlflow.log_dict(estimator.schema_.to_dict(), "data_schema.json")


def data_params(schema, n_rows: int) -> dict:
    """The data schema as MLflow params: layout, columns, frequency, number of series and rows."""
    return {
        "data_layout": schema.layout,
        "data_columns": _clip(",".join(schema.columns)),
        "data_targets": _clip(",".join(schema.targets)),
        "data_covariates": _clip(",".join(schema.covariates + schema.future_covariates)),
        "data_time_col": schema.time_col,
        "data_id_col": schema.id_col,
        "data_frequency": schema.step,
        "data_n_series": len(schema.series),
        "data_n_rows": n_rows,
    }


def final_metrics(estimator, holdout) -> dict:
    """The validation metrics of a finished fit (none but the epoch count when it had no validation part).

    ``holdout()`` gives :func:`~tsformers.batch.frames.holdout_forecast` of the fit data.
    """
    log = estimator.training_log_
    metrics = {"epochs_trained": len(log)}
    val = [row["val_loss"] for row in log if "val_loss" in row]
    if not val:
        return metrics
    metrics["best_val_loss"] = float(min(val))
    if linear_bases_of(estimator.network_):  # whether the forecast scored below is the network's at all
        metrics["network_used"] = float(estimator.network_used_)
        metrics["correction_share"] = estimator.correction_share_
    both, targets = holdout(), estimator.schema_.targets
    error = (both[[f"{t}__forecast" for t in targets]].to_numpy(dtype=np.float64)
             - both[targets].to_numpy(dtype=np.float64))
    metrics["val_mse"] = float(np.nanmean(error ** 2))
    metrics["val_mae"] = float(np.nanmean(np.abs(error)))
    return metrics


def forecast_figure(estimator, frame: pd.DataFrame, holdout: pd.DataFrame, n_series: int = 3):
    """A matplotlib figure of the last ``horizon`` steps of the first ``n_series`` series, observed and
    forecast from the ``lookback`` steps before them (``holdout``: :func:`holdout_forecast` of ``frame``)."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    schema, lookback, horizon = estimator.schema_, estimator.lookback, estimator.horizon
    frame = time_as_column(frame, schema)
    series = schema.series if schema.layout == "long" else [None]
    panels = [(s, t) for s in series for t in schema.targets][:n_series]
    fig = Figure(figsize=(8, 2.2 * len(panels)), layout="constrained")
    for k, (key, target) in enumerate(panels):
        ax = fig.add_subplot(len(panels), 1, k + 1)
        rows = frame if key is None else frame[frame[schema.id_col] == key]
        past = rows.iloc[-(lookback + horizon):]
        pred = holdout if key is None else holdout[holdout[schema.id_col] == key]
        ax.plot(past[schema.time_col], past[target], color="0.3", label="observed")
        ax.plot(pred[schema.time_col], pred[f"{target}__forecast"], color="C1", label="forecast")
        levels = _quantile_columns(pred, target)
        if len(levels) >= 2:  # a quantile model: the band between its outermost quantiles
            (lo, lo_col), (hi, hi_col) = levels[0], levels[-1]
            ax.fill_between(pred[schema.time_col], pred[lo_col], pred[hi_col], color="C1", alpha=0.25, lw=0,
                            label=f"{lo:g}-{hi:g} quantiles")
        ax.set_title(target if key is None else f"{key}: {target}", fontsize=9, loc="left")
        ax.tick_params(labelsize=7)
    if panels:
        fig.axes[0].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"{type(estimator).__name__}: the last {horizon} steps, forecast from the {lookback} before",
                 fontsize=10)
    return fig


def _quantile_columns(pred: pd.DataFrame, target: str) -> list[tuple[float, str]]:
    """The ``(level, column)`` of each ``{target}_q{level}`` column, by level."""
    found = []
    for column in pred.columns:
        if column.startswith(f"{target}_q"):
            try:
                found.append((float(column[len(target) + 2:]), column))
            except ValueError:
                pass
    return sorted(found)


def _log_model(estimator, frame, registered_model_name):
    from tsformers.tracking.pyfunc import log_model

    log_model(estimator, "model", registered_model_name, input_example=example_from_frame(estimator, frame))


def _run_logger(run_id: str, tracking_uri: str | None = None, prefix: str = ""):
    """Lightning's MLFlowLogger writing into ``run_id``, leaving the run's lifecycle and params to autolog; its
    metric names after ``prefix/`` where there is one (the members of a seed ensemble after the first).

    Rebuilt in every training process of a multi-process fit (its ``__reduce__``). Only the first one logs
    (the logger's methods are Lightning's ``rank_zero_only``), so the others, whose rank ``torchrun`` has set
    in the environment by then, get Lightning's ``DummyLogger`` instead: an ``MLFlowLogger`` opens the tracking
    store as it is built (and a store it finds without MLflow's tables, it creates and migrates), which only
    the process that logs needs to do.
    """
    from lightning.fabric.utilities.rank_zero import rank_zero_only
    from lightning.pytorch.loggers import MLFlowLogger
    from lightning.pytorch.loggers.logger import DummyLogger

    if rank_zero_only.rank != 0:
        return DummyLogger()

    class RunLogger(MLFlowLogger):
        LOGGER_JOIN_CHAR = "/"  # member_1/train_loss: MLflow's UI groups the metrics of a prefix together

        def log_hyperparams(self, params) -> None:  # autolog logs the estimator's own parameters
            pass

        def for_member(self, member: int):
            """The logger of a seed ensemble's member ``member`` (> 0; the fit calls it): into the same run, its
            metrics named apart, since every member's Trainer counts its steps from 0."""
            return _run_logger(self.run_id, self._tracking_uri, f"member_{member}")

        def finalize(self, status: str = "success") -> None:  # the run outlives training
            pass

        def __reduce__(self):  # the training processes of strategy="ddp_spawn" get it pickled: rebuild it there
            return _run_logger, (self.run_id, self._tracking_uri, self._prefix)

    return RunLogger(run_id=run_id, tracking_uri=tracking_uri or mlflow.get_tracking_uri(), prefix=prefix)


def _fail_run_callback(listener: AutologListener, estimator):
    from lightning.pytorch.callbacks import Callback

    class FailRun(Callback):
        def on_exception(self, trainer, module, exception) -> None:
            listener.fail(estimator)

        def __reduce__(self):
            # The processes strategy="ddp_spawn" starts get a plain callback: the run belongs to the launching
            # process, where Lightning calls on_exception when a training process fails.
            return Callback, ()

    return FailRun()


def _param_value(value):
    if isinstance(value, (dict, list, tuple)):
        try:
            return _clip(json.dumps(value))
        except TypeError:
            return _clip(repr(value))
    return value


def _clip(text: str) -> str:
    return text if len(text) <= MAX_PARAM_CHARS else text[: MAX_PARAM_CHARS - 3] + "..."
