"""The code of a tsformers MLflow model ("models from code"): MLflow copies this file into every model
logged by :func:`tsformers.tracking.log_model` and runs it when the model is loaded.

It builds the wrapper only; the wrapper's ``load_context`` reads the saved
forecaster (JSON and tensors) from the model's artifacts. Nothing is unpickled.
"""
import mlflow

from tsformers.tracking.pyfunc import ForecasterModel

mlflow.models.set_model(ForecasterModel())
