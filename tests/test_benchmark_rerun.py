"""benchmarks/rerun.py: which runs of a staging folder are left, how they split into queues, the command each
gets, and the merge that refuses an unfinished rerun."""

from __future__ import annotations

import csv
import os
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from test_benchmark_harness import BENCHMARKS, load_benchmark

FIELDS = ["timestamp", "dataset", "horizon", "library", "model", "seed", "mse"]


@pytest.fixture(scope="module")
def rerun():
    return load_benchmark("rerun.py", "rerun_benchmark")


def staging(tmp_path: Path, runs: list[str], rows: list[dict]) -> Path:
    folder = tmp_path / "reruns" / "abc1234"
    folder.mkdir(parents=True)
    (folder / "runs.txt").write_text("# dataset horizon library model seed cpu_s\n" + "\n".join(runs) + "\n")
    if rows:
        with open(folder / "side_by_side.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(rows)
    return folder


def row(dataset, horizon, library, model, seed, mse="0.5", timestamp="2026-12-07T00:00:00+00:00"):
    return dict(timestamp=timestamp, dataset=dataset, horizon=horizon, library=library, model=model, seed=seed,
                mse=mse)


RUNS = ["ETTh1 96 tsformers gateformer-defaults+base 0 20", "ETTh1 96 tsformers gateformer-defaults+base 1 20",
        "ETTh1 96 neuralforecast itransformer 0 30", "ETTh1 96 neuralforecast itransformer 1 30",
        "ETTm1 96 neuralforecast patchtst-authors 0 2000"]


def test_the_runs_left_are_those_without_a_row_costliest_first(rerun, tmp_path):
    folder = staging(tmp_path, RUNS, [row("ETTh1", "96", "neuralforecast", "itransformer", "0")])
    runs = rerun.read_runs(folder)
    assert [r.model for r, _ in runs][:3] == ["gateformer-defaults+base", "gateformer-defaults+base", "itransformer"]
    assert [c for _, c in runs] == [20, 20, 30, 30, 2000]
    left = [r for r, _ in rerun.missing(folder)]
    assert rerun.Run("ETTh1", "96", "neuralforecast", "itransformer", "0") not in left and len(left) == 4
    # costliest first, runs.txt's order among equals
    assert [(r.model, r.seed) for r, _ in rerun.longest_first(rerun.missing(folder))] == [
        ("patchtst-authors", "0"), ("itransformer", "1"), ("gateformer-defaults+base", "0"),
        ("gateformer-defaults+base", "1")]


def test_a_run_is_held_by_one_worker_at_a_time_and_released_when_it_ends_however_it_ends(rerun, tmp_path,
                                                                                       monkeypatch):
    monkeypatch.setattr(rerun, "CLAIMS", tmp_path / "claims")
    folder = staging(tmp_path, RUNS, [])
    first, second = (run for run, _ in rerun.read_runs(folder)[:2])
    with rerun.claimed(folder, first) as mine:
        assert mine
        with rerun.claimed(folder, first) as again, rerun.claimed(folder, second) as other:
            assert not again and other      # another hold of the same run fails; another run is free
    with rerun.claimed(folder, first) as mine:
        assert mine, "released when the block ended"
    # a worker killed while it holds a run holds it no more
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]); import rerun; "
         "from pathlib import Path; rerun.CLAIMS = Path(sys.argv[2]); "
         "run = rerun.read_runs(Path(sys.argv[3]))[0][0]\n"
         "with rerun.claimed(Path(sys.argv[3]), run) as mine:\n print(mine, flush=True); time.sleep(60)",
         str(BENCHMARKS), str(tmp_path / "claims"), str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "True"
        with rerun.claimed(folder, first) as mine:
            assert not mine, "held by the other process"
    finally:
        holder.kill()
        holder.wait()
    with rerun.claimed(folder, first) as mine:
        assert mine, "released by the system when its holder died"


def test_a_worker_runs_the_costliest_free_run_left_once_and_stops_when_none_is_left(rerun, tmp_path, monkeypatch):
    monkeypatch.setattr(rerun, "CLAIMS", tmp_path / "claims")
    folder = staging(tmp_path, RUNS, [row("ETTh1", "96", "tsformers", "gateformer-defaults+base", "1")])
    runs = [run for run, _ in rerun.read_runs(folder)]
    ran = []
    with rerun.claimed(folder, runs[4]) as held:          # the costliest: another worker has it
        assert held
        for run in rerun.next_run(folder, tried=set()):
            ran.append(run)
            if run == runs[2]:                                # its row lands; runs[3] fails (no row)
                with open(folder / "side_by_side.csv", "a", newline="") as fh:
                    csv.DictWriter(fh, fieldnames=FIELDS).writerow(row(*run))
    # itransformer 0 and 1 (30 s) before the defaults (20 s); each tried once; the held run left alone
    assert ran == [runs[2], runs[3], runs[0]]
