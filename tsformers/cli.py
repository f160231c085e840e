"""The ``tsformers`` command: ``train``, ``forecast``, ``backtest`` and ``demo``, for scheduled batch jobs.

- ``tsformers train --config job.yaml`` (or flags): fit an estimator on a CSV or
  Parquet file and save the model directory; ``--mlflow`` also logs the run
  and registers the model.
- ``tsformers forecast --model DIR_OR_MODELS_URI --input new.parquet --output forecast.parquet``:
  forecast every series, a chunk of series at a time; ``--engine onnx`` runs the
  directory's ``model.onnx`` (``Forecaster.export_onnx(DIR)``) on ONNX Runtime.
- ``tsformers backtest``: rolling-origin evaluation, written as a metrics table.
- ``tsformers demo``: fit a Gateformer on the built-in demo data next to a naive forecast.

Every output file is written atomically (a temporary file beside it, then a
rename): a failed run leaves no partial file and keeps the previous output.
The same input gives the same bytes. Exit status: 0 success, 2 bad input or
configuration (a message naming the column or row and the fix), 1 anything
else. Messages go to stderr.
"""
from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
DEFAULT_CHUNK_SERIES = 5000
ROW_INDEX = "__tsformers_row__"  # the input file's row numbers, carried through the chunks for error messages
TABLE_SUFFIXES = (".csv", ".parquet")
CONFIG_KEYS = {"data", "static_data", "estimator", "params", "columns", "model_dir", "mlflow"}
COLUMN_KEYS = {"time_col", "id_col", "target", "covariates", "future_covariates", "static"}
MLFLOW_KEYS = {"experiment", "registered_model_name", "tracking_uri", "run_name"}


class InputError(Exception):
    """Bad input or configuration: exit status 2 with this message."""


# -- the command line -------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except InputError as err:
        return _fail(args.command, err, EXIT_BAD_INPUT)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, NotADirectoryError) as err:
        return _fail(args.command, err, EXIT_BAD_INPUT)  # the estimators' validation errors name the fix
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
    forecast.add_argument("--verbose", action="store_true", help="show tracebacks")

    backtest = commands.add_parser("backtest", help="rolling-origin evaluation written as a metrics table")
    source = backtest.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="evaluate this fitted model (directory or MLflow URI) at every origin")
    source.add_argument("--config", help="refit the job's estimator at every origin (a train job file)")
    backtest.add_argument("--input", "--data", dest="input",
                          help="the data to evaluate on (csv or parquet); default: the job's data")
    backtest.add_argument("--output", "--out", dest="output", required=True,
                          help="the metrics table (csv or parquet)")
    backtest.add_argument("--n-splits", type=int, default=3, help="number of forecast origins (default 3)")
    backtest.add_argument("--step", type=int, default=None, help="steps between origins (default: horizon)")
    backtest.add_argument("--level", default=None, help="conformal interval levels in percent, comma-separated "
                                                        "(e.g. 80,95): adds coverage_L and width_L columns")
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
    estimator = make_estimator(job)
    if job["model_dir"]:
        from tsformers.estimators.persistence import check_save_path

        check_save_path(job["model_dir"])  # before the fit, not after it
    data = read_table(job["data"])
    static = {} if job["static_data"] is None else {"static_df": read_table(job["static_data"])}
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


def train_job(args) -> dict:
    """The training job: the config file (if any) overridden by the flags, checked for completeness."""
    job = _read_config(Path(args.config)) if getattr(args, "config", None) else {}
    base = Path(args.config).resolve().parent if getattr(args, "config", None) else Path.cwd()
    columns = dict(job.get("columns") or {})
    for key in COLUMN_KEYS:
        value = getattr(args, key, None)
        if value is not None:
            columns[key] = value if key in ("time_col", "id_col") else [v.strip() for v in value.split(",")
                                                                        if v.strip()]
    params = dict(job.get("params") or {})
    for item in getattr(args, "param", []) or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise InputError(f"--param {item!r} is not NAME=VALUE, e.g. --param max_epochs=10.")
        params[name.strip()] = _parse_value(value)
    mlflow_settings = job.get("mlflow")
    if getattr(args, "mlflow", False) or any(getattr(args, k, None) for k in
                                             ("experiment", "registered_model_name", "tracking_uri")):
        mlflow_settings = dict(mlflow_settings or {})
    if mlflow_settings is not None:
        for key in ("experiment", "registered_model_name", "tracking_uri"):
            if getattr(args, key, None):
                mlflow_settings[key] = getattr(args, key)
    data = getattr(args, "input", None) or getattr(args, "data", None) or job.get("data")
    model_dir = getattr(args, "model_dir", None) or job.get("model_dir")
    static_data = getattr(args, "static_data", None) or job.get("static_data")
    estimator = getattr(args, "estimator", None) or job.get("estimator")
    if not data:
        raise InputError("no training data: pass --data FILE or set 'data:' in the config.")
    if not estimator:
        raise InputError("no estimator: pass --estimator NAME (e.g. GateformerForecaster) or set 'estimator:'.")
    if args.command == "train" and not model_dir and mlflow_settings is None:
        raise InputError("the fitted model would not be kept: pass --model-dir DIR and/or --mlflow.")
    return {"data": _resolve(data, base), "estimator": estimator, "params": params, "columns": columns,
            "model_dir": _resolve(model_dir, base) if model_dir else None, "mlflow": mlflow_settings,
            "static_data": _resolve(static_data, base) if static_data else None}


