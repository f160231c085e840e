"""CSV and Parquet files of a batch job: read whole or lazily, written atomically.

Every output file is written to a temporary file beside it
(``.NAME.tsformers-HOST-PID-RANDOM.tmp``) and renamed over ``NAME`` once
complete, so a failed run leaves no partial file and keeps the previous output.
A run killed outright (``kill -9``, out of memory) cannot remove its temporary
file: the next run on the same machine writing the same output removes the
temporary files of that output whose process is gone. Those of other machines
(an output on a shared file system) are left alone: their process cannot be checked.
Files are created as ``open`` creates them (mode 0666 less the umask); a
replaced output keeps its permission bits.
"""
from __future__ import annotations

import errno
import os
import re
import secrets
import socket
import stat
from pathlib import Path

from tsformers.batch import InputError

TABLE_SUFFIXES = (".csv", ".parquet")
TEMP_SUFFIX = ".tmp"


def check_suffix(path: Path) -> None:
    """Refuse a table file whose suffix is neither ``.csv`` nor ``.parquet``."""
    if Path(path).suffix not in TABLE_SUFFIXES:
        raise InputError(f"{path}: unknown file type '{Path(path).suffix}'; use .csv or .parquet.")


def check_output(path: Path, flag: str = "--output") -> None:
    """Refuse, before any work, an output table that cannot be written: wrong suffix, a directory, no access."""
    path = Path(path)
    check_suffix(path)
    if path.is_dir():
        raise InputError(f"{flag} {path} is a directory; pass a file path such as {path / ('forecast' + path.suffix)}.")
    check_writable_location(path, flag)


def check_writable_location(path: Path, flag: str) -> None:
    """Refuse a path that cannot be created: its nearest existing folder is a file or is not writable.

    Missing folders on the way are created when the output is written.
    """
    path = Path(path).absolute()
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(f"{flag} {path}: {folder} is not a directory; choose a path inside a directory.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{flag} {path}: the directory {folder} is not writable by this user; choose "
                         f"another path or change its permissions.")


def temp_name(path: Path) -> str:
    """The name of a temporary file for ``path``: hidden, naming the machine and process that own it."""
    return f".{path.name}.tsformers-{_host()}-{os.getpid()}-{secrets.token_hex(4)}{TEMP_SUFFIX}"


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "_"


def remove_stale_temp_files(path: Path) -> list[Path]:
    """Remove the temporary files of ``path`` left by runs whose process is gone (killed, crashed machine).

    Only files named by :func:`temp_name` for this very output on this machine
    are considered, and only those whose process no longer runs. Returns the removed files.
    """
    path = Path(path)
    pattern = re.compile(re.escape(f".{path.name}.tsformers-{_host()}-") + r"(\d+)-[0-9a-f]{8}"
                         + re.escape(TEMP_SUFFIX))
    removed = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or _process_alive(int(match.group(1))) or entry.is_symlink() or not entry.is_file():
            continue
        try:
            entry.unlink()
            removed.append(entry)
        except OSError:
            pass  # another run removed it first, or it is not ours to remove
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    except OSError as err:
        return err.errno != errno.ESRCH
    return True


def _create_temp(path: Path) -> Path:
    """Create the temporary file of ``path`` with ``open``'s mode (0666 less the umask), or the old file's mode."""
    while True:
        tmp = path.parent / temp_name(path)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        try:
            if path.is_file():
                os.fchmod(fd, stat.S_IMODE(path.stat().st_mode))  # a replaced output keeps its permissions
        finally:
            os.close(fd)
        return tmp


