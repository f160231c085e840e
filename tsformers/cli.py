"""The ``tsformers`` command: ``train``, ``forecast``, ``backtest`` and ``demo``, for scheduled batch jobs.

- ``tsformers train --config job.yaml`` (or flags): fit an estimator on a CSV or
  Parquet file and save the model directory; ``--mlflow`` also logs the run
  and registers the model.
- ``tsformers forecast --model DIR_OR_MODELS_URI --input new.parquet --output forecast.parquet``:
  forecast every series, a chunk of series at a time; ``--engine onnx`` runs the
  directory's ``model.onnx`` (``Forecaster.export_onnx(DIR)``) on ONNX Runtime.
- ``tsformers backtest``: rolling-origin evaluation, written as a metrics table.
- ``tsformers demo``: fit a Gateformer on the built-in demo data next to a naive forecast.

Outputs and configuration are checked before any work. Every output file is
written atomically (:mod:`tsformers.batch.tables`): a failed run leaves no
partial file and keeps the previous output. The same input gives the same
bytes. Exit status: 0 success, 2 bad input or configuration (a message naming
the column or row and the fix), 1 anything else. Messages go to stderr.
"""
from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import re
import sys
import time
import warnings
from pathlib import Path

from tsformers.batch import InputError
from tsformers.batch.frames import in_time_order
from tsformers.batch.jobs import train_job
from tsformers.batch.progress import Progress
from tsformers.batch.tables import (
    AtomicTable,
    check_not_an_input,
    check_output,
    check_writable_location,
    read_table,
    scan_table,
    write_frame,
)

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
DEFAULT_CHUNK_SERIES = 5000
ROW_INDEX = "__tsformers_row__"  # the input file's row numbers, carried through the chunks for error messages


# -- the command line -------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except InputError as err:
        return _fail(args.command, with_cli_words(str(err)), EXIT_BAD_INPUT)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, NotADirectoryError) as err:
        # the estimators' validation errors name the fix
        return _fail(args.command, with_cli_words(str(err)), EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        return _fail(args.command, "interrupted", EXIT_FAILED)
    except Exception as err:  # anything else is a failure of the run, not of its input
        if getattr(args, "verbose", False):
            import traceback

            traceback.print_exc()
        return _fail(args.command, f"{type(err).__name__}: {err}", EXIT_FAILED)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tsformers", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="fit a Gateformer on the built-in demo data and compare with naive")
    demo.add_argument("--horizon", type=int, default=24)
    demo.add_argument("--lookback", type=int, default=96)
    demo.add_argument("--max-epochs", type=int, default=10)
    demo.add_argument("--out", default="demo_forecast.csv", help="where to write the forecast (csv or parquet)")
    demo.add_argument("--save", default=None, help="also save the fitted model to this directory")

    train = commands.add_parser("train", help="fit an estimator on a CSV/Parquet file and save it")
    train.add_argument("--config", help="a YAML or JSON job file (keys: data, estimator, params, columns, "
                                        "model_dir, mlflow); flags override it")
    train.add_argument("--data", help="the training data (csv or parquet)")
    train.add_argument("--estimator", help="e.g. GateformerForecaster (or Gateformer)")
    train.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                       help="an estimator parameter, VALUE in YAML/JSON syntax (repeatable)")
    _add_column_flags(train)
    train.add_argument("--model-dir", help="where to save the fitted model directory")
    train.add_argument("--mlflow", action="store_true", help="log the fit to MLflow (needs tsformers[mlflow])")
    train.add_argument("--experiment", help="MLflow experiment name")
    train.add_argument("--registered-model-name", help="register the logged model under this name")
    train.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or MLflow's)")
    train.add_argument("--verbose", action="store_true", help="show training progress and tracebacks")

    forecast = commands.add_parser("forecast", help="forecast new data with a saved or registered model")
    forecast.add_argument("--model", required=True, help="a model directory or an MLflow model URI (models:/name/1)")
    forecast.add_argument("--input", "--data", dest="input", required=True,
                          help="history to forecast from (csv or parquet)")
    forecast.add_argument("--output", "--out", dest="output", required=True,
                          help="where to write the forecast (csv or parquet)")
    forecast.add_argument("--future", help="known-future covariates over the horizon (csv or parquet), for models "
                                           "fitted with future_covariates")
    forecast.add_argument("--static-data", help="static attributes of series the model has not seen, when they "
                                                "are not columns of the input (csv or parquet)")
    forecast.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SERIES,
                          help=f"series forecast at a time (default {DEFAULT_CHUNK_SERIES})")
    forecast.add_argument("--engine", choices=("torch", "onnx"), default="torch",
                          help="torch (default), or onnx: ONNX Runtime on the model directory's model.onnx, "
                               "written by Forecaster.export_onnx(DIR) (needs tsformers[onnx])")
    forecast.add_argument("--tracking-uri", help="the MLflow tracking URI of a models:/ or runs:/ --model "
                                                 "(default: $MLFLOW_TRACKING_URI)")
    forecast.add_argument("--fill-gaps", action="store_true", help=FILL_GAPS_HELP)
    forecast.add_argument("--verbose", action="store_true", help="show tracebacks")

    backtest = commands.add_parser("backtest", help="rolling-origin evaluation written as a metrics table")
    source = backtest.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="evaluate this fitted model (directory or MLflow URI) at every origin")
    source.add_argument("--config", help="refit the job's estimator at every origin (a train job file)")
    backtest.add_argument("--input", "--data", dest="input",
                          help="the data to evaluate on (csv or parquet); default: the job's data")
    backtest.add_argument("--output", "--out", dest="output", required=True,
                          help="the metrics table (csv or parquet): one row per window, series and target")
    backtest.add_argument("--forecasts", default=None,
                          help="also write every forecast step (csv or parquet): the table Forecaster.backtest returns")
    backtest.add_argument("--n-windows", type=int, default=None,
                          help="forecast origins per series, as Forecaster.backtest's n_windows (default 3)")
    # the name before --n-windows, kept so that scheduled jobs written with it still run; not in --help
    backtest.add_argument("--n-splits", dest="n_splits", type=int, default=None, help=argparse.SUPPRESS)
    backtest.add_argument("--step", type=int, default=None, help="steps between origins (default: horizon)")
    backtest.add_argument("--level", default=None, help="conformal interval levels in percent, comma-separated "
                                                        "(e.g. 80,95): adds coverage_L and width_L columns")
    backtest.add_argument("--tracking-uri", help="the MLflow tracking URI of a models:/ or runs:/ --model "
                                                 "(default: $MLFLOW_TRACKING_URI)")
    backtest.add_argument("--fill-gaps", action="store_true", help=FILL_GAPS_HELP + " (with --model)")
    backtest.add_argument("--verbose", action="store_true", help="show tracebacks")
    return parser