def test_a_worker_told_how_many_runs_ends_after_them_and_passes_its_threads_on(rerun, tmp_path, monkeypatch):
    monkeypatch.setattr(rerun, "CLAIMS", tmp_path / "claims")
    monkeypatch.setattr(rerun, "ensure_archive", lambda rev, archive: tmp_path / "archive")
    folder = staging(tmp_path, RUNS, [])
    started = []

    def run_side_by_side(argv, **kwargs):
        started.append(argv)
        return subprocess.CompletedProcess(argv, 0)

    monkeypatch.setattr(rerun, "subprocess", SimpleNamespace(run=run_side_by_side))
    rerun.main([str(folder), "--runs", "1", "--threads", "2", "--data-dir", str(tmp_path)])
    assert len(started) == 1 and started[0][-2:] == ["--threads", "2"]
    assert "patchtst-authors" in started[0]                   # the costliest run, and no other after it


def test_a_malformed_runs_line_names_the_line_and_the_format(rerun, tmp_path):
    folder = staging(tmp_path, ["ETTh1 96 tsformers gateformer 0"], [])
    with pytest.raises(ValueError, match=r"line 2: expected 'dataset horizon library model seed cpu_s'"):
        rerun.read_runs(folder)


def test_each_library_gets_only_its_own_models_and_the_base_label_is_not_an_option(rerun, tmp_path):
    ours, theirs = (rerun.Run("ETTm2", "192", "tsformers", "gateformer-defaults+base", "2"),
                    rerun.Run("ETTm2", "192", "neuralforecast", "patchtst-authors", "1"))
    archive = tmp_path / "archive"
    kwargs = dict(python="py", archive=archive, data_dir="/data", out=tmp_path / "x.csv")
    assert rerun.command(ours, **kwargs) == [
        "py", str(archive / "benchmarks" / "side_by_side.py"), "--dataset", "ETTm2", "--horizons", "192",
        "--models", "gateformer-defaults", "--nf-models", "--seeds", "2", "--data-dir", "/data",
        "--out", str(tmp_path / "x.csv")]
    assert rerun.command(theirs, **kwargs)[6:9] == ["--models", "--nf-models", "patchtst-authors"]
    # the protocol's one thread goes unsaid (an older revision's side_by_side.py may not know the option); more
    # are passed on
    assert rerun.command(theirs, **kwargs, threads=2)[-2:] == ["--threads", "2"]


def test_every_committed_rerun_run_maps_to_a_model_side_by_side_accepts(rerun):
    side_by_side = load_benchmark("side_by_side.py", "side_by_side_for_rerun")
    folders = sorted(p for p in (BENCHMARKS / "results" / "reruns").glob("*") if (p / "runs.txt").exists())
    for folder in folders:
        for run, _ in rerun.read_runs(folder):
            argv = rerun.command(run, python="py", archive=Path("a"), data_dir="d", out=Path("o"))
            models = argv[argv.index("--models") + 1:argv.index("--nf-models")]
            nf_models = argv[argv.index("--nf-models") + 1:argv.index("--seeds")]
            assert set(models) <= set(side_by_side.MODELS) and set(nf_models) <= set(side_by_side.NF_MODELS), run
            for model in nf_models:   # its reference scripts' settings exist for the cell (else it exits at once)
                assert side_by_side.nf_hparams(model, run.dataset, int(run.horizon))["max_epochs"] > 0, run


def test_a_folder_runs_at_the_revision_its_name_starts_with(rerun, tmp_path):
    assert rerun.revision_of(tmp_path / "f73e0bc") == "f73e0bc"
    assert rerun.revision_of(tmp_path / "f73e0bc-weather-patchtst") == "f73e0bc"


