"""MLflow tracking for tsformers (the ``mlflow`` extra): autolog, pyfunc models, Spark training and scoring.

>>> import tsformers.tracking
>>> tsformers.tracking.autolog()                    # doctest: +SKIP
>>> info = tsformers.tracking.log_model(forecaster, "model", registered_model_name="pv")  # doctest: +SKIP
>>> mlflow.pyfunc.load_model("models:/pv/1").predict(df)                                   # doctest: +SKIP

Importing ``tsformers`` never imports this subpackage, and importing it imports
MLflow only when one of these functions is first used. The frames the models
take and return are built by :mod:`tsformers.batch.frames`, which needs no MLflow.
"""
import importlib

_EXPORTS = {
    "autolog": "tsformers.tracking.autologging",
    "ForecasterModel": "tsformers.tracking.pyfunc",
    "log_model": "tsformers.tracking.pyfunc",
    "load_model": "tsformers.tracking.pyfunc",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tsformers.tracking' has no attribute {name!r}")
    try:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    except ModuleNotFoundError as err:
        if err.name != "mlflow" and not (err.name or "").startswith("mlflow."):
            raise
        raise ImportError(f"tsformers.tracking.{name} needs MLflow: pip install 'tsformers[mlflow]'.") from err
