"""Durable models: old formats load, damaged directories fail clearly, nothing is unpickled."""
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tsformers import BaseForecaster, GateformerForecaster, ModelFileError

FIXTURES = Path(__file__).parent / "fixtures" / "models"


@pytest.fixture
def model_dir(tmp_path):
    """A copy of the committed format-1 model, free to damage."""
    return Path(shutil.copytree(FIXTURES / "format1_gateformer", tmp_path / "model"))


def test_committed_format_1_model_loads_and_forecasts_as_when_saved():
    model = BaseForecaster.load(FIXTURES / "format1_gateformer")
    expected = pd.read_csv(FIXTURES / "format1_gateformer.expected.csv", parse_dates=["date"])
    got = model.predict()
    assert isinstance(model, GateformerForecaster)
    assert (got["date"].to_numpy() == expected["date"].to_numpy()).all()
    np.testing.assert_allclose(got.drop(columns="date").to_numpy(), expected.drop(columns="date").to_numpy(),
                               rtol=1e-6)


def test_config_records_format_and_package_versions(model_dir):
    config = json.loads((model_dir / "config.json").read_text())
    assert config["format_version"] == 1 and config["tsformers_version"]
    assert len(config["weights_sha256"]) == 64


def test_a_flipped_byte_in_the_weights_is_caught(model_dir):
    weights = model_dir / "weights.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="checksum"):
        BaseForecaster.load(model_dir)


def test_truncated_weights_are_caught(model_dir):
    weights = model_dir / "weights.pt"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelFileError, match="truncated"):
        BaseForecaster.load(model_dir)


def test_a_deleted_weights_file_is_named(model_dir):
    (model_dir / "weights.pt").unlink()
    with pytest.raises(ModelFileError, match="weights.pt is missing"):
        BaseForecaster.load(model_dir)


def test_a_deleted_config_says_this_is_no_model(model_dir):
    (model_dir / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="not a saved tsformers model"):
        BaseForecaster.load(model_dir)


@pytest.mark.parametrize("damage, message", [
    (lambda c: "{not json", "not valid JSON"),
    (lambda c: json.dumps({**c, "format_version": 99}), "version 99.*install tsformers"),
    (lambda c: json.dumps({k: v for k, v in c.items() if k != "schema"}), "lacks \\['schema'\\]"),
    (lambda c: json.dumps({**c, "estimator": "EvilForecaster"}), "does not know"),
    (lambda c: json.dumps([1, 2]), "not a tsformers model configuration"),
])
def test_damaged_configs_give_clear_errors(model_dir, damage, message):
    file = model_dir / "config.json"
    file.write_text(damage(json.loads(file.read_text())))
    with pytest.raises(ModelFileError, match=message):
        BaseForecaster.load(model_dir)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_loading_a_pickle_in_place_of_the_weights_runs_no_code(model_dir, tmp_path):
    import hashlib
    import pickle

    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    weights = model_dir / "weights.pt"
    weights.write_bytes(pickle.dumps({"network": Exploit()}))
    config = json.loads((model_dir / "config.json").read_text())
    config["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()  # even with a matching checksum
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFileError, match="does not hold tsformers weights"):
        BaseForecaster.load(model_dir)
    assert not marker.exists(), "weights_only=True must refuse arbitrary objects"


# -- what save() may overwrite ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_model():
    from tsformers.datasets import make_demo

    df = make_demo(n_series=3, n_steps=60, layout="long", seed=0)
    return GateformerForecaster(horizon=4, lookback=16, max_epochs=1, d_model=16, d_ff=32, n_heads=2).fit(df)


def _tree(path: Path) -> dict:
    return {str(p.relative_to(path)): (p.read_bytes() if p.is_file() else None) for p in sorted(path.rglob("*"))}


def test_save_never_deletes_a_project_that_holds_a_config_json(small_model, tmp_path):
    project = tmp_path / "proj"
    (project / "src").mkdir(parents=True)
    (project / "config.json").write_text('{"name": "app"}')
    (project / "THESIS.tex").write_text("x")
    before = _tree(project)
    with pytest.raises(FileExistsError, match="proj.*not a tsformers model directory"):
        small_model.save(project)
    assert _tree(project) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["proj"], "no staging directory left behind"


def test_save_refuses_a_model_directory_holding_files_it_did_not_write(small_model, tmp_path):
    model = small_model.save(tmp_path / "model")
    (model / "notes.md").write_text("what this model is for")
    before = _tree(model)
    with pytest.raises(FileExistsError, match="notes.md"):
        small_model.save(model)
    assert _tree(model) == before
    (model / "notes.md").unlink()
    (model / "sub").mkdir()
    with pytest.raises(FileExistsError, match="sub"):
        small_model.save(model)


def test_save_replaces_its_own_model_directory_with_its_onnx_graph(small_model, tmp_path):
    model = small_model.save(tmp_path / "model")
    (model / "model.onnx").write_bytes(b"an old graph")  # a file tsformers writes into model directories
    small_model.save(model)
    assert sorted(p.name for p in model.iterdir()) == ["config.json", "manifest.json", "weights.pt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_save_into_an_empty_directory_and_never_over_a_file(small_model, tmp_path):
    (tmp_path / "empty").mkdir()
    small_model.save(tmp_path / "empty")
    pd.testing.assert_frame_equal(BaseForecaster.load(tmp_path / "empty").predict(), small_model.predict())
    (tmp_path / "file").write_text("data")
    with pytest.raises(FileExistsError, match="not a directory"):
        small_model.save(tmp_path / "file")
    assert (tmp_path / "file").read_text() == "data"


def test_train_model_dir_keeps_a_project_with_a_config_json(tmp_path, capsys):
    from tsformers.cli import main
    from tsformers.datasets import make_demo

    make_demo(n_series=2, n_steps=80).to_csv(tmp_path / "data.csv", index=False)
    project = tmp_path / "proj"
    project.mkdir()
    (project / "config.json").write_text('{"name": "app"}')
    (project / "THESIS.tex").write_text("x")
    before = _tree(project)
    code = main(["train", "--data", str(tmp_path / "data.csv"), "--estimator", "GateformerForecaster",
                 "--param", "horizon=4", "--param", "lookback=16", "--param", "max_epochs=1",
                 "--param", "d_model=8", "--param", "d_ff=8", "--param", "n_heads=2",
                 "--model-dir", str(project)])
    assert code == 2
    assert "not a tsformers model directory" in capsys.readouterr().err
    assert _tree(project) == before
