"""The tsformers command: train, forecast, backtest and demo; atomic, idempotent output; exit codes and messages."""
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tsformers import GateformerForecaster
from tsformers.batch.progress import Progress
from tsformers.batch.tables import AtomicTable
from tsformers.cli import build_parser, in_file_rows, main
from tsformers.datasets import make_demo

TINY = dict(horizon=12, lookback=48, d_model=16, d_ff=16, n_heads=2, batch_size=64)
CLI = [sys.executable, "-m", "tsformers.cli"]


@pytest.fixture(scope="module")
def long_history():
    return make_demo(n_series=5, n_steps=120, layout="long", seed=7)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "model"
    GateformerForecaster(**TINY, max_epochs=1).fit(make_demo(n_steps=300)).save(path)
    return path


@pytest.fixture(scope="module")
def long_model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli-long") / "model"
    GateformerForecaster(**TINY, max_epochs=0).fit(make_demo(n_series=3, n_steps=200, layout="long")).save(path)
    return path


def test_demo_prints_the_comparison_and_writes_the_forecast(tmp_path, capsys):
    out = tmp_path / "f.csv"
    assert main(["demo", "--max-epochs", "1", "--horizon", "12", "--lookback", "48", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "naive (last value)" in printed and "Gateformer" in printed
    forecast = pd.read_csv(out, parse_dates=["date"])
    assert len(forecast) == 12 and list(forecast.columns) == ["date", "series_0", "series_1", "series_2"]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_forecast_reads_history_and_writes_the_same_forecast_as_python(model_dir, tmp_path, suffix):
    history = make_demo(n_steps=200, seed=5)
    data = tmp_path / f"history{suffix}"
    history.to_csv(data, index=False) if suffix == ".csv" else history.to_parquet(data)
    out = tmp_path / f"forecast{suffix}"
    assert main(["forecast", "--model", str(model_dir), "--data", str(data), "--out", str(out)]) == 0
    written = pd.read_csv(out, parse_dates=["date"]) if suffix == ".csv" else pd.read_parquet(out)
    expected = GateformerForecaster.load(model_dir).predict(history)
    pd.testing.assert_frame_equal(written, expected, check_dtype=False)


def test_train_then_forecast_from_a_subprocess_matches_predict_in_process(tmp_path, long_history):
    """The batch job end to end: a YAML job file, `tsformers train`, `tsformers forecast` on Parquet."""
    make_demo(n_series=4, n_steps=240, layout="long", seed=1).to_parquet(tmp_path / "train.parquet")
    long_history.to_parquet(tmp_path / "new.parquet")
    (tmp_path / "job.yaml").write_text(
        "data: train.parquet\nestimator: Gateformer\nmodel_dir: model\n"
        "params: {horizon: 12, lookback: 48, d_model: 16, d_ff: 16, n_heads: 2, batch_size: 64, max_epochs: 1}\n"
        "columns: {id_col: unique_id, time_col: ds, target: [y]}\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()  # paths in the job file are relative to it, not to the working directory
    train = subprocess.run(CLI + ["train", "--config", str(tmp_path / "job.yaml")], cwd=elsewhere,
                           capture_output=True, text=True, env=env)
    assert train.returncode == 0, train.stderr
    assert json.loads(train.stdout)["model_dir"] == str(tmp_path / "model")
    forecast = subprocess.run(CLI + ["forecast", "--model", str(tmp_path / "model"), "--input",
                                     str(tmp_path / "new.parquet"), "--output", str(tmp_path / "f.parquet"),
                                     "--chunk-size", "2"], capture_output=True, text=True, env=env)
    assert forecast.returncode == 0, forecast.stderr
    assert forecast.stdout == "" and "wrote 60 rows" in forecast.stderr  # logs go to stderr
    expected = GateformerForecaster.load(tmp_path / "model").predict(long_history)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "f.parquet"), expected, check_dtype=False)


@pytest.mark.parametrize("chunk_size", ["1", "2", "1000"])
def test_chunks_of_series_give_the_forecast_of_one_predict(long_model_dir, long_history, tmp_path, chunk_size):
    long_history.to_parquet(tmp_path / "new.parquet")
    args = ["forecast", "--model", str(long_model_dir), "--input", str(tmp_path / "new.parquet")]
    assert main(args + ["--output", str(tmp_path / "f.csv"), "--chunk-size", chunk_size]) == 0
    expected = GateformerForecaster.load(long_model_dir).predict(long_history)
    written = pd.read_csv(tmp_path / "f.csv", parse_dates=["ds"])
    # the network sees other batch sizes, so float32 rounding may differ in the last digits (of the data's scale, ~10)
    pd.testing.assert_frame_equal(written, expected, check_dtype=False, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_the_same_input_gives_the_same_bytes(long_model_dir, long_history, tmp_path, suffix):
    long_history.to_parquet(tmp_path / "new.parquet")
    outputs = []
    for k in range(2):
        out = tmp_path / f"f{k}{suffix}"
        assert main(["forecast", "--model", str(long_model_dir), "--input", str(tmp_path / "new.parquet"),
                     "--output", str(out), "--chunk-size", "2"]) == 0
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]


def _bad_inputs(history: pd.DataFrame) -> dict:
    nan = history.copy()
    nan.loc[503, "y"] = np.nan  # in the 5th series, so in the 3rd chunk of two series
    gap = history.drop(index=[250, 370]).reset_index(drop=True)  # the 3rd and 4th series skip the same hour
    daily = history.copy()
    daily["ds"] = np.tile(pd.date_range("2024-01-01", periods=120, freq="D"), 5)
    return {
        "missing column": (history.drop(columns="y"), ["'y'", "missing"]),
        "NaN": (nan, ["'y'", "NaN", "row 503"]),
        "irregular spacing": (gap, ["irregular spacing", "series_2", "row 250"]),
        "wrong frequency": (daily, ["'h' (hourly)", "'D' (daily)", "regular at another step", "series_0"]),
    }


@pytest.mark.parametrize("case", ["missing column", "NaN", "irregular spacing", "wrong frequency"])
def test_bad_input_exits_2_names_the_problem_and_keeps_the_old_output(long_model_dir, long_history, tmp_path,
                                                                      capsys, case):
    frame, expected = _bad_inputs(long_history)[case]
    frame.to_parquet(tmp_path / "bad.parquet")
    out = tmp_path / "forecast.parquet"
    out.write_bytes(b"the previous good output")
    code = main(["forecast", "--model", str(long_model_dir), "--input", str(tmp_path / "bad.parquet"),
                 "--output", str(out), "--chunk-size", "2"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert all(text in err for text in expected), err
    assert err.startswith("tsformers forecast: error:") and err.count("\n") == 1, "one line, on stderr"
    assert out.read_bytes() == b"the previous good output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.parquet", "forecast.parquet"], "no temporary file"


@pytest.mark.parametrize("args, expected", [
    (["--model", "no/such/model"], "no model at no/such/model"),
    (["--input", "empty.parquet"], "the input has no rows"),
    (["--input", "missing.parquet"], "no such file"),
    (["--output", "forecast.txt"], "unknown file type '.txt'"),
    (["--chunk-size", "0"], "--chunk-size"),
])
def test_missing_model_or_file_exits_2(long_model_dir, long_history, tmp_path, capsys, monkeypatch, args, expected):
    monkeypatch.chdir(tmp_path)
    long_history.to_parquet("new.parquet")
    long_history.iloc[:0].to_parquet("empty.parquet")
    base = {"--model": str(long_model_dir), "--input": "new.parquet", "--output": "forecast.parquet"}
    base.update(dict(zip(args[::2], args[1::2])))
    argv = ["forecast", *[x for kv in base.items() for x in kv]]
    assert main(argv) == 2
    assert expected in capsys.readouterr().err


def test_an_interrupted_write_leaves_the_old_output_and_exits_1(long_model_dir, long_history, tmp_path, capsys,
                                                                monkeypatch):
    long_history.to_parquet(tmp_path / "new.parquet")
    out = tmp_path / "forecast.parquet"
    argv = ["forecast", "--model", str(long_model_dir), "--input", str(tmp_path / "new.parquet"),
            "--output", str(out), "--chunk-size", "2"]
    assert main(argv) == 0
    good = out.read_bytes()
    write, calls = AtomicTable.write, []

    def failing_write(self, frame):  # the disk fills up after the first chunk was written
        calls.append(len(frame))
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        write(self, frame)

    monkeypatch.setattr(AtomicTable, "write", failing_write)
    assert main(argv) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert len(calls) == 2 and out.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["forecast.parquet", "new.parquet"]


def test_a_killed_run_never_touches_the_previous_output(long_model_dir, tmp_path):
    """SIGKILL in the middle of writing: the output is replaced by a rename or not at all."""
    big = make_demo(n_series=400, n_steps=60, layout="long")
    big.to_parquet(tmp_path / "new.parquet")
    out = tmp_path / "forecast.csv"
    out.write_text("previous\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    code = "import os, tsformers.cli as c, tsformers.batch.tables as t; w = t.AtomicTable.write\n" \
           "def write(self, frame):\n    w(self, frame); os.kill(os.getpid(), 9)\n" \
           "t.AtomicTable.write = write; c.main(os.environ['ARGS'].split())"
    args = f"forecast --model {long_model_dir} --input {tmp_path / 'new.parquet'} --output {out} --chunk-size 100"
    proc = subprocess.run([sys.executable, "-c", code], env={**env, "ARGS": args}, capture_output=True)
    assert proc.returncode == -9
    assert out.read_text() == "previous\n"


def test_in_file_rows_maps_chunk_rows_to_input_rows():
    index = pd.Index([10, 11, 40, 41])
    assert in_file_rows("NaN first at row 2 (time x)", index) == "NaN first at row 40 (time x)"
    assert in_file_rows("duplicate timestamp at rows 1 and 2 of series 'a'", index) == \
        "duplicate timestamp at rows 11 and 40 of series 'a'"
    assert in_file_rows("each series has 12 rows", index) == "each series has 12 rows"


def test_progress_is_a_bar_on_a_terminal_and_log_lines_otherwise():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for stream, expected in [(io.StringIO(), "tsformers forecast: 10/10 series (100%)"), (Terminal(), "\r[###")]:
        progress = Progress("forecast", stream, min_interval=0.0)
        progress.start(10)
        progress.advance(4)
        progress.advance(6)
        progress.finish()
        assert expected in stream.getvalue()
        assert stream.getvalue().count("\n") == (2 if not stream.isatty() else 1)


def test_train_with_flags_and_errors_in_the_job(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_demo(n_steps=200).to_csv("train.csv", index=False)
    flags = ["train", "--data", "train.csv", "--estimator", "GateformerForecaster", "--model-dir", "m"]
    small = [x for k, v in dict(TINY, max_epochs=0).items() for x in ("--param", f"{k}={v}")]
    assert main(flags + small + ["--target", "series_0,series_2"]) == 0
    model = GateformerForecaster.load("m")
    assert model.schema_.targets == ["series_0", "series_2"] and model.d_model == 16
    capsys.readouterr()
    (tmp_path / "job.yaml").write_text("data: train.csv\nestimator: Gateformer\nmodel_dir: m\nepochs: 3\n")
    cases = [
        (["train", "--config", "job.yaml"], "unknown key(s) ['epochs']"),
        (flags[:3] + ["--estimator", "Prophet", "--model-dir", "m"], "unknown estimator 'Prophet'"),
        (flags + ["--param", "max_epochs=-1"], "max_epochs"),
        (flags + ["--param", "epochs=2"], "'epochs'"),
        (flags + ["--param", "horizon"], "NAME=VALUE"),
        (flags[:5], "would not be kept"),
        (flags + ["--target", "power"], "power"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv


def test_static_attributes_from_the_data_or_a_file(tmp_path, capsys):
    df = make_demo(n_series=3, n_steps=150, layout="long")
    attributes = pd.DataFrame({"unique_id": ["series_0", "series_1", "series_2"], "capacity": [1.0, 5.0, 2.0]})
    df.to_parquet(tmp_path / "train.parquet")
    attributes.to_csv(tmp_path / "static.csv", index=False)
    small = [x for k, v in dict(TINY, max_epochs=0).items() for x in ("--param", f"{k}={v}")]
    assert main(["train", "--data", str(tmp_path / "train.parquet"), "--static-data", str(tmp_path / "static.csv"),
                 "--static", "capacity", "--estimator", "Gateformer", "--model-dir", str(tmp_path / "m")] + small) == 0
    model = GateformerForecaster.load(tmp_path / "m")
    assert model.schema_.static == ["capacity"]
    new = df[df.unique_id == "series_2"].assign(unique_id="new")
    new.to_parquet(tmp_path / "new.parquet")
    argv = ["forecast", "--model", str(tmp_path / "m"), "--input", str(tmp_path / "new.parquet"),
            "--output", str(tmp_path / "f.parquet")]
    assert main(argv) == 2 and "static_df" in capsys.readouterr().err  # an unseen series needs its attributes
    extra = pd.DataFrame({"unique_id": ["new"], "capacity": [9.0]})
    extra.to_parquet(tmp_path / "extra.parquet")
    assert main(argv + ["--static-data", str(tmp_path / "extra.parquet")]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "f.parquet"), model.predict(new, static_df=extra))


def test_backtest_with_a_fixed_model_matches_forecasts_from_each_origin(long_model_dir, long_history, tmp_path):
    long_history.to_parquet(tmp_path / "data.parquet")
    out = tmp_path / "metrics.csv"
    assert main(["backtest", "--model", str(long_model_dir), "--input", str(tmp_path / "data.parquet"),
                 "--output", str(out), "--n-windows", "3", "--step", "6",
                 "--forecasts", str(tmp_path / "forecasts.parquet")]) == 0
    metrics = pd.read_csv(out, parse_dates=["cutoff"])
    assert len(metrics) == 3 * 5 and list(metrics.columns) == ["window", "cutoff", "unique_id", "target", "n", "mse",
                                                               "mae", "rmse", "smape", "mase"]
    model = GateformerForecaster.load(long_model_dir)
    # --forecasts writes exactly the table Forecaster.backtest returns, in the same vocabulary
    python = model.backtest(long_history, n_windows=3, step=6)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "forecasts.parquet"), python, check_dtype=False)
    times = long_history["ds"].drop_duplicates().sort_values().reset_index(drop=True)
    for window in range(3):
        origin = times[120 - 12 - (2 - window) * 6]
        pred = model.predict(long_history[long_history.ds < origin])
        truth = long_history[(long_history.ds >= origin) & (long_history.ds < origin + pd.Timedelta(hours=12))]
        error = pred["y"].to_numpy() - truth["y"].to_numpy()
        rows = metrics[metrics.window == window]
        assert (rows.cutoff == origin - pd.Timedelta(hours=1)).all(), "the last timestamp read, as in Python"
        assert (rows.cutoff.to_numpy() == python[python.window == window].groupby("unique_id")["cutoff"].first()
                .to_numpy()).all()
        # the backtest forecasts every origin in one batch: equal up to float32 rounding. The model was fitted on
        # series_0-2; series_3 and 4 are scaled by their history before the first origin, as predict does there
        # (later, predict reads more of it, and the linear base is not scale-free)
        compared = slice(None) if window == 0 else slice(0, 3)
        np.testing.assert_allclose(rows.mse.to_numpy()[compared], (error.reshape(5, 12) ** 2).mean(axis=1)[compared],
                                   rtol=1e-6)
        np.testing.assert_allclose(rows.mae.to_numpy()[compared], np.abs(error.reshape(5, 12)).mean(axis=1)[compared],
                                   rtol=1e-6)


def test_backtest_refits_the_job_at_every_origin(tmp_path):
    data = make_demo(n_steps=150)
    data.to_csv(tmp_path / "data.csv", index=False)
    job = {"data": "data.csv", "estimator": "Gateformer", "params": dict(TINY, max_epochs=0)}
    (tmp_path / "job.json").write_text(json.dumps(job))
    out = tmp_path / "metrics.parquet"
    assert main(["backtest", "--config", str(tmp_path / "job.json"), "--output", str(out), "--n-splits", "2"]) == 0
    metrics = pd.read_parquet(out)   # --n-splits, the former name of --n-windows, still runs
    assert len(metrics) == 2 * 3 and list(metrics.columns[:3]) == ["window", "cutoff", "target"]
    history = data.iloc[: 150 - 12]  # window 1: fitted on everything before the last horizon
    pred = GateformerForecaster(**TINY, max_epochs=0).fit(history).predict()
    truth = data.iloc[-12:]
    for target in ["series_0", "series_1", "series_2"]:
        expected = np.mean((pred[target].to_numpy() - truth[target].to_numpy()) ** 2)
        assert metrics[(metrics.window == 1) & (metrics.target == target)].mse.item() == pytest.approx(expected)


def test_forecast_from_a_model_directory_imports_neither_mlflow_nor_lightning_nor_matplotlib(long_model_dir, long_history,
                                                                              tmp_path):
    long_history.to_parquet(tmp_path / "new.parquet")
    probe = ("import sys; from tsformers.cli import main; "
             f"assert main(['forecast', '--model', r'{long_model_dir}', '--input', r'{tmp_path / 'new.parquet'}', "
             f"'--output', r'{tmp_path / 'f.csv'}']) == 0; "
             "assert not {'mlflow', 'lightning', 'matplotlib'} & set(sys.modules), 'imported'")
    subprocess.run([sys.executable, "-c", probe], check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_scheduling_examples_are_valid_commands(monkeypatch):
    """The cron line and the Airflow DAG in docs/ run `tsformers` with arguments the parser accepts.

    Airflow is not installed here: the DAG file runs against stand-ins for ``DAG`` and ``BashOperator``
    that record each task's command.
    """
    import ast
    import runpy
    import shlex
    import types

    root = Path(__file__).resolve().parents[1]
    dag_file = root / "docs" / "examples" / "airflow_dag.py"
    ast.parse(dag_file.read_text())
    tasks = []

    class DAG:
        def __init__(self, **settings):
            assert settings["dag_id"] and settings["schedule"]

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    class BashOperator:
        def __init__(self, *, task_id, bash_command, **settings):
            tasks.append((task_id, bash_command))

        def __rshift__(self, other):
            return other

    modules = {"airflow": types.ModuleType("airflow"), "airflow.operators": types.ModuleType("airflow.operators"),
               "airflow.operators.bash": types.ModuleType("airflow.operators.bash")}
    modules["airflow"].DAG, modules["airflow.operators.bash"].BashOperator = DAG, BashOperator
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    runpy.run_path(str(dag_file))
    docs = (root / "docs" / "scheduling.md").read_text()
    cron = [line for block in docs.split("```cron")[1:] for line in block.split("```")[0].splitlines()
            if line.strip() and not line.startswith("#")]
    assert [t for t, _ in tasks] == ["train_weekly", "forecast", "backtest"] and len(cron) == 1
    parser = build_parser()
    for text in [command for _, command in tasks] + cron:
        words = shlex.split(text)
        start = next(i for i, w in enumerate(words) if w.endswith("tsformers")) + 1
        end = next((i for i, w in enumerate(words) if i > start and w in ("&&", "||", ">", ">>", "2>&1", "|")),
                   len(words))
        args = parser.parse_args(words[start:end])
        assert args.command in ("train", "forecast", "backtest")


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_forecast_refuses_to_write_over_its_input(long_model_dir, long_history, tmp_path, capsys, monkeypatch,
                                                   suffix):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / f"history{suffix}"
    long_history.to_csv(data, index=False) if suffix == ".csv" else long_history.to_parquet(data)
    before = data.read_bytes()
    code = main(["forecast", "--model", str(long_model_dir), "--input", str(data), "--output", f"./history{suffix}"])
    assert code == 2
    assert "would replace it" in capsys.readouterr().err
    assert data.read_bytes() == before
    (tmp_path / "link").symlink_to(data)
    assert main(["forecast", "--model", str(long_model_dir), "--input", "link", "--output", str(data)]) == 2
    assert data.read_bytes() == before


def test_backtest_refuses_to_write_over_its_input(long_model_dir, long_history, tmp_path, capsys):
    data = tmp_path / "history.parquet"
    long_history.to_parquet(data)
    before = data.read_bytes()
    code = main(["backtest", "--model", str(long_model_dir), "--input", str(data), "--output", str(data)])
    assert code == 2 and "--input file" in capsys.readouterr().err
    assert data.read_bytes() == before


def _small_params(**extra) -> list[str]:
    return [x for k, v in dict(TINY, max_epochs=0, **extra).items() for x in ("--param", f"{k}={v}")]


def test_csv_ids_are_text_so_leading_zeros_name_the_same_series(tmp_path):
    """Issue 21 item 6: "001" in a CSV file is the series "001", not the integer 1 (a new series)."""
    history = make_demo(n_series=3, n_steps=120, layout="long", seed=3)
    history["unique_id"] = history["unique_id"].map({"series_0": "001", "series_1": "002", "series_2": "010"})
    history.to_csv(tmp_path / "history.csv", index=False)
    GateformerForecaster(**TINY, max_epochs=0).fit(history).save(tmp_path / "fitted_in_python")
    assert main(["train", "--data", str(tmp_path / "history.csv"), "--estimator", "Gateformer", "--id-col",
                 "unique_id", "--time-col", "ds", "--model-dir", str(tmp_path / "trained_by_cli")]
                + _small_params()) == 0
    assert GateformerForecaster.load(tmp_path / "trained_by_cli").schema_.series == ["001", "002", "010"]
    for model in ["fitted_in_python", "trained_by_cli"]:
        out = tmp_path / f"{model}.csv"
        assert main(["forecast", "--model", str(tmp_path / model), "--input", str(tmp_path / "history.csv"),
                     "--output", str(out)]) == 0
        written = pd.read_csv(out, dtype={"unique_id": str}, parse_dates=["ds"])
        expected = GateformerForecaster.load(tmp_path / model).predict(history)
        pd.testing.assert_frame_equal(written, expected, check_dtype=False)


def test_csv_integer_ids_still_match_a_model_fitted_on_integers(tmp_path):
    history = make_demo(n_series=2, n_steps=120, layout="long", seed=3)
    history["unique_id"] = history["unique_id"].map({"series_0": 7, "series_1": 12})
    history.to_csv(tmp_path / "history.csv", index=False)
    GateformerForecaster(**TINY, max_epochs=0).fit(history).save(tmp_path / "m")
    assert main(["forecast", "--model", str(tmp_path / "m"), "--input", str(tmp_path / "history.csv"),
                 "--output", str(tmp_path / "f.csv")]) == 0
    assert pd.read_csv(tmp_path / "f.csv")["unique_id"].unique().tolist() == [7, 12]


def test_output_files_respect_the_umask_and_a_replaced_file_keeps_its_mode(tmp_path, long_model_dir, long_history):
    """Issue 21 item 13: files are created as `open` creates them, not always 0600."""
    from tsformers.batch.tables import write_frame

    frame = pd.DataFrame({"a": [1.0, 2.0]})
    previous = os.umask(0o022)
    try:
        write_frame(frame, tmp_path / "shared.csv")
        long_history.to_parquet(tmp_path / "new.parquet")
        assert main(["forecast", "--model", str(long_model_dir), "--input", str(tmp_path / "new.parquet"),
                     "--output", str(tmp_path / "forecast.parquet")]) == 0
        os.umask(0o077)
        write_frame(frame, tmp_path / "private.parquet")
        os.chmod(tmp_path / "shared.csv", 0o640)
        write_frame(frame, tmp_path / "shared.csv")  # replaced: keeps the mode someone gave it
    finally:
        os.umask(previous)
    mode = {name: (tmp_path / name).stat().st_mode & 0o777 for name in
            ["forecast.parquet", "private.parquet", "shared.csv"]}
    assert mode == {"forecast.parquet": 0o644, "private.parquet": 0o600, "shared.csv": 0o640}


def test_the_next_run_removes_the_temporary_file_of_a_killed_run(long_model_dir, tmp_path):
    """Issue 21 item 14: `kill -9` cannot clean up; the next run writing the same output does."""
    make_demo(n_series=40, n_steps=60, layout="long").to_parquet(tmp_path / "new.parquet")
    out = tmp_path / "forecast.parquet"
    code = "import os, tsformers.cli as c, tsformers.batch.tables as t; w = t.AtomicTable.write\n" \
           "def write(self, frame):\n    w(self, frame); os.kill(os.getpid(), 9)\n" \
           "t.AtomicTable.write = write; c.main(os.environ['ARGS'].split())"
    args = f"forecast --model {long_model_dir} --input {tmp_path / 'new.parquet'} --output {out} --chunk-size 10"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ARGS": args}
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True).returncode == -9
    left = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(left) == 1 and left[0].startswith(".forecast.parquet.tsformers-"), left
    # temporary files of another output, of a live run, of another machine or not ours stay
    pid = left[0].split("-")[-2]
    kept = [left[0].replace("forecast.parquet", "other.parquet"), left[0].replace(f"-{pid}-", f"-{os.getpid()}-"),
            f".forecast.parquet.tsformers-another.host-{pid}-0123abcd.tmp", ".forecast.parquet.x1y2z3.tmp"]
    for name in kept:
        (tmp_path / name).write_text("")
    assert main(args.split()) == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == sorted(kept)
    assert len(pd.read_parquet(out)) == 40 * 12


def test_a_directory_as_output_is_refused_before_any_work(tmp_path, capsys, long_history):
    """Issue 21 item 16: exit 2 naming the flag, before the model is even loaded."""
    (tmp_path / "out.parquet").mkdir()
    long_history.to_parquet(tmp_path / "new.parquet")
    runs = {
        "forecast": ["forecast", "--model", "no/such/model", "--input", str(tmp_path / "new.parquet"),
                     "--output", str(tmp_path / "out.parquet")],
        "backtest": ["backtest", "--model", "no/such/model", "--input", str(tmp_path / "new.parquet"),
                     "--output", str(tmp_path / "out.parquet")],
        "demo": ["demo", "--out", str(tmp_path / "out.parquet")],
    }
    for command, argv in runs.items():
        assert main(argv) == 2, command
        err = capsys.readouterr().err
        assert f"{tmp_path / 'out.parquet'} is a directory" in err and err.count("\n") == 1, err


def test_an_unwritable_model_dir_is_refused_before_the_fit(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_demo(n_steps=200).to_csv("train.csv", index=False)
    Path("a_file").write_text("")
    flags = ["train", "--data", "train.csv", "--estimator", "Gateformer"] + _small_params()
    fitted = []
    monkeypatch.setattr(GateformerForecaster, "fit", lambda self, *a, **k: fitted.append(1))
    assert main(flags + ["--model-dir", "a_file/model"]) == 2
    assert "a_file is not a directory" in capsys.readouterr().err
    if os.geteuid() != 0:  # root writes anywhere
        Path("locked").mkdir(mode=0o555)
        assert main(flags + ["--model-dir", "locked/model"]) == 2
        assert "not writable" in capsys.readouterr().err
    assert fitted == []


def test_an_accelerator_this_machine_lacks_is_a_configuration_error(tmp_path, capsys, monkeypatch):
    """Issue 21 item 16: `accelerator=gpu` without a GPU exits 2 (not retryable) before any work."""
    import torch

    monkeypatch.chdir(tmp_path)
    make_demo(n_steps=200).to_csv("train.csv", index=False)
    accelerator = "tpu" if torch.cuda.is_available() else "gpu"
    argv = ["train", "--data", "train.csv", "--estimator", "Gateformer", "--model-dir", "m",
            "--param", f"trainer_kwargs={{accelerator: {accelerator}}}"] + _small_params()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"trainer_kwargs {{'accelerator': '{accelerator}'}} cannot run on this machine" in err
    assert err.count("\n") == 1 and not Path("m").exists()


def test_a_bad_level_names_the_flag(long_model_dir, long_history, tmp_path, capsys):
    long_history.to_parquet(tmp_path / "new.parquet")
    assert main(["backtest", "--model", str(long_model_dir), "--input", str(tmp_path / "new.parquet"),
                 "--output", str(tmp_path / "m.csv"), "--level", "80,abc"]) == 2
    err = capsys.readouterr().err
    assert "--level '80,abc' is not a comma-separated list of percentages" in err and err.count("\n") == 1


def test_a_yaml_error_is_one_line_with_the_file_and_line(tmp_path, capsys):
    job = tmp_path / "job.yaml"
    job.write_text("data: train.csv\nestimator: Gateformer\nparams: {horizon: 12, lookback: [48}\n")
    assert main(["train", "--config", str(job)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"{job}, line 3, column" in err and "not valid YAML" in err


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_rows_in_any_order_give_the_forecast_and_backtest_of_sorted_rows(long_model_dir, long_history, tmp_path,
                                                                        suffix):
    """Issue 21 item 17: the docs say a file's rows need no order; a shuffled file forecasts the same."""
    shuffled = long_history.sample(frac=1.0, random_state=0).reset_index(drop=True)
    written = {}
    for name, frame in [("sorted", long_history), ("shuffled", shuffled)]:
        data = tmp_path / f"{name}{suffix}"
        frame.to_csv(data, index=False) if suffix == ".csv" else frame.to_parquet(data)
        for command, extra, keys in [("forecast", ["--chunk-size", "2"], ["unique_id", "ds"]),
                                     ("backtest", [], ["window", "unique_id"])]:
            out = tmp_path / f"{command}-{name}{suffix}"
            assert main([command, "--model", str(long_model_dir), "--input", str(data), "--output", str(out)]
                        + extra) == 0
            frame = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
            written[command, name] = frame.sort_values(keys, kind="stable").reset_index(drop=True)
    for command in ("forecast", "backtest"):
        pd.testing.assert_frame_equal(written[command, "shuffled"], written[command, "sorted"])


def test_known_future_covariates_from_a_shuffled_future_file(tmp_path):
    """`--future` rows need no order (predict lines them up by series and time): the forecast of `predict`."""
    frame = make_demo(n_series=3, n_steps=132, layout="long", seed=4)
    frame["c"] = np.sin(np.arange(len(frame)) / 5.0)
    history = frame.groupby("unique_id").head(120).reset_index(drop=True)
    future = frame.groupby("unique_id").tail(12)[["unique_id", "ds", "c"]].reset_index(drop=True)
    model = GateformerForecaster(**TINY, max_epochs=0, target="y", future_covariates=["c"]).fit(history)
    model.save(tmp_path / "m")
    history.to_parquet(tmp_path / "history.parquet")
    future.sample(frac=1.0, random_state=1).reset_index(drop=True).to_parquet(tmp_path / "future.parquet")
    assert main(["forecast", "--model", str(tmp_path / "m"), "--input", str(tmp_path / "history.parquet"),
                 "--future", str(tmp_path / "future.parquet"), "--output", str(tmp_path / "f.parquet")]) == 0
    expected = GateformerForecaster.load(tmp_path / "m").predict(history, future_df=future)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "f.parquet"), expected, check_dtype=False)


def test_csv_dates_with_one_utc_offset_keep_it_through_forecast(tmp_path):
    times = pd.date_range("2024-01-01", periods=60, freq="h", tz="UTC+02:00")
    history = pd.DataFrame({"unique_id": np.repeat(["a", "b"], 60), "ds": np.tile(times, 2),
                            "y": np.random.default_rng(1).normal(size=120)})
    history.to_csv(tmp_path / "history.csv", index=False)
    model = GateformerForecaster(**TINY, max_epochs=0).fit(history)
    model.save(tmp_path / "model")
    out = tmp_path / "forecast.csv"
    assert main(["forecast", "--model", str(tmp_path / "model"), "--input", str(tmp_path / "history.csv"),
                 "--output", str(out)]) == 0
    written = pd.read_csv(out)
    expected = model.predict(history)
    assert written["ds"].str.endswith("+02:00").all(), "the offset of the input, not UTC"
    assert (pd.to_datetime(written["ds"]) == expected["ds"]).all()
    np.testing.assert_allclose(written["y"], expected["y"], rtol=1e-6)


def test_fill_gaps_forecasts_gappy_input_as_the_interpolated_history(model_dir, tmp_path, capsys):
    history = make_demo(n_steps=300).iloc[-100:].reset_index(drop=True)
    gappy = history.drop(index=[70, 71])                         # two hours lost inside the last window
    gappy.to_csv(tmp_path / "gappy.csv", index=False)
    out = tmp_path / "forecast.csv"
    assert main(["forecast", "--model", str(model_dir), "--input", str(tmp_path / "gappy.csv"),
                 "--output", str(out)]) == 2
    assert "Pass --fill-gaps to insert missing timestamps" in capsys.readouterr().err and not out.exists()

    assert main(["forecast", "--model", str(model_dir), "--input", str(tmp_path / "gappy.csv"),
                 "--output", str(out), "--fill-gaps"]) == 0
    model = GateformerForecaster.load(model_dir)
    filled = history.copy()
    filled.loc[[70, 71], filled.columns[1:]] = np.nan
    filled[filled.columns[1:]] = filled[filled.columns[1:]].interpolate()   # linear in time, as missing='interpolate'
    expected = model.predict(filled)
    written = pd.read_csv(out)
    np.testing.assert_allclose(written[expected.columns[1:]].to_numpy(), expected.iloc[:, 1:].to_numpy(), rtol=1e-5)

    longer = history.drop(index=range(60, 66))                   # six in a row: more than max_gap (3)
    longer.to_csv(tmp_path / "longer.csv", index=False)
    assert main(["forecast", "--model", str(model_dir), "--input", str(tmp_path / "longer.csv"),
                 "--output", str(out), "--fill-gaps"]) == 2
    assert "max_gap" in capsys.readouterr().err


def test_backtest_fill_gaps_applies_to_a_saved_model_only(model_dir, tmp_path, capsys):
    history = make_demo(n_steps=300)
    history.drop(index=[200]).to_csv(tmp_path / "gappy.csv", index=False)
    out = tmp_path / "metrics.csv"
    assert main(["backtest", "--model", str(model_dir), "--input", str(tmp_path / "gappy.csv"), "--output", str(out),
                 "--n-windows", "2", "--fill-gaps"]) == 0
    assert len(pd.read_csv(out)) > 0
    (tmp_path / "job.json").write_text(json.dumps({"data": str(tmp_path / "gappy.csv"),
                                                   "estimator": "GateformerForecaster", "params": TINY}))
    assert main(["backtest", "--config", str(tmp_path / "job.json"), "--output", str(out), "--fill-gaps"]) == 2
    assert "--fill-gaps applies to a saved --model" in capsys.readouterr().err
