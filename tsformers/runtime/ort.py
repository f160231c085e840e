"""The ONNX Runtime engine on numpy arrays: an exported ``model.onnx`` driven without torch.

:mod:`tsformers.runtime.onnx` writes the graph (with torch) and documents its
kinds and metadata; this module only reads and runs it, with numpy and
onnxruntime, so that ``tsformers forecast --engine onnx`` starts without torch.
:class:`GraphRunner` speaks the network protocol of the estimators on arrays:
``window(x, static)`` for windowed graphs, ``init_state``/``advance``/``forecast``
for streaming ones (a ``stream`` graph advances ``block`` steps per call; a
``receptive`` graph keeps its last ``steps`` inputs as its state).
:class:`tsformers.runtime.onnx.OnnxNetwork` wraps it for torch tensors.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

__all__ = ["GraphRunner", "ONNX_FILE", "read_metadata", "requires"]

ONNX_FILE = "model.onnx"
META_KEY = "tsformers.onnx"


def requires(module: str):
    """Import ``module`` (onnx, onnxscript, onnxruntime), or say how to install it."""
    try:
        return __import__(module)
    except ImportError:
        raise ImportError(f"ONNX export and inference need {module}: pip install 'tsformers[onnx]'.") from None


def _session(path: Path, threads: int | None = None):
    ort = requires("onnxruntime")
    options = ort.SessionOptions()
    threads = threads or int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def read_metadata(path) -> dict:
    """The tsformers metadata of an exported graph (without loading onnx: ONNX Runtime reads it)."""
    session = _session(Path(path))
    return _meta(session, path)


def _meta(session, path) -> dict:
    raw = session.get_modelmeta().custom_metadata_map.get(META_KEY)
    if raw is None:
        raise ValueError(f"{path} is not an ONNX graph exported by tsformers (no {META_KEY} metadata).")
    return json.loads(raw)


class GraphRunner:
    """An ONNX Runtime session of an exported graph, driven on float32 numpy arrays.

    Parameters
    ----------
    path : str or pathlib.Path
        The ``.onnx`` file.
    threads : int, optional
        Intra-op threads (default: ``OMP_NUM_THREADS``, else ONNX Runtime's choice).

    Attributes
    ----------
    meta : dict
        The graph's ``tsformers.onnx`` metadata.
    kind : {"window", "stream", "receptive"}
    needs_static : bool
        Whether the graph takes the series' static attributes (windowed: an input; streaming:
        part of the state, under ``"static"``).
    """

    def __init__(self, path, threads: int | None = None):
        self.path = Path(path)
        self.session = _session(self.path, threads)
        self.meta = _meta(self.session, self.path)
        self.kind = self.meta["kind"]
        self.needs_static = bool(self.meta["static_input"])

    def _run(self, feeds: dict) -> list[np.ndarray]:
        return self.session.run(None, feeds)

    # windowed graphs
    def window(self, x: np.ndarray, static: np.ndarray | None = None) -> np.ndarray:
        """The forecast of windows ``x`` ``(batch, lookback, n_inputs)``, with their static attributes."""
        assert self.kind == "window", f"a {self.kind} graph is driven through init_state/advance/forecast"
        feeds = {"x": _f32(x)}
        if self.needs_static:
            feeds["static"] = _f32(static)
        return self._run(feeds)[0]

    # streaming graphs
    def init_state(self, rows: int) -> dict:
        """The state of ``rows`` series before any step (without their static attributes)."""
        if self.kind == "receptive":
            return {"inputs": np.zeros((rows, 0, self.meta["n_inputs"]), dtype=np.float32)}
        return {k: np.zeros((rows, *shape), dtype=self.meta["state_dtypes"][k])
                for k, shape in self.meta["state"].items() if k != "static"}

    def advance(self, state: dict, x: np.ndarray) -> dict:
        """``state`` after the steps ``x`` ``(rows, n_steps, n_inputs)``."""
        if self.kind == "receptive":
            self.check_window_state(state)
            inputs = np.concatenate([state["inputs"], _f32(x)], axis=1)
            return {**state, "inputs": inputs[:, max(inputs.shape[1] - self.meta["steps"], 0):]}
        block = self.meta["block"]
        rows, n_steps = x.shape[0], x.shape[1]
        pad = -n_steps % block
        x = np.concatenate([np.zeros((rows, pad, x.shape[2]), dtype=np.float32), _f32(x)], axis=1)
        valid = np.arange(x.shape[1]) >= pad
        for start in range(0, x.shape[1], block):
            state, _ = self._step(state, x[:, start:start + block],
                                  np.broadcast_to(valid[start:start + block], (rows, block)))
        return state

    def forecast(self, state: dict) -> np.ndarray:
        """The forecast ``(rows, horizon, ...)`` after ``state``."""
        if self.kind == "receptive":
            self.check_window_state(state)
            inputs, steps = state["inputs"], self.meta["steps"]
            if inputs.shape[1] < steps:
                raise ValueError(f"the ONNX graph of this model reads the last {steps} steps (its receptive field), "
                                 f"but only {inputs.shape[1]} were given; pass a longer history or use the torch "
                                 f"engine.")
            feeds = {"x": _f32(inputs)}
            if self.needs_static:
                feeds["static"] = _f32(state["static"])
            return self._run(feeds)[0]
        block, rows = self.meta["block"], len(next(iter(state.values())))
        _, y = self._step(state, np.zeros((rows, block, self.meta["n_inputs"]), dtype=np.float32),
                          np.zeros((rows, block), dtype=bool))
        return y

    @staticmethod
    def check_window_state(state: dict) -> None:
        """Refuse a state that is not this engine's (the torch state saved with a model)."""
        if "inputs" not in state:  # the torch state saved with the model: memories, not the last steps
            raise ValueError("with the onnx engine this model forecasts from a history, not from the streaming "
                             "state saved with it (predict() without data, update()): pass the data, "
                             "predict(df), or load the model with engine='torch'.")

    def _step(self, state: dict, x: np.ndarray, valid: np.ndarray) -> tuple[dict, np.ndarray]:
        keys = list(self.meta["state"])
        feeds = {"x": _f32(x), "valid": np.ascontiguousarray(valid)} | {f"state.{k}": np.ascontiguousarray(state[k])
                                                                         for k in keys}
        y, *new = self._run(feeds)
        return dict(zip(keys, new)), y


def _f32(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)
