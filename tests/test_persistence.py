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
