"""Train jobs of the ``tsformers`` command: a YAML or JSON job file overridden by command-line flags.

A job file is a mapping with the keys :data:`CONFIG_KEYS`; ``columns`` and
``mlflow`` are mappings with the keys :data:`COLUMN_KEYS` and :data:`MLFLOW_KEYS`.
Relative paths in a job file are relative to the file's folder, those of flags
to the working directory.
"""
from __future__ import annotations

import json
from pathlib import Path

from tsformers.batch import InputError

CONFIG_KEYS = {"data", "static_data", "estimator", "params", "columns", "model_dir", "mlflow"}
COLUMN_KEYS = {"time_col", "id_col", "target", "covariates", "future_covariates", "static"}
MLFLOW_KEYS = {"experiment", "registered_model_name", "tracking_uri", "run_name"}


def train_job(args) -> dict:
    """The training job: the config file (if any) overridden by the flags, checked for completeness."""
    job = read_config(Path(args.config)) if getattr(args, "config", None) else {}
    base = Path(args.config).resolve().parent if getattr(args, "config", None) else Path.cwd()
    columns = dict(job.get("columns") or {})
    for key in COLUMN_KEYS:
        value = getattr(args, key, None)
        if value is not None:
            columns[key] = value if key in ("time_col", "id_col") else [v.strip() for v in value.split(",")
                                                                        if v.strip()]
    params = dict(job.get("params") or {})
    for item in getattr(args, "param", []) or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise InputError(f"--param {item!r} is not NAME=VALUE, e.g. --param max_epochs=10.")
        params[name.strip()] = parse_value(value)
    mlflow_settings = job.get("mlflow")
    if getattr(args, "mlflow", False) or any(getattr(args, k, None) for k in
                                             ("experiment", "registered_model_name", "tracking_uri")):
        mlflow_settings = dict(mlflow_settings or {})
    if mlflow_settings is not None:
        for key in ("experiment", "registered_model_name", "tracking_uri"):
            if getattr(args, key, None):
                mlflow_settings[key] = getattr(args, key)
    data = getattr(args, "input", None) or getattr(args, "data", None) or job.get("data")
    model_dir = getattr(args, "model_dir", None) or job.get("model_dir")
    static_data = getattr(args, "static_data", None) or job.get("static_data")
    estimator = getattr(args, "estimator", None) or job.get("estimator")
    if not data:
        raise InputError("no training data: pass --data FILE or set 'data:' in the config.")
    if not estimator:
        raise InputError("no estimator: pass --estimator NAME (e.g. GateformerForecaster) or set 'estimator:'.")
    if args.command == "train" and not model_dir and mlflow_settings is None:
        raise InputError("the fitted model would not be kept: pass --model-dir DIR and/or --mlflow.")
    return {"data": resolve(data, base), "estimator": estimator, "params": params, "columns": columns,
            "model_dir": resolve(model_dir, base) if model_dir else None, "mlflow": mlflow_settings,
            "static_data": resolve(static_data, base) if static_data else None}


def read_config(path: Path) -> dict:
    """The mapping of a YAML or JSON job file, its keys checked; an unreadable file is bad input."""
    if not path.is_file():
        raise InputError(f"no such config file: {path}")
    text = path.read_text()
    if path.suffix == ".json":
        try:
            config = json.loads(text)
        except ValueError as err:
            raise InputError(f"{path} is not valid JSON: {err}") from None
    else:
        try:
            import yaml
        except ImportError:
            raise InputError(f"{path}: reading YAML needs PyYAML (pip install pyyaml), or write the job as JSON.")
        try:
            config = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise InputError(_yaml_error(path, err)) from None
    if not isinstance(config, dict):
        raise InputError(f"{path} must hold a mapping of keys {sorted(CONFIG_KEYS)}.")
    for key, allowed, where in [(None, CONFIG_KEYS, ""), ("columns", COLUMN_KEYS, "columns."),
                                ("mlflow", MLFLOW_KEYS, "mlflow.")]:
        section = config if key is None else (config.get(key) or {})
        if not isinstance(section, dict):
            raise InputError(f"{path}: '{key}' must be a mapping with keys among {sorted(allowed)}.")
        unknown = sorted(set(section) - allowed)
        if unknown:
            raise InputError(f"{path}: unknown key(s) {[where + k for k in unknown]}; allowed: "
                             f"{[where + k for k in sorted(allowed)]}.")
    if config.get("params") is not None and not isinstance(config["params"], dict):
        raise InputError(f"{path}: 'params' must be a mapping of estimator parameters.")
    if "mlflow" in config and config["mlflow"] is None:
        config["mlflow"] = {}
    return config


def _yaml_error(path: Path, err) -> str:
    """PyYAML's error (several lines with an excerpt and a caret) as one line: file, line, column, problem."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark is not None else str(path)
    message = f"{where}: not valid YAML: {problem}"
    context, context_mark = getattr(err, "context", None), getattr(err, "context_mark", None)
    if context and context_mark is not None and context_mark.line != getattr(mark, "line", None):
        message += f" ({context} that starts at line {context_mark.line + 1}, column {context_mark.column + 1})"
    elif context:
        message += f" ({context})"
    return message


def parse_value(text: str):
    """A ``--param`` value in YAML (or, without PyYAML, JSON) syntax; text that is neither stays text."""
    try:
        import yaml

        return yaml.safe_load(text)
    except ImportError:
        try:
            return json.loads(text)
        except ValueError:
            return text
    except Exception:
        return text


def resolve(path, base: Path) -> Path:
    """``path`` with ``~`` expanded, relative to ``base`` unless absolute."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else base / path
