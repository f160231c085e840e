"""``tsformers.mlflow``: the MLflow functions of :mod:`tsformers.tracking` under a short name.

``tsformers.mlflow.autolog()``, ``tsformers.mlflow.log_model(forecaster, name, registered_model_name=None)``,
``tsformers.mlflow.load_model(uri)``. Absolute imports only, so that this module never shadows the
``mlflow`` package.
"""
from tsformers.tracking import ForecasterModel, autolog, forecast_frame, load_model, log_model

__all__ = ["ForecasterModel", "autolog", "forecast_frame", "load_model", "log_model"]
