"""Scoring many series on Spark: ``spark_forecast`` in local mode next to ``tsformers forecast``, in one run.

Trains a small Gateformer once, saves it (for the CLI) and logs it to MLflow (for Spark), writes a
Parquet panel of short series (``--steps`` rows each) for every size, and scores each panel twice,
each in a fresh process so that its memory figures are its own:

- **Spark**: ``spark_forecast(spark.read.parquet(panel), model_uri).write.parquet(...)`` on
  ``local[--cores]``: packing (``groupBy`` + ``collect_list``), the pyfunc ``spark_udf`` in
  ``--cores`` Python workers (one torch thread each) and the exploded forecast written to Parquet.
  ``score_s`` is that job, without starting the session and after a first job on 100 series
  (``warmup_s``: the workers start and load the model); peak memory is measured for the driver's
  Python, the JVM (driver and executor in local mode) and the Python workers.
- **CLI**: ``tsformers forecast --chunk-size N`` on one thread (``batch.py``'s runner): reads the
  Parquet a chunk of series at a time, in one process.

One CSV row per (size, engine) is appended to ``--out``; the ratio of the two engines is only
meaningful within one run (the machine may be shared: the load averages are recorded).

    .venv/bin/python benchmarks/spark_scoring.py                                   # 1e3, 1e4, 1e5 series
    .venv/bin/python benchmarks/spark_scoring.py --series 1000000 --engines spark   # the million, Spark only
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from batch import make_panel, run_forecast, train_model  # noqa: E402  (benchmarks/batch.py)


def write_panel(path: Path, n_series: int, n_steps: int, series_per_chunk: int = 50_000) -> None:
    """A long Parquet panel of ``n_series`` series, generated and written a chunk of series at a time.

    Timestamps are written in microseconds (Spark cannot read Parquet's nanosecond timestamps).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    try:
        for first in range(0, n_series, series_per_chunk):
            count = min(series_per_chunk, n_series - first)
            frame = make_panel(count, n_steps, seed=first, first_id=first)
            table = pa.Table.from_pandas(frame, preserve_index=False)
            table = table.set_column(1, "ds", table.column("ds").cast(pa.timestamp("us")))
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table, row_group_size=1 << 20)
    finally:
        if writer is not None:
            writer.close()


class TreeMemory:
    """Samples the resident memory of this process's descendants every ``interval`` seconds (psutil).

    The JVM is the ``java`` descendant; every other descendant is a Python worker of Spark (its
    daemon and the workers it forks). For the workers it keeps the peak of their summed PSS (shared
    pages of the forked workers counted once) and the largest single worker's peak RSS (``VmHWM``).
    """

    def __init__(self, interval: float = 0.5):
        import psutil

        self.me, self.interval = psutil.Process(), interval
        self.jvm_pid = None
        self.workers_pss = 0
        self.worker_hwm = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import psutil

        while not self._stop.wait(self.interval):
            pss = 0
            try:
                children = self.me.children(recursive=True)
            except psutil.Error:
                continue
            for child in children:
                try:
                    if child.name().startswith("java"):
                        self.jvm_pid = child.pid
                        continue
                    pss += child.memory_full_info().pss
                    self.worker_hwm = max(self.worker_hwm, vm_hwm_kib(child.pid) * 1024)
                except (psutil.Error, OSError):
                    continue  # a worker that ended between listing and reading
            self.workers_pss = max(self.workers_pss, pss)


