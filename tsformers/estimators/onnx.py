"""ONNX export of a fitted forecaster, and forecasting from a saved model's graph.

The network-level export and the ONNX Runtime engine live in :mod:`tsformers.runtime.onnx`;
this module ties them to a saved model directory: ``model.onnx`` beside ``config.json``
and ``weights.pt``, stamped with the weights' checksum and (format 2) listed in the
directory's manifest, which :func:`export_estimator` rewrites with it atomically
(:func:`~tsformers.estimators.modelfile.update_model_directory`).
"""

from __future__ import annotations

import io
from pathlib import Path

import torch

from tsformers.estimators.modelfile import CONFIG_FILE, WEIGHTS_FILE, ModelDirectory, update_model_directory
from tsformers.runtime.onnx import ONNX_FILE, OnnxNetwork, export_network, plan

__all__ = ["attach", "export_estimator"]


def attach(estimator, model_dir, threads: int | None = None):
    """Make ``estimator`` (loaded from ``model_dir``) forecast with the graph ``model_dir/model.onnx``.

    Refuses a graph the manifest does not list as it is (format 2), and one exported from other weights
    than the directory's.
    """
    model = ModelDirectory.open(model_dir)
    file = model.path / ONNX_FILE
    if not file.exists() and not file.is_symlink():
        raise FileNotFoundError(f"{model.path} has no {ONNX_FILE}: export it first with "
                                f"Forecaster.export_onnx('{model.path}').")
    if model.manifest is not None and ONNX_FILE not in model.manifest:  # format 2: a graph copied in
        raise ValueError(f"{file} was not exported into {model.path} (it is not in its manifest), so it may come "
                         f"from other weights; export it again with Forecaster.export_onnx('{model.path}').")
    network = OnnxNetwork(model.verify(ONNX_FILE), threads)
    if network.meta.get("weights_sha256") != model.config["weights_sha256"]:
        raise ValueError(f"{file} was exported from other weights than {model.path}/{WEIGHTS_FILE}; export it "
                         f"again with Forecaster.export_onnx('{model.path}').")
    estimator.network_ = network
    return estimator


def export_estimator(estimator, path) -> Path:
    """``BaseForecaster.export_onnx``: into a saved model directory (as ``model.onnx``) or to a ``.onnx`` file."""
    path = Path(path)
    network = estimator.network_
    if isinstance(network, OnnxNetwork):
        raise ValueError("this forecaster runs on ONNX Runtime already; export from one loaded with engine='torch'.")
    metadata = {"estimator": type(estimator).__name__, "horizon": estimator.horizon}
    graph = dict(lookback=estimator.lookback, n_inputs=estimator.n_features_in_,
                 n_static=estimator._network_static_width())
    if path.suffix == ".onnx":
        plan(network)  # the clear error before any work
        return export_network(network, path, metadata=metadata, **graph)
    if not (path / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{path} is not a saved model directory: save the model there first "
                                f"(f.save('{path}'); f.export_onnx('{path}')), or pass a file name ending "
                                f"in .onnx.")
    model = ModelDirectory.open(path)
    saved = torch.load(io.BytesIO(model.read_bytes(WEIGHTS_FILE)), map_location="cpu", weights_only=True)["network"]
    current = network.state_dict()
    if model.config["estimator"] != type(estimator).__name__ or saved.keys() != current.keys() or not all(
            torch.equal(saved[k], current[k]) for k in saved):
        raise ValueError(f"{path} holds another model than this forecaster; save this one there first.")
    metadata["weights_sha256"] = model.config["weights_sha256"]
    plan(network)
    update_model_directory(model.path, lambda staging: export_network(network, staging / ONNX_FILE,
                                                                      metadata=metadata, **graph))
    return model.path / ONNX_FILE
