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


# -- every file checksummed (format 2), damaged configurations, links, permissions --------------------

def _manifest(directory: Path) -> str:
    """The manifest tsformers writes for the files of ``directory`` (to stage a crafted model directory)."""
    import hashlib

    files = {p.name: {"sha256": hashlib.sha256(p.read_bytes()).hexdigest(), "size": p.stat().st_size}
             for p in sorted(directory.iterdir()) if p.name != "manifest.json"}
    return json.dumps({"files": files, "format": "tsformers-model-manifest"}, indent=2, sort_keys=True) + "\n"


def test_a_saved_model_lists_every_file_in_its_manifest(small_model, tmp_path):
    model = small_model.save(tmp_path / "model")
    config = json.loads((model / "config.json").read_text())
    assert config["format_version"] == 3 and config["conformal_scale"] == "window"
    assert (model / "manifest.json").read_text() == _manifest(model)
    assert sorted(json.loads((model / "manifest.json").read_text())["files"]) == ["config.json", "weights.pt"]


def test_every_sampled_bit_flip_in_any_file_is_a_model_file_error(small_model, tmp_path):
    model = small_model.save(tmp_path / "model")
    files = sorted(p for p in model.iterdir())
    rng = np.random.default_rng(0)
    for file in files:
        original = file.read_bytes()
        # every file, 100 bits each, spread over the whole file
        for position in rng.choice(len(original) * 8, size=min(100, len(original) * 8), replace=False):
            damaged = bytearray(original)
            damaged[position // 8] ^= 1 << (position % 8)
            file.write_bytes(bytes(damaged))
            with pytest.raises(ModelFileError, match=file.name):
                BaseForecaster.load(model)
        file.write_bytes(original)
    pd.testing.assert_frame_equal(BaseForecaster.load(model).predict(), small_model.predict())


def test_a_file_copied_into_the_model_or_removed_from_it_is_named(small_model, tmp_path):
    model = small_model.save(tmp_path / "model")
    (model / "model.onnx").write_bytes(b"a graph from elsewhere")
    with pytest.raises(ModelFileError, match="model.onnx is not in manifest.json"):
        BaseForecaster.load(model)
    (model / "model.onnx").unlink()
    (model / "manifest.json").unlink()
    with pytest.raises(ModelFileError, match="manifest.json is missing"):
        BaseForecaster.load(model)


@pytest.mark.parametrize("version", [0, -3, True, 2.0, "2", None])
def test_format_version_must_be_a_known_positive_integer(model_dir, version):
    file = model_dir / "config.json"
    file.write_text(json.dumps({**json.loads(file.read_text()), "format_version": version}))
    with pytest.raises(ModelFileError, match="format_version is .*not a model format version"):
        BaseForecaster.load(model_dir)


@pytest.mark.parametrize("damage", [
    {"n_features_in": True}, {"n_features_in": -1}, {"params": {"horizon": "4"}}, {"params": {"horizon": -4}},
    {"params": {"no_such_parameter": 1}}, {"last_time": {"ns": "soon"}}, {"last_time": {}}, {"ends": [7]},
    {"schema": {"targets": 3}}, {"scaler": {"mean": [1.0]}}, {"static": {"codes": None}}, {"training_log": {}},
    {"compression": [{}], "network_edits": [{"op": "replace", "path": "no.such.layer", "type": "Linear",
                                             "kwargs": {"in_features": 1, "out_features": 1}}]},
    {"compression": [{}], "network_edits": [{"op": "attr", "path": "", "name": "forward", "value": 3}]},
    {"compression": [{}], "network_edits": [{"op": "replace", "path": "", "type": "os.system", "kwargs": {}}]},
    {"compression": [{}], "network_edits": "all"},
], ids=lambda d: json.dumps(d)[:60])
def test_a_damaged_configuration_is_a_model_file_error_never_a_raw_error(model_dir, damage):
    file = model_dir / "config.json"  # format 1: the configuration has no checksum, so its values are checked
    config = json.loads(file.read_text())
    file.write_text(json.dumps({**config, **{k: ({**config[k], **v} if k == "params" else v) for k, v in damage.items()}}))
    with pytest.raises(ModelFileError):
        BaseForecaster.load(model_dir)


def _first_linear(model_dir: Path) -> str:
    import torch

    network = BaseForecaster.load(model_dir).network_
    return next(name for name, m in network.named_modules() if isinstance(m, torch.nn.Linear))


@pytest.mark.parametrize("where", ["network_edits", "params"])
def test_a_configuration_asking_for_a_huge_network_is_refused_before_any_allocation(small_model, tmp_path, where):
    model = small_model.save(tmp_path / "model")
    file = model / "config.json"
    config = json.loads(file.read_text())
    if where == "network_edits":  # a 160 GB Linear, as a crafted or damaged edit may ask
        config |= {"compression": [{"method": "test"}], "network_edits": [{
            "op": "replace", "path": _first_linear(model), "type": "Linear",
            "kwargs": {"in_features": 200_000, "out_features": 200_000, "bias": True}}]}
    else:
        config["params"]["d_model"] = 1 << 20
    file.write_text(json.dumps(config))
    (model / "manifest.json").write_text(_manifest(model))  # even with a matching manifest
    with pytest.raises(ModelFileError, match="far more than its weights hold"):
        BaseForecaster.load(model)


@pytest.mark.parametrize("name", ["weights.pt", "config.json", "manifest.json"])
def test_a_symbolic_link_in_a_model_directory_is_refused(small_model, tmp_path, name):
    model = small_model.save(tmp_path / "model")
    outside = tmp_path / "outside"
    (model / name).rename(outside)
    (model / name).symlink_to(outside)
    with pytest.raises(ModelFileError, match=f"{name} is a symbolic link"):
        BaseForecaster.load(model)


@pytest.mark.parametrize("umask, directory_mode, file_mode", [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)])
def test_a_model_directory_gets_the_permissions_of_the_umask(small_model, tmp_path, umask, directory_mode,
                                                              file_mode):
    import os
    import stat

    previous = os.umask(umask)
    try:
        model = small_model.save(tmp_path / "model")
        small_model.save(model)  # replacing a model directory: the same
    finally:
        os.umask(previous)
    assert stat.S_IMODE(model.stat().st_mode) == directory_mode
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in model.iterdir()} == {
        name: file_mode for name in ("config.json", "manifest.json", "weights.pt")}