def _add_column_flags(parser) -> None:
    parser.add_argument("--time-col")
    parser.add_argument("--id-col")
    parser.add_argument("--target", help="comma-separated target columns")
    parser.add_argument("--covariates", help="comma-separated past-observed covariates")
    parser.add_argument("--future-covariates", help="comma-separated known-future covariates")
    parser.add_argument("--static", help="comma-separated static attributes (per-series columns)")
    parser.add_argument("--static-data", help="static attributes that are not columns of the data: a file with "
                                              "the id column and those columns (csv or parquet)")


def _fail(command: str, message, status: int) -> int:
    _log(command, f"error: {message}")
    return status


def _log(command: str, message: str) -> None:
    print(f"tsformers {command}: {message}", file=sys.stderr, flush=True)


# -- demo ---------------------------------------------------------------------------------------

def run_demo(args) -> int:
    import numpy as np

    from tsformers import GateformerForecaster
    from tsformers.datasets import make_demo
    from tsformers.metrics import mae, mse

    check_output(Path(args.out), "--out")
    if args.save:
        _check_model_dir(Path(args.save), "--save")
    df = make_demo()
    train, test = df.iloc[: -args.horizon], df.iloc[-args.horizon:]
    columns = [c for c in df.columns if c != "date"]
    print(f"demo data: {len(df)} hourly steps of {len(columns)} series; holding out the last {args.horizon}")
    started = time.perf_counter()
    model = GateformerForecaster(horizon=args.horizon, lookback=args.lookback, max_epochs=args.max_epochs,
                                 batch_size=32, learning_rate=1e-3, random_state=0).fit(train)
    print(f"fitted GateformerForecaster in {time.perf_counter() - started:.1f} s "
          f"({len(model.training_log_)} epochs)")
    forecast = model.predict()
    truth = test[columns].to_numpy()
    naive = np.repeat(train[columns].to_numpy()[-1:], args.horizon, axis=0)
    print(forecast.head(8).to_string(index=False))
    print(f"\n{'model':<22}{'MSE':>10}{'MAE':>10}")
    for name, pred in [("Gateformer", forecast[columns].to_numpy()), ("naive (last value)", naive)]:
        print(f"{name:<22}{mse(truth, pred):>10.3f}{mae(truth, pred):>10.3f}")
    write_frame(forecast, Path(args.out))
    print(f"\nforecast written to {args.out}")
    if args.save:
        print(f"model saved to {model.save(args.save)}")
    return EXIT_OK


