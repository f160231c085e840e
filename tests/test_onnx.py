"""ONNX export: ONNX Runtime forecasts what torch does (1e-4), for every estimator whose graph allows it."""
import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import tsformers.runtime.onnx as tsonnx  # noqa: E402
from tsformers import (AtlasForecaster, BaseForecaster, GateformerForecaster, GTrXLForecaster,  # noqa: E402
                       LMUFormerForecaster, ModelFileError, PVClientForecaster)
from tsformers.cli import main  # noqa: E402
from tsformers.datasets import make_demo  # noqa: E402
from tsformers.runtime.onnx import OnnxExportError, OnnxNetwork  # noqa: E402

TINY = dict(horizon=4, lookback=16, batch_size=64, max_epochs=1, random_state=0)
SETTINGS = {
    GateformerForecaster: dict(d_model=8, d_ff=16, n_heads=2),
    PVClientForecaster: dict(n_heads=2, d_ff=16, e_layers=1),
    LMUFormerForecaster: dict(d_model=8, memory_size=8, embed_layers=1),
    GTrXLForecaster: dict(d_model=8, n_heads=2, d_ff=16, n_layers=1, segment_len=8, mem_len=8),
}


def panel():
    """Three series in long layout, with a static attribute."""
    df = make_demo(n_series=3, n_steps=120, layout="long", seed=3)
    return df.assign(capacity=df["unique_id"].map({"series_0": 1.0, "series_1": 2.0, "series_2": 4.0}))


@pytest.fixture(scope="module", params=list(SETTINGS), ids=lambda c: c.__name__)
def exported(request, tmp_path_factory, monkeypatch_module):
    cls = request.param
    monkeypatch_module.setattr(tsonnx, "STREAM_BLOCK", 3)  # a short stream graph: a quick export, odd remainders
    static = ["capacity"] if cls is LMUFormerForecaster else None  # LMUFormer: a static residual in the state
    f = cls(**TINY, **SETTINGS[cls], static=static).fit(panel())
    if static:
        import torch

        torch.nn.init.normal_(f.network_.correction.weight)  # make the static path count
    path = f.save(tmp_path_factory.mktemp("onnx") / "model")
    f.export_onnx(path)
    return f, path


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def _values(frame):
    return frame.select_dtypes("number").to_numpy()


def test_onnx_runtime_forecasts_as_torch(exported):
    f, path = exported
    onnx = BaseForecaster.load(path, engine="onnx")
    assert isinstance(onnx.network_, OnnxNetwork) and type(onnx) is type(f)
    with pytest.raises(ValueError, match="engine='torch'"):
        onnx.save(path.parent / "copy")
    history = panel()
    for frame in (history, history[history.unique_id == "series_1"], history.groupby("unique_id").tail(40)):
        expected, got = f.predict(frame), onnx.predict(frame)                 # 3 series, 1 series (dynamic batch)
        pd.testing.assert_frame_equal(got.drop(columns="y"), expected.drop(columns="y"))
        np.testing.assert_allclose(_values(got), _values(expected), atol=1e-4, rtol=1e-4)


def test_ragged_histories_and_streaming_updates(exported):
    f, path = exported
    onnx = BaseForecaster.load(path, engine="onnx")
    history = panel()
    ragged = history[~((history.unique_id == "series_2") & (history.index % 120 < 23))]  # one series starts later
    np.testing.assert_allclose(_values(onnx.predict(ragged)), _values(f.predict(ragged)), atol=1e-4, rtol=1e-4)
    if isinstance(f, GTrXLForecaster):  # its graph reads the last steps, which the saved (torch) state does not hold
        with pytest.raises(ValueError, match="forecasts from a history"):
            onnx.predict()
    else:  # LMUFormer's state graph, and the windowed models' stored tail, forecast as in torch
        np.testing.assert_allclose(_values(onnx.predict()), _values(f.predict()), atol=1e-4, rtol=1e-4)


