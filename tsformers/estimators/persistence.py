"""Saving and loading fitted forecasters: a directory of JSON and tensors, never a pickle.

``config.json`` holds the format version, the package version, the estimator's
name and parameters, the data schema, the scaling statistics and, for a
compressed network (``tsformers.compress``), the structural edits that turn the
network built from the parameters into it (``network_edits``, replayed before
the weights are loaded) and what was done (``compression``); ``weights.pt``
holds tensors only (the network's weights, the stored history, a streaming
state when the estimator has one, the conformal calibration errors) and is read
with ``weights_only=True``. The directory itself (checksums of every file,
atomic writes, what may be overwritten, links and versions) is the model-file
format of :mod:`tsformers.estimators.modelfile`; this module turns an
estimator into its files and back.

Loading checks before it allocates: the network is first built on PyTorch's
``meta`` device (shapes, no memory), so a configuration asking for a network
far larger than its weights, or whose shapes do not match them, is a
:class:`ModelFileError` rather than a huge allocation.
"""
from __future__ import annotations

import contextlib
import inspect
import io
import json
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tsformers._version import __version__
from tsformers.estimators.evaluation import CONFORMAL_SCALES
from tsformers.estimators.forecasting import fitted_data
from tsformers.estimators.modelfile import (CONFIG_FILE, FORMAT, FORMAT_VERSION, WEIGHTS_FILE, ModelDirectory,
                                            ModelFileError, sha256_of, write_model_directory)
from tsformers.runtime.edits import apply_edits
from tsformers.runtime.ort import ONNX_FILE
from tsformers.seeding import seeded_apart

__all__ = ["load_estimator", "read_tensors", "rebuild_network", "rebuilding", "save_estimator", "saved_params",
           "verify_graph"]

# A network built from a configuration may hold this many times the elements of its saved weights (compression
# shrinks a network: pruned heads, factorised or quantised layers) or NETWORK_FLOOR elements, whichever is more.
NETWORK_GROWTH, NETWORK_FLOOR = 64, 1 << 24


def save_estimator(est, path) -> Path:
    """Write the fitted estimator ``est`` to the directory ``path`` atomically; return the path."""
    params = est.get_params()
    try:
        json.dumps(params)
    except TypeError as err:
        raise TypeError(f"the parameters cannot be written as JSON ({err}); set such parameters (e.g. "
                        f"trainer_kwargs holding objects) to plain values before saving.") from None
    tensors = {"network": est.network_.state_dict(), "history": torch.from_numpy(est.history_)}
    if getattr(est, "state_", None) is not None:  # a streaming forecaster's state after its history
        tensors["state"] = est.state_
    if getattr(est, "conformal_", None) is not None:  # calibration errors of the conformal intervals
        tensors["conformal"] = torch.from_numpy(est.conformal_)

    def write(directory: Path) -> None:
        torch.save(tensors, directory / WEIGHTS_FILE)
        config = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "tsformers_version": __version__,
            "estimator": type(est).__name__, "params": params, "schema": est.schema_.to_dict(),
            "scaler": est.scaler_.to_dict(), "last_time": _time_to_json(est.last_time_),
            "ends": [_time_to_json(t) for t in est.ends_],
            "n_features_in": est.n_features_in_, "training_log": est.training_log_,
            # also in the manifest; kept here as the stamp an exported ONNX graph carries
            "weights_sha256": sha256_of(directory / WEIGHTS_FILE),
            "static": {"encoder": est.static_encoder_.to_dict(),
                       "codes": None if est.static_ is None else est.static_.tolist()},
        }
        if getattr(est, "conformal_", None) is not None:  # what the conformal errors were divided by
            config["conformal_scale"] = getattr(est, "conformal_scale_", "series")
        if getattr(est, "cycle_", None) is not None:  # the targets' seasonal cycle (cycle=)
            config["cycle"] = est.cycle_.to_dict()
        if getattr(est, "mean_depth_", None) is not None:  # adaptive depth: the mean depth its gates chose in fit
            config["mean_depth"] = est.mean_depth_
        if getattr(est, "compression_", None):  # a compressed network (tsformers.compress): its surgery, as JSON
            config["network_edits"] = getattr(est, "network_edits_", [])
            config["compression"] = est.compression_
        (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2))

    return write_model_directory(path, write)


