"""Gateformer's ``embedding`` slot: the temporal stage's patch tokens from a registered embedding, by name."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from tsformers import BaseForecaster, GateformerForecaster, PVClientForecaster
from tsformers.backbone import PatchEmbedding, available, build_class, registry
from tsformers.datasets import make_demo
from tsformers.models.gateformer import CrossScaleTokens, Gateformer, WordTokens

FIXTURES = Path(__file__).parent / "fixtures" / "models"
EMBEDDINGS = available("embedding", "GateformerForecaster")
MODULES = {"patch": PatchEmbedding, "cel": CrossScaleTokens, "tnt_words": WordTokens}


def test_gateformer_takes_every_registered_embedding_and_pvclient_has_no_slot():
    """PV-Client's tokens are whole windows (d_model = lookback): it embeds no patches, so it has no such slot."""
    assert build_class("embedding", "patch") is PatchEmbedding
    assert EMBEDDINGS == available("embedding") == ["cel", "patch", "tnt_words"]
    assert GateformerForecaster().embedding == "patch"
    assert "embedding" not in available(None, PVClientForecaster)


def test_the_choices_follow_patch_len_stride_and_d_model():
    assert available("embedding", GateformerForecaster(stride=4)) == ["patch", "tnt_words"]  # cel steps by patch_len
    assert available("embedding", GateformerForecaster(d_model=4, n_heads=2)) == ["patch", "tnt_words"]
    assert available("embedding", GateformerForecaster(lookback=6, patch_len=8, stride=4)) == ["patch"]  # padded
    assert available("embedding", GateformerForecaster(lookback=6, stride=4)) == []  # 6 + 4 steps < one patch of 16


@pytest.mark.parametrize("embedding, n_patches", [("patch", 7), ("cel", 6), ("tnt_words", 6)])
def test_each_embedding_makes_per_variate_patch_tokens(embedding, n_patches):
    """(B, N, L) -> (B, N, P, D), each variate embedded on its own (the temporal stage is channel independent)."""
    torch.manual_seed(0)
    model = Gateformer(lookback=48, horizon=8, n_vars=3, d_model=16, n_heads=2, d_ff=16, dropout=0.0,
                       embedding=embedding).eval()
    assert type(model.patch_embed) is MODULES[embedding]
    x = torch.randn(2, 3, 48)
    changed = x.clone()
    changed[:, 1] = torch.randn(2, 48)
    with torch.no_grad():
        tokens, other = model.patch_embed(x), model.patch_embed(changed)
    assert tokens.shape == (2, 3, n_patches, 16) == (2, 3, model.patch_embed.n_patches(48), 16)
    assert model.temporal_head[0].in_features == 16 * n_patches
    torch.testing.assert_close(tokens[:, [0, 2]], other[:, [0, 2]], atol=0, rtol=0)
    assert not torch.allclose(tokens[:, 1], other[:, 1])


@pytest.mark.parametrize("embedding", EMBEDDINGS)
def test_each_embedding_fits_forecasts_and_survives_save_and_load(tmp_path, embedding):
    df = make_demo(n_steps=400)
    f = GateformerForecaster(horizon=12, lookback=48, embedding=embedding, max_epochs=1, ensemble_size=1,
                             **GateformerForecaster.get_test_params()).fit(df)
    assert type(f.network_.network.patch_embed) is MODULES[embedding]   # behind the default linear base
    forecast = f.predict().select_dtypes("number").to_numpy()
    assert forecast.shape == (12, 3) and np.isfinite(forecast).all()
    f.save(tmp_path / "m")
    g = GateformerForecaster.load(tmp_path / "m")
    assert g.embedding == embedding
    np.testing.assert_array_equal(g.predict().select_dtypes("number").to_numpy(), forecast)


def test_the_default_is_the_papers_patch_embedding_with_its_weight_names():
    """Saved models keep loading: the default network has the state_dict keys it had before the slot."""
    shape = dict(lookback=48, horizon=8, n_vars=3, d_model=16, n_heads=2, d_ff=16)
    torch.manual_seed(0)
    default = Gateformer(**shape)
    torch.manual_seed(0)
    named = Gateformer(**shape, embedding="patch")
    assert type(default.patch_embed) is PatchEmbedding
    assert [k for k in default.state_dict() if k.startswith("patch_embed.")] == ["patch_embed.value_embedding.weight"]
    assert list(default.state_dict()) == list(named.state_dict())
    for key, value in default.state_dict().items():
        torch.testing.assert_close(named.state_dict()[key], value, atol=0, rtol=0)
    old = BaseForecaster.load(FIXTURES / "format1_gateformer")   # saved before the slot, without the parameter
    assert old.embedding == "patch" and type(old.network_.patch_embed) is PatchEmbedding


def test_a_bad_name_is_refused_in_fit_naming_the_parts_that_fit():
    df = make_demo(n_steps=300)
    small = dict(horizon=12, lookback=48, max_epochs=1, **GateformerForecaster.get_test_params())
    f = GateformerForecaster(**small, embedding="nope")   # __init__ only stores
    with pytest.raises(ValueError, match="unknown embedding 'nope'; available embedding names: cel, patch, tnt_words"):
        f.fit(df)
    with pytest.raises(ValueError, match="'embedding' parameter of GateformerForecaster must be an instance of 'str'"):
        GateformerForecaster(**small, embedding=3).fit(df)
    fits = re.escape(str(["patch", "tnt_words"]))
    with pytest.raises(ValueError, match=rf"embedding='cel' cannot make Gateformer's patch tokens here: .*stride == "
                                         rf"patch_len, got stride=4, patch_len=16; pick an embedding from {fits}"):
        GateformerForecaster(**small, embedding="cel", stride=4).fit(df)
    with pytest.raises(ValueError, match=rf"embedding='cel' .*needs d_model >= 8, got 4; pick an embedding from {fits}"):
        GateformerForecaster(**{**small, "d_model": 4}, embedding="cel").fit(df)


def test_an_embedding_without_an_adapter_is_refused(monkeypatch):
    """A part registered later whose output Gateformer cannot turn into patch tokens is not listed, and refused."""
    monkeypatch.setitem(registry._REGISTRY["embedding"], "other", type("OtherEmbedding", (torch.nn.Module,), {}))
    assert "other" in available("embedding") and "other" not in available("embedding", "GateformerForecaster")
    with pytest.raises(ValueError, match=r"embedding='other' cannot make Gateformer's patch tokens here: Gateformer "
                                         r"has no adapter .*; pick an embedding from \['cel', 'patch', 'tnt_words'\]"):
        Gateformer(lookback=48, horizon=8, n_vars=3, d_model=16, n_heads=2, embedding="other")
