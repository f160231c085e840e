"""ONNX export of a fitted forecaster's network, and an ONNX Runtime stand-in for it.

One file, ``model.onnx``, holds the graph; its metadata (``tsformers.onnx``, JSON)
says how to drive it. The network's kind decides the graph:

- ``window`` (Gateformer, PV-Client): ``y = network(x[, static])`` over the last
  ``lookback`` steps, ``x: (batch, lookback, n_inputs)``.
- ``stream`` (LMUFormer, any streaming network whose state has fixed shapes):
  ``block`` steps of ``advance`` unrolled, each applied only where ``valid`` is
  True, then ``forecast``: ``(x, valid, *state) -> (y, *state)``. A history of any
  length (and rows of different lengths, left-padded with ``valid=False``) runs as
  ceil(T / block) calls; O(1) state per series, as the torch stream.
- ``receptive`` (GTrXL): the forecast depends on the last ``receptive_field``
  steps only (n_layers·mem_len + 1), so the graph is ``forward`` over exactly
  that many steps, and the stand-in keeps them as its state. A history shorter
  than that cannot be run by this graph (a clear error; use the torch engine).

Every graph has a dynamic batch axis. Networks that cannot be exported say why
in a class attribute ``onnx_unsupported`` (ATLAS: its forecast writes the
test-time memory on a chunk schedule read from its state, control flow a static
graph cannot hold).

Inside a saved model directory the graph is ``model.onnx`` beside
``config.json`` and ``weights.pt``, stamped with the ``weights_sha256`` of that
directory, so a graph left from other weights is refused, and listed in its
manifest (:mod:`tsformers.estimators.modelfile`). The file is written
atomically (a temporary file, then a rename) with the permissions the umask
gives. ``save`` replaces the whole directory, so a re-saved model drops its
old graph. onnx/onnxscript (export) and onnxruntime
(inference) are imported only when used: ``pip install 'tsformers[onnx]'``.
Inference itself is :class:`tsformers.runtime.ort.GraphRunner` (numpy, no torch);
:class:`OnnxNetwork` puts it in place of an estimator's torch network.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from tsformers.backbone.heads import StaticResidual
from tsformers.runtime.ort import META_KEY, ONNX_FILE, GraphRunner, read_metadata, requires

__all__ = ["ONNX_FILE", "OnnxExportError", "OnnxNetwork", "export_network", "plan", "read_metadata"]

STREAM_BLOCK = 8  # steps unrolled in one stream graph
OPSET = 18


class OnnxExportError(ValueError):
    """The network of this estimator cannot be expressed as an ONNX graph (the message says why)."""


def _inner(network: nn.Module) -> nn.Module:
    return network.network if isinstance(network, StaticResidual) else network


def plan(network: nn.Module) -> str:
    """Which graph the network exports as: "window", "stream" or "receptive"; OnnxExportError when none."""
    inner = _inner(network)
    reason = getattr(inner, "onnx_unsupported", None)
    if reason:
        raise OnnxExportError(f"{type(inner).__name__} cannot be exported to ONNX: {reason}")
    if hasattr(inner, "receptive_field"):
        return "receptive"
    if hasattr(inner, "advance") and hasattr(inner, "forecast"):
        shapes = {k: v.shape for k, v in network.init_state(1).items()}
        if any(0 in s for s in shapes.values()):
            raise OnnxExportError(f"{type(inner).__name__} cannot be exported to ONNX: its streaming state "
                                  f"changes shape as it fills ({shapes}), and a graph needs fixed shapes.")
        return "stream"
    return "window"


# -- export -----------------------------------------------------------------------------------

class _StreamBlock(nn.Module):
    """``block`` masked steps of a streaming network, then its forecast (the exported stream graph)."""

    def __init__(self, network: nn.Module, keys: list[str], block: int):
        super().__init__()
        self.network, self.keys, self.block = network, keys, block

    def forward(self, x: Tensor, valid: Tensor, *state: Tensor):
        current = dict(zip(self.keys, state))
        for t in range(self.block):
            new = self.network.advance(current, x[:, t:t + 1])
            keep = valid[:, t]
            current = {k: torch.where(keep.view(-1, *[1] * (v.ndim - 1)), new[k], v) for k, v in current.items()}
        return (self.network.forecast(current), *[current[k] for k in self.keys])


class _Window(nn.Module):
    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x: Tensor, static: Tensor | None = None):
        return self.network(x) if static is None else self.network(x, static=static)


def export_network(network: nn.Module, path, *, lookback: int, n_inputs: int, n_static: int = 0,
                   metadata: dict | None = None, block: int | None = None) -> Path:
    """Export ``network`` (eval mode) to the ONNX file ``path`` atomically; returns the path.

    ``block``: steps per stream graph (default ``STREAM_BLOCK``): fewer calls per history, a longer export.
    """
    block = block or STREAM_BLOCK
    requires("onnx")
    requires("onnxscript")
    import onnx

    kind = plan(network)
    network = network.eval()
    batch = torch.export.Dim("batch", min=1)
    meta = {"format": 1, "kind": kind, "lookback": lookback, "n_inputs": n_inputs, "n_static": n_static,
            **(metadata or {})}
    example = 2  # not 1: torch.export would specialise a batch of one
    with_static = n_static > 0  # the estimator passes its series' static attributes whenever it has some
    if kind == "stream":
        state = network.init_state(example)
        with_static = isinstance(network, StaticResidual)  # a streaming network carries them in its state
        if with_static:
            state["static"] = torch.zeros(example, n_static)
        keys = sorted(state)
        module = _StreamBlock(network, keys, block)
        args = (torch.zeros(example, block, n_inputs), torch.ones(example, block, dtype=torch.bool),
                *[state[k] for k in keys])
        names = ["x", "valid", *[f"state.{k}" for k in keys]]
        outputs = ["y", *[f"next.{k}" for k in keys]]
        meta |= {"block": block, "state": {k: list(state[k].shape[1:]) for k in keys},
                 "state_dtypes": {k: str(state[k].dtype).removeprefix("torch.") for k in keys}}
    else:
        steps = _inner(network).receptive_field if kind == "receptive" else lookback
        module = _Window(network)
        args = (torch.zeros(example, steps, n_inputs),) + ((torch.zeros(example, n_static),) if with_static else ())
        names, outputs = ["x", "static"][:len(args)], ["y"]
        meta |= {"steps": steps}
    meta["inputs"], meta["outputs"], meta["static_input"] = names, outputs, with_static
    dynamic = tuple({0: batch} for _ in args)
    if kind == "stream":  # forward(x, valid, *state): the varargs are one entry
        dynamic = (*dynamic[:2], dynamic[2:])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_file(path.parent, f".{path.name}.", ".tmp")
    try:
        with warnings.catch_warnings(), torch.no_grad(), _quiet_exporter():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, tmp, input_names=names, output_names=outputs, dynamo=True,
                              dynamic_shapes=dynamic, opset_version=OPSET, verbose=False, external_data=False)
        model = onnx.load(tmp)
        del model.metadata_props[:]
        entry = model.metadata_props.add()
        entry.key, entry.value = META_KEY, json.dumps(meta)
        onnx.save(model, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


@contextlib.contextmanager
def _quiet_exporter():
    """torch.onnx's exporter without its log lines (``torchvision is not installed. Skipping torchvision::nms``
    and the like: operators of a package we do not use); its errors still raise."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _new_file(directory: Path, prefix: str, suffix: str) -> str:
    """A new empty file with a random name, made by ``open``: the umask decides who may read it.

    (``tempfile.mkstemp`` would make it 0600 whatever the umask, and the graph is this file renamed.)
    """
    while True:
        candidate = directory / f"{prefix}{secrets.token_hex(6)}{suffix}"
        try:
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return str(candidate)
        except FileExistsError:
            continue