def load_estimator(cls, path):
    """Read a directory written by :func:`save_estimator` as an instance of ``cls`` (or of a subclass it names).

    Raises
    ------
    FileNotFoundError
        ``path`` holds no saved model.
    ModelFileError
        The directory is damaged, of an unknown format, or names an estimator this tsformers does not know.
    TypeError
        The directory holds an estimator that is not a ``cls``.
    """
    model = ModelDirectory.open(path)
    config = model.config
    estimator_cls = _estimator_class(cls, config["estimator"], model.path)
    tensors = read_tensors(model)
    verify_graph(model)
    with rebuilding(model):
        return _rebuild(estimator_cls, config, tensors)


def verify_graph(model: ModelDirectory) -> None:
    """Check ``model.onnx`` against the manifest when the directory has one: unused by the torch engine, but a
    changed file is damage all the same."""
    if model.manifest is not None and (model.path / ONNX_FILE).exists():
        model.verify(ONNX_FILE)


@contextlib.contextmanager
def rebuilding(model: ModelDirectory):
    """Rebuilding the model of ``model`` from its configuration: any failure there means the configuration does
    not describe these weights, a :class:`ModelFileError` naming the directory."""
    try:
        yield
    except ModelFileError:
        raise
    except (AssertionError, AttributeError, IndexError, KeyError, OverflowError, RuntimeError, TypeError,
            ValueError) as err:
        raise ModelFileError(f"{model.path / CONFIG_FILE} does not describe a model this tsformers can rebuild "
                             f"({type(err).__name__}: {err}); the model directory is damaged. Save the model "
                             f"again.") from None


def read_tensors(model: ModelDirectory) -> dict:
    """The tensors of ``weights.pt`` (``weights_only=True``), checked to be a saved network and history."""
    data = model.read_bytes(WEIGHTS_FILE)
    file = model.path / WEIGHTS_FILE
    try:
        tensors = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure here means the file is not our tensors
        raise ModelFileError(f"{file} does not hold tsformers weights ({type(err).__name__}); only tensors "
                             f"are ever read from it. Restore the file or save the model again.") from None
    if not (isinstance(tensors, dict) and {"network", "history"} <= set(tensors)
            and isinstance(tensors["network"], dict) and isinstance(tensors["history"], torch.Tensor)
            and all(isinstance(t, torch.Tensor) for t in tensors["network"].values())):
        raise ModelFileError(f"{file} does not hold tsformers weights (no network and history tensors); only "
                             f"tensors are ever read from it. Restore the file or save the model again.")
    return tensors


def saved_params(estimator: str, params: dict, accepted=None) -> dict:
    """The saved parameters of an ``estimator`` (its class name) as this tsformers reads them.

    Models saved before the streaming estimators took ``normalize`` (tsformers 0.1.0 before the
    level-shift change) were trained on values: they load with ``normalize="none"``, the form they
    were trained in, and GTrXL's former ``input_changes=True`` is ``normalize="last_value"``.
    GTrXL's former ``stack="recursive"`` (one layer's weights at every layer) is the registry's
    ``"looped"`` now: the same network, the same weights. PV-Client models saved before its per-step
    pathway load without it (``step_pathway=False``), and streaming models saved before the linear base
    without it (``linear_base=False``). Gateformer models saved before ``attention_dropout`` existed
    dropped their attention weights at ``dropout``: they load with ``attention_dropout=None``, which
    is that (it matters only to a model trained on). Models saved before ``cycle`` existed took no seasonal
    cycle out: they load with ``cycle=None``; those saved before ``ensemble_size`` fitted one network: they
    load with ``ensemble_size=1``. ``accepted``: the parameters the estimator takes
    (only those are added); None adds them all, for a reader that looks up only the ones its network reads
    (:mod:`tsformers.estimators.saved`).
    """
    params = dict(params)
    takes = (lambda name: True) if accepted is None else (lambda name: name in accepted)
    if estimator == "GTrXLForecaster" and params.get("stack") == "recursive":
        params["stack"] = "looped"
    for added_later in ("step_pathway", "linear_base"):  # off in models saved before the parameter existed
        if takes(added_later):
            params.setdefault(added_later, False)
    if estimator == "GateformerForecaster" and takes("attention_dropout"):
        params.setdefault("attention_dropout", None)  # the attention weights' dropout was dropout's
    if takes("cycle"):   # no seasonal cycle was taken out before the parameter existed
        params.setdefault("cycle", None)
    if takes("ensemble_size"):   # one network before the parameter existed
        params.setdefault("ensemble_size", 1)
    if takes("val_every_windows"):   # validated after each pass before the parameter existed
        params.setdefault("val_every_windows", None)
    if takes("normalize") and "normalize" not in params:
        params["normalize"] = "last_value" if params.pop("input_changes", False) else "none"
    return params


