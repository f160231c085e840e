"""ONNX export of a fitted forecaster, and forecasting from a saved model's graph.

The network-level export and the ONNX Runtime engine live in :mod:`tsformers.runtime.onnx`;
this module ties them to a saved model directory: ``model.onnx`` beside ``config.json``
and ``weights.pt``, stamped with the weights' checksum and (format 2) listed in the
directory's manifest, which :func:`export_estimator` rewrites with it atomically
(:func:`~tsformers.estimators.modelfile.update_model_directory`).

Two ways to forecast with the graph: :func:`attach` puts it in place of a loaded
estimator's torch network (``BaseForecaster.load(path, engine="onnx")``: the
estimator whole, with torch), and :func:`load_onnx` reads the model directory
into an :class:`OnnxForecaster`, which forecasts through the same
:class:`~tsformers.estimators.forecasting.ForecastPath` without importing torch,
Lightning or scikit-learn (``tsformers forecast --engine onnx``). torch is
imported here only to export.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from tsformers.data.prepare import Prepared
from tsformers.estimators.forecasting import CHUNK, SavedForecaster, advance_panel
from tsformers.estimators.modelfile import CONFIG_FILE, WEIGHTS_FILE, ModelDirectory, update_model_directory
from tsformers.runtime.ort import ONNX_FILE, GraphRunner

__all__ = ["ONNX_FORECASTERS", "OnnxForecaster", "attach", "export_estimator", "load_onnx"]

#: The estimators whose forecast :class:`OnnxForecaster` makes as they do (their ``predict`` is
#: :class:`~tsformers.estimators.forecasting.ForecastPath` and their network's graph). Others (an
#: estimator defined outside tsformers; ATLAS, whose memory learns at test time) load whole:
#: ``BaseForecaster.load(path, engine="onnx")``.
ONNX_FORECASTERS = ("GateformerForecaster", "PVClientForecaster", "LMUFormerForecaster", "GTrXLForecaster",
                    "LinearForecaster", "NaiveForecaster", "SeasonalNaiveForecaster")


def _model_graph(model: ModelDirectory) -> Path:
    """The verified path of ``model.onnx`` in ``model``; refuses a graph from other weights or copied in."""
    file = model.path / ONNX_FILE
    if not file.exists() and not file.is_symlink():
        raise FileNotFoundError(f"{model.path} has no {ONNX_FILE}: export it first with "
                                f"Forecaster.export_onnx('{model.path}').")
    if model.manifest is not None and ONNX_FILE not in model.manifest:  # format 2: a graph copied in
        raise ValueError(f"{file} was not exported into {model.path} (it is not in its manifest), so it may come "
                         f"from other weights; export it again with Forecaster.export_onnx('{model.path}').")
    return model.verify(ONNX_FILE)


def _check_stamp(model: ModelDirectory, meta: dict) -> None:
    if meta.get("weights_sha256") != model.config["weights_sha256"]:
        raise ValueError(f"{model.path / ONNX_FILE} was exported from other weights than "
                         f"{model.path}/{WEIGHTS_FILE}; export it again with Forecaster.export_onnx('{model.path}').")


def attach(estimator, model_dir, threads: int | None = None):
    """Make ``estimator`` (loaded from ``model_dir``) forecast with the graph ``model_dir/model.onnx``.

    Refuses a graph the manifest does not list as it is (format 2), and one exported from other weights
    than the directory's.
    """
    from tsformers.runtime.onnx import OnnxNetwork

    model = ModelDirectory.open(model_dir)
    network = OnnxNetwork(_model_graph(model), threads)
    _check_stamp(model, network.meta)
    estimator.network_ = network
    return estimator


def export_estimator(estimator, path) -> Path:
    """``BaseForecaster.export_onnx``: into a saved model directory (as ``model.onnx``) or to a ``.onnx`` file."""
    import torch

    from tsformers.runtime.onnx import OnnxNetwork, export_network, plan

    path = Path(path)
    network = estimator.network_
    if isinstance(network, OnnxNetwork):
        raise ValueError("this forecaster runs on ONNX Runtime already; export from one loaded with engine='torch'.")
    if getattr(estimator, "mean_depth_", None) is not None:
        raise ValueError("stack='adaptive_depth' runs each window as deep as its gate says, a choice made on the data "
                         "that an ONNX graph cannot hold; forecast with the torch engine, or fit another stack.")
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


# -- forecasting without torch ------------------------------------------------------------------

class OnnxForecaster(SavedForecaster):
    """A saved model forecasting with its exported graph on ONNX Runtime, without torch or scikit-learn.

    Made by :func:`load_onnx`; forecasts what ``BaseForecaster.load(path, engine="onnx")``
    does, from a history only (:class:`~tsformers.estimators.forecasting.SavedForecaster`).

    Attributes
    ----------
    graph : tsformers.runtime.ort.GraphRunner
    """

    engine, load_whole = "the ONNX engine", "{estimator}.load(path, engine='onnx')"

    def __init__(self, estimator: str, params: dict, graph: GraphRunner, config: dict):
        super().__init__(estimator, params, config)
        self.graph = self.network_ = graph

    def __repr__(self) -> str:
        return f"OnnxForecaster({self.estimator}, {self.graph.path})"

    def _network_output(self, data: Prepared, future: np.ndarray | None, from_state: bool) -> np.ndarray:
        """The graph's scaled output after each series: its last window, or the recurrence over all of it."""
        graph = self.graph
        if graph.kind == "window":
            x, static = data.last_windows(future).astype(np.float32), data.static_array()
            return np.concatenate([graph.window(x[i: i + CHUNK], None if static is None else static[i: i + CHUNK])
                                   for i in range(0, len(x), CHUNK)])
        scaled = data.scaled_panel()

        def init_state(rows):
            state = graph.init_state(len(rows))
            if graph.needs_static:
                state["static"] = scaled.static[rows].astype(np.float32)
            return state

        return graph.forecast(advance_panel(scaled, None, init_state, self._channels, graph.advance))


def load_onnx(path, threads: int | None = None) -> OnnxForecaster:
    """Read a saved model directory and its exported graph as an :class:`OnnxForecaster` (no torch).

    The directory is checked as ``BaseForecaster.load`` checks it: the manifest's checksums of
    ``config.json``, ``weights.pt`` and ``model.onnx``, the graph's stamp of the weights it was
    exported from.

    Parameters
    ----------
    path : str or pathlib.Path
        A directory written by ``Forecaster.save`` and ``Forecaster.export_onnx``.
    threads : int, optional
        ONNX Runtime's intra-op threads (default: ``OMP_NUM_THREADS``).

    Returns
    -------
    OnnxForecaster

    Raises
    ------
    FileNotFoundError
        No saved model, or no ``model.onnx``, at ``path``.
    ModelFileError
        A damaged directory (a changed file, a newer format).
    ValueError
        A graph from other weights, or of an estimator :data:`ONNX_FORECASTERS` does not list (load
        it with ``BaseForecaster.load(path, engine="onnx")``).
    """
    model = ModelDirectory.open(path)
    name = model.config["estimator"]
    if name not in ONNX_FORECASTERS:
        raise ValueError(f"{model.path} holds a {name}, whose forecast the ONNX engine without torch does not "
                         f"know; load it with BaseForecaster.load('{model.path}', engine='onnx').")
    model.read_bytes(WEIGHTS_FILE)  # unused by this engine, but a changed file is damage all the same
    graph = GraphRunner(_model_graph(model), threads)
    _check_stamp(model, graph.meta)
    return OnnxForecaster(name, model.config["params"], graph, model.config)
