"""A fitted forecaster as an MLflow pyfunc model: ``log_model``, ``load_model`` and the wrapper class.

The model is logged "from code" (MLflow's ``python_model=<path of a .py
file>``): the saved model holds ``model_code.py`` of this package, which builds
a :class:`ForecasterModel`, and the directory written by ``Forecaster.save``
(JSON and tensors) as an artifact that :meth:`ForecasterModel.load_context`
reads with ``BaseForecaster.load``. No Python object is pickled, so loading a
model runs no code other than the installed tsformers.

The model's input is the frame ``predict`` takes (wide or long, in the layout of
the fit data); for a model with known-future covariates the rows after the
history with empty targets carry them; a frame with one row per series and
arrays in its cells (the shape a Spark UDF needs) gets one row per series back.
See :mod:`tsformers.batch.frames`.
"""
from __future__ import annotations

import copy
import tempfile
import weakref
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.models import ModelSignature, infer_signature
from mlflow.pyfunc import PythonModel
from mlflow.types.schema import AnyType, ColSpec, Schema
from sklearn.utils.validation import check_is_fitted

from tsformers.data.frames import as_pandas
from tsformers.batch.frames import example_from_history, forecast_frame, schema_static
from tsformers.estimators.modelfile import MANIFEST_FILE

MODEL_CODE = Path(__file__).with_name("model_code.py")
ARTIFACT = "forecaster"
REQUIREMENTS = ("torch", "numpy", "pandas", "polars", "pyarrow", "scikit-learn", "einops", "mlflow")


class ForecasterModel(PythonModel):
    """The pyfunc face of a saved tsformers forecaster (any ``BaseForecaster``).

    ``predict(context, model_input)`` returns :func:`forecast_frame` of the
    frame: the forecast of every series in it. It takes pandas or polars, but
    ``mlflow.pyfunc`` models check their input against the signature first,
    and that check takes pandas only.
    """

    def load_context(self, context):
        from tsformers.estimators.base import BaseForecaster

        self.forecaster = BaseForecaster.load(context.artifacts[ARTIFACT])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return forecast_frame(self.forecaster, model_input)


def model_signature(forecaster, input_example: pd.DataFrame) -> ModelSignature:
    """The input columns of the model (the id column typed; time and values of any type, since both the
    ordinary and the packed frame carry them) and the output columns of the forecast."""
    schema = forecaster.schema_
    inputs = []
    if schema.id_col:
        integer_ids = all(isinstance(s, int) for s in schema.series)
        inputs.append(ColSpec("long" if integer_ids else "string", schema.id_col))
    inputs += [ColSpec(AnyType(), name) for name in [schema.time_col] + schema.variables]
    inputs += [ColSpec(AnyType(), name, required=False) for name in static_columns(schema)]
    outputs = infer_signature(model_output=forecast_frame(forecaster, input_example)).outputs
    return ModelSignature(inputs=Schema(inputs), outputs=outputs)


def static_columns(schema) -> list[str]:
    """Static attributes that were columns of the fit frame: optional inputs (the model knows its own series')."""
    return [c for c in schema_static(schema) if c in schema.columns]


@dataclass(frozen=True)
class _Logged:
    manifest: str               # the saved model's manifest.json: the checksum of every file, so of its state
    info: object                # mlflow.models.model.ModelInfo


