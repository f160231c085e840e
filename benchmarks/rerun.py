"""Rerun the side-by-side table's runs at one code revision, so that every cell comes from that revision.

A staging folder ``benchmarks/results/reruns/<rev>/`` holds ``runs.txt`` (one run per line: data set,
horizon, library, model, seed, CPU seconds at its earlier revision (for a run new to the table, an estimate),
cheapest first) and ``side_by_side.csv``,
the rows rerun so far. This script runs those of ``runs.txt`` that the CSV lacks, each its own
``side_by_side.py`` invocation from a ``git archive`` of <rev>, so that a run's row lands in the CSV as the
run ends and a rerun cut off (a session ends, the machine restarts) goes on where it stopped:

    .venv/bin/python benchmarks/rerun.py benchmarks/results/reruns/f73e0bc --dry-run   # what is left, its cost
    setsid .venv/bin/python benchmarks/rerun.py benchmarks/results/reruns/f73e0bc &   # one worker per core
    setsid .venv/bin/python benchmarks/rerun.py benchmarks/results/reruns/f73e0bc &
    .venv/bin/python benchmarks/rerun.py benchmarks/results/reruns/f73e0bc --merge     # when every run has run

Each worker takes the costliest run left that no other worker holds (longest first: of a fixed set of runs on a
few cores, the order that ends them soonest), holding it by an exclusive lock on a file named after it, which
the system releases when the worker ends however it ends: no run is taken twice while its worker lives, and
none stays taken after its worker died. Stop a worker with its process group (it was started with ``setsid``:
``kill -- -PGID``), so that the run it holds stops with it. A worker tries a run once; it ends when every run
left is held or was tried. ``--merge`` refuses until each run of
``runs.txt`` has exactly one row, then appends the rows to ``results/side_by_side.csv`` (with the processor of
each run ``runs.log`` has), where the report shows the last run of each cell; the staging folder is then yours
to ``git rm``.

A folder named ``<rev>-<what>`` (``f73e0bc-weather-patchtst``) runs at ``<rev>`` too: runs added to a table
at the revision of its other cells, staged apart from a rerun still in progress, each folder merged on its own.

``--carry`` stages, before any run, the neuralforecast runs that need not run again: a neuralforecast row depends
on this project's code only through what ``side_by_side.py`` hands its worker and the worker's own code, whose
digest (``_nfenv.run_digest``) is computed at the row's revision and at <rev> from each revision's own code (the
spec its ``side_by_side.nf`` builds, captured before any run, at the threads the row ran on: ``--threads`` is the
run's setting, not the code's). Where the two are equal, the row's copy is staged
with ``git_rev`` <rev> and ``ran_at`` the revision it ran at; the others are left to run. Ours always run:
their code is the revision's.

    .venv/bin/python benchmarks/rerun.py benchmarks/results/reruns/<rev> --carry     # then the workers

A run that one core cannot finish within a session (PatchTST at its authors' sizes on weather: about 12,000 CPU s
at one thread, 287 steps of ~4 s per epoch, up to 10 epochs) runs on more with ``--threads N``, passed on to
``side_by_side.py``: its row records the threads, and the report names them beside its CPU seconds; ``--runs 1``
ends the worker with that run.

Each finished run also adds a line to the folder's ``runs.log`` (when it ended, the run, its exit status and the
processor): our fits are the same to the bit on one processor, not across processors (MKL's kernels differ by
instruction set and training carries the last-bit differences on), and the archived ``side_by_side.py`` of an
older revision does not record the processor in its rows.
"""
from __future__ import annotations

import argparse
import csv
import fcntl
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

from _csvfile import rewrite

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
STAGED = "side_by_side.csv"
LOG = "runs.log"
LOG_FIELDS = ["finished", "dataset", "horizon", "library", "model", "seed", "exit", "cpu"]
#: where workers hold their runs (lock files; a hold lives as long as its worker)
CLAIMS = Path(tempfile.gettempdir()) / "tsformers-rerun-claims"


