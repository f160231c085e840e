"""Ragged long panels: series that start and end at different times, each forecast from its own end."""
import numpy as np
import pandas as pd
import pytest

from tsformers import GateformerForecaster
from tsformers.datasets import make_demo

SMALL = dict(horizon=12, lookback=48, d_model=16, d_ff=32, n_heads=2, batch_size=32, learning_rate=3e-3,
             random_state=0, max_epochs=1)


def ragged(n_steps=400):
    df = make_demo(n_series=3, n_steps=n_steps, layout="long")
    start, end = df.ds.min(), df.ds.max()
    early = (df.unique_id == "series_1") & (df.ds > end - pd.Timedelta(hours=30))   # ends 30 h early
    late = (df.unique_id == "series_2") & (df.ds < start + pd.Timedelta(hours=100))  # starts 100 h late
    return df[~(early | late)].reset_index(drop=True)


def test_each_series_is_forecast_from_its_own_end(tmp_path):
    df = ragged()
    f = GateformerForecaster(**SMALL).fit(df)
    out = f.predict()
    ends = df.groupby("unique_id")["ds"].max()
    firsts = out.groupby("unique_id")["ds"].min()
    assert (firsts == ends + pd.Timedelta(hours=1)).all()
    assert out.groupby("unique_id").size().eq(12).all() and np.isfinite(out["y"]).all()
    pd.testing.assert_frame_equal(f.predict(df), out)
    loaded = GateformerForecaster.load(f.save(tmp_path / "m"))
    pd.testing.assert_frame_equal(loaded.predict(), out)


def test_windows_never_cross_a_series_span():
    import torch

    from tsformers.data import WindowDataset, as_pandas, frame_to_panel, infer_schema

    frame, backend = as_pandas(ragged())
    panel = frame_to_panel(frame, infer_schema(frame, backend), fitting=True)
    values = torch.from_numpy(panel.values)
    windows = WindowDataset(values, 48, 12, 1, spans=(panel.first, panel.last))
    assert len(windows) == (400 - 59) + (370 - 59) + (300 - 59)
    x, y = windows.__getitems__(range(len(windows)))
    assert torch.isfinite(x).all() and torch.isfinite(y).all(), "a window reached into a series' padding"


def test_ragged_forecast_matches_each_series_alone():
    df = ragged()
    f = GateformerForecaster(**SMALL).fit(df)
    together = f.predict(df)
    for key, part in df.groupby("unique_id"):
        alone = f.predict(part)
        np.testing.assert_allclose(alone["y"].to_numpy(), together[together.unique_id == key]["y"].to_numpy(),
                                   rtol=1e-6)


def test_update_continues_each_series_from_its_own_end():
    df = ragged()
    f = GateformerForecaster(**SMALL).fit(df)
    ends = df.groupby("unique_id", sort=False)["ds"].max()
    new = pd.concat([pd.DataFrame({"unique_id": key, "ds": pd.date_range(end, periods=4, freq="h")[1:], "y": 1.0})
                     for key, end in ends.items()])
    f.update(new)
    assert (f.predict().groupby("unique_id")["ds"].min() == ends + pd.Timedelta(hours=4)).all()
    stale = new.assign(ds=new.ds + pd.Timedelta(hours=1))
    with pytest.raises(ValueError, match="continue the series 'series_0'"):
        f.update(stale)


def test_a_series_too_short_is_named():
    df = ragged()
    df = df[~((df.unique_id == "series_2") & (df.ds < df.ds.max() - pd.Timedelta(hours=40)))]
    with pytest.raises(ValueError, match="series 'series_2' has 41 rows"):
        GateformerForecaster(**SMALL).fit(df)


def test_streaming_state_of_a_ragged_panel_equals_each_series_alone(monkeypatch):
    import tsformers
    from test_covariates_and_update import SmoothedLevelForecaster

    monkeypatch.setattr(tsformers, "SmoothedLevelForecaster", SmoothedLevelForecaster, raising=False)
    df = ragged()
    f = SmoothedLevelForecaster(lookback=24).fit(df)
    together = f.predict()
    for key, part in df.groupby("unique_id"):
        alone = f.predict(part)
        np.testing.assert_allclose(alone["y"].to_numpy(), together[together.unique_id == key]["y"].to_numpy(),
                                   rtol=1e-5)
    assert f.state_["seen"].flatten().tolist() == df.groupby("unique_id", sort=False).size().tolist()