# -- train --------------------------------------------------------------------------------------

def run_train(args) -> int:
    job = train_job(args)
    estimator = make_estimator(job, verbose=args.verbose)
    check_trainer_settings(estimator)
    if job["model_dir"]:
        _check_model_dir(job["model_dir"], "--model-dir")  # before the fit, not after it
    id_col = job_id_col(job)
    data = read_table(job["data"], text_columns=[id_col])
    static = {} if job["static_data"] is None else \
        {"static_df": read_table(job["static_data"], text_columns=[id_col])}
    _log("train", f"fitting {type(estimator).__name__} on {job['data']} ({data.height} rows)")
    started = time.perf_counter()
    summary = {"estimator": type(estimator).__name__}
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries the summary only (MLflow prints run links)
        if job["mlflow"] is not None:
            summary.update(_fit_with_mlflow(estimator, data, job["mlflow"], static))
        else:
            estimator.fit(data, **static)
    _log("train", f"fitted in {time.perf_counter() - started:.1f} s ({len(estimator.training_log_)} epochs)")
    if job["model_dir"]:
        summary["model_dir"] = str(estimator.save(job["model_dir"]))
        _log("train", f"model saved to {summary['model_dir']}")
    print(json.dumps(summary))
    return EXIT_OK


def job_id_col(job: dict) -> str:
    """The id column of a job's data, read from CSV as text: a CSV file has no types, and ids are names."""
    return job["columns"].get("id_col") or "unique_id"  # the id column the estimators find without id_col


def _check_model_dir(path: Path, flag: str) -> None:
    """Refuse, before the fit, a model directory that saving would not replace or could not create."""
    from tsformers.estimators.modelfile import check_save_path

    check_save_path(Path(path))
    check_writable_location(Path(path), flag)


def check_trainer_settings(estimator) -> None:
    """Refuse, before any work, Lightning settings this machine cannot run (``accelerator="gpu"`` without one)."""
    wanted = {key: value for key, value in (getattr(estimator, "trainer_kwargs", None) or {}).items()
              if key in ("accelerator", "devices", "strategy", "num_nodes", "precision")}
    if not wanted:
        return
    import logging

    import lightning as L
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:  # the trial Trainer's start-up chatter ("GPU available: ...")
        logger.setLevel(logging.WARNING)
    try:
        L.Trainer(**{"accelerator": "cpu", "devices": 1, **wanted}, logger=False, enable_checkpointing=False,
                  enable_progress_bar=False, enable_model_summary=False)
    except (MisconfigurationException, ValueError, RuntimeError, ImportError) as err:
        message = " ".join(str(err).split())
        raise InputError(f"trainer_kwargs {wanted} cannot run on this machine: {message} Pass settings it "
                         f"supports (e.g. accelerator='cpu').") from None
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def make_estimator(job: dict, verbose: bool = False):
    """The job's estimator; ``verbose`` (``train --verbose``) switches on its training progress where it has one."""
    from tsformers.estimators.registry import estimator_class

    cls = estimator_class(job["estimator"])
    params = {**job["params"], **{k: v for k, v in job["columns"].items() if v is not None}}
    if verbose and "verbose" in inspect.signature(cls).parameters:
        params["verbose"] = True
    try:
        return cls(**params)
    except TypeError as err:
        known = sorted(inspect.signature(cls).parameters)
        raise InputError(f"{err}; {cls.__name__} takes the parameters {known}.") from None