class Run(NamedTuple):
    dataset: str
    horizon: str
    library: str
    model: str
    seed: str

    @classmethod
    def of_row(cls, row: dict) -> Run:
        return cls(row["dataset"], str(row["horizon"]), row["library"], row["model"], str(row["seed"]))


def revision_of(folder: Path) -> str:
    """The code revision a staging folder's runs run at: its name, up to a ``-`` that labels what it stages."""
    return folder.name.split("-", 1)[0]


def read_runs(folder: Path) -> list[tuple[Run, float]]:
    """``runs.txt``'s runs in its order, each with its CPU seconds at the earlier revision."""
    runs = []
    for number, line in enumerate((folder / "runs.txt").read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 6:
            raise ValueError(f"{folder / 'runs.txt'} line {number}: expected 'dataset horizon library model seed "
                             f"cpu_s', got {line!r}")
        runs.append((Run(*fields[:5]), float(fields[5])))
    return runs


def read_staged(folder: Path) -> list[dict]:
    path = folder / STAGED
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def missing(folder: Path) -> list[tuple[Run, float]]:
    """The runs of ``runs.txt`` without a row in the staged CSV yet, in ``runs.txt``'s order."""
    done = {Run.of_row(row) for row in read_staged(folder)}
    return [(run, cpu_s) for run, cpu_s in read_runs(folder) if run not in done]


def longest_first(runs: list[tuple[Run, float]]) -> list[tuple[Run, float]]:
    """``runs`` by their CPU seconds, costliest first (``runs.txt``'s order among equals)."""
    return sorted(runs, key=lambda run_cost: -run_cost[1])


@contextmanager
def claimed(folder: Path, run: Run) -> Iterator[bool]:
    """Hold ``run`` while the block runs, if no other process holds it; yields whether this one does.

    The hold is an exclusive ``flock`` on a file named after the run (under :data:`CLAIMS`), which the system
    drops when the file is closed or its process ends, so a worker that died holds nothing.
    """
    where = CLAIMS / folder.name
    where.mkdir(parents=True, exist_ok=True)
    fd = os.open(where / ("_".join(run) + ".lock"), os.O_CREAT | os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
        else:
            yield True
    finally:
        os.close(fd)


def next_run(folder: Path, tried: set[Run]) -> Iterator[Run]:
    """The runs this worker is to run, one by one, each held while the caller runs it: the costliest run left
    (no row yet) that no worker holds and this one has not tried; none when every run left is held or tried."""
    while True:
        for run, _ in longest_first([(r, c) for r, c in missing(folder) if r not in tried]):
            with claimed(folder, run) as mine:
                # a row may have landed between the listing and the hold
                if mine and run in {r for r, _ in missing(folder)}:
                    tried.add(run)
                    yield run
                    break
        else:
            return


def command(run: Run, *, python: str, archive: Path, data_dir: str, out: Path, threads: int = 1) -> list[str]:
    """The ``side_by_side.py`` invocation that reruns ``run`` from ``archive`` (:func:`side_by_side_args`)."""
    return [python, str(archive / "benchmarks" / "side_by_side.py"),
            *side_by_side_args(run, data_dir=data_dir, out=out, threads=threads)]


def side_by_side_args(run: Run, *, data_dir: str, out: Path | str, threads: int = 1) -> list[str]:
    """``side_by_side.py``'s arguments for ``run``: ours with no neuralforecast model, neuralforecast's with none
    of ours. Our rows' ``+base`` label (a Gateformer correcting a linear base) is the model's name plus what its
    settings did, so the option is the name without it. ``threads`` other than the protocol's one are passed on
    (the row records them)."""
    if run.library == "tsformers":
        models = ["--models", run.model.split("+")[0], "--nf-models"]
    elif run.library == "neuralforecast":
        models = ["--models", "--nf-models", run.model]
    else:
        raise ValueError(f"unknown library {run.library!r} in runs.txt: expected tsformers or neuralforecast")
    return ["--dataset", run.dataset, "--horizons", run.horizon, *models, "--seeds", run.seed, "--data-dir", data_dir,
            "--out", str(out), *(["--threads", str(threads)] if threads != 1 else [])]


def ensure_archive(rev: str, archive: Path) -> Path:
    """Extract ``git archive <rev>`` into ``archive`` unless it is there (marked by a file written last)."""
    marker = archive / ".rerun-archive-complete"
    if marker.exists():
        return archive
    archive.mkdir(parents=True, exist_ok=True)
    tar = subprocess.run(["git", "-C", str(REPO), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(archive)], input=tar, check=True)
    marker.write_text(rev + "\n")
    return archive


#: run in a revision's archive: for each command line of a JSON list on stdin (one run each), the spec that
#: revision's ``side_by_side.nf`` hands its worker (the worker is not started), with the worker's path and the
#: versions the revision pins (none before they were), as one JSON line; one process for all of a revision's runs
_CAPTURE = """
import json, sys
sys.path.insert(0, "benchmarks")
import _nfenv, side_by_side

class Captured(Exception):
    pass

def capture(python, worker, spec, **_):
    pinned = [getattr(_nfenv, "NF_VERSION", None), getattr(_nfenv, "TORCH_VERSION", None)]
    print("SPEC " + json.dumps(dict(spec=spec, worker=str(worker), pinned=pinned)), flush=True)
    raise Captured

side_by_side.run_worker, side_by_side.ensure_nf_venv = capture, lambda *args, **kwargs: None
for argv in json.load(sys.stdin):
    try:
        side_by_side.main(argv)
    except Captured:
        continue
    print("SPEC null", flush=True)   # this revision handed the run no worker
"""


class Request(NamedTuple):
    """A neuralforecast run whose digest is asked for at a revision: with the versions (neuralforecast, torch) a
    row records it ran on, or None for the revision's pins, and the torch threads it ran on (a setting of the
    run, handed to its worker: a run of more threads is compared with the same run at as many)."""
    run: Run
    versions: tuple[str, str] | None = None
    threads: int = 1


def digests_at(archive: Path, requests: list[Request], *, python: str, data_dir: str) -> list[str]:
    """The digest (``_nfenv.run_digest``) of each neuralforecast run of ``requests`` at the revision extracted in
    ``archive``: of the spec that revision's code hands its worker, of its worker's code, and of the run's
    versions. One process captures the specs of all the runs."""
    if not requests:
        return []
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    from _nfenv import run_digest

    argvs = [side_by_side_args(run, data_dir=data_dir, out=os.devnull, threads=threads) for run, _, threads in requests]
    done = subprocess.run([python, "-c", _CAPTURE], input=json.dumps(argvs), cwd=archive,
                          env=dict(os.environ, PYTHONPATH=str(archive)), capture_output=True, text=True)
    lines = [line[len("SPEC "):] for line in done.stdout.splitlines() if line.startswith("SPEC ")]
    if done.returncode or len(lines) != len(requests):
        raise RuntimeError(f"{len(lines)} specs for {len(requests)} runs at {archive} (exit {done.returncode}):\n"
                           f"{done.stderr[-2000:]}")
    digests = []
    for (run, versions, _), line in zip(requests, lines):
        captured = json.loads(line)
        if captured is None:
            raise RuntimeError(f"{archive}'s side_by_side.py starts no neuralforecast worker for {' '.join(run)}")
        nf_version, torch_version = versions or captured["pinned"]
        if nf_version is None or torch_version is None:
            raise ValueError(f"{archive} pins no neuralforecast or torch version: pass the versions its row "
                             f"records")
        digests.append(run_digest(captured["spec"], Path(captured["worker"]), nf_version=nf_version,
                                  torch_version=torch_version))
    return digests


def recorded_versions(row: dict) -> tuple[str, str] | None:
    """The neuralforecast and torch versions a neuralforecast row ran on (torch's without its build tag, as pinned)."""
    if not row.get("lib_version") or not row.get("torch_version"):
        return None
    return row["lib_version"], row["torch_version"].split("+")[0]


def latest_rows(results: Path) -> dict[Run, dict]:
    """Each run's last row in the results CSV (by timestamp)."""
    with open(results, newline="") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda row: row["timestamp"])
    return {Run.of_row(row): row for row in rows}


def carry(folder: Path, results: Path,
          digests: Callable[[str, list[Request]], list[str]]) -> tuple[list[Run], list[Run]]:
    """Stage the neuralforecast runs left whose last row in ``results`` ran on what the folder's revision would
    hand the same run at the same threads: equal digests, ``digests(revision, requests)`` (one call per revision;
    the versions the row records at its own revision, the folder revision's pins at that one). Returns the runs
    carried and those left to run, in ``runs.txt``'s order."""
    rev = revision_of(folder)
    last = latest_rows(results)
    todo = [run for run, _ in missing(folder)]
    rows = {run: last[run] for run in todo if run.library == "neuralforecast" and run in last}
    ran_at = {run: row.get("ran_at") or row["git_rev"] for run, row in rows.items()}
    threads = {run: int(float(row.get("n_threads") or 1)) for run, row in rows.items()}
    now = dict(zip(rows, digests(rev, [Request(run, None, threads[run]) for run in rows])))
    before = {run: row["run_digest"] for run, row in rows.items() if row.get("run_digest")}
    for revision in dict.fromkeys(ran_at[run] for run in rows if run not in before):
        asked = [Request(run, recorded_versions(row), threads[run]) for run, row in rows.items()
                 if run not in before and ran_at[run] == revision]
        before.update(zip([request.run for request in asked], digests(revision, asked)))
    carried = [run for run in rows if now[run] == before[run]]
    stage(folder, [{**rows[run], "git_rev": rev, "ran_at": ran_at[run], "run_digest": now[run]} for run in carried])
    return carried, [run for run in todo if run not in set(carried)]


def stage(folder: Path, new: list[dict]) -> None:
    """Add the rows ``new`` to the folder's staged CSV (its header extended by their new columns), in one write."""
    if not new:
        return
    rows = read_staged(folder)
    fields = list(dict.fromkeys([*(rows[0] if rows else {}), *(name for row in new for name in row)]))
    rewrite(folder / STAGED, fields, [*rows, *new])


def log_run(folder: Path, run: Run, returncode: int, cpu: str) -> None:
    """Append the finished ``run`` to the folder's ``runs.log`` (a CSV, its header first when new)."""
    path = folder / LOG
    new = not path.exists()
    with open(path, "a", newline="") as fh:
        writer = csv.writer(fh)
        if new:
            writer.writerow(LOG_FIELDS)
        writer.writerow([datetime.now(timezone.utc).isoformat(timespec="seconds"), *run, returncode, cpu])


def merge(folder: Path, target: Path) -> int:
    """Append the staged rows to ``target`` once every run of ``runs.txt`` has exactly one; return their count."""
    rows = read_staged(folder)
    wanted = [run for run, _ in read_runs(folder)]
    seen: dict[Run, int] = {}
    for row in rows:
        seen[Run.of_row(row)] = seen.get(Run.of_row(row), 0) + 1
    lacking = [run for run in wanted if run not in seen]
    twice = [run for run, count in seen.items() if count > 1]
    extra = [run for run in seen if run not in set(wanted)]
    if lacking or twice or extra:
        raise SystemExit(f"not merged: {len(lacking)} of {len(wanted)} runs have no row yet, {len(twice)} have "
                         f"more than one, {len(extra)} are not in runs.txt (first: "
                         f"{(lacking or twice or extra)[0]}); run the queues to the end (--dry-run lists them)")
    with open(target, newline="") as fh:
        reader = csv.DictReader(fh)
        fields, earlier = list(reader.fieldnames), list(reader)
    logged = {}
    if (folder / LOG).exists():
        with open(folder / LOG, newline="") as fh:
            logged = {Run.of_row(entry): entry["cpu"] for entry in csv.DictReader(fh)}
    # the processor of a run the archived code did not record, from the log (empty where it was not logged)
    rows = [{**row, "cpu": row.get("cpu") or logged.get(Run.of_row(row), "")} for row in rows]
    fields += [name for name in dict.fromkeys(name for row in rows for name in row) if name not in fields]
    rewrite(target, fields, earlier + rows)
    return len(rows)


def main(argv: list[str] | None = None) -> None:
    sys.path.insert(0, str(HERE))
    from long_horizon import default_data_dir
    from _protocol import cpu_name

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path, help="the staging folder, benchmarks/results/reruns/<rev>")
    p.add_argument("--dry-run", action="store_true", help="list the runs left and their cost; run nothing")
    p.add_argument("--merge", action="store_true", help="append the staged rows to results/side_by_side.csv")
    p.add_argument("--carry", action="store_true",
                   help="stage the neuralforecast runs whose digest at the folder's revision is that of their last "
                        "row (nothing they read changed) instead of running them; run nothing")
    p.add_argument("--data-dir", default=default_data_dir())
    p.add_argument("--runs", type=int, default=None,
                   help="end after this many runs (a worker otherwise goes on to the next run left, which a run "
                        "that needs most of a session cannot end in the rest of it)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per run (the protocol's is 1; more where one run on one core outlasts a "
                        "session: its row records them and its CPU seconds are no longer one thread's)")
    p.add_argument("--archive", type=Path, default=None,
                   help="where the revision's code is extracted (default: a folder in the temporary directory)")
    args = p.parse_args(argv)
    folder = args.folder.resolve()
    rev = revision_of(folder)
    results = REPO / "benchmarks" / "results" / "side_by_side.csv"
    if args.merge:
        count = merge(folder, results)
        print(f"appended {count} rows to benchmarks/results/side_by_side.csv; now `git rm -r {folder}`")
        return
    if args.carry:
        data_dir = str(Path(args.data_dir).resolve())

        def digests(revision: str, requests: list[Request]) -> list[str]:
            where = ensure_archive(revision, Path(tempfile.gettempdir()) / f"tsformers-rerun-{revision}")
            return digests_at(where, requests, python=sys.executable, data_dir=data_dir)

        carried, left = carry(folder, results, digests)
        print(f"carried {len(carried)} neuralforecast runs to {rev} (nothing they read changed); {len(left)} runs "
              f"left to run")
        return
    left = longest_first(missing(folder))
    print(f"{len(left)} runs left, about {sum(c for _, c in left):,.0f} CPU s at their earlier revisions",
          flush=True)
    if args.dry_run:
        for run, cpu_s in left:
            with claimed(folder, run) as free:
                print(*run, f"{cpu_s:.0f}", "" if free else "(running)")
        return
    archive = ensure_archive(rev, args.archive or Path(tempfile.gettempdir()) / f"tsformers-rerun-{rev}")
    # The archive holds no virtual environment: neuralforecast runs in this checkout's, and the rows are
    # labelled with the archive's revision, not this checkout's HEAD.
    env = dict(os.environ, TSFORMERS_GIT_REV=rev, PYTHONPATH=str(archive),
               TSFORMERS_NF_VENV=os.environ.get("TSFORMERS_NF_VENV", str(HERE / ".venv-nf")))
    data_dir, processor = str(Path(args.data_dir).resolve()), cpu_name()
    for count, run in enumerate(next_run(folder, tried=set()), 1):
        argv_ = command(run, python=sys.executable, archive=archive, data_dir=data_dir, out=folder / STAGED,
                        threads=args.threads)
        print("run:", *run, flush=True)
        returncode = subprocess.run(argv_, env=env, cwd=archive).returncode
        log_run(folder, run, returncode, processor)
        if returncode:
            print(f"failed (exit {returncode}): {' '.join(argv_)}", flush=True)
        if count == args.runs:
            break


if __name__ == "__main__":
    main()
