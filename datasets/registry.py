"""Registry of the benchmark data sets and the loader for their CSV files.

The facts about each data set (file name, SHA-256, frequency, split rule,
public source, licence) live in ``registry.json`` next to this module. The
files themselves are not shipped: point :func:`load_dataset` at a folder that
holds them with ``data_dir=`` or the ``TSFORMERS_DATA`` environment variable.
"""

from __future__ import annotations

import hashlib
import json
import operator
import os
from functools import lru_cache
from pathlib import Path

import pandas as pd

ENV_VAR = "TSFORMERS_DATA"
SPLITS = ("train", "val", "test")
_CHUNK = 1 << 20  # bytes read at a time when hashing


@lru_cache(maxsize=1)
def _registry() -> dict:
    """Return the parsed ``registry.json`` (read once, then cached)."""
    path = Path(__file__).with_name("registry.json")
    return json.loads(path.read_text(encoding="utf-8"))


def available() -> list[str]:
    """List the registered data set names.

    Returns
    -------
    list of str
        Canonical names, e.g. ``["ETTh1", ..., "illness"]``. Names are
        matched case-insensitively by :func:`load_dataset`.
    """
    return list(_registry()["datasets"])


def info(name: str) -> dict:
    """Return the registry entry of one data set.

    Parameters
    ----------
    name : str
        Data set name or alias, case-insensitive.

    Returns
    -------
    dict
        A copy of the entry: ``file``, ``sha256``, ``freq``, ``time_col``,
        ``target``, ``split``, ``source``, ``url``, ``license``, ...
        plus ``name`` (the canonical name).

    Raises
    ------
    ValueError
        If the name is not registered; the message lists the valid names.
    """
    canonical = _canonical_name(name)
    return {"name": canonical, **_registry()["datasets"][canonical]}


def _canonical_name(name: str) -> str:
    """Map a case-insensitive name or alias to its registry key."""
    if isinstance(name, str):
        wanted = name.strip().lower()
        for key, entry in _registry()["datasets"].items():
            if wanted == key.lower() or wanted in entry.get("aliases", []):
                return key
    raise ValueError(f"unknown dataset {name!r}; choose one of {available()}")


def split_bounds(name: str, n_rows: int) -> dict[str, tuple[int, int]]:
    """Row ranges of the standard train/val/test split.

    ETT files use fixed 12/4/4-month borders (Informer protocol); the others
    use ``num_train = int(0.7 * n)``, ``num_test = int(0.2 * n)`` and give
    the rows in between to validation (Autoformer / Time-Series-Library).

    Parameters
    ----------
    name : str
        Data set name, case-insensitive.
    n_rows : int
        Number of data rows in the file.

    Returns
    -------
    dict of str to (int, int)
        ``{"train": (start, stop), "val": ..., "test": ...}``, half-open
        row ranges (``stop`` excluded), without look-back context.

    Raises
    ------
    ValueError
        If the name is unknown, ``n_rows`` is negative, or the file is too
        short for a fixed split.
    """
    entry = info(name)
    n_rows = _non_negative_int(n_rows, "n_rows")
    rule = _registry()["splits"][entry["split"]]
    if rule["kind"] == "fixed":
        bounds = {part: tuple(rule[part]) for part in SPLITS}
        if n_rows < bounds["test"][1]:
            raise ValueError(
                f"{entry['name']} needs at least {bounds['test'][1]} rows for its "
                f"{entry['split']!r} split, got {n_rows}"
            )
        return bounds
    num_train = int(rule["train"] * n_rows)
    num_test = int(rule["test"] * n_rows)
    return {
        "train": (0, num_train),
        "val": (num_train, n_rows - num_test),
        "test": (n_rows - num_test, n_rows),
    }


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    split: str | None = None,
    context: int = 0,
) -> pd.DataFrame:
    """Load a registered benchmark data set as a wide frame.

    Parameters
    ----------
    name : str
        Data set name (see :func:`available`), case-insensitive.
    data_dir : str or path-like, optional
        Folder holding the file. Defaults to the ``TSFORMERS_DATA``
        environment variable.
    split : {"train", "val", "test"}, optional
        Return only that part of the standard split (see
        :func:`split_bounds`). ``None`` returns all rows.
    context : int, default 0
        For ``"val"`` and ``"test"``, also return up to ``context`` rows
        before the split start (the look-back window, ``border1 = start -
        L``); never reaches before row 0. Ignored otherwise.

    Returns
    -------
    pandas.DataFrame
        The time column parsed to datetime64, all other columns float64,
        with a fresh ``RangeIndex``.

    Raises
    ------
    FileNotFoundError
        If no folder is given or the file is not in it; the message says
        where to download the file and how to point the loader at it.
    ValueError
        If the name, split or context is invalid, or the file's SHA-256
        differs from the registry.
    """
    entry = info(name)
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {list(SPLITS)} or None")
    context = _non_negative_int(context, "context")

    path = _locate(entry, data_dir)
    _verify_sha256(path, entry["sha256"])
    frame = _read_csv(path, entry["time_col"])
    if split is None:
        return frame

    start, stop = split_bounds(entry["name"], len(frame))[split]
    if split != "train":
        start = max(0, start - context)
    return frame.iloc[start:stop].reset_index(drop=True)


def _locate(entry: dict, data_dir: str | os.PathLike | None) -> Path:
    """Find the data set file, or raise a FileNotFoundError that says how to get it."""
    folder = data_dir if data_dir is not None else os.environ.get(ENV_VAR) or None
    how = (
        f"Download {entry['file']} from {entry['source']} ({entry['url']}) and "
        f"pass its folder as data_dir=... or set the {ENV_VAR} environment variable to it."
    )
    if folder is None:
        raise FileNotFoundError(
            f"{entry['name']}: cannot look for {entry['file']}: no data directory "
            f"given (data_dir=None and {ENV_VAR} is not set). {how}"
        )
    path = Path(folder).expanduser() / entry["file"]
    if not path.is_file():
        raise FileNotFoundError(
            f"{entry['name']}: {entry['file']} not found in {path.parent}. {how}"
        )
    return path


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify_sha256(path: Path, expected: str) -> None:
    """Raise ValueError if the file's SHA-256 is not ``expected``."""
    actual = file_sha256(path)
    if actual != expected:
        raise ValueError(
            f"checksum mismatch for {path}: expected SHA-256 {expected}, got {actual}. "
            "The file is corrupt or a different version; download it again."
        )


def _read_csv(path: Path, time_col: str) -> pd.DataFrame:
    """Read a benchmark CSV: parse the time column, cast the rest to float."""
    frame = pd.read_csv(path)
    if time_col not in frame.columns:
        raise ValueError(f"{path} has no time column {time_col!r}")
    frame[time_col] = pd.to_datetime(frame[time_col])
    values = [col for col in frame.columns if col != time_col]
    frame[values] = frame[values].astype("float64")
    return frame


def _non_negative_int(value, what: str) -> int:
    """Check that ``value`` is a non-negative integer (bools rejected)."""
    try:
        if isinstance(value, bool):
            raise TypeError
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{what} must be a non-negative integer, got {value!r}") from None
    if value < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {value}")
    return value
