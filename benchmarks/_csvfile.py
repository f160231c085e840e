"""Rewriting a file whole, standard library only: the one way the benchmark scripts replace a file of rows (the
staged rows of a rerun, the merged side-by-side table, a results file whose header gained columns) or a page the
report renders (``docs/benchmarks.md``, the README's summary)."""
from __future__ import annotations

import csv
import os
import secrets
import stat
from collections.abc import Callable, Iterable
from pathlib import Path


def rewrite(path: Path, fields: list[str], rows: Iterable[dict]) -> None:
    """Write ``rows`` under the header ``fields`` as the whole of ``path``, atomically.

    The rows go to a new file beside ``path``, flushed to disk, which then replaces ``path`` in one rename: a
    reader sees the old file or the new one, and a write that fails (a full disk, an interrupted process, a row
    with a column outside ``fields``) leaves the old file as it was and no partial file behind. The file keeps
    its permission bits; a new one gets those the umask allows (``tempfile.mkstemp`` would leave every rewritten
    table readable by its owner alone).
    """
    def write(fh) -> None:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)

    _replace(Path(path), write)


def replace_text(path: Path, text: str) -> None:
    """Write ``text`` as the whole of ``path``, atomically, as :func:`rewrite` writes rows (newlines as given)."""
    _replace(Path(path), lambda fh: fh.write(text))


def _replace(path: Path, write: Callable) -> None:
    tmp = _new_file(path.parent, f".{path.name}.")
    try:
        if path.exists():
            os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
        with open(tmp, "w", newline="") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _new_file(directory: Path, prefix: str) -> str:
    """A new empty file with a random name in ``directory``, its mode from the umask."""
    while True:
        candidate = directory / f"{prefix}{secrets.token_hex(6)}.tmp"
        try:
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return str(candidate)
        except FileExistsError:
            continue