def vm_hwm_kib(pid: int | str = "self") -> int:
    """The peak resident memory (``VmHWM``) of a live process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0  # a process that has exited and not yet been reaped holds no memory


def score_with_spark(model_uri: str, data: str, out: str, cores: int, driver_memory: str) -> dict:
    """The child process's work: one ``spark_forecast`` job in a fresh local Spark, with its memory."""
    from pyspark.sql import SparkSession

    from tsformers.tracking.spark import spark_forecast

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    started = time.perf_counter()
    spark = (SparkSession.builder.master(f"local[{cores}]").appName("tsformers-spark-scoring")
             .config("spark.sql.session.timeZone", "UTC").config("spark.ui.enabled", "false")
             .config("spark.driver.memory", driver_memory).getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    session_s = time.perf_counter() - started
    with TreeMemory() as memory:
        # The first job starts the Python workers (torch, tsformers) and loads the model: timed apart.
        started = time.perf_counter()
        first = spark.read.parquet(data).where("unique_id < 's0000100'")
        spark_forecast(first, model_uri).write.mode("overwrite").parquet(out)
        warmup_s = time.perf_counter() - started
        started = time.perf_counter()
        spark_forecast(spark.read.parquet(data), model_uri).write.mode("overwrite").parquet(out)
        score_s = time.perf_counter() - started
        jvm_hwm = vm_hwm_kib(memory.jvm_pid) * 1024 if memory.jvm_pid else 0
    output_rows = spark.read.parquet(out).count()
    spark.stop()
    return {"session_s": session_s, "warmup_s": warmup_s, "score_s": score_s, "output_rows": output_rows,
            "driver_python_mib": vm_hwm_kib() / 1024, "jvm_mib": jvm_hwm / 2**20,
            "workers_pss_mib": memory.workers_pss / 2**20, "worker_peak_mib": memory.worker_hwm / 2**20}


def run_spark(model_uri: str, data: Path, out: Path, args) -> dict:
    """:func:`score_with_spark` in a fresh interpreter (its own JVM), one torch thread per worker."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, __file__, "_spark_child", model_uri, str(data), str(out), str(args.cores),
               args.driver_memory]
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"the Spark child failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return {"wall_s": wall, **json.loads(proc.stdout.strip().splitlines()[-1])}


def append_row(out: Path, row: dict) -> None:
    """Append one result row to the CSV ``out``, with a header if the file is new."""
    out.parent.mkdir(parents=True, exist_ok=True)
    new = not out.exists()
    with out.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def log_to_mlflow(model_dir: Path, work: Path) -> str:
    """Log the saved model to a local MLflow store in ``work``; its ``runs:/`` URI (the store's in the env)."""
    import mlflow

    import tsformers.tracking
    from tsformers.estimators.base import BaseForecaster

    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"  # the Spark child reads it too
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    mlflow.set_experiment(experiment_id=mlflow.create_experiment("spark-scoring", (work / "artifacts").as_uri()))
    with mlflow.start_run():
        return tsformers.tracking.log_model(BaseForecaster.load(model_dir), "model").model_uri


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--steps", type=int, default=96, help="rows per series in the forecast input")
    parser.add_argument("--engines", nargs="+", choices=["spark", "cli"], default=["spark", "cli"])
    parser.add_argument("--cores", type=int, default=2, help="Spark's local[N]: N Python workers, one thread each")
    parser.add_argument("--driver-memory", default="2g", help="spark.driver.memory (the JVM's heap in local mode)")
    parser.add_argument("--chunk-size", type=int, default=5000, help="series per chunk of the CLI")
    parser.add_argument("--horizon", type=int, default=24)
    parser.add_argument("--lookback", type=int, default=48)
    parser.add_argument("--max-epochs", type=int, default=1)
    parser.add_argument("--train-series", type=int, default=64)
    parser.add_argument("--train-steps", type=int, default=400)
    parser.add_argument("--workdir", default=None, help="where the model and the panels go (default: a temp dir)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "spark_scoring.csv"))
    args = parser.parse_args()

    import tempfile

    import pyspark
    import torch

    torch.set_num_threads(1)
    git_rev = os.environ.get("TSFORMERS_GIT_REV") or subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    rows = []
    with tempfile.TemporaryDirectory(prefix="tsformers-spark-scoring-", dir=args.workdir) as tmp:
        work = Path(tmp)
        train_model(work / "model", args)
        model_uri = log_to_mlflow(work / "model", work)
        for n_series in args.series:
            data = work / f"panel_{n_series}.parquet"
            started = time.perf_counter()
            write_panel(data, n_series, args.steps)
            print(f"wrote {n_series} series x {args.steps} steps ({data.stat().st_size / 2**20:.0f} MiB) in "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
            for engine in args.engines:
                load_start = os.getloadavg()[0]
                if engine == "spark":
                    result = run_spark(model_uri, data, work / f"spark_{n_series}", args)
                    seconds, cores = result["score_s"], args.cores
                    memory = {"peak_driver_python_mib": result["driver_python_mib"], "peak_jvm_mib": result["jvm_mib"],
                              "peak_workers_pss_mib": result["workers_pss_mib"],
                              "peak_worker_rss_mib": result["worker_peak_mib"]}
                    assert result["output_rows"] == n_series * args.horizon, result
                else:
                    result = run_forecast(work / "model", data, work / f"cli_{n_series}.parquet", args.chunk_size,
                                          threads=1)
                    seconds, cores = result["forecast_s"], 1
                    memory = {"peak_driver_python_mib": result["peak_rss_mib"]}
                row = {"timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"), "engine": engine,
                       "n_series": n_series, "steps": args.steps, "input_rows": n_series * args.steps,
                       "lookback": args.lookback, "horizon": args.horizon, "cores": cores,
                       "chunk_size": args.chunk_size if engine == "cli" else "",
                       "score_s": round(seconds, 2), "wall_s": round(result["wall_s"], 2),
                       "warmup_s": round(result["warmup_s"], 2) if engine == "spark" else "",
                       "series_per_s": round(n_series / seconds), "rows_per_s": round(n_series * args.steps / seconds),
                       **{k: "" for k in ("peak_driver_python_mib", "peak_jvm_mib", "peak_workers_pss_mib",
                                          "peak_worker_rss_mib")},
                       **{k: round(v) for k, v in memory.items()},
                       "load_start": round(load_start, 2), "load_end": round(os.getloadavg()[0], 2),
                       "git_rev": git_rev, "torch_version": torch.__version__, "pyspark_version": pyspark.__version__}
                append_row(Path(args.out), row)  # at once: a long run cut short keeps what it measured
                rows.append(row)
                print(f"{engine:>5} {n_series:>8} series  {row['score_s']:>7.1f} s  "
                      f"({row['series_per_s']:>6} series/s, {row['rows_per_s']:>8} rows/s, {cores} cores)  "
                      f"wall {row['wall_s']:>6.1f} s  memory (MiB) "
                      + ", ".join(f"{k[5:-4]} {row[k]}" for k in memory), flush=True)
                data_out = work / (f"spark_{n_series}" if engine == "spark" else f"cli_{n_series}.parquet")
                shutil.rmtree(data_out) if data_out.is_dir() else data_out.unlink(missing_ok=True)  # free the disk
            data.unlink()
    print(f"appended {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["_spark_child"]:
        print(json.dumps(score_with_spark(*sys.argv[2:6], sys.argv[6])))
    else:
        main()