def test_a_streaming_state_is_saved_when_the_estimator_has_one(small_model, tmp_path):
    import torch

    streaming = GateformerForecaster(**small_model.get_params())
    streaming.__dict__.update({k: v for k, v in vars(small_model).items() if k.endswith("_")})
    streaming.state_ = {"memory": torch.arange(6.0).view(2, 3)}
    loaded = BaseForecaster.load(streaming.save(tmp_path / "model"))
    torch.testing.assert_close(loaded.state_, streaming.state_)
    assert getattr(BaseForecaster.load(small_model.save(tmp_path / "plain")), "state_", None) is None


def test_flipped_bits_in_a_format_1_configuration_load_or_are_model_file_errors(model_dir):
    file = model_dir / "config.json"  # no checksum in format 1: a flip may go unseen, but never crash
    original = file.read_bytes()
    rng = np.random.default_rng(1)
    for position in rng.choice(len(original) * 8, size=120, replace=False):
        damaged = bytearray(original)
        damaged[position // 8] ^= 1 << (position % 8)
        file.write_bytes(bytes(damaged))
        try:
            BaseForecaster.load(model_dir)
        except ModelFileError:
            pass
    file.write_bytes(original)


def test_the_registry_finds_every_exported_forecaster_by_name():
    import tsformers
    from tsformers.estimators.registry import ESTIMATOR_NAMES, estimator_class

    exported = sorted(n for n in tsformers.__all__ if n.endswith("Forecaster") and n != "BaseForecaster")
    assert list(ESTIMATOR_NAMES) == exported
    for name in exported:
        assert estimator_class(name) is getattr(tsformers, name)
        assert estimator_class(name.removesuffix("Forecaster").lower()) is getattr(tsformers, name)
    with pytest.raises(ValueError, match="unknown estimator 'Prophet'; choose one of \\['AtlasForecaster'"):
        estimator_class("Prophet")


def test_a_model_of_another_estimator_is_refused_by_name(small_model, tmp_path):
    from tsformers import LMUFormerForecaster

    with pytest.raises(TypeError, match="holds a GateformerForecaster, not a LMUFormerForecaster"):
        LMUFormerForecaster.load(small_model.save(tmp_path / "model"))


@pytest.mark.parametrize("name, normalize", [("lmuformer", "none"), ("gtrxl", "last_value"), ("atlas", "none")])
def test_streaming_models_saved_before_normalize_load_in_the_form_they_were_trained(name, normalize):
    """Saved by tsformers before the streaming estimators took ``normalize`` (GTrXL with input_changes=True)."""
    model = BaseForecaster.load(FIXTURES / f"before_normalize_{name}")
    expected = pd.read_csv(FIXTURES / f"before_normalize_{name}.expected.csv", parse_dates=["date"])
    assert model.normalize == normalize
    got = model.predict()
    assert (got["date"].to_numpy() == expected["date"].to_numpy()).all()
    np.testing.assert_allclose(got.drop(columns="date").to_numpy(), expected.drop(columns="date").to_numpy(),
                               rtol=1e-6)


def test_reading_a_model_leaves_the_callers_random_numbers_as_they_were(small_model, tmp_path):
    # building the network before its weights are loaded draws initial values the weights then replace
    import torch

    from tsformers.estimators.saved import load_torch

    from tsformers.datasets import make_demo

    history = make_demo(n_series=3, n_steps=60, layout="long", seed=1)
    small_model.save(tmp_path / "model")
    torch.manual_seed(7)
    expected = torch.rand(5)
    for read in (BaseForecaster.load, load_torch):
        torch.manual_seed(7)
        model = read(tmp_path / "model")
        np.testing.assert_array_equal(torch.rand(5).numpy(), expected.numpy())
        pd.testing.assert_frame_equal(model.predict(history), small_model.predict(history))
