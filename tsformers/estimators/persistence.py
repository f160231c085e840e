"""Saving and loading fitted forecasters: a directory of JSON and tensors, never a pickle.

``config.json`` holds the format version, the package version, the estimator's
name and parameters, the data schema, the scaling statistics, the SHA-256
of ``weights.pt`` and, for a compressed network (``tsformers.compress``), the
structural edits that turn the network built from the parameters into it
(``network_edits``, replayed before the weights are loaded) and what was done
(``compression``); ``weights.pt`` holds tensors only (the network's weights, the
stored history, a streaming state, the conformal calibration errors) and is read with
``weights_only=True``. Writing is atomic (a staging directory renamed into
place). An existing directory is replaced only when it holds a tsformers model and nothing
else (see :func:`save_estimator`); any other non-empty directory is refused, untouched. Every way a directory can be damaged (a missing file, truncated or
edited weights, broken JSON) gives an error that says so.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tsformers.data.frames import PanelSchema
from tsformers.data.scaling import PanelScaler
from tsformers.data.static import StaticEncoder
from tsformers.runtime.onnx import ONNX_FILE

FORMAT = "tsformers-model"
FORMAT_VERSION = 1
CONFIG_FILE, WEIGHTS_FILE = "config.json", "weights.pt"
# Every file a model directory can hold: save() replaces a directory only if it holds nothing else.
MODEL_FILES = frozenset({CONFIG_FILE, WEIGHTS_FILE, ONNX_FILE})


class ModelFileError(ValueError):
    """A saved model directory is incomplete, damaged or of an unknown format."""


def save_estimator(est, path) -> Path:
    """Write the fitted estimator ``est`` to the directory ``path`` atomically; return the path."""
    from tsformers import __version__

    path = Path(path)
    check_save_path(path)
    params = est.get_params()
    try:
        json.dumps(params)
    except TypeError as err:
        raise TypeError(f"the parameters cannot be written as JSON ({err}); set such parameters (e.g. "
                        f"trainer_kwargs holding objects) to plain values before saving.") from None
    tensors = {"network": est.network_.state_dict(), "history": torch.from_numpy(est.history_)}
    if est._tags["streaming"]:
        tensors["state"] = est.state_
    if getattr(est, "conformal_", None) is not None:  # calibration errors of the conformal intervals
        tensors["conformal"] = torch.from_numpy(est.conformal_)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        torch.save(tensors, staging / WEIGHTS_FILE)
        config = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "tsformers_version": __version__,
            "estimator": type(est).__name__, "params": params, "schema": est.schema_.to_dict(),
            "scaler": est.scaler_.to_dict(), "last_time": _time_to_json(est.last_time_),
            "ends": [_time_to_json(t) for t in est.ends_],
            "n_features_in": est.n_features_in_, "training_log": est.training_log_, "weights_sha256": _sha256(staging / WEIGHTS_FILE),
            "static": {"encoder": est.static_encoder_.to_dict(),
                       "codes": None if est.static_ is None else est.static_.tolist()},
        }
        if getattr(est, "compression_", None):  # a compressed network (tsformers.compress): its surgery, as JSON
            config["network_edits"] = getattr(est, "network_edits_", [])
            config["compression"] = est.compression_
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2))
        if path.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            os.replace(path, retired / "model")
            os.replace(staging, path)
            shutil.rmtree(retired)
        else:
            os.replace(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def check_save_path(path: Path) -> None:
    """Refuse to write over ``path`` unless it is absent, empty, or a model directory tsformers wrote.

    A directory is replaced only when its ``config.json`` is a tsformers model configuration and every
    entry in it is a file a model directory holds (:data:`MODEL_FILES`): a project folder that happens to
    hold a ``config.json``, or a model directory someone put other files in, is never deleted.
    """
    if not path.exists() and not path.is_symlink():
        return
    if path.is_symlink() or not path.is_dir():
        raise FileExistsError(f"{path} exists and is not a directory; choose another path to save the model.")
    entries = sorted(entry.name for entry in path.iterdir())
    if not entries:
        return
    if not _is_model_config(path / CONFIG_FILE):
        raise FileExistsError(f"{path} exists and is not a tsformers model directory (it holds "
                              f"{_named(entries)}); nothing was written. Choose another path, or an empty "
                              f"or new directory.")
    foreign = [name for name in entries if name not in MODEL_FILES or (path / name).is_symlink()
               or not (path / name).is_file()]
    if foreign:
        raise FileExistsError(f"{path} holds a tsformers model and files tsformers did not write "
                              f"({_named(foreign)}); saving would delete them, so nothing was written. Move "
                              f"them out or choose another path.")


def _is_model_config(file: Path) -> bool:
    if file.is_symlink() or not file.is_file():
        return False
    try:
        config = json.loads(file.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and config.get("format") == FORMAT


def _named(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


def load_estimator(cls, path):
    """Read a directory written by :func:`save_estimator` as an instance of ``cls`` (or of a subclass it names)."""
    path = Path(path)
    config = read_config(path)
    estimator_cls = cls
    if cls.__name__ != config["estimator"]:
        estimator_cls = _registered(config["estimator"])
        if not issubclass(estimator_cls, cls):
            raise TypeError(f"{path} holds a {config['estimator']}, not a {cls.__name__}; load it with "
                            f"{config['estimator']}.load or BaseForecaster.load.")
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelFileError(f"{path} is incomplete: {WEIGHTS_FILE} is missing. Save the model again.")
    if _sha256(weights) != config["weights_sha256"]:
        raise ModelFileError(f"{weights} does not match the checksum recorded in {CONFIG_FILE}: the file is "
                             f"truncated, corrupted or was modified. Restore it or save the model again.")
    try:
        tensors = torch.load(weights, map_location="cpu", weights_only=True)
        assert isinstance(tensors, dict) and {"network", "history"} <= set(tensors)
    except Exception as err:  # noqa: BLE001 - any failure here means the file is not our tensors
        raise ModelFileError(f"{weights} does not hold tsformers weights ({type(err).__name__}); only tensors "
                             f"are ever read from it. Restore the file or save the model again.") from None
    est = estimator_cls(**config["params"])
    est.schema_ = PanelSchema.from_dict(config["schema"])
    est.scaler_ = PanelScaler.from_dict(config["scaler"])
    static = config.get("static") or {"encoder": {"numeric": {}, "categories": {}}, "codes": None}
    est.static_encoder_ = StaticEncoder.from_dict(static["encoder"])
    est.static_ = None if static["codes"] is None else np.asarray(static["codes"], dtype=np.float64)
    est.history_ = tensors["history"].numpy()
    est.n_features_in_ = config.get("n_features_in", est.history_.shape[-1])
    est.network_ = est._network(est.n_features_in_)
    if config.get("compression"):  # replay the compression's structural edits before loading its weights
        from tsformers.compress.structure import apply_edits

        apply_edits(est.network_, config.get("network_edits", []))
        est.network_edits_, est.compression_ = config.get("network_edits", []), config["compression"]
    est.network_.load_state_dict(tensors["network"])
    est.network_.eval()
    est.last_time_ = _time_from_json(config["last_time"])
    est.ends_ = [_time_from_json(t) for t in config["ends"]] if "ends" in config else \
        [est.last_time_] * len(est.schema_.series)
    est.training_log_ = config.get("training_log", [])
    if est._tags["streaming"]:
        est.state_ = tensors["state"]
    est.conformal_ = tensors["conformal"].numpy() if "conformal" in tensors else None
    return est


def read_config(path: Path) -> dict:
    """The checked ``config.json`` of a model directory."""
    file = path / CONFIG_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{path} is not a saved tsformers model (no {CONFIG_FILE} in it).")
    try:
        config = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelFileError(f"{file} is not valid JSON ({err}); the model directory is damaged.") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ModelFileError(f"{file} is not a tsformers model configuration.")
    version = config.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} was saved in model format version {version} by tsformers "
            f"{config.get('tsformers_version', '?')}; this tsformers reads versions up to {FORMAT_VERSION}: "
            f"install tsformers>={config.get('tsformers_version', 'that version')} to load it."
        )
    missing = [k for k in ("estimator", "params", "schema", "scaler", "last_time", "weights_sha256")
               if k not in config]
    if missing:
        raise ModelFileError(f"{file} lacks {missing}; the model directory is damaged. Save the model again.")
    return config


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _registered(name: str) -> type:
    import tsformers
    from tsformers.estimators.base import BaseForecaster

    found = getattr(tsformers, name, None)
    if not (isinstance(found, type) and issubclass(found, BaseForecaster)):
        raise ModelFileError(f"the saved model is a {name!r}, which this tsformers does not know; "
                             f"upgrade tsformers or load it with the package that defines it.")
    return found


def _time_to_json(t) -> dict:
    if isinstance(t, pd.Timestamp):
        return {"ns": int(t.as_unit("ns").value), "tz": str(t.tz) if t.tz is not None else None}
    return {"int": int(t)}


def _time_from_json(d: dict):
    if "int" in d:
        return np.int64(d["int"])
    t = pd.Timestamp(d["ns"], unit="ns", tz="UTC" if d["tz"] else None)
    return t.tz_convert(d["tz"]) if d["tz"] else t
