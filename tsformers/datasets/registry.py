"""Registry of the benchmark data sets, the loader for their CSV files and their download.

The facts about each data set (file name, SHA-256, frequency, split rule,
public source, direct download URL, licence) live in ``registry.json`` next
to this module. The files are not part of the package: :func:`load_dataset`
looks for a file in one folder, chosen in this order,

1. ``data_dir=``, when given;
2. the ``TSFORMERS_DATA`` environment variable, when set;
3. the cache, ``$XDG_CACHE_HOME/tsformers`` (``~/.cache/tsformers`` when
   ``XDG_CACHE_HOME`` is not set),

(:func:`data_home` returns it) and, when the file is not there, downloads it
into that folder from the registry's ``download_url`` (or from
``$TSFORMERS_DATA_URL`` + file name, for a mirror), checks its SHA-256 and
only then moves it into place. Where upstream ships the file inside a zip
archive (the Autoformer collection: ``weather``, ``exchange``, ``illness``),
the registry names the archive as ``download_url`` and the file inside it as
``archive_member``: the archive is downloaded to a temporary file, the one
member is extracted, and the member's SHA-256 is what is checked.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import operator
import os
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

ENV_VAR = "TSFORMERS_DATA"
URL_ENV_VAR = "TSFORMERS_DATA_URL"
SPLITS = ("train", "val", "test")
DOWNLOAD_TIMEOUT = 60.0  # seconds a connection or a read may stall before a download gives up
_CHUNK = 1 << 20  # bytes read at a time when hashing or downloading
_URL_SCHEMES = ("http", "https", "file")


class DownloadError(FileNotFoundError):
    """A data set file is not on disk and could not be downloaded.

    A subclass of :class:`FileNotFoundError`, the error :func:`load_dataset`
    raised before it downloaded anything, so code that catches a missing
    file keeps working. The message names the URL and the folder to put the
    file in by hand.
    """


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
        ``target``, ``split``, ``source``, ``url`` (the source's page),
        ``license``, ``bytes`` (the file's size), ``download_url`` (a direct
        URL of the file, at a fixed commit), ``archive_member`` (only where
        ``download_url`` is a zip archive: the file's path inside it), ...
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
    n_rows = _int_at_least(n_rows, "n_rows", 0)
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
    download_if_missing: bool = True,
) -> pd.DataFrame:
    """Load a registered benchmark data set as a wide frame.

    The file is read from :func:`data_home` (``data_dir``, else
    ``$TSFORMERS_DATA``, else ``~/.cache/tsformers``); when it is not there,
    it is downloaded into that folder first (see :func:`download`).

    Parameters
    ----------
    name : str
        Data set name (see :func:`available`), case-insensitive.
    data_dir : str or path-like, optional
        Folder holding the file, and receiving it when it is downloaded.
        Defaults to the ``TSFORMERS_DATA`` environment variable, then to the
        cache folder.
    split : {"train", "val", "test"}, optional
        Return only that part of the standard split (see
        :func:`split_bounds`). ``None`` returns all rows.
    context : int, default 0
        For ``"val"`` and ``"test"``, also return up to ``context`` rows
        before the split start (the look-back window, ``border1 = start -
        L``); never reaches before row 0. Ignored otherwise.
    download_if_missing : bool, default True
        Download the file when it is not in the folder. ``False`` raises
        FileNotFoundError instead and never touches the network.

    Returns
    -------
    pandas.DataFrame
        The time column parsed to datetime64, all other columns float64,
        with a fresh ``RangeIndex``.

    Raises
    ------
    FileNotFoundError
        If the file is not in the folder and ``download_if_missing=False``;
        the message says where to get the file and which folder to put it in.
    DownloadError
        (a FileNotFoundError) If the download fails: offline, HTTP error,
        timeout, or a connection closed mid-file. The message names the URL
        and the folder.
    ValueError
        If the name, split or context is invalid, or the SHA-256 of the file
        (on disk or just downloaded) differs from the registry.
    """
    entry = info(name)
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {list(SPLITS)} or None")
    context = _int_at_least(context, "context", 0)

    if "pv" in entry:
        return load_pv(
            entry["name"], data_dir=data_dir, split=split, context=context,
            download_if_missing=download_if_missing,
        )
    path = _locate(entry, data_dir, download_if_missing)
    _verify_sha256(path, entry["sha256"])
    frame = _read_csv(path, entry["time_col"])
    if split is None:
        return frame

    start, stop = split_bounds(entry["name"], len(frame))[split]
    if split != "train":
        start = max(0, start - context)
    return frame.iloc[start:stop].reset_index(drop=True)


def data_home(data_dir: str | os.PathLike | None = None) -> Path:
    """The folder where data set files are looked for and downloaded to.

    Parameters
    ----------
    data_dir : str or path-like, optional
        An explicit folder; returned as it is (with ``~`` expanded).

    Returns
    -------
    pathlib.Path
        ``data_dir`` when given; else ``$TSFORMERS_DATA`` when set and not
        empty; else the cache, ``$XDG_CACHE_HOME/tsformers`` or
        ``~/.cache/tsformers``. The folder need not exist yet.
    """
    if data_dir is not None:
        return Path(data_dir).expanduser()
    folder = os.environ.get(ENV_VAR)
    if folder:
        return Path(folder).expanduser()
    # XDG_CACHE_HOME is where Linux desktops and CI images move caches to; ~/.cache otherwise
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "tsformers"


def _download_source(entry: dict) -> tuple[str | None, str | None]:
    """Where to fetch the entry's file: ``(url, archive member)``.

    The mirror, when set, serves the file itself (no member); else the registry's URL, with its
    ``archive_member`` when that URL is a zip archive; else ``(None, None)``.
    """
    base = os.environ.get(URL_ENV_VAR)
    if base:
        if urllib.parse.urlsplit(base).scheme not in _URL_SCHEMES:
            raise ValueError(
                f"{URL_ENV_VAR}={base!r} is not an http://, https:// or file:// URL. Set it to the "
                f"base URL of a mirror (the file name is appended, e.g. {base.rstrip('/')}/{entry['file']} "
                f"needs https://...), or unset it to download from the registry's URLs."
            )
        return base.rstrip("/") + "/" + urllib.parse.quote(entry["file"]), None
    return entry.get("download_url"), entry.get("archive_member")


def _by_hand(entry: dict, folder: Path) -> str:
    """How to get the file without the downloader: the source, and the folder to put it in."""
    if entry.get("archive_member"):
        where = f"{entry['url']}; the registered copy is {entry['archive_member']} inside {entry['download_url']}"
    else:
        where = entry.get("download_url") or entry["url"]
    copy = f" or its copy in {entry['mirror']}" if entry.get("mirror") else ""
    return (
        f"Download {entry['file']} from {entry['source']} ({where}){copy} and put it in {folder}, "
        f"or pass the folder that holds it as data_dir=... or set the {ENV_VAR} environment variable to it."
    )


def _locate(entry: dict, data_dir: str | os.PathLike | None, download_if_missing: bool = True) -> Path:
    """Find the data set file, downloading it when missing, or raise an error that says how to get it."""
    folder = data_home(data_dir)
    path = folder / entry["file"]
    if path.is_file():
        return path
    if not download_if_missing:
        raise FileNotFoundError(
            f"{entry['name']}: {entry['file']} not found in {folder} (download_if_missing=False). "
            f"{_by_hand(entry, folder)}"
        )
    url, member = _download_source(entry)
    if url is None:
        raise FileNotFoundError(
            f"{entry['name']}: {entry['file']} not found in {folder}, and the registry has no direct "
            f"download URL for it. {_by_hand(entry, folder)} "
            f"Or set {URL_ENV_VAR} to a mirror that serves {entry['file']}."
        )
    return _fetch(entry, url, folder, member)


def download(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Make sure a data set file is on disk and return its path, downloading it if needed.

    A file already in the folder is checked and kept. A missing one is
    fetched from the registry's ``download_url`` (or from
    ``$TSFORMERS_DATA_URL`` followed by the file name, for a mirror) into a
    temporary file in the same folder; its SHA-256 is checked against the
    registry and only then is it renamed into place, so an interrupted or
    corrupt download never leaves a file behind. A progress line is written
    to stderr when stderr is a terminal.

    Parameters
    ----------
    name : str
        Data set name or alias, case-insensitive.
    data_dir : str or path-like, optional
        Target folder; defaults as in :func:`data_home` (``$TSFORMERS_DATA``,
        then ``~/.cache/tsformers``). Created when missing.

    Returns
    -------
    pathlib.Path
        The verified file.

    Raises
    ------
    FileNotFoundError
        If the file is missing and no direct URL is known for it.
    DownloadError
        If the download fails (offline, HTTP error, timeout after
        ``DOWNLOAD_TIMEOUT`` seconds, connection closed mid-file, folder not
        writable); the message names the URL and the folder.
    ValueError
        If the SHA-256 differs from the registry (the download is deleted
        first), or ``$TSFORMERS_DATA_URL`` is not a URL.
    """
    entry = info(name)
    path = _locate(entry, data_dir, download_if_missing=True)
    _verify_sha256(path, entry["sha256"])
    return path


