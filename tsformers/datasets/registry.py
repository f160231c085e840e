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

import numpy as np
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

    if "pv" in entry:
        return load_pv(entry["name"], data_dir=data_dir, split=split, context=context)
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


# -- PV data sets: timestamps, weather alignment, gaps --------------------------------


def load_pv(
    name: str,
    data_dir: str | os.PathLike | None = None,
    split: str | None = None,
    context: int = 0,
    fill_gaps: bool = True,
) -> pd.DataFrame:
    """Load a PV data set: plant telemetry with the NSRDB weather aligned to local time.

    :func:`load_dataset` calls this for the PV entries (those with a ``"pv"``
    block in the registry). Four things happen to the file:

    1. **Timestamps.** ``timestamp`` is parsed as ``dd-mm-YYYY HH:MM``. Where
       the registry says ``day_month_swap`` (``pv_golden``: days 1-12 of each
       month are written ``mm-dd``), both readings are tried and the first
       one later than the previous row is kept.
    2. **Weather alignment by time.** The telemetry is labelled in local
       standard time, the NSRDB columns in UTC; with ``utc_offset_hours`` =
       -7 (Golden, CO) the weather for local time t is read from the row
       labelled t + 7 h. This is done by timestamp (a reindex), not by
       shifting rows, because the files have gaps.
    3. **Static columns.** Helper columns repeating the timestamp and the
       constant site metadata (location, capacity, tilt, ...) are dropped;
       the metadata is in ``info(name)["pv"]["site"]`` and
       ``frame.attrs["site"]``.
    4. **Gaps** (``fill_gaps=True``). The frame is put on the regular hourly
       grid. Runs of up to 6 missing steps inside the data are interpolated
       linearly in time; longer runs and runs at the ends (the weather of the
       last ``|utc_offset_hours|`` hours lies beyond the file) repeat the
       value of the same hour one day earlier (one day later at the start).
       ``frame.attrs["filled"]`` counts the filled cells per column. With
       ``fill_gaps=False`` the rows of the file are returned as they are, with
       NaN where the aligned weather is missing.

    The negative night-time AC power (inverter consumption) is kept as
    measured: clipping is a modelling decision. ``PVClientForecaster`` clips
    its forecasts at zero; to train on clipped power, use
    ``df[target].clip(lower=0)``.

    Parameters
    ----------
    name : str
        A PV data set name, e.g. ``"pv_golden"`` (aliases ``"golden"``,
        ``"pv_golden_co_2020"``) or ``"pv_cocoa"``.
    data_dir : str or path-like, optional
        Folder holding the file; defaults to the ``TSFORMERS_DATA`` variable.
    split : {"train", "val", "test"}, optional
        The 70/10/20 split by time. Its borders are those of the file's rows
        (golden: 5907 / 845 / 1687 rows), carried over to the regular grid by
        timestamp.
    context : int, default 0
        For ``"val"`` and ``"test"``, also return up to ``context`` steps
        before the split start.
    fill_gaps : bool, default True
        Return the regular hourly grid with gaps filled (above), or the
        file's rows only.

    Returns
    -------
    pandas.DataFrame
        ``timestamp`` (datetime64, local standard time, no zone), then the
        telemetry columns and the aligned weather columns as float64.

    Raises
    ------
    FileNotFoundError, ValueError
        As :func:`load_dataset`; ValueError also if ``name`` is not a PV data set.
    """
    entry = info(name)
    if "pv" not in entry:
        pv_names = [key for key, e in _registry()["datasets"].items() if "pv" in e]
        raise ValueError(f"{entry['name']} is not a PV data set; choose one of {pv_names}")
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {list(SPLITS)} or None")
    context = _non_negative_int(context, "context")
    path = _locate(entry, data_dir)
    _verify_sha256(path, entry["sha256"])
    raw = pd.read_csv(path)
    frame = _pv_frame(raw, entry)
    file_times = frame[entry["time_col"]]
    if fill_gaps:
        frame = _fill_pv_gaps(frame, entry)
    frame.attrs["site"] = dict(entry["pv"]["site"], capacity_kw=entry["pv"]["capacity_kw"])
    if split is None:
        return frame
    bounds = split_bounds(entry["name"], len(raw))[split]
    start, stop = (int(np.searchsorted(frame[entry["time_col"]], file_times.iloc[b])) if b < len(raw) else len(frame)
                   for b in bounds)
    if split != "train":
        start = max(0, start - context)
    part = frame.iloc[start:stop].reset_index(drop=True)
    part.attrs = frame.attrs
    return part


