"""The model-directory format: what a saved tsformers model is on disk, and how it is written and read.

A model directory holds

- ``config.json``: the format and its version, the package version, the
  estimator's name and parameters, the data schema, the scaling statistics and
  the rest of the fitted state that is not a tensor (checked against
  :data:`CONFIG_SCHEMA` when read);
- ``weights.pt``: tensors only, read with ``torch.load(weights_only=True)``;
- ``model.onnx`` (optional): the ONNX graph of the network (``export_onnx``);
- ``manifest.json`` (format 2): the SHA-256 and the size of every other file.

Format 2 checksums every file, so any change to any byte of the directory is a
:class:`ModelFileError` naming the file. Format 1 (tsformers before the
manifest) checksums ``weights.pt`` only (its ``weights_sha256`` in
``config.json``) and still loads.

Writing goes through a staging directory renamed into place, so a reader sees
the old model or the new one, never a half-written one; the directory and its
files get the permissions that ``mkdir`` and ``open`` give under the process's
umask. An existing directory is replaced only when it holds a tsformers model
and nothing else (:func:`check_save_path`). Reading refuses symbolic links
(a model directory holds its own files) and reads each file once, checking the
very bytes it then parses. This module knows nothing of estimators: it moves
JSON and bytes; :mod:`tsformers.estimators.persistence` turns them into a
forecaster.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tsformers.runtime.ort import ONNX_FILE

__all__ = ["CONFIG_FILE", "CONFIG_SCHEMA", "FORMAT", "FORMAT_VERSION", "MANIFEST_FILE", "MODEL_FILES",
           "ModelDirectory", "ModelFileError", "WEIGHTS_FILE", "check_save_path", "sha256_of",
           "update_model_directory", "write_model_directory"]

FORMAT = "tsformers-model"
# 3: config.json names the scale of the conformal errors (conformal_scale; an older reader would misread
# them); 2: manifest.json checksums every file; 1: config.json holds the weights' checksum only
FORMAT_VERSION = 3
MANIFEST_FORMAT = "tsformers-model-manifest"
CONFIG_FILE, WEIGHTS_FILE, MANIFEST_FILE = "config.json", "weights.pt", "manifest.json"
# Every file a model directory can hold: save() replaces a directory only if it holds nothing else.
MODEL_FILES = frozenset({CONFIG_FILE, WEIGHTS_FILE, ONNX_FILE, MANIFEST_FILE})
# JSON files are small; a larger one is damage, not a model (and is not read into memory).
MAX_JSON_BYTES = 64 << 20

# The fields of config.json: JSON type(s), and whether every model has it. Fields read into the data
# classes (schema, scaler, static) are checked further by them, under the loader's guard.
CONFIG_SCHEMA: dict[str, tuple[tuple[type, ...], bool]] = {
    "format": ((str,), True),
    "format_version": ((int,), True),
    "tsformers_version": ((str,), True),
    "estimator": ((str,), True),
    "params": ((dict,), True),
    "schema": ((dict,), True),
    "scaler": ((dict,), True),
    "last_time": ((dict,), True),
    "weights_sha256": ((str,), True),
    "ends": ((list,), False),
    "n_features_in": ((int,), False),
    "training_log": ((list,), False),
    "static": ((dict,), False),
    "cycle": ((dict,), False),
    "network_edits": ((list,), False),
    "compression": ((list,), False),
    "conformal_scale": ((str,), False),
}


class ModelFileError(ValueError):
    """A saved model directory is incomplete, damaged or of an unknown format."""


# -- writing -----------------------------------------------------------------------------------------


def write_model_directory(path, write: Callable[[Path], None]) -> Path:
    """Write a model directory at ``path`` atomically: ``write(staging)`` puts the files, then the manifest.

    ``path`` must pass :func:`check_save_path`. Returns the path.
    """
    path = Path(path)
    check_save_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _replace_with(path, write)


def update_model_directory(path, write: Callable[[Path], None]) -> Path:
    """Add or replace files of the model directory ``path`` (``export_onnx``), atomically, with a new manifest.

    The model's other files are carried over unchanged (hard links where the file system allows them)
    into a staging directory, ``write(staging)`` adds its files, and the staging directory replaces
    ``path`` as :func:`write_model_directory` does. Refuses a directory that is damaged, or that holds
    files tsformers did not write (they would be lost).
    """
    model = ModelDirectory.open(path)
    check_save_path(model.path)
    present = [name for name in sorted(MODEL_FILES - {MANIFEST_FILE}) if (model.path / name).exists()]
    for name in present:
        if name != ONNX_FILE:  # the graph is checked when used: a stale one is about to be replaced
            model.read_bytes(name)

    def carry_over_then_write(staging: Path) -> None:
        for name in present:
            try:
                os.link(model.path / name, staging / name)
            except OSError:  # a file system without hard links
                shutil.copy2(model.path / name, staging / name)
        write(staging)

    # a format-1 directory stays format 1 (its configuration has no manifest to agree with)
    return _replace_with(model.path, carry_over_then_write, manifest=model.manifest is not None)


def _replace_with(path: Path, write: Callable[[Path], None], manifest: bool = True) -> Path:
    staging = _new_directory(path.parent, f".{path.name}.")
    try:
        write(staging)
        if manifest:
            _write_manifest(staging)
        if path.exists():
            retired = _new_directory(path.parent, f".{path.name}.old.")
            os.replace(path, retired / "model")
            os.replace(staging, path)
            shutil.rmtree(retired)
        else:
            os.replace(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def _new_directory(parent: Path, prefix: str) -> Path:
    """A new directory with a random name, made by ``mkdir``: the umask decides who may read it.

    (``tempfile.mkdtemp`` would make it 0700 whatever the umask, and the model directory is this
    directory renamed.)
    """
    while True:
        candidate = parent / f"{prefix}{secrets.token_hex(6)}"
        try:
            candidate.mkdir(mode=0o777)
            return candidate
        except FileExistsError:
            continue


def _write_manifest(directory: Path) -> None:
    files = {entry.name: {"sha256": sha256_of(entry), "size": entry.stat().st_size}
             for entry in sorted(directory.iterdir()) if entry.name != MANIFEST_FILE}
    (directory / MANIFEST_FILE).write_text(_manifest_text({"format": MANIFEST_FORMAT, "files": files}))


def sha256_of(file: Path) -> str:
    """The SHA-256 of a file, read a block at a time."""
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _manifest_text(manifest: dict) -> str:
    """The one way a manifest is written, so that reading can refuse any other byte in it."""
    return json.dumps(manifest, indent=2, sort_keys=True) + "\n"


def check_save_path(path) -> None:
    """Refuse to write over ``path`` unless it is absent, empty, or a model directory tsformers wrote.

    A directory is replaced only when its ``config.json`` is a tsformers model configuration and every
    entry in it is a file a model directory holds (:data:`MODEL_FILES`): a project folder that happens to
    hold a ``config.json``, or a model directory someone put other files in, is never deleted.

    Raises
    ------
    FileExistsError
        ``path`` is a file or a link, or a directory holding anything else.
    """
    path = Path(path)
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


# -- reading -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelDirectory:
    """A model directory opened for reading: its checked configuration, and its files verified as read.

    Attributes
    ----------
    path : pathlib.Path
    config : dict
        ``config.json``, verified against the manifest (format 2) and checked against
        :data:`CONFIG_SCHEMA`.
    manifest : dict or None
        ``{file name: {"sha256": ..., "size": ...}}``; None in format 1.
    """

    path: Path
    config: dict
    manifest: dict | None

    @classmethod
    def open(cls, path) -> ModelDirectory:
        """Open ``path``; :class:`ModelFileError` for a damaged directory or an unknown format.

        Raises
        ------
        FileNotFoundError
            ``path`` holds no ``config.json``: it is no saved model.
        ModelFileError
            Anything else wrong: a link, a file that does not match the manifest, a configuration
            that is not JSON or does not follow :data:`CONFIG_SCHEMA`, a format version this
            tsformers does not read.
        """
        path = Path(path)
        file = path / CONFIG_FILE
        if not file.is_symlink() and not file.is_file():
            raise FileNotFoundError(f"{path} is not a saved tsformers model (no {CONFIG_FILE} in it).")
        for name in sorted(MODEL_FILES):
            if (path / name).is_symlink():
                raise ModelFileError(f"{path / name} is a symbolic link (to {os.readlink(path / name)}); a model "
                                     f"directory holds its own files and links are never followed. Copy the file "
                                     f"in its place, or save the model again.")
        raw = _read(file, limit=MAX_JSON_BYTES)
        manifest, damaged_manifest = None, None
        if (path / MANIFEST_FILE).exists():
            try:
                manifest = _read_manifest(path)
            except ModelFileError as err:  # unless the configuration says it is of a newer format (below)
                damaged_manifest = err
        if manifest is not None:
            _check(file, raw, manifest.get(CONFIG_FILE))
        config = _parse_config(file, raw)
        if damaged_manifest is not None:
            raise damaged_manifest
        version = config["format_version"]
        if version >= 2 and manifest is None:
            raise ModelFileError(f"{path} is incomplete: {MANIFEST_FILE} is missing (a format-{version} model "
                                 f"checksums every file in it). Save the model again.")
        if version == 1 and manifest is not None:
            raise ModelFileError(f"{path} mixes formats: a format-1 {CONFIG_FILE} beside a {MANIFEST_FILE}. "
                                 f"Save the model again.")
        if manifest is not None:
            for name in sorted(MODEL_FILES - {MANIFEST_FILE}):
                if (path / name).exists():
                    _check_listed(path / name, manifest)
                elif name in manifest:
                    raise ModelFileError(f"{path} is incomplete: {name} is missing. Save the model again.")
        return cls(path=path, config=config, manifest=manifest)

    @property
    def version(self) -> int:
        return self.config["format_version"]

    def read_bytes(self, name: str) -> bytes:
        """The content of the file ``name``, verified against the manifest (format 1: weights.pt's checksum)."""
        file = self.path / name
        if not file.exists() and not file.is_symlink():
            raise ModelFileError(f"{self.path} is incomplete: {name} is missing. Save the model again.")
        data = _read(file)
        if self.manifest is not None:
            _check(file, data, self.manifest.get(name))
        elif name == WEIGHTS_FILE and hashlib.sha256(data).hexdigest() != self.config["weights_sha256"]:
            raise ModelFileError(f"{file} does not match the checksum recorded in {CONFIG_FILE}: the file is "
                                 f"truncated, corrupted or was modified. Restore it or save the model again.")
        return data

    def verify(self, name: str) -> Path:
        """The path of the file ``name`` after checking it against the manifest (for readers that take a path)."""
        self.read_bytes(name)
        return self.path / name


def _read(file: Path, limit: int | None = None) -> bytes:
    """The bytes of a regular file, never through a symbolic link, and at most ``limit`` of them."""
    try:
        fd = os.open(file, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as err:
        if file.is_symlink():
            raise ModelFileError(f"{file} is a symbolic link; a model directory holds its own files and links "
                                 f"are never followed.") from None
        raise ModelFileError(f"{file} cannot be read ({err.strerror}).") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ModelFileError(f"{file} is not a regular file; the model directory is damaged.")
        if limit is not None and info.st_size > limit:
            raise ModelFileError(f"{file} holds {info.st_size} bytes, more than a model's {file.name} ever does "
                                 f"({limit}); the model directory is damaged.")
        return handle.read()


def _read_manifest(path: Path) -> dict:
    file = path / MANIFEST_FILE
    raw = _read(file, limit=MAX_JSON_BYTES)
    try:
        manifest = json.loads(raw)
        files = manifest["files"]
        valid = (manifest.get("format") == MANIFEST_FORMAT and isinstance(files, dict) and all(
            isinstance(entry, dict) and set(entry) == {"sha256", "size"} and isinstance(entry["sha256"], str)
            and type(entry["size"]) is int for entry in files.values()))
    except (ValueError, TypeError, KeyError):
        valid = False
    # Written one way only (_manifest_text): any other byte, even one JSON would not notice, is damage.
    if not valid or raw != _manifest_text(manifest).encode():
        raise ModelFileError(f"{file} is damaged (it is not the manifest tsformers wrote); the checksums of the "
                             f"model's files cannot be trusted. Save the model again.")
    unknown = sorted(set(files) - MODEL_FILES)
    if unknown or MANIFEST_FILE in files:
        raise ModelFileError(f"{file} lists files a model directory does not hold ({_named(unknown or [MANIFEST_FILE])})"
                             f"; the manifest is damaged. Save the model again.")
    return files


def _check_listed(file: Path, manifest: dict) -> None:
    if file.name not in manifest:
        raise ModelFileError(f"{file} is not in {MANIFEST_FILE}: it was not written with this model (a file "
                             f"copied in?). Remove it, or export or save the model again.")


def _check(file: Path, data: bytes, entry: dict | None) -> None:
    if entry is None:
        _check_listed(file, {})
    if len(data) != entry["size"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise ModelFileError(f"{file} does not match the checksum recorded in {MANIFEST_FILE}: the file is "
                             f"truncated, corrupted or was modified. Restore it or save the model again.")


def _parse_config(file: Path, raw: bytes) -> dict:
    try:
        config = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelFileError(f"{file} is not valid JSON ({err}); the model directory is damaged.") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ModelFileError(f"{file} is not a tsformers model configuration.")
    _check_version(file, config)
    missing = [key for key, (_, required) in CONFIG_SCHEMA.items() if required and key not in config]
    if missing:
        raise ModelFileError(f"{file} lacks {missing}; the model directory is damaged. Save the model again.")
    for key, (types, _) in CONFIG_SCHEMA.items():
        value = config.get(key)
        if key in config and (not isinstance(value, types) or isinstance(value, bool)):
            raise ModelFileError(f"{file}: {key} is a {type(value).__name__}, where a model holds a "
                                 f"{' or '.join(t.__name__ for t in types)}; the model directory is damaged.")
    if config.get("n_features_in", 1) < 1:
        raise ModelFileError(f"{file}: n_features_in is {config['n_features_in']}; the model directory is damaged.")
    return config


def _check_version(file: Path, config: dict) -> None:
    version, written_by = config.get("format_version"), config.get("tsformers_version", "?")
    # bool is an int in Python: True would read as version 1
    if type(version) is not int or version < 1:
        raise ModelFileError(f"{file}: format_version is {version!r}, not a model format version (a positive "
                             f"integer); the model directory is damaged.")
    if version > FORMAT_VERSION:
        raise ModelFileError(f"{file.parent} was saved in model format version {version} by tsformers {written_by};"
                             f" this tsformers reads versions up to {FORMAT_VERSION}: install "
                             f"tsformers>={written_by if written_by != '?' else 'that version'} to load it.")