# -- inference --------------------------------------------------------------------------------

class OnnxNetwork:
    """An ONNX Runtime session in place of a forecaster's torch network (``estimator.network_``).

    It speaks the protocol that ``BaseForecaster`` uses: ``network(x, static=None)``
    for windowed models, ``init_state``/``advance``/``forecast`` for streaming ones,
    with torch tensors in and out, so the estimator's validation, scaling and
    output frame are the same as with the torch engine. The graph is driven by
    :class:`tsformers.runtime.ort.GraphRunner` (numpy), which ``tsformers forecast
    --engine onnx`` uses without torch.
    """

    def __init__(self, path, threads: int | None = None):
        self.graph = GraphRunner(path, threads)
        self.path, self.session, self.meta = self.graph.path, self.graph.session, self.graph.meta
        self.kind, self.needs_static = self.graph.kind, self.graph.needs_static
        self.training = False

    def eval(self):
        return self

    def state_dict(self):
        raise ValueError("this forecaster runs on ONNX Runtime and holds no torch weights; load the model directory "
                         "with engine='torch' to save it again.")

    # windowed networks
    def __call__(self, x: Tensor, static: Tensor | None = None) -> Tensor:
        return torch.from_numpy(self.graph.window(_np(x), None if static is None else _np(static)))

    # streaming networks
    def init_state(self, rows: int) -> dict:
        return _tensors(self.graph.init_state(rows))

    def advance(self, state: dict, x: Tensor) -> dict:
        return _tensors(self.graph.advance(_arrays(state), _np(x)))

    def forecast(self, state: dict) -> Tensor:
        return torch.from_numpy(self.graph.forecast(_arrays(state)))


def _np(t: Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy())


def _arrays(state: dict) -> dict:
    return {k: _np(v) for k, v in state.items()}


def _tensors(state: dict) -> dict:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}