#: What :func:`log_model` last logged of each forecaster (held weakly): the model an unchanged forecaster is
#: registered from, and the run a changed one is logged into, when ``log_model`` is called outside a run.
_LOGGED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def log_model(forecaster, name: str = "model", registered_model_name: str | None = None, *,
              input_example=None, **kwargs):
    """Log a fitted forecaster to the active MLflow run as a pyfunc model.

    Outside a run, the model always lands in one, so that every logged model and registered version
    has its run (its parameters, metrics and lineage): a forecaster that :func:`autolog` logged and that
    has not changed since (no refit, no ``update``) is not logged again; with
    ``registered_model_name`` the autologged model itself is registered. A forecaster changed since is
    logged into the run of its earlier logging, and one never logged into a new run.

    Parameters
    ----------
    forecaster : BaseForecaster
        A fitted tsformers forecaster.
    name : str, default="model"
        The model's name in the run.
    registered_model_name : str, optional
        Also register the model (a new version) under this name in the model registry.
    input_example : DataFrame, optional
        A frame the model takes. By default the last ``lookback`` rows the
        forecaster keeps of (at most two of) its series; required for a model
        with known-future covariates (its history plus the future rows).
    **kwargs
        Passed to ``mlflow.pyfunc.log_model`` (``metadata``, ``tags``, ...).

    Returns
    -------
    mlflow.models.model.ModelInfo
        ``model_uri`` loads it back: ``mlflow.pyfunc.load_model(info.model_uri).predict(df)``.
    """
    check_is_fitted(forecaster, "network_")
    schema = forecaster.schema_
    if input_example is None:
        if schema.future_covariates:
            raise ValueError(
                f"{type(forecaster).__name__} was fitted with future_covariates {schema.future_covariates}: pass "
                f"input_example= (a frame with the last lookback={forecaster.lookback} rows of a series and "
                f"horizon={forecaster.horizon} rows after them holding the future covariates, targets empty)."
            )
        input_example = example_from_history(forecaster)
    input_example, _ = as_pandas(input_example)
    metadata = {"tsformers_estimator": type(forecaster).__name__, "horizon": forecaster.horizon,
                "lookback": forecaster.lookback, "layout": schema.layout, "time_col": schema.time_col,
                "id_col": schema.id_col, "targets": schema.targets, "static": static_columns(schema),
                "time_kind": "datetime" if isinstance(schema.step, str) else "integer",
                **kwargs.pop("metadata", {})}
    with tempfile.TemporaryDirectory(prefix="tsformers-mlflow-") as tmp:
        path = forecaster.save(Path(tmp) / "model")
        manifest = (path / MANIFEST_FILE).read_text()
        earlier = _LOGGED.get(forecaster)
        outside_a_run = mlflow.active_run() is None
        if outside_a_run and earlier is not None and earlier.manifest == manifest and not kwargs:
            return _register(earlier.info, registered_model_name)
        run = mlflow.start_run(run_id=earlier.info.run_id if earlier else None,
                               run_name=None if earlier else type(forecaster).__name__) if outside_a_run else None
        try:
            info = mlflow.pyfunc.log_model(
                name=name, python_model=str(MODEL_CODE), artifacts={ARTIFACT: str(path)},
                signature=model_signature(forecaster, input_example), input_example=input_example,
                registered_model_name=registered_model_name, pip_requirements=requirements(), metadata=metadata,
                **kwargs)
        finally:
            if run is not None:
                mlflow.end_run()
    _LOGGED[forecaster] = _Logged(manifest, info)
    return info


def _register(info, registered_model_name: str | None):
    """``info``'s model, registered under ``registered_model_name`` (if given) as a new version of it."""
    if registered_model_name is None:
        return info
    version = mlflow.register_model(info.model_uri, registered_model_name)
    registered = copy.copy(info)
    registered.registered_model_version = int(version.version)
    return registered


def load_model(model_uri: str):
    """Load the forecaster of a model logged with :func:`log_model`, as the tsformers estimator itself.

    Parameters
    ----------
    model_uri : str
        Any MLflow model URI: ``models:/name/1``, ``models:/name@alias``,
        ``runs:/<run_id>/model``, a local directory...

    Returns
    -------
    BaseForecaster
    """
    wrapper = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    if not isinstance(wrapper, ForecasterModel):
        raise TypeError(f"{model_uri} is not a tsformers model (it wraps a {type(wrapper).__name__}); "
                        f"load it with mlflow.pyfunc.load_model.")
    return wrapper.forecaster


def requirements() -> list[str]:
    """The pinned packages the model needs, so that MLflow need not infer them (which runs the model)."""
    from tsformers import __version__

    pins = [f"tsformers=={__version__}"]
    for package in REQUIREMENTS:
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:  # pragma: no cover - every one is a dependency
            pins.append(package)
    return pins