def rebuild_network(owner, n_vars: int, config: dict, weights: dict) -> torch.nn.Module:
    """The saved network of ``owner`` (an estimator, or a saved model read without it), built from its
    parameters for ``n_vars`` input channels, with the compression's structural edits replayed and
    ``weights`` loaded, in eval mode; checked on the meta device first (:func:`_check_network_size`)."""
    edits = config.get("network_edits", []) if config.get("compression") else []
    _check_network_size(owner, n_vars, edits, weights)
    # the weights replace every value the build draws: drawn apart, so that reading a model leaves the caller's
    # random numbers as they were
    network = seeded_apart(0, _built_network, owner, n_vars, edits)
    network.load_state_dict(weights)
    return network.eval()


def _built_network(owner, n_vars: int, edits: list) -> torch.nn.Module:
    network = owner._network(n_vars)
    if edits:  # replay the compression's structural edits before loading its weights
        apply_edits(network, edits)
    return network


def _rebuild(estimator_cls, config: dict, tensors: dict):
    est = estimator_cls(**saved_params(estimator_cls.__name__, config["params"],
                                       inspect.signature(estimator_cls).parameters))
    est._validate_params()
    for name, value in fitted_data(config).items():
        setattr(est, name, value)
    est.history_ = tensors["history"].numpy()
    est.n_features_in_ = config.get("n_features_in", est.history_.shape[-1])
    est.network_ = rebuild_network(est, est.n_features_in_, config, tensors["network"])
    if config.get("compression"):
        est.network_edits_, est.compression_ = config.get("network_edits", []), config["compression"]
    est.last_time_ = _time_from_json(config["last_time"])
    est.ends_ = [_time_from_json(t) for t in config["ends"]] if "ends" in config else \
        [est.last_time_] * len(est.schema_.series)
    est.training_log_ = config.get("training_log", [])
    if config.get("mean_depth") is not None:
        est.mean_depth_ = float(config["mean_depth"])
    if "state" in tensors:
        est.state_ = tensors["state"]
    est.conformal_ = tensors["conformal"].numpy() if "conformal" in tensors else None
    # models saved before the window's scale divided their errors by the series' scale alone
    est.conformal_scale_ = config.get("conformal_scale", "series")
    if est.conformal_scale_ not in CONFORMAL_SCALES:
        raise ModelFileError(f"{CONFIG_FILE}: conformal_scale is {est.conformal_scale_!r}, not one of "
                             f"{list(CONFORMAL_SCALES)}; the model directory is damaged.")
    return est


