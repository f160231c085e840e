"""Static covariates: per-series attributes from the frame or a static_df, fed to the network."""
import numpy as np
import pandas as pd
import pytest

from tsformers import GateformerForecaster
from tsformers.datasets import make_demo

SMALL = dict(horizon=12, lookback=48, d_model=16, d_ff=32, n_heads=2, batch_size=32, learning_rate=3e-3,
             lr_schedule="constant", random_state=0, max_epochs=1)


def panel_with_attributes():
    df = make_demo(n_series=3, n_steps=300, layout="long")
    attributes = pd.DataFrame({"unique_id": ["series_0", "series_1", "series_2"],
                               "region": ["north", "south", "north"], "capacity": [10.0, 20.0, 15.0]})
    return df.merge(attributes, on="unique_id"), attributes


def test_static_columns_are_encoded_and_change_the_forecast(tmp_path):
    df, _ = panel_with_attributes()
    f = GateformerForecaster(**SMALL, static=["region", "capacity"], ensemble_size=1).fit(df)   # one network to read
    assert f.static_encoder_.categories == {"region": ["north", "south"]}
    assert f.static_.shape == (3, 3), "capacity and two region channels"
    assert f.network_.network.static_context.in_features == 3   # behind the default linear base
    one = df[df.unique_id == "series_0"]
    as_south = one.assign(unique_id="twin", region="south")
    loaded = GateformerForecaster.load(f.save(tmp_path / "m"))
    pd.testing.assert_frame_equal(loaded.predict(), f.predict())
    pd.testing.assert_frame_equal(loaded.predict(as_south), f.predict(as_south))
    assert list(f.predict().columns) == ["unique_id", "ds", "y"], "static attributes are inputs, not forecasts"
    # the same history under another region forecasts differently: the attribute reaches the network. Checked on
    # the network alone: after one epoch the default base may keep none of its correction (here it keeps none)
    alone = GateformerForecaster(**SMALL, static=["region", "capacity"], linear_base=False).fit(df)
    a, b = alone.predict(one.assign(unique_id="twin")), alone.predict(as_south)
    assert not np.allclose(a["y"], b["y"])


def test_static_df_supplies_attributes_and_new_series_need_them():
    df, attributes = panel_with_attributes()
    plain = df.drop(columns=["region", "capacity"])
    f = GateformerForecaster(**SMALL, static=["region", "capacity"]).fit(plain, static_df=attributes)
    assert len(f.predict()) == 36
    new = plain[plain.unique_id == "series_1"].assign(unique_id="new")
    with pytest.raises(ValueError, match="static_df="):
        f.predict(new)
    extra = pd.DataFrame({"unique_id": ["new"], "region": ["south"], "capacity": [5.0]})
    assert len(f.predict(new, static_df=extra)) == 12


def test_unseen_category_is_an_error_or_zeros_by_choice():
    df, _ = panel_with_attributes()
    new = df[df.unique_id == "series_0"].assign(unique_id="new", region="east")
    f = GateformerForecaster(**SMALL, static=["region"]).fit(df.drop(columns="capacity"))
    with pytest.raises(ValueError, match="region='east'.*not seen in fit.*unknown_static='zeros'"):
        f.predict(new.drop(columns="capacity"))
    f.set_params(unknown_static="zeros")
    assert np.isfinite(f.predict(new.drop(columns="capacity"))["y"]).all()


def test_static_attributes_must_be_constant_and_belong_to_long_frames():
    df, _ = panel_with_attributes()
    df.loc[df.index[5], "capacity"] = 99.0
    with pytest.raises(ValueError, match="static column 'capacity' changes within series 'series_0'"):
        GateformerForecaster(**SMALL, static=["capacity"]).fit(df.drop(columns="region"))
    with pytest.raises(ValueError, match="long frame"):
        GateformerForecaster(**SMALL, static=["series_0"]).fit(make_demo(n_steps=300))
    with pytest.raises(ValueError, match="unknown static attribute"):
        GateformerForecaster(**SMALL, static=["colour"]).fit(panel_with_attributes()[0])


def test_networks_without_a_static_input_get_a_static_residual(tmp_path, monkeypatch):
    import tsformers
    from test_covariates_and_update import SmoothedLevelForecaster

    from tsformers.backbone.heads import StaticResidual

    monkeypatch.setattr(tsformers, "SmoothedLevelForecaster", SmoothedLevelForecaster, raising=False)
    df, _ = panel_with_attributes()
    f = SmoothedLevelForecaster(static=["region", "capacity"], max_epochs=2).fit(df)
    assert isinstance(f.network_, StaticResidual)
    assert f.network_.correction.weight.abs().sum() > 0, "the correction trained"
    assert f.state_["static"].shape == (3, 3)
    one = df[df.unique_id == "series_0"]
    north, south = f.predict(one.assign(unique_id="twin")), f.predict(one.assign(unique_id="twin", region="south"))
    assert not np.allclose(north["y"], south["y"])
    loaded = SmoothedLevelForecaster.load(f.save(tmp_path / "m"))
    pd.testing.assert_frame_equal(loaded.predict(), f.predict())


def test_a_static_residual_starts_as_the_identity():
    import torch

    from tsformers.backbone.heads import StaticResidual

    inner = torch.nn.Linear(5, 5)
    wrapped = StaticResidual(inner, n_static=3, horizon=5, n_targets=2)
    x, s = torch.randn(4, 5, 5), torch.randn(4, 3)
    torch.testing.assert_close(wrapped(x, s), inner(x))
