"""What a cold start imports: ``import tsformers`` and ``tsformers forecast --engine onnx`` stay off torch.

Each check runs in a fresh interpreter (a subprocess) and reads ``sys.modules``
there: what is imported, never how long it takes (``benchmarks/cold_start.py``
measures that).
"""
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "lightning", "pytorch_lightning", "sklearn", "mlflow")


def run_python(code: str, cwd=None, env=None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env=environment,
                          timeout=600)


def heavy_modules_after(code: str, cwd=None, env=None) -> tuple[list[str], subprocess.CompletedProcess]:
    """The heavy packages imported by ``code`` in a fresh interpreter, and the finished process."""
    probe = code + f"\nimport json, sys\nprint('MODULES=' + json.dumps(sorted({{m.split('.')[0] for m in " \
                   f"sys.modules}} & set({list(HEAVY)!r}))))\n"
    done = run_python(probe, cwd=cwd, env=env)
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("MODULES="))
    return json.loads(line.removeprefix("MODULES=")), done


def test_import_tsformers_imports_no_heavy_package():
    heavy, _ = heavy_modules_after("import tsformers\nassert tsformers.__version__")
    assert heavy == []


def test_the_public_names_still_come_from_tsformers():
    code = """
import sys
import tsformers
names = set(dir(tsformers))
assert set(tsformers.__all__) <= names, set(tsformers.__all__) - names
assert tsformers.metrics.mase is not None          # tsformers.metrics after import tsformers
assert "torch" not in sys.modules
from tsformers import GateformerForecaster, ModelFileError, RollingOriginSplit
from tsformers.estimators import GateformerForecaster as same
assert GateformerForecaster is same and issubclass(ModelFileError, ValueError)
assert "torch" in sys.modules and RollingOriginSplit.__module__ == "tsformers.model_selection"
try:
    tsformers.NoSuchForecaster
except AttributeError as err:
    assert "NoSuchForecaster" in str(err)
else:
    raise AssertionError("an unknown name must raise AttributeError")
"""
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    import tsformers

    assert tsformers.__all__ == ["AtlasForecaster", "BaseForecaster", "ETSForecaster", "GBMForecaster",
                                 "GTrXLForecaster", "GateformerForecaster", "LMUFormerForecaster", "LinearForecaster",
                                 "ModelComparison", "ModelFileError", "NaiveForecaster", "PVClientForecaster",
                                 "RollingOriginSplit", "SeasonalNaiveForecaster", "__version__"]
    for name in tsformers.__all__:
        assert getattr(tsformers, name) is not None, name          # every public name resolves


# -- the ONNX engine ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A PV-Client (its forecast is clipped at 0: the estimator's physical constraint) saved and exported,
    and a long history of three series with a static attribute."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from tsformers import PVClientForecaster
    from tsformers.datasets import make_demo

    df = make_demo(n_series=3, n_steps=120, layout="long", seed=3)
    df = df.assign(y=df["y"] - df["y"].mean(), region=df["unique_id"].map(
        {"series_0": "north", "series_1": "south", "series_2": "north"}))
    model = PVClientForecaster(horizon=4, lookback=16, n_heads=2, d_ff=16, e_layers=1, batch_size=64, max_epochs=1,
                               random_state=0, static=["region"]).fit(df)
    folder = tmp_path_factory.mktemp("cold")
    path = model.save(folder / "model")
    model.export_onnx(path)
    df.to_csv(folder / "history.csv", index=False)
    return model, path, folder


def _forecast_code(model: Path, data: Path, output: Path, engine: str) -> str:
    return (f"from tsformers.cli import main\n"
            f"status = main(['forecast', '--model', {str(model)!r}, '--input', {str(data)!r}, '--output', "
            f"{str(output)!r}, '--engine', {engine!r}])\n"
            f"print('STATUS=' + str(status))\n")