class AtomicTable:
    """A CSV or Parquet file written chunk by chunk to a temporary file, renamed into place on success."""

    def __init__(self, path: Path):
        self.path = Path(path)
        check_suffix(self.path)
        self.tmp, self._writer, self._file = None, None, None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(self.path)
        self.tmp = _create_temp(self.path)
        return self

    def write(self, frame) -> None:
        import pandas as pd

        if not isinstance(frame, pd.DataFrame):
            frame = frame.to_pandas()
        if self.path.suffix == ".csv":
            if self._file is None:
                self._file = open(self.tmp, "w", newline="")
                frame.to_csv(self._file, index=False)
            else:
                frame.to_csv(self._file, index=False, header=False)
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.tmp, table.schema)
        self._writer.write_table(table.cast(self._writer.schema))

    def __exit__(self, kind, error, tb):
        try:
            if self._writer is not None:
                self._writer.close()
            if self._file is not None:
                self._file.close()
            if kind is None:
                if self._writer is None and self._file is None:
                    raise RuntimeError(f"nothing was written to {self.path}.")
                with open(self.tmp, "rb") as written:  # on disk before it takes the place of the old file
                    os.fsync(written.fileno())
                os.replace(self.tmp, self.path)
        finally:
            if self.tmp.exists():
                self.tmp.unlink()
        return False


def write_frame(frame, path: Path) -> None:
    """Write a pandas or polars frame to CSV or Parquet atomically."""
    with AtomicTable(Path(path)) as table:
        table.write(frame)


def read_table(path, text_columns=()):
    """A CSV (dates parsed) or Parquet file as a polars frame; a missing or unreadable file is bad input.

    ``text_columns`` (an id column) are read from CSV as text, so that ids such as
    ``001`` keep their leading zeros; a Parquet file carries its own types.
    """
    import polars as pl

    path = _existing_table(path)
    try:
        if path.suffix == ".parquet":
            return pl.read_parquet(path)
        text = {name: pl.String for name in text_columns if name}
        frame = pl.read_csv(path, try_parse_dates=True, schema_overrides=text)
        offsets = _fixed_offset_columns(path, frame, text)
        if offsets:  # parsed later (pandas) with their offset, instead of polars' conversion to UTC
            frame = pl.read_csv(path, try_parse_dates=True, schema_overrides={**text, **offsets})
        return frame
    except (pl.exceptions.PolarsError, OSError) as err:
        raise InputError(f"cannot read {path}: {err}") from None


def _fixed_offset_columns(path: Path, frame, text: dict) -> dict:
    """The CSV columns of dates written with one UTC offset other than zero (``+02:00``), to keep as text.

    polars reads every offset date in UTC, which would forecast a model fitted on ``+02:00`` dates in UTC
    (refused) and write the forecast in another zone than the input. Dates whose offset changes
    (daylight saving time) stay in UTC: one zone cannot hold them without a zone name.
    """
    import polars as pl

    zoned = [name for name, dtype in frame.schema.items() if isinstance(dtype, pl.Datetime) and dtype.time_zone]
    if not zoned:
        return {}
    raw = pl.read_csv(path, columns=zoned, schema_overrides={name: pl.String for name in zoned})
    keep = {}
    for name in zoned:
        found = raw[name].drop_nulls().str.extract(r"(Z|[+-]\d{2}:?\d{2})$").unique().to_list()
        if len(found) == 1 and found[0] not in (None, "Z", "+00:00", "+0000", "-00:00"):
            keep[name] = pl.String
    return keep


def scan_table(path, text_columns=()):
    """A Parquet file as a polars LazyFrame (read later, chunk by chunk); a CSV file is read whole."""
    import polars as pl

    path = _existing_table(path)
    if path.suffix == ".csv":
        return read_table(path, text_columns).lazy()
    try:
        return pl.scan_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as err:
        raise InputError(f"cannot read {path}: {err}") from None


def _existing_table(path) -> Path:
    path = Path(path)
    check_suffix(path)
    if not path.is_file():
        raise InputError(f"no such file: {path}")
    return path


def check_not_an_input(output: Path, **inputs) -> None:
    """Refuse an output path that is one of the run's input files: the output would replace the input."""
    for flag, given in inputs.items():
        if given is None or not _same_file(output, Path(given)):
            continue
        raise InputError(f"--output {output} is the --{flag.replace('_', '-')} file {given}: writing the result "
                         f"would replace it. Choose another output path.")


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)  # also through links
    except OSError:
        pass
    return a.resolve() == b.resolve()