def test_the_engine_without_torch_advances_a_ragged_panel_packed_as_the_per_span_reference(exported, monkeypatch):
    import tsformers.estimators.onnx as engine
    from tsformers.estimators.forecasting import _advance_spans

    f, path = exported
    history = panel()
    # twelve series, each its own span of the demo rows: 12 calls per span, far fewer packed
    ragged = pd.concat([part.iloc[3 * k + j: len(part) - k - 5 * j].assign(unique_id=f"{key}_{k}")
                        for k in range(4) for j, (key, part) in enumerate(history.groupby("unique_id"))],
                       ignore_index=True)
    onnx = engine.load_onnx(path)
    if onnx.graph.kind == "window":  # each series' last window, nothing to advance: the forecast is torch's
        assert not hasattr(f.network_, "advance")
        np.testing.assert_allclose(_values(onnx.predict(ragged)), _values(f.predict(ragged)), atol=1e-4, rtol=1e-4)
        return
    calls, advance = [], onnx.graph.advance
    onnx.graph.advance = lambda state, x: (calls.append(len(x)), advance(state, x))[1]
    packed = onnx.predict(ragged)
    n_packed = len(calls)
    monkeypatch.setattr(engine, "advance_panel", _advance_spans)
    reference = onnx.predict(ragged)
    assert len(calls) - n_packed == 12 and n_packed <= 6
    pd.testing.assert_frame_equal(packed.drop(columns="y"), reference.drop(columns="y"))
    np.testing.assert_allclose(_values(packed), _values(reference), atol=1e-5)
    np.testing.assert_allclose(_values(packed), _values(f.predict(ragged)), atol=1e-4, rtol=1e-4)


def test_the_graph_has_a_dynamic_batch_axis_and_says_how_to_drive_it(exported, tmp_path):
    f, path = exported
    meta = tsonnx.read_metadata(path / tsonnx.ONNX_FILE)
    assert meta["estimator"] == type(f).__name__
    assert meta["weights_sha256"] == json.loads((path / "config.json").read_text())["weights_sha256"]
    assert meta["kind"] == {GTrXLForecaster: "receptive", LMUFormerForecaster: "stream"}.get(type(f), "window")
    if isinstance(f, PVClientForecaster):  # a file of its own: no directory, no checksum
        assert "weights_sha256" not in tsonnx.read_metadata(f.export_onnx(tmp_path / "standalone.onnx"))
    network = OnnxNetwork(path / tsonnx.ONNX_FILE)
    if meta["kind"] == "window":
        for batch in (1, 7):
            x = np.random.default_rng(0).normal(size=(batch, meta["lookback"], meta["n_inputs"])).astype(np.float32)
            import torch

            with torch.no_grad():
                expected = f.network_(torch.from_numpy(x)).numpy()
            np.testing.assert_allclose(network(torch.from_numpy(x)).numpy(), expected, atol=1e-4, rtol=1e-4)


def test_forecast_command_with_the_onnx_engine_writes_the_torch_csv(exported, tmp_path):
    f, path = exported
    panel().to_csv(tmp_path / "new.csv", index=False)
    args = ["forecast", "--model", str(path), "--input", str(tmp_path / "new.csv"), "--chunk-size", "2"]
    assert main(args + ["--output", str(tmp_path / "torch.csv")]) == 0
    assert main(args + ["--output", str(tmp_path / "onnx.csv"), "--engine", "onnx"]) == 0
    a, b = pd.read_csv(tmp_path / "torch.csv"), pd.read_csv(tmp_path / "onnx.csv")
    pd.testing.assert_frame_equal(a.drop(columns="y"), b.drop(columns="y"))
    np.testing.assert_allclose(b["y"], a["y"], atol=1e-4, rtol=1e-4)


def test_atlas_cannot_be_exported_and_says_why(tmp_path):
    f = AtlasForecaster(**{**TINY, **AtlasForecaster.get_test_params(), "max_epochs": 0}).fit(panel())
    with pytest.raises(OnnxExportError, match="test-time memories.*control flow"):
        f.export_onnx(tmp_path / "atlas.onnx")
    assert not (tmp_path / "atlas.onnx").exists()