def test_onnx_forecast_imports_no_heavy_package_and_matches_torch(exported):
    model, path, folder = exported
    heavy, done = heavy_modules_after(_forecast_code(path, folder / "history.csv", folder / "onnx.csv", "onnx"))
    assert "STATUS=0" in done.stdout, done.stderr
    assert heavy == []
    torch_done = run_python(_forecast_code(path, folder / "history.csv", folder / "torch.csv", "torch"))
    assert "STATUS=0" in torch_done.stdout, torch_done.stderr
    onnx_out, torch_out = pd.read_csv(folder / "onnx.csv"), pd.read_csv(folder / "torch.csv")
    pd.testing.assert_frame_equal(onnx_out.drop(columns="y"), torch_out.drop(columns="y"))
    np.testing.assert_allclose(onnx_out["y"], torch_out["y"], atol=1e-4, rtol=1e-4)
    assert (torch_out["y"] == 0).any() and (onnx_out["y"] >= 0).all()  # the clip at 0 counted, in both engines
    expected = model.predict(pd.read_csv(folder / "history.csv"))
    np.testing.assert_allclose(onnx_out["y"], expected["y"], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["model.onnx", "weights.pt"])
def test_onnx_forecast_still_checks_the_manifest(exported, tmp_path, name):
    import shutil

    _, path, folder = exported
    copy = Path(shutil.copytree(path, tmp_path / "model"))
    data = bytearray((copy / name).read_bytes())
    data[len(data) // 2] ^= 0xFF                                             # one flipped byte
    (copy / name).write_bytes(bytes(data))
    heavy, done = heavy_modules_after(_forecast_code(copy, folder / "history.csv", tmp_path / "f.csv", "onnx"))
    assert "STATUS=2" in done.stdout
    assert f"{name} does not match the checksum" in done.stderr
    assert not (tmp_path / "f.csv").exists() and heavy == []


def test_the_estimator_free_forecasters_predict_through_the_shared_forecast_path():
    """Every estimator the engines of ``tsformers forecast`` stand in for (the ONNX engine; the torch engine's
    reader without the estimator class) forecasts as ForecastPath does, runs its network as the readers do,
    with the settings and defaults they read and no physical constraint they would miss."""
    from tsformers.estimators.base import BaseForecaster
    from tsformers.estimators.forecasting import CONSTRAINTS, FORECAST_SETTINGS, ForecastPath
    from tsformers.estimators.network_path import NetworkForecastPath, StreamingNetworkPath
    from tsformers.estimators.onnx import ONNX_FORECASTERS
    from tsformers.estimators.registry import estimator_class
    from tsformers.estimators.networks import NETWORKS

    assert set(ONNX_FORECASTERS) <= set(NETWORKS)
    shared = ("predict", "prepare", "_read", "_prepare", "_forecast_after", "_to_original",
              "_future_values", "_check_length", "_missing_policy", "_intervals", "_extra_columns")
    for name in NETWORKS:
        cls = estimator_class(name)
        for method in shared:
            owner = next(c for c in cls.__mro__ if method in vars(c))
            assert owner in (ForecastPath, BaseForecaster) or owner.__name__ == "EvaluationMixin", (name, method)
        for method in ("_forecast", "_network_output", "_network", "_core_network"):
            owner = next(c for c in cls.__mro__ if method in vars(c))
            assert owner in (NetworkForecastPath, StreamingNetworkPath), (name, method)
        overrides_postprocess = next(c for c in cls.__mro__ if "_postprocess" in vars(c)) is not ForecastPath
        assert overrides_postprocess == (name in CONSTRAINTS), name
        parameters = inspect.signature(cls).parameters
        for setting, default in FORECAST_SETTINGS.items():
            if setting in parameters:
                assert parameters[setting].default == default, (name, setting)


# -- the command line ---------------------------------------------------------------------------


def test_train_verbose_reaches_the_estimator_and_shows_progress(tmp_path, capsys):
    from tsformers.cli import main
    from tsformers.datasets import make_demo

    make_demo(n_series=2, n_steps=80, layout="long", seed=1).to_csv(tmp_path / "train.csv", index=False)
    args = ["train", "--data", str(tmp_path / "train.csv"), "--estimator", "GateformerForecaster"]
    for setting in ("horizon=4", "lookback=8", "max_epochs=1", "d_model=8", "d_ff=8", "n_heads=2"):
        args += ["--param", setting]
    assert main(args + ["--model-dir", str(tmp_path / "quiet")]) == 0
    quiet = capsys.readouterr()
    assert main(args + ["--model-dir", str(tmp_path / "loud"), "--verbose"]) == 0
    loud = capsys.readouterr()
    params = {name: json.loads((tmp_path / name / "config.json").read_text())["params"] for name in ("quiet", "loud")}
    assert params["quiet"]["verbose"] is False and params["loud"]["verbose"] is True
    assert "Epoch 0" in loud.err and "Epoch 0" not in quiet.err  # Lightning's progress, on stderr
    assert json.loads(loud.out)["estimator"] == "GateformerForecaster"  # stdout carries the summary only


def test_a_registered_model_without_a_tracking_uri_is_refused(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    pd.DataFrame({"ds": [1, 2], "y": [1.0, 2.0]}).to_csv(tmp_path / "new.csv", index=False)
    code = ("import os\nfrom tsformers.cli import main\n"
            "raise SystemExit(main(['forecast', '--model', 'models:/demo/1', '--input', 'new.csv', "
            "'--output', 'f.csv']))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=600,
                          env={**env, "PYTHONPATH": str(ROOT)})
    if "needs MLflow" in done.stderr:
        pytest.skip("MLflow is not installed")
    assert done.returncode == 2, done.stderr
    assert "--tracking-uri" in done.stderr and "MLFLOW_TRACKING_URI" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.csv"]  # no mlflow.db, no output


def test_the_benchmark_takes_turns_and_records_ratios_to_import_torch(monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("cold_start_benchmark", ROOT / "benchmarks" / "cold_start.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    cases = bench.commands("python", Path("m"), Path("h.csv"), Path("."))
    assert list(cases) == ["python", "import torch", "import tsformers", "forecast torch", "forecast onnx"]
    assert cases["forecast onnx"][-2:] == ["--engine", "onnx"] and "--engine" not in cases["forecast torch"]
    order = []
    monkeypatch.setattr(bench, "wall_time", lambda command, env: order.append(command) or 1.0)
    times = bench.measure({"a": ["a"], "b": ["b"]}, repeats=2, env={})
    assert order == [["a"], ["b"]] * 3 and times == {"a": [1.0, 1.0], "b": [1.0, 1.0]}  # one untimed round first
    out = bench.rows({"import torch": [2.0, 3.0, 4.0], "forecast onnx": [1.0, 1.5, 0.5]},
                     {"import torch": [], "forecast onnx": []}, timestamp="t")
    onnx = next(r for r in out if r["case"] == "forecast onnx")
    assert (onnx["min_s"], onnx["median_s"], onnx["ratio_min"], onnx["ratio_median"]) == (0.5, 1.0, 0.25, 0.333)
    assert onnx["over_torch_min_s"] == -1.5 and onnx["command"] == "tsformers forecast --engine onnx"


def test_the_benchmark_reads_bytecode_as_an_installed_package_does(tmp_path):
    """Where PYTHONDONTWRITEBYTECODE is set, every timed run would compile tsformers from source."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("cold_start_benchmark", ROOT / "benchmarks" / "cold_start.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    env = bench.environment({"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": "/elsewhere", "HOME": "/h"},
                            tmp_path / "bytecode")
    assert "PYTHONDONTWRITEBYTECODE" not in env and env["HOME"] == "/h" and env["OMP_NUM_THREADS"] == "1"
    assert env["PYTHONPATH"].split(os.pathsep) == [str(ROOT), "/elsewhere"]
    command = [sys.executable, "-c", "import tsformers.metrics as m; print(m.__cached__)"]
    bench.wall_time(command, env)  # the untimed round writes the bytecode, the timed ones read it
    cached = Path(subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout.strip())
    assert cached.is_file() and cached.is_relative_to(tmp_path / "bytecode")