def _fit_with_mlflow(estimator, data, settings: dict, static: dict) -> dict:
    try:
        import mlflow

        import tsformers.tracking as tracking
    except ImportError:
        raise InputError("--mlflow needs MLflow: pip install 'tsformers[mlflow]'.") from None
    if settings.get("tracking_uri"):
        mlflow.set_tracking_uri(settings["tracking_uri"])
    if settings.get("experiment"):
        mlflow.set_experiment(settings["experiment"])
    tracking.autolog(registered_model_name=settings.get("registered_model_name"))
    try:
        with warnings.catch_warnings():  # a job that was asked to log and could not has failed (exit 1)
            warnings.filterwarnings("error", message="tsformers autolog could not", category=RuntimeWarning)
            with mlflow.start_run(run_name=settings.get("run_name") or type(estimator).__name__) as run:
                estimator.fit(data, **static)
    finally:
        tracking.autolog(disable=True)
    summary = {"run_id": run.info.run_id, "tracking_uri": mlflow.get_tracking_uri()}
    model = mlflow.last_logged_model() if hasattr(mlflow, "last_logged_model") else None
    if model is not None and model.source_run_id == run.info.run_id:
        summary["model_uri"] = model.model_uri
    if settings.get("registered_model_name"):
        from mlflow import MlflowClient

        versions = MlflowClient().search_model_versions(f"name='{settings['registered_model_name']}' and "
                                                        f"run_id='{run.info.run_id}'")
        if versions:
            summary["registered_model_uri"] = f"models:/{settings['registered_model_name']}/{versions[0].version}"
    _log("train", f"logged to MLflow run {run.info.run_id} at {summary['tracking_uri']}"
         + (f"; registered as {summary['registered_model_uri']}" if "registered_model_uri" in summary else ""))
    return summary


# -- forecast -----------------------------------------------------------------------------------

FILL_GAPS_HELP = ("insert the input's missing timestamps and interpolate them, at most the model's max_gap steps "
                  "in a row (3 by default); a model fitted with missing='mask' masks them instead")


def forecast_with_gaps_filled(model):
    """``--fill-gaps``: the loaded model reads gappy input as ``fill_gaps=True`` with a policy for the inserted
    values (its own ``missing``, or interpolation where it refused missing values). Set as attributes, so the
    ONNX engine's forecaster takes them too."""
    model.fill_gaps = True
    if model.missing == "error":
        model.missing = "interpolate"
    return model


def with_cli_words(message: str) -> str:
    """An error of the library in the command's words: its parameters as the flags that set them."""
    return message.replace("Pass fill_gaps=True", "Pass --fill-gaps")


def run_forecast(args) -> int:
    if args.chunk_size < 1:
        raise InputError(f"--chunk-size must be a positive number of series, got {args.chunk_size}.")
    output = Path(args.output)
    check_output(output)
    check_not_an_input(output, input=args.input, future=args.future, static_data=args.static_data)
    model = load_forecaster(args.model, engine=args.engine, tracking_uri=args.tracking_uri, history_only=True)
    if args.fill_gaps:
        model = forecast_with_gaps_filled(model)
    ids = id_columns(model.schema_)
    data = scan_table(args.input, text_columns=ids)
    future = read_table(args.future, text_columns=ids) if args.future else None
    static = read_table(args.static_data, text_columns=ids).to_pandas() if args.static_data else None
    started = time.perf_counter()
    n_rows = forecast_file(model, data, output, future=future, static=static, chunk_size=args.chunk_size,
                           progress=Progress("forecast", sys.stderr))
    _log("forecast", f"wrote {n_rows} rows to {output} in {time.perf_counter() - started:.1f} s")
    return EXIT_OK