def parse_swapped_timestamps(text: pd.Series, fmt: str = "%d-%m-%Y %H:%M") -> pd.Series:
    """Parse timestamps some of which have day and month swapped, keeping rows in time order.

    Each string is read as ``fmt`` and with day and month exchanged; of the
    valid readings, the earliest one later than the previous row's time is
    kept. The first row takes the latest reading that is not after the first
    unambiguous row (one whose readings agree or only one of which is valid).

    Raises
    ------
    ValueError
        If a row has no reading later than the previous row.
    """
    swapped_fmt = fmt.replace("%d", "\0").replace("%m", "%d").replace("\0", "%m")
    plain = pd.to_datetime(text, format=fmt, errors="coerce")
    swapped = pd.to_datetime(text, format=swapped_fmt, errors="coerce")
    clear = plain.isna() | swapped.isna() | (plain == swapped)
    anchor = plain.where(plain.notna(), swapped)[clear].iloc[0] if clear.any() else None
    out = []
    previous = None
    for i, (a, b) in enumerate(zip(plain, swapped)):
        options = sorted(t for t in (a, b) if not pd.isna(t) and (previous is None or t > previous))
        if previous is None and anchor is not None:
            options = sorted((t for t in options if t <= anchor), reverse=True) or options
        if not options:
            raise ValueError(f"row {i}: timestamp {text.iloc[i]!r} is not later than the previous row "
                             f"({previous}) in either day/month reading")
        previous = options[0]
        out.append(previous)
    return pd.Series(pd.DatetimeIndex(out), index=text.index, name=text.name)


def _pv_frame(raw: pd.DataFrame, entry: dict) -> pd.DataFrame:
    """Timestamps fixed, static columns dropped, weather aligned by time, everything else float64."""
    pv, time_col = entry["pv"], entry["time_col"]
    if pv["day_month_swap"]:
        times = parse_swapped_timestamps(raw[time_col], pv["timestamp_format"])
    else:
        times = pd.to_datetime(raw[time_col], format=pv["timestamp_format"])
    if not times.is_monotonic_increasing or times.duplicated().any():
        raise ValueError(f"{entry['file']}: the timestamps are not strictly increasing after parsing")
    telemetry = [c for c in raw.columns if c not in pv["drop"] and c not in pv["weather"] and c != time_col]
    frame = raw[telemetry].astype("float64")
    frame.insert(0, time_col, times.to_numpy())
    # local time t <- the weather row labelled t - utc_offset (t + 7 h for UTC-7)
    weather = raw[pv["weather"]].astype("float64").set_index(pd.DatetimeIndex(times))
    shift = pd.Timedelta(hours=-pv["utc_offset_hours"])
    aligned = weather.reindex(pd.DatetimeIndex(times) + shift)
    frame[pv["weather"]] = aligned.to_numpy()
    return frame


_MAX_INTERPOLATED = 6  # missing steps in a row that are filled by linear interpolation; longer: the day before


def _fill_pv_gaps(frame: pd.DataFrame, entry: dict) -> pd.DataFrame:
    """The frame on its regular grid, gaps filled (see :func:`load_pv`), filled cells counted in attrs."""
    time_col = entry["time_col"]
    step = pd.tseries.frequencies.to_offset(entry["freq"])
    indexed = frame.set_index(time_col)
    grid = pd.date_range(indexed.index[0], indexed.index[-1], freq=step, name=time_col)
    values = indexed.reindex(grid)
    missing = values.isna()
    per_day = int(pd.Timedelta(days=1) / pd.Timedelta(step))
    short = values.interpolate(method="time", limit=_MAX_INTERPOLATED, limit_area="inside")
    short = short.where(~_long_runs(missing, _MAX_INTERPOLATED), np.nan)
    filled = short
    for _ in range(len(grid) // per_day + 1):  # one day earlier, then one day later, until nothing is left
        if not filled.isna().any().any():
            break
        filled = filled.fillna(filled.shift(per_day)).fillna(filled.shift(-per_day))
    out = filled.reset_index()
    out.attrs["filled"] = {c: int(n) for c, n in missing.sum().items() if n}
    return out


def _long_runs(missing: pd.DataFrame, limit: int) -> pd.DataFrame:
    """True inside runs of more than ``limit`` consecutive missing values, per column."""
    lengths = missing.apply(lambda col: col.groupby((~col).cumsum()).transform("sum"))
    return missing & (lengths > limit)