def _read_config(path: Path) -> dict:
    if not path.is_file():
        raise InputError(f"no such config file: {path}")
    text = path.read_text()
    try:
        if path.suffix == ".json":
            config = json.loads(text)
        else:
            import yaml

            config = yaml.safe_load(text)
    except ImportError:
        raise InputError(f"{path}: reading YAML needs PyYAML (pip install pyyaml), or write the job as JSON.")
    except Exception as err:
        raise InputError(f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {err}") from None
    if not isinstance(config, dict):
        raise InputError(f"{path} must hold a mapping of keys {sorted(CONFIG_KEYS)}.")
    for key, allowed, where in [(None, CONFIG_KEYS, ""), ("columns", COLUMN_KEYS, "columns."),
                                ("mlflow", MLFLOW_KEYS, "mlflow.")]:
        section = config if key is None else (config.get(key) or {})
        if not isinstance(section, dict):
            raise InputError(f"{path}: '{key}' must be a mapping with keys among {sorted(allowed)}.")
        unknown = sorted(set(section) - allowed)
        if unknown:
            raise InputError(f"{path}: unknown key(s) {[where + k for k in unknown]}; allowed: "
                             f"{[where + k for k in sorted(allowed)]}.")
    if config.get("params") is not None and not isinstance(config["params"], dict):
        raise InputError(f"{path}: 'params' must be a mapping of estimator parameters.")
    if "mlflow" in config and config["mlflow"] is None:
        config["mlflow"] = {}
    return config


def _parse_value(text: str):
    try:
        import yaml

        return yaml.safe_load(text)
    except ImportError:
        try:
            return json.loads(text)
        except ValueError:
            return text
    except Exception:
        return text


def _resolve(path, base: Path) -> Path:
    path = Path(path).expanduser()
    return path if path.is_absolute() else base / path


def estimator_class(name: str):
    """The exported ``BaseForecaster`` subclass called ``name`` (``Gateformer`` finds ``GateformerForecaster``)."""
    import tsformers
    from tsformers.estimators.base import BaseForecaster

    found = {n: c for n, c in vars(tsformers).items()
             if isinstance(c, type) and issubclass(c, BaseForecaster) and c is not BaseForecaster}
    wanted = name.lower().removesuffix("forecaster")
    for n, cls in found.items():
        if n.lower().removesuffix("forecaster") == wanted:
            return cls
    raise InputError(f"unknown estimator {name!r}; choose one of {sorted(found)}.")


def make_estimator(job: dict):
    cls = estimator_class(job["estimator"])
    params = {**job["params"], **{k: v for k, v in job["columns"].items() if v is not None}}
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

def run_forecast(args) -> int:
    if args.chunk_size < 1:
        raise InputError(f"--chunk-size must be a positive number of series, got {args.chunk_size}.")
    output = Path(args.output)
    _check_suffix(output)
    _check_not_an_input(output, input=args.input, future=args.future, static_data=args.static_data)
    model = load_forecaster(args.model, engine=args.engine)
    data = scan_table(args.input)
    future = read_table(args.future) if args.future else None
    static = read_table(args.static_data).to_pandas() if args.static_data else None
    started = time.perf_counter()
    n_rows = forecast_file(model, data, output, future=future, static=static, chunk_size=args.chunk_size,
                           progress=Progress("forecast", sys.stderr))
    _log("forecast", f"wrote {n_rows} rows to {output} in {time.perf_counter() - started:.1f} s")
    return EXIT_OK


def load_forecaster(spec: str, engine: str = "torch"):
    """A fitted forecaster from a model directory or an MLflow model URI (``models:/name/1``, ``runs:/...``).

    ``engine="onnx"``: forecast with the directory's ``model.onnx`` through ONNX Runtime (model directories only).
    """
    if _is_uri(spec):
        if engine != "torch":
            raise InputError(f"--engine {engine} reads model.onnx from a model directory; {spec} is an MLflow URI. "
                             f"Download the model directory, export it (Forecaster.export_onnx) and pass its path.")
        try:
            import tsformers.tracking as tracking

            tracking.load_model  # noqa: B018 - imports MLflow, or says how to install it
        except ImportError:
            raise InputError(f"loading {spec} needs MLflow: pip install 'tsformers[mlflow]'.") from None
        from mlflow.exceptions import MlflowException

        try:
            return tracking.load_model(spec)
        except MlflowException as err:
            if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
                raise InputError(f"no model at {spec}: {err.message}") from None
            raise
        except OSError as err:
            raise InputError(f"no model at {spec}: {err}") from None
    path = Path(spec)
    if not path.exists():
        raise InputError(f"no model at {spec}: pass a directory written by Forecaster.save or `tsformers train`, "
                         f"or an MLflow model URI such as models:/NAME/VERSION.")
    from tsformers.estimators.base import BaseForecaster

    if engine == "onnx":
        try:
            return BaseForecaster.load(path, engine="onnx")
        except ImportError as err:
            raise InputError(str(err)) from None
    return BaseForecaster.load(path)


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

    from tsformers.tracking.frames import forecast_frame

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
            frame = _indexed_pandas(_collect(selected.collect))
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
    from tsformers.tracking.frames import model_columns

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


class AtomicTable:
    """A CSV or Parquet file written chunk by chunk to a temporary file, renamed into place on success."""

    def __init__(self, path: Path):
        self.path = Path(path)
        _check_suffix(self.path)
        self.tmp, self._writer, self._file = None, None, None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        return self

    def write(self, frame) -> None:
        import pandas as pd

        if not isinstance(frame, pd.DataFrame):
            frame = frame.to_pandas()
        if self.path.suffix == ".csv":
            if self._file is None:
                self._file = open(self.tmp, "w", newline="")
                frame.to_csv(self._file, index=False)
            else:
                frame.to_csv(self._file, index=False, header=False)
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.tmp, table.schema)
        self._writer.write_table(table.cast(self._writer.schema))

    def __exit__(self, kind, error, tb):
        try:
            if self._writer is not None:
                self._writer.close()
            if self._file is not None:
                self._file.close()
            if kind is None:
                if self._writer is None and self._file is None:
                    raise RuntimeError(f"nothing was written to {self.path}.")
                with open(self.tmp, "rb") as written:  # on disk before it takes the place of the old file
                    os.fsync(written.fileno())
                os.replace(self.tmp, self.path)
        finally:
            if self.tmp.exists():
                self.tmp.unlink()
        return False


