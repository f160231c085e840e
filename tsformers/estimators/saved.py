"""A saved model forecasting with its torch network, without its estimator class or scikit-learn.

``tsformers forecast`` (the torch engine) reads a model directory with
:func:`load_torch`: the network is rebuilt from the saved parameters by the
estimator's own builder (:mod:`tsformers.estimators.networks`), checked and loaded
as ``BaseForecaster.load`` does it (:func:`~tsformers.estimators.persistence.rebuild_network`),
and run by the code the estimators run it with
(:class:`~tsformers.estimators.network_path.NetworkForecastPath`). So the forecast
is the estimator's, while the command imports neither scikit-learn (more than a
second here, for ``sklearn.base`` alone), Lightning nor MLflow.
"""
from __future__ import annotations

import torch

from tsformers.estimators.forecasting import SavedForecaster
from tsformers.estimators.modelfile import ModelDirectory
from tsformers.estimators.network_path import NetworkForecastPath, StreamingNetworkPath
from tsformers.estimators.networks import NETWORKS
from tsformers.estimators.persistence import read_tensors, rebuild_network, rebuilding, saved_params, verify_graph

__all__ = ["load_torch"]


class _SavedNetwork(SavedForecaster):
    """A saved model's parameters as attributes, which its network's builder reads as the estimator's."""

    engine, load_whole = "a model read without its estimator", "{estimator}.load(path)"

    def __init__(self, estimator: str, config: dict, tensors: dict):
        params = saved_params(estimator, config["params"])
        super().__init__(estimator, params, config)
        for name, value in params.items():
            if not hasattr(self, name):  # the forecast settings are set already; no parameter hides a method
                setattr(self, name, value)
        self._tags = {"static": NETWORKS[estimator].reads_static}
        n_vars = config.get("n_features_in", tensors["history"].shape[-1])
        self.network_ = rebuild_network(self, n_vars, config, tensors["network"])

    def _build_network(self, n_vars: int) -> torch.nn.Module:
        return NETWORKS[self.estimator].build(self, n_vars)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.estimator})"


class WindowedSavedModel(_SavedNetwork, NetworkForecastPath):
    """A saved windowed model (Gateformer, PV-Client, the baselines): the network reads each series' last window."""


class StreamingSavedModel(_SavedNetwork, StreamingNetworkPath):
    """A saved streaming model (LMUFormer, GTrXL, ATLAS): the network's state runs over each series' history."""


def load_torch(path) -> WindowedSavedModel | StreamingSavedModel:
    """Read a saved model directory as a forecaster of its histories, without its estimator class.

    The directory is checked as ``BaseForecaster.load`` checks it (the manifest's checksums,
    ``model.onnx`` included when present; the network's size and shapes against its weights
    before anything is allocated; tensors only, ``weights_only=True``), and ``predict(df,
    future_df=None, static_df=None)`` returns what the estimator's ``predict`` returns.

    Parameters
    ----------
    path : str or pathlib.Path
        A directory written by ``Forecaster.save``.

    Returns
    -------
    WindowedSavedModel or StreamingSavedModel

    Raises
    ------
    FileNotFoundError
        No saved model at ``path``.
    ModelFileError
        A damaged directory (a changed file, a newer format, weights its configuration does not describe).
    ValueError
        An estimator :data:`~tsformers.estimators.networks.NETWORKS` does not list (load it with ``BaseForecaster.load``).
    """
    model = ModelDirectory.open(path)
    config = model.config
    name = config["estimator"]
    if name not in NETWORKS:
        raise ValueError(f"{model.path} holds a {name}, which is read with its estimator class: "
                         f"BaseForecaster.load('{model.path}').")
    tensors = read_tensors(model)
    verify_graph(model)
    cls = StreamingSavedModel if NETWORKS[name].streaming else WindowedSavedModel
    with rebuilding(model):
        return cls(name, config, tensors)