def load_forecaster(spec: str, engine: str = "torch", tracking_uri: str | None = None, history_only: bool = False):
    """A fitted forecaster from a model directory or an MLflow model URI (``models:/name/1``, ``runs:/...``).

    ``history_only`` (``forecast``: a forecast after each input history, nothing else) with ``engine="torch"``:
    a model directory of the estimators of :data:`tsformers.estimators.networks.NETWORKS` is read
    without its estimator class, so without scikit-learn or Lightning
    (:func:`~tsformers.estimators.saved.load_torch`). ``engine="onnx"``: forecast with the directory's
    ``model.onnx`` through ONNX Runtime (model directories only); for the estimators of
    :data:`tsformers.estimators.onnx.ONNX_FORECASTERS` without importing torch, Lightning or scikit-learn.
    ``tracking_uri``: the MLflow tracking server of a ``models:/`` or ``runs:/`` URI (default:
    ``$MLFLOW_TRACKING_URI``); without either such a URI is refused rather than looked up in a new local store.
    """
    if _is_uri(spec):
        if engine != "torch":
            raise InputError(f"--engine {engine} reads model.onnx from a model directory; {spec} is an MLflow URI. "
                             f"Download the model directory, export it (Forecaster.export_onnx) and pass its path.")
        return _load_mlflow_model(spec, tracking_uri)
    path = Path(spec)
    if not path.exists():
        raise InputError(f"no model at {spec}: pass a directory written by Forecaster.save or `tsformers train`, "
                         f"or an MLflow model URI such as models:/NAME/VERSION.")
    if engine == "onnx":
        return _load_onnx(path)
    from tsformers.estimators.networks import NETWORKS
    from tsformers.estimators.saved import load_torch

    if history_only and _saved_estimator(path) in NETWORKS:
        return load_torch(path)  # the estimator's network and forecast, without scikit-learn
    from tsformers.estimators.base import BaseForecaster

    return BaseForecaster.load(path)  # also the one to name a damaged or unknown directory


def _load_onnx(path: Path):
    """The ONNX engine: without torch for the estimators it knows, else the estimator with its graph attached."""
    from tsformers.estimators.onnx import ONNX_FORECASTERS, load_onnx

    try:
        name = _saved_estimator(path)
        if name is not None and name not in ONNX_FORECASTERS:
            from tsformers.estimators.base import BaseForecaster

            return BaseForecaster.load(path, engine="onnx")
        return load_onnx(path)  # also the one to name a damaged directory
    except ImportError as err:
        raise InputError(str(err)) from None


def _saved_estimator(path: Path) -> str | None:
    """The estimator named in a model directory's config.json (unchecked: loading checks it), or None."""
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return None
    name = config.get("estimator") if isinstance(config, dict) else None
    return name if isinstance(name, str) else None


#: MLflow URIs that are looked up on a tracking server (or its model registry).
TRACKED_SCHEMES = ("models", "runs")


def _load_mlflow_model(spec: str, tracking_uri: str | None):
    scheme = spec.split(":", 1)[0].lower()
    try:
        import tsformers.tracking as tracking

        tracking.load_model  # noqa: B018 - imports MLflow, or says how to install it
    except ImportError:
        raise InputError(f"loading {spec} needs MLflow: pip install 'tsformers[mlflow]'.") from None
    import mlflow
    from mlflow.exceptions import MlflowException

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    elif scheme in TRACKED_SCHEMES and not _tracking_uri_set():
        raise InputError(f"{spec} is looked up on an MLflow tracking server, but none is set: pass "
                         f"--tracking-uri URI or set MLFLOW_TRACKING_URI (e.g. http://mlflow:5000 or "
                         f"sqlite:///path/to/mlflow.db). Without one MLflow would create an empty ./mlflow.db.")
    try:
        return tracking.load_model(spec)
    except MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            raise InputError(f"no model at {spec}: {err.message}") from None
        raise
    except OSError as err:
        raise InputError(f"no model at {spec}: {err}") from None