def write_frame(frame, path: Path) -> None:
    """Write a pandas or polars frame to CSV or Parquet atomically."""
    with AtomicTable(Path(path)) as table:
        table.write(frame)


def read_table(path):
    """A CSV (dates parsed) or Parquet file as a polars frame; a missing or unreadable file is bad input."""
    import polars as pl

    path = Path(path)
    _check_suffix(path)
    if not path.is_file():
        raise InputError(f"no such file: {path}")
    try:
        if path.suffix == ".parquet":
            return pl.read_parquet(path)
        return pl.read_csv(path, try_parse_dates=True)
    except (pl.exceptions.PolarsError, OSError) as err:
        raise InputError(f"cannot read {path}: {err}") from None


def scan_table(path):
    """A Parquet file as a polars LazyFrame (read later, chunk by chunk); a CSV file is read whole."""
    import polars as pl

    path = Path(path)
    _check_suffix(path)
    if not path.is_file():
        raise InputError(f"no such file: {path}")
    if path.suffix == ".csv":
        return read_table(path).lazy()
    try:
        return pl.scan_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as err:
        raise InputError(f"cannot read {path}: {err}") from None


def _check_suffix(path: Path) -> None:
    if path.suffix not in TABLE_SUFFIXES:
        raise InputError(f"{path}: unknown file type '{path.suffix}'; use .csv or .parquet.")


def _check_not_an_input(output: Path, **inputs) -> None:
    """Refuse an output path that is one of the run's input files: the output would replace the input."""
    for flag, given in inputs.items():
        if given is None or not _same_file(output, Path(given)):
            continue
        raise InputError(f"--output {output} is the --{flag.replace('_', '-')} file {given}: writing the result "
                         f"would replace it. Choose another output path.")


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)  # also through links
    except OSError:
        pass
    return a.resolve() == b.resolve()


