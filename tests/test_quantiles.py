"""Quantile forecasts and conformal intervals: non-crossing heads, the pinball loss, calibrated coverage."""
import numpy as np
import pandas as pd
import polars as pl
import pytest
import torch

from tsformers import (AtlasForecaster, GateformerForecaster, GTrXLForecaster, LMUFormerForecaster,
                       PVClientForecaster)
from tsformers.backbone import QuantileHead
from tsformers.datasets import make_demo
from tsformers.estimators.evaluation import conformal_radius
from tsformers.metrics import coverage, crps, mae, pinball_loss
from tsformers.training.losses import PinballLoss

TINY = dict(horizon=12, lookback=48, max_epochs=1, random_state=0)
ESTIMATORS = [GateformerForecaster, PVClientForecaster, LMUFormerForecaster, GTrXLForecaster, AtlasForecaster]
STREAMING = [LMUFormerForecaster, GTrXLForecaster, AtlasForecaster]
SIGMA = 0.3


def noisy_seasonal(n_series=4, n=800, sigma=SIGMA, seed=0):
    """Two seasonal waves per series plus Gaussian noise of standard deviation ``sigma``."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return pd.concat([pd.DataFrame({
        "unique_id": f"s{s}", "ds": pd.date_range("2024-01-01", periods=n, freq="h"),
        "y": np.sin(2 * np.pi * t / 24 + s) + 0.5 * np.sin(2 * np.pi * t / 12 + 2 * s) + sigma * rng.standard_normal(n),
    }) for s in range(n_series)], ignore_index=True)


def small(cls, **params):
    return cls(**{**cls.get_test_params(), **TINY, **params})


def quantile_columns(frame, target, levels):
    return frame[[f"{target}_q{q:g}" for q in levels]].to_numpy()


# -- the loss and the head ------------------------------------------------------------------

def test_pinball_loss_equals_a_hand_computation():
    y = np.array([1.0, 2.0])
    pred = np.array([[0.5, 1.5], [2.5, 3.0]])          # levels 0.1 and 0.9 for each y
    # y=1: errors 0.5, -0.5 -> 0.1*0.5 = 0.05 and (0.9-1)*(-0.5) = 0.05
    # y=2: errors -0.5, -1.0 -> (0.1-1)*(-0.5) = 0.45 and (0.9-1)*(-1.0) = 0.1
    expected = (0.05 + 0.05 + 0.45 + 0.1) / 4
    assert pinball_loss(y, pred, [0.1, 0.9]) == pytest.approx(expected)
    torch_loss = PinballLoss([0.1, 0.9])(torch.tensor(pred), torch.tensor(y))
    assert torch_loss.item() == pytest.approx(expected)
    assert pinball_loss(y, pred[:, :1] * 0 + y[:, None], [0.5]) == 0.0
    assert pinball_loss([3.0], [[1.0]], [0.5]) == pytest.approx(1.0)   # half the absolute error at the median


def test_crps_from_quantiles_matches_the_closed_form_of_a_gaussian():
    from scipy.stats import norm

    y = np.linspace(-3.0, 3.0, 61)                     # observations around a N(0.2, 0.7) forecast
    mu, sigma = 0.2, 0.7
    z = (y - mu) / sigma
    exact = sigma * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / np.sqrt(np.pi))
    levels = np.linspace(0.01, 0.99, 99)
    quantiles = np.broadcast_to(norm.ppf(levels, mu, sigma), (len(y), len(levels)))
    assert crps(y, quantiles, levels) == pytest.approx(exact.mean(), rel=0.02)
    assert crps(y, np.full((len(y), 1), mu), [0.5]) == pytest.approx(mae(y, np.full(len(y), mu)))
    with pytest.raises(ValueError, match="evenly spaced"):
        crps(y, quantiles[:, :3], [0.1, 0.5, 0.95])


def test_quantile_head_never_crosses_and_keeps_the_network_forecast_as_its_anchor():
    torch.manual_seed(0)

    class Scaled(torch.nn.Module):
        def forward(self, x):
            return x[:, :6] * 50.0                        # extreme outputs: (B, H=6, N=3)

    head = QuantileHead(Scaled(), quantiles=[0.05, 0.1, 0.5, 0.9, 0.95], horizon=6, n_targets=2)
    with torch.no_grad():                                 # random, large slopes: the worst case for crossing
        head.gap_slope.normal_(0, 5.0)
        head.gap_level.normal_(0, 5.0)
        head.gap_bias.normal_(0, 1.0)
    x = torch.randn(64, 8, 3)
    q = head(x)
    assert q.shape == (64, 6, 2, 5)
    assert (q.diff(dim=-1) >= 0).all()
    torch.testing.assert_close(q[..., 2], x[:, :6, :2] * 50.0)   # 0.5 is the anchor: the network's own forecast
    assert QuantileHead(Scaled(), quantiles=[0.2, 0.3], horizon=6, n_targets=2).anchor == 1
    with pytest.raises(ValueError, match="increasing levels"):
        QuantileHead(Scaled(), quantiles=[0.9, 0.1], horizon=6, n_targets=2)


def test_conformal_radius_is_the_finite_sample_quantile_of_the_errors():
    scores = np.sort(np.arange(1.0, 10.0)[::-1]).reshape(9, 1, 1)       # 9 errors 1..9
    assert conformal_radius(scores, 80)[0, 0] == 8.0     # ceil(10 * 0.8) = 8th smallest
    assert conformal_radius(scores, 50)[0, 0] == 5.0     # ceil(10 * 0.5) = 5th
    with pytest.warns(UserWarning, match="too few"):
        assert conformal_radius(scores, 95)[0, 0] == 9.0  # ceil(9.5) = 10 > 9: the largest
    with_missing = np.concatenate([scores, np.full((3, 1, 1), np.nan)])  # missing targets are left out
    assert conformal_radius(with_missing, 80)[0, 0] == 8.0


# -- coverage on held-out windows -------------------------------------------------------------

@pytest.fixture(scope="module")
def calibrated():
    """A quantile model and a point model fitted on the first 500 steps; backtests over the last 300."""
    df = noisy_seasonal()
    train = df.groupby("unique_id").head(500)
    params = dict(horizon=12, lookback=48, max_epochs=4, batch_size=32, learning_rate=3e-3, lr_schedule="constant",
                  d_model=16, d_ff=32, n_heads=2, val_size=0.2, random_state=0)
    quantile = GateformerForecaster(**params, quantiles=[0.1, 0.5, 0.9]).fit(train)
    point = GateformerForecaster(**params).fit(train)
    held_out = {name: f.backtest(df, n_windows=25, step=12, level=[80]) for name, f in
                [("quantile", quantile), ("point", point)]}
    for frame in held_out.values():
        assert (frame["cutoff"] >= train["ds"].max()).all() and len(frame) == 4 * 25 * 12
    return quantile, point, held_out


def test_the_80_percent_quantile_band_covers_80_percent_of_held_out_values(calibrated):
    _, _, held_out = calibrated
    frame = held_out["quantile"]
    share = coverage(frame["actual"], frame["q0.1"], frame["q0.9"])
    print(f"80% quantile band: coverage {share:.3f}")
    assert 0.72 <= share <= 0.88
    assert (frame["q0.1"] <= frame["q0.5"]).all() and (frame["q0.5"] <= frame["q0.9"]).all()
    np.testing.assert_array_equal(frame["forecast"], frame["q0.5"])   # the point forecast is the median


@pytest.mark.parametrize("model", ["point", "quantile"])
def test_the_80_percent_conformal_interval_covers_80_percent_of_held_out_values(calibrated, model):
    frame = calibrated[2][model]
    share = coverage(frame["actual"], frame["lo80"], frame["hi80"])
    print(f"80% conformal interval of the {model} model: coverage {share:.3f}")
    assert 0.72 <= share <= 0.88


def test_intervals_widen_with_the_level_and_are_saved_with_the_model(calibrated, tmp_path):
    _, point, _ = calibrated
    out = point.predict(level=[50, 80, 95])
    width = {lv: (out[f"y_hi{lv}"] - out[f"y_lo{lv}"]).to_numpy() for lv in (50, 80, 95)}
    assert (width[50] > 0).all() and (width[80] > width[50]).all() and (width[95] > width[80]).all()
    np.testing.assert_allclose((out["y_hi80"] + out["y_lo80"]) / 2, out["y"], rtol=1e-9)  # around the point forecast
    assert list(out.columns) == ["unique_id", "ds", "y", "y_lo50", "y_hi50", "y_lo80", "y_hi80", "y_lo95", "y_hi95"]
    loaded = GateformerForecaster.load(point.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.conformal_, point.conformal_)
    pd.testing.assert_frame_equal(loaded.predict(level=[50, 80, 95]), out)


# -- every estimator -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo():
    return make_demo(n_steps=300)


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_every_estimator_forecasts_non_crossing_quantiles_that_survive_save_and_load(cls, demo, tmp_path):
    levels = [0.1, 0.5, 0.9]
    f = small(cls, quantiles=levels).fit(demo)
    out = f.predict(level=80)
    targets = [c for c in demo.columns if c != "date"]
    expected = ["date"] + [c for t in targets for c in
                           [t, f"{t}_q0.1", f"{t}_q0.5", f"{t}_q0.9", f"{t}_lo80", f"{t}_hi80"]]
    assert list(out.columns) == expected
    for t in targets:
        q = quantile_columns(out, t, levels)
        assert (np.diff(q, axis=1) >= 0).all(), f"{cls.__name__}: quantiles of {t} cross"
        np.testing.assert_array_equal(out[t], out[f"{t}_q0.5"])
    new = f.predict(demo.iloc[:200])                      # from new history, too
    for t in targets:
        assert (np.diff(quantile_columns(new, t, levels), axis=1) >= 0).all()
    loaded = cls.load(f.save(tmp_path / "m"))
    pd.testing.assert_frame_equal(loaded.predict(level=80), out)


@pytest.mark.parametrize("cls", STREAMING, ids=lambda c: c.__name__)
def test_streaming_update_then_predict_gives_the_quantiles_of_the_whole_history(cls, tmp_path):
    df = make_demo(n_steps=300, n_series=2, layout="long")
    last = np.sort(df.ds.unique())
    head, tail = df[df.ds <= last[-10]], df[df.ds > last[-10]]
    f = small(cls, quantiles=[0.25, 0.75]).fit(head).update(tail)
    streamed, full = f.predict(), f.predict(df)
    assert list(streamed.columns) == ["unique_id", "ds", "y", "y_q0.25", "y_q0.75"]
    np.testing.assert_allclose(streamed[["y", "y_q0.25", "y_q0.75"]], full[["y", "y_q0.25", "y_q0.75"]],
                               rtol=1e-4, atol=1e-4)
    assert (streamed["y_q0.25"] <= streamed["y_q0.75"]).all()
    # without 0.5 the point forecast is the mean of the quantiles
    np.testing.assert_allclose(streamed["y"], (streamed["y_q0.25"] + streamed["y_q0.75"]) / 2, rtol=1e-12)
    loaded = cls.load(f.save(tmp_path / "m"))
    pd.testing.assert_frame_equal(loaded.predict(), streamed)


def test_quantile_columns_in_polars_and_with_static_attributes():
    df = make_demo(n_steps=240, n_series=3, layout="long")
    df["region"] = df["unique_id"].map({"series_0": "a", "series_1": "b", "series_2": "a"})
    f = small(LMUFormerForecaster, quantiles=[0.1, 0.9], static="region").fit(pl.from_pandas(df))
    out = f.predict(level=[90])
    assert isinstance(out, pl.DataFrame)
    assert out.columns == ["unique_id", "ds", "y", "y_q0.1", "y_q0.9", "y_lo90", "y_hi90"]
    assert (out["y_q0.1"] <= out["y_q0.9"]).all()


def test_bad_quantiles_and_levels_are_refused_with_the_fix(demo):
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        small(GateformerForecaster, quantiles=[0.1, 1.0]).fit(demo)
    with pytest.raises(ValueError, match="repeat"):
        small(GateformerForecaster, quantiles=[0.1, 0.1]).fit(demo)
    with pytest.raises(ValueError, match="quantiles"):
        small(GateformerForecaster, quantiles=0.5).fit(demo)
    f = small(GateformerForecaster, max_epochs=0).fit(demo)
    with pytest.raises(ValueError, match="percent"):
        f.predict(level=0.8)
    with pytest.raises(ValueError, match="percent"):
        f.predict(level=[80, 100])