def _fetch(entry: dict, url: str, folder: Path, member: str | None = None) -> Path:
    """Download ``url`` to ``folder / entry['file']`` through a verified temporary file.

    With ``member``, ``url`` is a zip archive: it is downloaded to a temporary file of its own and
    the one member is extracted from it; the member is what is verified and moved into place.
    """
    target = folder / entry["file"]

    def failed(reason: object) -> DownloadError:
        return DownloadError(
            f"{entry['name']}: could not download {entry['file']} from {url} ({reason}). "
            f"Check the network connection and try again, or download the file by hand and put it in "
            f"{folder} (it is read from there), or set {URL_ENV_VAR} to a mirror that serves it."
        )

    try:
        folder.mkdir(parents=True, exist_ok=True)
        # same folder as the target, so the final rename is atomic (one file system)
        handle, tmp_name = tempfile.mkstemp(prefix=f".{entry['file']}.", suffix=".part", dir=folder)
    except OSError as exc:
        raise failed(f"cannot write to the folder: {exc}; pass data_dir=... or set {ENV_VAR} "
                     "to a writable folder") from exc
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        received = 0
        out = os.fdopen(handle, "wb")  # owns the descriptor from here on, closed by the with below
        try:
            request = urllib.request.Request(url, headers={"User-Agent": "tsformers"})
            with out, urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT) as response:
                size = response.headers.get("Content-Length")
                size = int(size) if size and size.isdigit() else None
                show = _progress(entry["file"], size)
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    show(received)
                show(None)
                out.flush()
                os.fsync(out.fileno())  # the bytes are on disk before the name points at them
        except urllib.error.HTTPError as exc:
            raise failed(f"HTTP {exc.code} {exc.reason}") from exc
        except urllib.error.URLError as exc:
            raise failed(exc.reason) from exc
        except (http.client.HTTPException, OSError) as exc:  # timeouts, resets, truncated chunked bodies
            raise failed(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from exc
        # http.client returns a short body without complaint when the server closes early
        if size is not None and received != size:
            raise failed(f"the connection closed after {received} of {size} bytes")
        if member is not None:
            archive, tmp = tmp, None
            try:
                tmp, actual = _extract_member(entry, archive, member, folder, url)
            finally:
                archive.unlink(missing_ok=True)
            where = f"{member} inside {url}"
        else:
            actual, where = digest.hexdigest(), url
        if actual != entry["sha256"]:
            raise ValueError(
                f"{entry['name']}: checksum mismatch for {entry['file']} downloaded from {where}: expected "
                f"SHA-256 {entry['sha256']}, got {actual}. The download was deleted. The server holds a "
                f"different version or the transfer was corrupted: try again, or set {URL_ENV_VAR} to a "
                f"mirror of the registered file, or put the registered file in {folder} by hand."
            )
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; a shared data folder must stay readable
        os.replace(tmp, target)
    except BaseException:
        # a failed, corrupt or interrupted (Ctrl-C) download leaves nothing behind
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise
    return target


def _extract_member(entry: dict, archive: Path, member: str, folder: Path, url: str) -> tuple[Path, str]:
    """Copy ``member`` out of the zip ``archive`` into a temporary file in ``folder``: (its path, its SHA-256).

    The member is looked up by its registered path, else by its file name alone when exactly one
    member has it (an archive repacked under another top folder still works; the hash decides).
    Its size is checked against the registry's ``bytes`` before anything is written, so a wrong
    or hostile archive cannot fill the disk.
    """
    def refused(reason: str) -> ValueError:
        return ValueError(
            f"{entry['name']}: {url} {reason}. Download {entry['file']} by hand ({_by_hand(entry, folder)}), "
            f"or set {URL_ENV_VAR} to a mirror that serves {entry['file']} itself."
        )

    try:
        bundle = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise refused(f"did not return a zip archive ({exc})") from exc
    with bundle:
        names = bundle.namelist()
        if member not in names:
            same_file = [name for name in names if name.rsplit("/", 1)[-1] == member.rsplit("/", 1)[-1]]
            if len(same_file) != 1:
                raise refused(f"holds no {member} (its members: {', '.join(names[:10])})")
            member = same_file[0]
        info = bundle.getinfo(member)
        expected = entry.get("bytes")
        if expected is not None and info.file_size != expected:
            raise refused(f"holds {member} of {info.file_size} bytes, not the registered {expected}")
        handle, name = tempfile.mkstemp(prefix=f".{entry['file']}.", suffix=".part", dir=folder)
        tmp = Path(name)
        try:
            digest = hashlib.sha256()
            with os.fdopen(handle, "wb") as out, bundle.open(info) as data:
                while chunk := data.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                out.flush()
                os.fsync(out.fileno())
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:  # a damaged member: CRC or deflate stream
            tmp.unlink(missing_ok=True)
            raise refused(f"returned an archive whose {member} is damaged ({exc})") from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return tmp, digest.hexdigest()


def _progress(file: str, size: int | None):
    """A callback that redraws one progress line on stderr, only when stderr is a terminal."""
    stream = sys.stderr
    if not (hasattr(stream, "isatty") and stream.isatty()):
        return lambda received: None
    state = {"last": 0}

    def show(received: int | None) -> None:
        if received is None:
            stream.write("\n")
        elif received - state["last"] >= _CHUNK or received == size:
            state["last"] = received
            total = f" of {size / 1e6:.1f}" if size else ""
            stream.write(f"\rtsformers: downloading {file}: {received / 1e6:.1f}{total} MB")
        stream.flush()

    return show


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
            "The file is corrupt or a different version: delete it (load_dataset then downloads "
            "the registered file where a URL is known) or replace it with the registered file."
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


def _int_at_least(value, what: str, low: int) -> int:
    """Check that ``value`` is an integer of at least ``low`` (bools rejected)."""
    kind = "positive" if low == 1 else "non-negative"
    try:
        if isinstance(value, bool):
            raise TypeError
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{what} must be a {kind} integer, got {value!r}") from None
    if value < low:
        raise ValueError(f"{what} must be a {kind} integer, got {value}")
    return value


# -- PV data sets: timestamps, weather alignment, gaps --------------------------------


def load_pv(
    name: str,
    data_dir: str | os.PathLike | None = None,
    split: str | None = None,
    context: int = 0,
    fill_gaps: bool = True,
    download_if_missing: bool = True,
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
        Folder holding the file; defaults as in :func:`data_home`
        (``TSFORMERS_DATA``, then the cache folder).
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
    download_if_missing : bool, default True
        As in :func:`load_dataset`: fetch a missing file from the registry's
        pinned URL (or the mirror ``$TSFORMERS_DATA_URL`` names).

    Returns
    -------
    pandas.DataFrame
        ``timestamp`` (datetime64, local standard time, no zone), then the
        telemetry columns and the aligned weather columns as float64.

    Raises
    ------
    FileNotFoundError, DownloadError, ValueError
        As :func:`load_dataset`; ValueError also if ``name`` is not a PV data set.
    """
    entry = info(name)
    if "pv" not in entry:
        pv_names = [key for key, e in _registry()["datasets"].items() if "pv" in e]
        raise ValueError(f"{entry['name']} is not a PV data set; choose one of {pv_names}")
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {list(SPLITS)} or None")
    context = _int_at_least(context, "context", 0)
    path = _locate(entry, data_dir, download_if_missing)
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