class Progress:
    """Progress of a forecast over series: a bar redrawn in place on a terminal, plain log lines otherwise."""

    def __init__(self, command: str, stream, min_interval: float = 1.0):
        self.command, self.stream, self.min_interval = command, stream, min_interval
        self.tty = stream is not None and hasattr(stream, "isatty") and stream.isatty()
        self.total = self.done = 0
        self.started = self.last = 0.0

    def start(self, total: int) -> None:
        self.total, self.done = total, 0
        self.started = self.last = time.perf_counter()

    def advance(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if self.stream is None or (now - self.last < self.min_interval and self.done < self.total):
            return
        self.last = now
        rate = self.done / max(now - self.started, 1e-9)
        share = self.done / max(self.total, 1)
        if self.tty:
            bar = "#" * int(30 * share)
            self.stream.write(f"\r[{bar:<30}] {self.done}/{self.total} series, {rate:,.0f}/s")
        else:
            self.stream.write(f"tsformers {self.command}: {self.done}/{self.total} series ({share:.0%}), "
                              f"{rate:,.0f} series/s\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


# -- backtest -----------------------------------------------------------------------------------

def run_backtest(args) -> int:
    if args.n_splits < 1:
        raise InputError(f"--n-splits must be at least 1, got {args.n_splits}.")
    output = Path(args.output)
    _check_suffix(output)
    model = job = None
    _check_not_an_input(output, input=args.input, config=args.config)
    if args.config:
        job = train_job(args)
        _check_not_an_input(output, data=job["data"], static_data=job["static_data"])
        make_estimator(job)  # a bad estimator name or parameter fails before any fit
        data = read_table(job["data"])
    else:
        if not args.input:
            raise InputError("pass --input FILE: the data to evaluate the model on.")
        model = load_forecaster(args.model)
        data = read_table(args.input)
    levels = [float(v) for v in args.level.split(",") if v.strip()] if args.level else None
    metrics = backtest(data.to_pandas(), model=model, job=job, n_splits=args.n_splits, step=args.step,
                       level=levels)
    write_frame(metrics, output)
    for fold, rows in metrics.groupby("fold", sort=True):
        _log("backtest", f"fold {fold} (origin {rows['origin'].iloc[0]}): MSE {rows['mse'].mean():.4g}, "
                         f"MAE {rows['mae'].mean():.4g}")
    _log("backtest", f"wrote {len(metrics)} rows to {output}")
    return EXIT_OK


def backtest(frame, *, model=None, job=None, n_splits: int = 3, step: int | None = None, level=None):
    """Rolling-origin evaluation (``Forecaster.backtest``): at each origin, forecast ``horizon`` steps from the data before it.

    With ``model`` the same fitted model forecasts at every origin; with
    ``job`` (a train job) a fresh estimator is fitted on the data before each
    origin. Returns one row per fold, series and target: ``fold``, ``origin``
    (the first forecast step), ``series``, ``target``, ``n``, ``mse``, ``mae``,
    ``rmse``, ``smape`` (in the data's units), then ``pinball`` for a quantile
    model and ``coverage_L``/``width_L`` per interval ``level`` L
    (:func:`tsformers.metrics.evaluate`).
    """
    from tsformers.metrics import evaluate

    if model is not None:
        frames = model.backtest(frame, n_windows=n_splits, step=step, level=level)
    else:
        static = read_table(job["static_data"]) if job.get("static_data") else None
        frames = make_estimator(job).backtest(frame, n_windows=n_splits, step=step, refit=True, level=level,
                                              static_df=static)
        _log("backtest", f"fitted {n_splits} models, one per origin")
    keys = list(frames.columns[: frames.columns.get_loc("target")])   # "window" and, for long data, the id
    id_col = next((c for c in keys if c != "window"), None)
    time_col = frames.columns[frames.columns.get_loc("cutoff") + 1]
    by = ["window"] + ([id_col] if id_col else []) + ["target"]
    metrics = evaluate(frames, by=by)
    origins = frames.groupby(by, sort=False)[time_col].min().reset_index(drop=True)
    metrics.insert(1, "origin", origins)
    metrics = metrics.rename(columns={"window": "fold", **({id_col: "series"} if id_col else {})})
    if not id_col:
        metrics.insert(2, "series", None)
    return metrics.sort_values(["fold"], kind="stable").reset_index(drop=True)


COMMANDS = {"demo": run_demo, "train": run_train, "forecast": run_forecast, "backtest": run_backtest}


if __name__ == "__main__":
    sys.exit(main())
