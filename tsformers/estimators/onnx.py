"""ONNX export of a fitted forecaster, and forecasting from a saved model's graph.

The network-level export and the ONNX Runtime engine live in :mod:`tsformers.runtime.onnx`;
this module ties them to a saved model directory (``model.onnx`` next to ``config.json``
and ``weights.pt``, tied to the weights by their checksum).
"""

from __future__ import annotations

from pathlib import Path

import torch

from tsformers.estimators.persistence import CONFIG_FILE, WEIGHTS_FILE, read_config
from tsformers.runtime.onnx import ONNX_FILE, OnnxNetwork, export_network, plan

__all__ = ["attach", "export_estimator"]


def attach(estimator, model_dir, threads: int | None = None):
    """Make ``estimator`` (loaded from ``model_dir``) forecast with the graph ``model_dir/model.onnx``.

    Refuses a graph exported from other weights than the directory's.
    """
    model_dir = Path(model_dir)
    file = model_dir / ONNX_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{model_dir} has no {ONNX_FILE}: export it first with "
                                f"Forecaster.export_onnx('{model_dir}').")
    network = OnnxNetwork(file, threads)
    sha = read_config(model_dir)["weights_sha256"]
    if network.meta.get("weights_sha256") != sha:
        raise ValueError(f"{file} was exported from other weights than {model_dir}/weights.pt; export it again "
                         f"with Forecaster.export_onnx('{model_dir}').")
    estimator.network_ = network
    return estimator


def export_estimator(estimator, path) -> Path:
    """``BaseForecaster.export_onnx``: into a saved model directory (as ``model.onnx``) or to a ``.onnx`` file."""
    path = Path(path)
    network = estimator.network_
    if isinstance(network, OnnxNetwork):
        raise ValueError("this forecaster runs on ONNX Runtime already; export from one loaded with engine='torch'.")
    metadata = {"estimator": type(estimator).__name__, "horizon": estimator.horizon}
    if path.suffix != ".onnx":
        if not (path / CONFIG_FILE).is_file():
            raise FileNotFoundError(f"{path} is not a saved model directory: save the model there first "
                                    f"(f.save('{path}'); f.export_onnx('{path}')), or pass a file name ending "
                                    f"in .onnx.")
        config = read_config(path)
        saved = torch.load(path / WEIGHTS_FILE, map_location="cpu", weights_only=True)["network"]
        current = network.state_dict()
        if config["estimator"] != type(estimator).__name__ or saved.keys() != current.keys() or not all(
                torch.equal(saved[k], current[k]) for k in saved):
            raise ValueError(f"{path} holds another model than this forecaster; save this one there first.")
        metadata["weights_sha256"] = config["weights_sha256"]
        path = path / ONNX_FILE
    plan(network)  # the clear error before any work
    return export_network(network, path, lookback=estimator.lookback, n_inputs=estimator.n_features_in_,
                          n_static=estimator.static_encoder_.n_channels, metadata=metadata)