def _tracking_uri_set() -> bool:
    """Whether a tracking URI was chosen: $MLFLOW_TRACKING_URI, or ``mlflow.set_tracking_uri`` in this process."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return True
    try:
        from mlflow.tracking._tracking_service.utils import is_tracking_uri_set
    except ImportError:  # a future MLflow without it: its default store is the one left to refuse
        return False
    return bool(is_tracking_uri_set())


def id_columns(schema) -> list[str]:
    """The id column to read as text from CSV: that of a model fitted on text ids (``"001"`` stays ``"001"``).

    A model fitted on integer ids gets them as CSV's integers, so it recognises its series.
    """
    if schema.layout != "long" or all(isinstance(s, (int, bool)) for s in schema.series):
        return []
    return [schema.id_col]


def _is_uri(spec: str) -> bool:
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:", spec) is not None


def forecast_file(model, data, output: Path, *, future=None, static=None, chunk_size: int = DEFAULT_CHUNK_SERIES,
                  progress=None) -> int:
    """Forecast every series of ``data`` into ``output``, ``chunk_size`` series at a time.

    ``data`` is a polars DataFrame or LazyFrame (``scan_table``: a Parquet file
    is then read one chunk of series at a time, so memory does not grow with
    the number of series). The output is written to a temporary file that
    replaces ``output`` only once every chunk succeeded. Returns the number of
    rows written.
    """
    import polars as pl

    from tsformers.batch.frames import forecast_frame

    schema = model.schema_
    data = data.lazy().with_row_index(ROW_INDEX)
    _check_columns(_collect(data.collect_schema).names(), schema)
    future = None if future is None else future.with_row_index(ROW_INDEX)
    if schema.layout == "long":
        ids = _collect(data.select(pl.col(schema.id_col).unique(maintain_order=True)).collect).to_series()
        if len(ids) == 0:
            raise InputError("the input has no rows; pass at least `lookback` rows of every series.")
        chunks = [ids.slice(start, chunk_size) for start in range(0, len(ids), chunk_size)]
    else:  # one multivariate series
        chunks = [None]
    progress = progress or Progress("forecast", None)
    progress.start(sum(len(c) for c in chunks) if schema.layout == "long" else 1)
    n_rows = 0
    with AtomicTable(output) as table:
        for chunk in chunks:
            selected = data if chunk is None else data.filter(pl.col(schema.id_col).is_in(chunk.implode()))
            frame = in_time_order(_indexed_pandas(_collect(selected.collect)), schema.id_col, schema.time_col)
            if len(frame) == 0:
                raise InputError("the input has no rows; pass at least `lookback` rows of every series.")
            future_part = None
            if future is not None:
                rows = future if chunk is None or schema.id_col not in future.columns else \
                    future.filter(pl.col(schema.id_col).is_in(chunk.implode()))
                future_part = _indexed_pandas(rows)
            try:
                out = forecast_frame(model, frame, future_df=future_part, static_df=static)
            except (ValueError, TypeError) as err:
                raise InputError(in_file_rows(str(err), frame.index)) from None
            table.write(out)
            n_rows += len(out)
            progress.advance(1 if chunk is None else len(chunk))
    progress.finish()
    return n_rows


def _check_columns(names: list[str], schema) -> None:
    """The columns the model needs, before any work (the chunks are cut along the id column)."""
    from tsformers.batch.frames import model_columns

    needed = model_columns(schema)  # in a file, the time is a column even for a model fitted on a DatetimeIndex
    missing = [c for c in needed if c not in names]
    if missing:
        raise InputError(f"column(s) {missing} are missing, but the model was fitted on them; pass a file with "
                         f"the columns {needed}.")


def _collect(step):
    """Run a polars step that reads the input; a file polars cannot read is bad input."""
    import polars as pl

    try:
        return step()
    except pl.exceptions.PolarsError as err:
        raise InputError(f"cannot read the input: {err}") from None


def _indexed_pandas(rows):
    """Rows that carry their input row numbers, as pandas indexed by those numbers (for error messages)."""
    frame = rows.to_pandas()
    frame.index = frame.pop(ROW_INDEX).to_numpy().astype("int64")
    return frame


def in_file_rows(message: str, index) -> str:
    """Rewrite the row numbers of a chunk's error message (``row 3``, ``rows 3 and 4``) as rows of the input file."""
    def file_row(match):
        numbers = [int(n) for n in match.group(2, 4) if n is not None]
        mapped = [str(index[n]) if 0 <= n < len(index) else str(n) for n in numbers]
        return f"{match.group(1)} {' and '.join(mapped)}"

    return re.sub(r"\b(rows?) (\d+)( and (\d+))?\b", file_row, message)


# -- backtest -----------------------------------------------------------------------------------