def test_a_graph_from_other_weights_or_none_is_refused(tmp_path, capsys):
    f = PVClientForecaster(**{**TINY, "max_epochs": 0}, **SETTINGS[PVClientForecaster]).fit(panel())
    path = f.save(tmp_path / "model")
    panel().to_csv(tmp_path / "new.csv", index=False)
    args = ["forecast", "--model", str(path), "--input", str(tmp_path / "new.csv"), "--output",
            str(tmp_path / "f.csv"), "--engine", "onnx"]
    assert main(args) == 2 and "export it first" in capsys.readouterr().err
    other = PVClientForecaster(**{**TINY, "max_epochs": 0, "random_state": 1}, **SETTINGS[PVClientForecaster])
    other.fit(panel())
    with pytest.raises(ValueError, match="another model"):
        other.export_onnx(path)
    other.export_onnx(tmp_path / "other.onnx")
    (tmp_path / "other.onnx").replace(path / tsonnx.ONNX_FILE)              # a stray graph copied in
    assert main(args) == 2 and "model.onnx is not in manifest.json" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="save the model there first"):
        f.export_onnx(tmp_path / "nowhere")


def test_the_manifest_covers_the_graph_and_any_change_to_it_is_refused(exported, tmp_path):
    f, path = exported
    model = Path(shutil.copytree(path, tmp_path / "model"))
    assert sorted(json.loads((model / "manifest.json").read_text())["files"]) == ["config.json", "model.onnx",
                                                                                  "weights.pt"]
    graph = model / tsonnx.ONNX_FILE
    original = graph.read_bytes()
    for position in np.random.default_rng(0).choice(len(original) * 8, size=20, replace=False):
        damaged = bytearray(original)
        damaged[position // 8] ^= 1 << (position % 8)
        graph.write_bytes(bytes(damaged))
        for engine in ("onnx", "torch"):
            with pytest.raises(ModelFileError, match="model.onnx does not match the checksum"):
                BaseForecaster.load(model, engine=engine)


def test_a_graph_replaced_with_its_stamp_kept_is_refused(tmp_path):
    f = PVClientForecaster(**{**TINY, "max_epochs": 0}, **SETTINGS[PVClientForecaster]).fit(panel())
    path = f.export_onnx(f.save(tmp_path / "model")).parent
    other = PVClientForecaster(**{**TINY, "max_epochs": 0, "random_state": 1}, **SETTINGS[PVClientForecaster])
    other.fit(panel())
    stamp = json.loads((path / "config.json").read_text())["weights_sha256"]
    tsonnx.export_network(other.network_, path / tsonnx.ONNX_FILE, lookback=other.lookback,
                          n_inputs=other.n_features_in_, metadata={"weights_sha256": stamp})  # a forged stamp
    with pytest.raises(ModelFileError, match="model.onnx does not match the checksum"):
        BaseForecaster.load(path, engine="onnx")


def test_export_into_a_model_directory_respects_the_umask_and_keeps_format_1(tmp_path):
    fixture = Path(__file__).parent / "fixtures" / "models" / "format1_gateformer"
    model = Path(shutil.copytree(fixture, tmp_path / "format1"))
    previous = os.umask(0o022)
    try:
        BaseForecaster.load(model).export_onnx(model)
    finally:
        os.umask(previous)
    assert sorted(p.name for p in model.iterdir()) == ["config.json", "model.onnx", "weights.pt"]  # no manifest
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in model.iterdir()}["model.onnx"] == 0o644
    assert stat.S_IMODE(model.stat().st_mode) == 0o755
    torch_engine, onnx_engine = BaseForecaster.load(model), BaseForecaster.load(model, engine="onnx")
    np.testing.assert_allclose(_values(onnx_engine.predict()), _values(torch_engine.predict()), atol=1e-4, rtol=1e-4)


def test_export_prints_nothing_in_a_fresh_interpreter(tmp_path):
    """torch.onnx logs a line per torchvision operator it skips on its first export in a process; tsformers
    exports quietly (a fresh interpreter, since the exporter logs only once)."""
    import subprocess
    import sys

    code = ("from tsformers import GateformerForecaster\n"
            "from tsformers.datasets import make_demo\n"
            "f = GateformerForecaster(horizon=6, lookback=24, d_model=16, d_ff=16, n_heads=2, patch_len=4, stride=4,"
            " max_epochs=0).fit(make_demo(n_steps=120))\n"
            f"f.save({str(tmp_path / 'm')!r})\n"
            f"f.export_onnx({str(tmp_path / 'm')!r})\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "m" / "model.onnx").exists()
    assert "torchvision" not in done.stderr and "Skipping" not in done.stderr, done.stderr
