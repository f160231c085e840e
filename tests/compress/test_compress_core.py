"""tsformers.compress core: FLOP counting (attention included), and every compressed estimator
saves, loads (and logs to MLflow) with identical forecasts."""
import copy
import json

import numpy as np
import pytest
import torch

from tsformers import GateformerForecaster, LMUFormerForecaster, PVClientForecaster, GTrXLForecaster, compress
from tsformers.backbone.feedforward import FeedForward
from tsformers.backbone.mixers.full import FullAttention

# the fixtures df, fitted (a small Gateformer) and fitted_as(cls) are in conftest.py


def _values(frame):
    return frame.select_dtypes("number").to_numpy()


def test_flops_count_attention_on_cpu():
    torch.manual_seed(0)
    b, n, d, h = 2, 10, 16, 4
    att = FullAttention(d, n_heads=h).eval()
    projections = 4 * 2 * b * n * d * d
    scores_and_values = 2 * (2 * b * n * n * d)     # Q·Kᵀ and A·V, every head together
    assert compress.count_flops(att, torch.randn(b, n, d)) == projections + scores_and_values
    ffn = FeedForward(d, d_ff=24).eval()
    assert compress.count_flops(ffn, torch.randn(b, n, d)) == 2 * (2 * b * n * d * 24)


def test_counts_of_an_estimator(fitted):
    n_params = sum(p.numel() for p in fitted.network_.parameters())
    assert compress.count_parameters(fitted) == n_params
    assert compress.model_size_bytes(fitted) >= 4 * n_params
    assert compress.count_flops(fitted) > 0


METHODS = {
    "optin": lambda f, df: compress.optin(f, df, flop_budget=0.7, max_windows=32),
    "amp": lambda f, df: compress.amp(f, df, tol=0.05, max_windows=32, n_probes=1),
    "nvit": lambda f, df: compress.nvit(f, df, ratio=0.7, steps=1, finetune_epochs=1, max_windows=32),
    "axformer": lambda f, df: compress.axformer(f, df, k=2, tol=1.0, max_windows=32),
    "dsformer": lambda f, df: compress.dsformer(f, df, rank=4, nnz_per_col=2, epochs=1),
    "magnitude": lambda f, df: compress.magnitude(f, amount=0.5),
    "magnitude_structured": lambda f, df: compress.magnitude(f, amount=0.5, structured=True),
    "quantize_dynamic": lambda f, df: compress.quantize_dynamic(f),
    "distill": lambda f, df: compress.distill(f, df, epochs=1, d_model=8, d_ff=16, n_heads=2),
}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_compressed_gateformer_round_trips(method, fitted, df, tmp_path):
    before = _values(fitted.predict())
    small = METHODS[method](fitted, df)
    assert small is not fitted and isinstance(small, GateformerForecaster)
    np.testing.assert_array_equal(_values(fitted.predict()), before)   # the original is untouched
    record = small.compression_[-1]
    assert record["method"] == method.replace("_structured", "")
    if method == "magnitude":   # same shapes, half the weights zero
        assert compress.count_parameters(small, nonzero=True) < compress.count_parameters(fitted, nonzero=True)
    elif method == "quantize_dynamic":
        assert compress.model_size_bytes(small) < compress.model_size_bytes(fitted) / 2
    else:
        assert record["parameters_after"] < record["parameters_before"]
    forecast = small.predict()
    small.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["compression"][-1]["method"] == record["method"]
    loaded = GateformerForecaster.load(tmp_path / "m")
    np.testing.assert_array_equal(_values(loaded.predict()), _values(forecast))
    assert compress.count_parameters(loaded) == compress.count_parameters(small)
    assert np.isfinite(loaded.score(df))


def test_methods_compose_and_still_round_trip(fitted, df, tmp_path):
    small = compress.quantize_dynamic(compress.amp(compress.optin(fitted, df, flop_budget=0.8, max_windows=32),
                                                   df, tol=0.05, max_windows=32, n_probes=1))
    assert [r["method"] for r in small.compression_] == ["optin", "amp", "quantize_dynamic"]
    small.save(tmp_path / "m")
    np.testing.assert_array_equal(_values(GateformerForecaster.load(tmp_path / "m").predict()),
                                  _values(small.predict()))


def test_refit_of_a_compressed_estimator_trains_the_full_network(fitted, df):
    small = compress.optin(fitted, df, flop_budget=0.7, max_windows=32)
    refit = small.set_params(max_epochs=0).fit(df)
    assert not hasattr(refit, "network_edits_")
    assert compress.count_parameters(refit) == compress.count_parameters(fitted)


@pytest.mark.parametrize("cls, method", [
    (LMUFormerForecaster, lambda f, df: compress.fold_bn(f)),
    (LMUFormerForecaster, lambda f, df: compress.amp(f, df, tol=0.05, max_windows=16, n_probes=1)),
    (PVClientForecaster, lambda f, df: compress.optin(f, df, flop_budget=0.8, max_windows=16)),
    (GTrXLForecaster, lambda f, df: compress.dsformer(f, df, rank=4, nnz_per_col=1, epochs=0)),
    (GTrXLForecaster, lambda f, df: compress.quantize_dynamic(f)),
], ids=["lmuformer-fold_bn", "lmuformer-amp", "pvclient-optin", "gtrxl-dsformer", "gtrxl-int8"])
def test_other_estimators_round_trip(cls, method, df, fitted_as, tmp_path):
    small = method(copy.deepcopy(fitted_as(cls)), df)
    forecast = small.predict()
    small.save(tmp_path / "m")
    np.testing.assert_array_equal(_values(cls.load(tmp_path / "m").predict()), _values(forecast))


def test_a_compressed_estimator_logs_to_mlflow(fitted, df, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    import tsformers.tracking as tsf_tracking

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        mlflow.set_experiment(experiment_id=mlflow.create_experiment("compress", (tmp_path / "art").as_uri()))
        small = compress.optin(fitted, df, flop_budget=0.7, max_windows=32)
        with mlflow.start_run():
            info = tsf_tracking.log_model(small, "model")
        loaded = tsf_tracking.load_model(info.model_uri)
        np.testing.assert_array_equal(_values(loaded.predict()), _values(small.predict()))
    finally:
        while mlflow.active_run():
            mlflow.end_run()
        mlflow.set_tracking_uri(previous)