def run_backtest(args) -> int:
    if args.n_splits is not None:
        if args.n_windows is not None:
            raise InputError("pass --n-windows only: --n-splits is its former name.")
        _log("backtest", "--n-splits is now --n-windows (the name Forecaster.backtest uses); it still works")
        args.n_windows = args.n_splits
    n_windows = 3 if args.n_windows is None else args.n_windows
    if n_windows < 1:
        raise InputError(f"--n-windows must be at least 1, got {n_windows}.")
    output = Path(args.output)
    forecasts_out = None if args.forecasts is None else Path(args.forecasts)
    check_output(output)
    if forecasts_out is not None:
        check_output(forecasts_out, flag="--forecasts")
        if forecasts_out.resolve() == output.resolve():
            raise InputError("--forecasts and --output name the same file; give each table its own.")
    levels = parse_levels(args.level)
    model = job = None
    for table in filter(None, (output, forecasts_out)):
        check_not_an_input(table, input=args.input, config=args.config)
    if args.config:
        if args.fill_gaps:
            raise InputError("--fill-gaps applies to a saved --model; with --config set fill_gaps and missing in "
                             "the job's params.")
        job = train_job(args)
        for table in filter(None, (output, forecasts_out)):
            check_not_an_input(table, data=job["data"], static_data=job["static_data"])
        check_trainer_settings(make_estimator(job))  # a bad estimator, parameter or device fails before any fit
        id_col, time_col = job_id_col(job), job["columns"].get("time_col")
        data = read_table(job["data"], text_columns=[id_col])
    else:
        if not args.input:
            raise InputError("pass --input FILE: the data to evaluate the model on.")
        model = load_forecaster(args.model, tracking_uri=args.tracking_uri)
        if args.fill_gaps:
            model = forecast_with_gaps_filled(model)
        id_col, time_col = model.schema_.id_col, model.schema_.time_col
        data = read_table(args.input, text_columns=id_columns(model.schema_))
    frame = in_time_order(data.to_pandas(), id_col, time_col)
    forecasts = backtest_forecasts(frame, model=model, job=job, n_windows=n_windows, step=args.step, level=levels)
    metrics = backtest_metrics(forecasts, frame)
    write_frame(metrics, output)
    if forecasts_out is not None:
        write_frame(forecasts, forecasts_out)
        _log("backtest", f"wrote {len(forecasts)} forecast rows to {forecasts_out}")
    for window, rows in metrics.groupby("window", sort=True):
        _log("backtest", f"window {window} (cutoff {rows['cutoff'].iloc[0]}): MSE {rows['mse'].mean():.4g}, "
                         f"MAE {rows['mae'].mean():.4g}")
    _log("backtest", f"wrote {len(metrics)} rows to {output}")
    return EXIT_OK


def parse_levels(text: str | None) -> list[float] | None:
    """The ``--level`` percentages (``"80,95"``), or None when not given."""
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",") if v.strip()] or None
    except ValueError:
        raise InputError(f"--level {text!r} is not a comma-separated list of percentages; pass e.g. "
                         f"--level 80,95.") from None


def backtest_forecasts(frame, *, model=None, job=None, n_windows: int = 3, step: int | None = None, level=None):
    """``Forecaster.backtest``'s table: with ``model`` the fitted model forecasts every origin, with ``job`` (a
    train job) a fresh estimator is fitted on the data before each origin (``refit=True``)."""
    if model is not None:
        return model.backtest(frame, n_windows=n_windows, step=step, level=level)
    static = read_table(job["static_data"], text_columns=[job_id_col(job)]) if job.get("static_data") else None
    forecasts = make_estimator(job).backtest(frame, n_windows=n_windows, step=step, refit=True, level=level,
                                             static_df=static)
    _log("backtest", f"fitted {n_windows} models, one per origin")
    return forecasts


def backtest_metrics(forecasts, history):
    """The metrics of a backtest table, one row per window, series and target, in the backtest's vocabulary.

    Columns: ``window``, ``cutoff`` (the last timestamp the window read), the id column (long data),
    ``target``, then :func:`tsformers.metrics.evaluate`'s ``n``, ``mse``, ``mae``, ``rmse``, ``smape``,
    ``mase`` (scaled by each series' one-step naive error on ``history`` before its first cutoff), then
    ``pinball`` for a quantile model and ``coverage_L``/``width_L`` per interval level L.
    """
    from tsformers.metrics import evaluate

    keys = list(forecasts.columns[: forecasts.columns.get_loc("target")])   # "window" and, for long data, the id
    by = keys + ["target"]
    metrics = evaluate(forecasts, by=by, history=history)
    cutoffs = forecasts.groupby(by, sort=False)["cutoff"].first().reset_index(drop=True)
    metrics.insert(1, "cutoff", cutoffs)
    return metrics.sort_values(["window"], kind="stable").reset_index(drop=True)


COMMANDS = {"demo": run_demo, "train": run_train, "forecast": run_forecast, "backtest": run_backtest}


if __name__ == "__main__":
    sys.exit(main())