def test_the_merge_refuses_an_unfinished_or_doubled_rerun_and_appends_a_finished_one(rerun, tmp_path):
    runs = RUNS[:2]
    target = tmp_path / "side_by_side.csv"
    earlier = [row("ETTh1", "96", "tsformers", "gateformer-defaults+base", "0", mse="0.4",
                   timestamp="2026-12-01T00:00:00+00:00")]
    with open(target, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(earlier)
    before = target.read_text()
    first = row("ETTh1", "96", "tsformers", "gateformer-defaults+base", "0")
    second = row("ETTh1", "96", "tsformers", "gateformer-defaults+base", "1")

    with pytest.raises(SystemExit, match="1 of 2 runs have no row yet"):
        rerun.merge(staging(tmp_path / "a", runs, [first]), target)
    with pytest.raises(SystemExit, match="1 have more than one"):
        rerun.merge(staging(tmp_path / "b", runs, [first, second, second]), target)
    assert target.read_text() == before          # nothing written by a refused merge

    finished = staging(tmp_path / "c", runs, [first, second])
    rerun.log_run(finished, rerun.Run.of_row(second), 0, "Intel(R) Xeon(R) Processor, AVX-512")
    assert rerun.merge(finished, target) == 2
    with open(target, newline="") as fh:
        merged = list(csv.DictReader(fh))
    # the processor joins as a column: from the log where the run was logged, else empty, the earlier rows' too
    assert [(r["seed"], r["mse"], r["cpu"]) for r in merged] == [
        ("0", "0.4", ""), ("0", "0.5", ""), ("1", "0.5", "Intel(R) Xeon(R) Processor, AVX-512")]


def test_each_finished_run_is_logged_with_its_exit_status_and_processor(rerun, tmp_path):
    folder = staging(tmp_path, RUNS, [])
    runs = [run for run, _ in rerun.read_runs(folder)]
    rerun.log_run(folder, runs[0], 0, "Intel(R) Xeon(R) Processor, AVX-512")
    rerun.log_run(folder, runs[2], 1, "AMD EPYC, AVX2")
    with open(folder / "runs.log", newline="") as fh:
        logged = list(csv.DictReader(fh))
    assert [(r["model"], r["seed"], r["exit"], r["cpu"]) for r in logged] == [
        ("gateformer-defaults+base", "0", "0", "Intel(R) Xeon(R) Processor, AVX-512"),
        ("itransformer", "0", "1", "AMD EPYC, AVX2")]


def test_carry_stages_the_neuralforecast_runs_whose_digest_is_unchanged_and_leaves_the_others(rerun, tmp_path):
    results = tmp_path / "side_by_side.csv"
    fields = FIELDS + ["git_rev", "run_digest", "ran_at", "lib_version", "torch_version", "n_threads"]
    earlier = [dict(row("ETTh1", "96", "tsformers", "gateformer-defaults+base", seed, mse="0.37"), git_rev="f73e0bc")
               for seed in ("0", "1")]
    ran = dict(lib_version="3.3.0", torch_version="2.13.0+cpu")
    earlier += [dict(row("ETTh1", "96", "neuralforecast", "itransformer", "0", mse="0.3866"), git_rev="f73e0bc", **ran),
                # its latest row counts: this one was carried to 1111111 from f73e0bc already, digest recorded
                dict(row("ETTh1", "96", "neuralforecast", "itransformer", "1", mse="0.11",
                         timestamp="2026-12-01T00:00:00+00:00"), git_rev="0000000"),
                dict(row("ETTh1", "96", "neuralforecast", "itransformer", "1", mse="0.3869"), git_rev="1111111",
                     ran_at="f73e0bc", run_digest="d-1"),
                dict(row("ETTm1", "96", "neuralforecast", "patchtst-authors", "0", mse="0.3235"), git_rev="f73e0bc",
                     n_threads="2", **ran)]
    with open(results, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(earlier)
    folder = staging(tmp_path, RUNS, [])
    # what each revision would hand each run: PatchTST's spec changed at abc1234, the iTransformer runs' did not
    digests_by_revision = {("f73e0bc", "itransformer", "0"): "d-0", ("abc1234", "itransformer", "0"): "d-0",
               ("abc1234", "itransformer", "1"): "d-1",
               ("f73e0bc", "patchtst-authors", "0"): "p-0", ("abc1234", "patchtst-authors", "0"): "p-0 changed"}
    asked = []

    def digests(revision, requests):
        asked.append((revision, [(run.model, run.seed) for run, _, _ in requests]))
        # an earlier revision's digest takes the versions its row records; the folder's, its own pins
        assert all(versions == ((("3.3.0", "2.13.0") if revision == "f73e0bc" else None))
                   for _, versions, _ in requests)
        # a run is compared at the threads its row ran on, at both revisions (one where the row says nothing)
        assert [(run.model, threads) for run, _, threads in requests] == [
            (run.model, 2 if run.model == "patchtst-authors" else 1) for run, _, _ in requests]
        return [digests_by_revision[revision, run.model, run.seed] for run, _, _ in requests]

    carried, left = rerun.carry(folder, results, digests)
    assert [(r.model, r.seed) for r in carried] == [("itransformer", "0"), ("itransformer", "1")]
    assert [(r.library, r.model, r.seed) for r in left] == [
        ("tsformers", "gateformer-defaults+base", "0"), ("tsformers", "gateformer-defaults+base", "1"),
        ("neuralforecast", "patchtst-authors", "0")]
    # one request per revision, each with all of its runs; a recorded digest is not computed again, ours never
    assert asked == [("abc1234", [("itransformer", "0"), ("itransformer", "1"), ("patchtst-authors", "0")]),
                     ("f73e0bc", [("itransformer", "0"), ("patchtst-authors", "0")])]
    staged = rerun.read_staged(folder)
    # the row itself, standing for the folder's revision, with the revision it ran at
    assert [(r["seed"], r["mse"], r["git_rev"], r["ran_at"], r["run_digest"]) for r in staged] == [
        ("0", "0.3866", "abc1234", "f73e0bc", "d-0"), ("1", "0.3869", "abc1234", "f73e0bc", "d-1")]
    assert [r for r, _ in rerun.missing(folder)] == left
    # carried twice, nothing changes: the runs carried have rows
    assert rerun.carry(folder, results, digests) == ([], left) and len(rerun.read_staged(folder)) == 2


def test_staging_and_merging_rewrite_the_file_whole_keeping_its_mode_or_not_at_all(rerun, tmp_path):
    """stage() adds rows in one write, header widened by their columns; a rewrite that fails leaves the file as it
    was and no partial file; a rewritten table keeps its permission bits (mkstemp's 0600 once hid the merged
    side-by-side table from every other user)."""
    folder = staging(tmp_path, RUNS[:2], [row("ETTh1", "96", "tsformers", "gateformer-defaults+base", "0")])
    os.chmod(folder / "side_by_side.csv", 0o644)
    carried = dict(row("ETTh1", "96", "tsformers", "gateformer-defaults+base", "1"), ran_at="f73e0bc")
    rerun.stage(folder, [carried])
    assert [(r["seed"], r.get("ran_at")) for r in rerun.read_staged(folder)] == [("0", ""), ("1", "f73e0bc")]
    assert stat.S_IMODE((folder / "side_by_side.csv").stat().st_mode) == 0o644
    before = (folder / "side_by_side.csv").read_bytes()
    with pytest.raises(ValueError, match="not in fieldnames"):
        rerun.rewrite(folder / "side_by_side.csv", FIELDS, [carried])   # a column outside the header
    assert (folder / "side_by_side.csv").read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["runs.txt", "side_by_side.csv"]

    target = tmp_path / "table.csv"
    rerun.rewrite(target, FIELDS, [])
    os.chmod(target, 0o640)
    assert rerun.merge(folder, target) == 2
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    with open(target, newline="") as fh:
        assert [(r["seed"], r["ran_at"]) for r in csv.DictReader(fh)] == [("0", ""), ("1", "f73e0bc")]


def test_a_revisions_digest_of_a_run_is_the_one_a_run_of_that_revision_records(rerun, tmp_path, monkeypatch):
    """digests_at reads the spec a revision's side_by_side.py would hand the worker (this checkout standing for the
    extracted revision), and its digest equals the one side_by_side.py records with the row of a real run."""
    from test_benchmark_harness import load_benchmark as load

    data_dir = Path(os.environ.get("TSFORMERS_DATA") or Path(__file__).resolve().parents[2] / "shared" / "datasets")
    if not (data_dir / "ETTh1.csv").exists():
        pytest.skip(f"ETTh1.csv is not in {data_dir} (set TSFORMERS_DATA)")
    run = rerun.Run("ETTh1", "96", "neuralforecast", "itransformer", "0")
    digest, = rerun.digests_at(rerun.REPO, [rerun.Request(run)], python=sys.executable, data_dir=str(data_dir))

    side = load("side_by_side.py", "side_by_side_recorded")
    result = dict(mse=0.5, mae=0.5, n_windows=1, epochs_run=1, fit_test_s=1.0, fit_test_cpu_s=1.0, n_params=1,
                  peak_rss_mib=1.0, load_start=0.0, load_end=0.0, n_threads=1, torch_version="2.13.0",
                  nf_version="3.3.0")
    monkeypatch.setattr(side, "run_worker", lambda *args, **kwargs: result)
    monkeypatch.setattr(side, "ensure_nf_venv", lambda *args, **kwargs: None)
    out = tmp_path / "rows.csv"
    side.main(["--dataset", "ETTh1", "--horizons", "96", "--models", "--nf-models", "itransformer", "--seeds", "0",
               "--data-dir", str(data_dir), "--out", str(out)])
    with open(out, newline="") as fh:
        assert [r["run_digest"] for r in csv.DictReader(fh)] == [digest]
    # the same data elsewhere gives the same digest, another seed another, in one capture of both runs
    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / "ETTh1.csv").write_bytes((data_dir / "ETTh1.csv").read_bytes())
    same, other, threaded = rerun.digests_at(
        rerun.REPO, [rerun.Request(run), rerun.Request(run._replace(seed="1")), rerun.Request(run, threads=2)],
        python=sys.executable, data_dir=str(moved))
    assert same == digest and other != digest and threaded not in (digest, other)