def _check_network_size(est, n_vars: int, edits: list, weights: dict) -> None:
    """Build the network (and replay its edits) on the meta device first: sizes and shapes, no memory.

    The configuration decides how large a network is built before the weights are loaded into it, so a
    damaged or hostile one could ask for any allocation: refuse a network far larger than its weights
    (:data:`NETWORK_GROWTH`), and one whose shapes are not those of the weights.
    """
    limit = max(NETWORK_GROWTH * sum(t.numel() for t in weights.values()), NETWORK_FLOOR)

    def check(network: torch.nn.Module, when: str) -> None:
        elements = sum(t.numel() for t in network.state_dict().values())
        if elements > limit:
            raise ModelFileError(f"the configuration asks for a network of {elements} elements {when}, far more "
                                 f"than its weights hold (at most {limit} would be built); the model directory "
                                 f"is damaged.")

    try:
        with torch.device("meta"), _without_distribution_checks():
            network = est._network(n_vars)
    except (NotImplementedError, RuntimeError) as err:
        if "meta" not in str(err):
            raise
        return  # a network that cannot be built without memory (none of tsformers' own): built for real, unchecked
    check(network, "from its parameters")
    with torch.device("meta"):
        for number, edit in enumerate(edits):
            apply_edits(network, [edit])
            check(network, f"after network edit {number}")
    shapes = {name: tuple(t.shape) for name, t in network.state_dict().items()}
    saved = {name: tuple(t.shape) for name, t in weights.items()}
    if shapes != saved:
        different = sorted(set(shapes) ^ set(saved)) or sorted(k for k in shapes if shapes[k] != saved[k])
        raise ModelFileError(f"the configuration describes a network whose tensors are not those of "
                             f"{WEIGHTS_FILE} ({', '.join(different[:3])}{' ...' if len(different) > 3 else ''})"
                             f"; the model directory is damaged.")


_DISTRIBUTION_CHECKS = threading.Lock()  # the switch below is global: one load at a time flips it


@contextlib.contextmanager
def _without_distribution_checks():
    """Distributions built at construction (the quantile head's normal) check their arguments' values,
    which meta tensors do not have; the switch is restored afterwards, also when loads run in threads."""
    with _DISTRIBUTION_CHECKS:
        checking = torch.distributions.Distribution._validate_args
        torch.distributions.Distribution.set_default_validate_args(False)
        try:
            yield
        finally:
            torch.distributions.Distribution.set_default_validate_args(checking)


def _estimator_class(cls: type, name: str, path: Path) -> type:
    """``cls``, or its subclass called ``name``: the class hierarchy is the registry (tsformers' own
    estimators are imported by name first, as ``tsformers.estimators`` exports them on use)."""
    if cls.__name__ == name:
        return cls
    # the class that defines load() (BaseForecaster) roots the hierarchy in which the saved name is looked up
    root = next(c for c in reversed(cls.__mro__) if "load" in vars(c))
    import tsformers.estimators as builtin

    if name in builtin.__all__:  # tsformers' own estimators are imported on first use: this one now
        getattr(builtin, name)
    found = {c for c in _subclasses(root) if c.__name__ == name}
    if len(found) != 1:
        known = sorted({c.__name__ for c in _subclasses(root)})
        raise ModelFileError(f"{path} holds a {name!r}, which this tsformers does not know "
                             f"{'(several classes have that name)' if found else f'(it knows {known})'}; upgrade "
                             f"tsformers or import the package that defines it, then load again.")
    estimator_cls = found.pop()
    if not issubclass(estimator_cls, cls):
        raise TypeError(f"{path} holds a {name}, not a {cls.__name__}; load it with {name}.load or "
                        f"{root.__name__}.load.")
    return estimator_cls


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def _time_to_json(t) -> dict:
    if isinstance(t, pd.Timestamp):
        return {"ns": int(t.as_unit("ns").value), "tz": str(t.tz) if t.tz is not None else None}
    return {"int": int(t)}


def _time_from_json(d: dict):
    if set(d) == {"int"} and type(d["int"]) is int:
        return np.int64(d["int"])
    if set(d) == {"ns", "tz"} and type(d["ns"]) is int and (d["tz"] is None or isinstance(d["tz"], str)):
        t = pd.Timestamp(d["ns"], unit="ns", tz="UTC" if d["tz"] else None)
        return t.tz_convert(d["tz"]) if d["tz"] else t
    raise ValueError(f"{d!r} is not a saved time ({{'int': ...}} or {{'ns': ..., 'tz': ...}})")
