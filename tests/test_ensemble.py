"""Seed ensembles (``ensemble_size=``): members fitted apart, their mean the forecast, kept through save and load."""
import numpy as np
import pandas as pd
import pytest
import torch

from tsformers import GateformerForecaster
from tsformers.backbone import SeedEnsemble, linear_bases_of
from tsformers.estimators.persistence import saved_params
from tsformers.seeding import member_seeds

SETTINGS = dict(horizon=12, lookback=24, d_model=16, d_ff=16, n_heads=2, patch_len=8, stride=8, batch_size=16,
                max_epochs=2, random_state=5)


@pytest.fixture(scope="module")
def frame():
    """Two noisy daily waves whose amplitude drifts: a network errs on them, and two networks err apart."""
    rng = np.random.default_rng(0)
    t = np.arange(480)
    return pd.DataFrame({"time": pd.date_range("2024-01-01", periods=len(t), freq="h"),
                         "a": np.sin(2 * np.pi * t / 24) * (1 + t / 480) + 0.3 * rng.normal(size=len(t)),
                         "b": np.cos(2 * np.pi * t / 12) + 0.3 * rng.normal(size=len(t))})


@pytest.fixture(scope="module")
def fits(frame):
    one = GateformerForecaster(ensemble_size=1, **SETTINGS).fit(frame)
    three = GateformerForecaster(ensemble_size=3, **SETTINGS).fit(frame)
    return one, three


def _values(forecast: pd.DataFrame) -> np.ndarray:
    return forecast.drop(columns="time").to_numpy(np.float64)


def test_member_seeds_first_is_the_fit_seed_and_nearby_seeds_share_none():
    assert member_seeds(7, 1) == [7]
    seeds = member_seeds(7, 4)
    assert seeds[0] == 7 and len(set(seeds)) == 4 and seeds == member_seeds(7, 4)
    assert not set(member_seeds(0, 3)) & set(member_seeds(1, 3))


def test_the_first_member_is_the_single_fit_and_the_others_differ(fits):
    one, three = fits
    assert not isinstance(one.network_, SeedEnsemble)
    assert isinstance(three.network_, SeedEnsemble) and len(three.network_.members) == 3
    first, second, _ = (member.state_dict() for member in three.network_.members)
    single = one.network_.state_dict()
    assert first.keys() == single.keys()
    assert all(torch.equal(first[k], single[k]) for k in single)                 # same seed, same training
    assert not all(torch.equal(first[k], second[k]) for k in first if k.endswith("weight"))


def test_forecast_is_the_mean_of_the_members(fits, frame):
    _, three = fits
    x = torch.randn(5, SETTINGS["lookback"], 2)
    with torch.no_grad():
        expected = torch.stack([member(x) for member in three.network_.members]).mean(0)
        torch.testing.assert_close(three.network_(x), expected, rtol=0, atol=0)
    # through predict: each member's forecast in the data's units, then their mean (scaling and cycle are linear)
    ensemble = three.network_
    members = []
    for member in ensemble.members:
        three.network_ = member
        members.append(_values(three.predict()))
    three.network_ = ensemble
    np.testing.assert_allclose(_values(three.predict()), np.mean(members, axis=0), rtol=1e-5, atol=1e-5)


def test_ensemble_error_is_at_most_the_members_mean_error(fits, frame):
    """The mean's squared error is the members' mean squared error less their spread (a convexity identity)."""
    _, three = fits
    ensemble = three.network_
    errors = []
    for member in [*ensemble.members, ensemble]:
        three.network_ = member
        errors.append(-three.score(frame, metric="mse"))                       # score: the negated MSE
    three.network_ = ensemble
    *member_errors, ensemble_error = errors
    assert ensemble_error <= np.mean(member_errors) + 1e-12
    assert len(set(np.round(member_errors, 12))) == 3        # the members do err apart


def test_log_names_each_members_epochs_and_shares_are_per_member(fits):
    _, three = fits
    members = [row["member"] for row in three.training_log_]
    assert sorted(set(members)) == [0, 1, 2] and members == sorted(members)
    shares = [float(base.share) for base in linear_bases_of(three.network_)]
    assert len(shares) == 3
    assert three.correction_share_ == pytest.approx(np.mean(shares))
    assert three.network_used_ == any(base.network_used for base in linear_bases_of(three.network_))


def test_save_and_load_give_the_same_forecasts(fits, frame, tmp_path):
    from tsformers.estimators.saved import load_torch

    _, three = fits
    three.save(tmp_path / "m")
    back = GateformerForecaster.load(tmp_path / "m")
    assert back.ensemble_size == 3 and isinstance(back.network_, SeedEnsemble)
    np.testing.assert_array_equal(_values(back.predict()), _values(three.predict()))
    np.testing.assert_array_equal(_values(back.predict(frame.iloc[:300])), _values(three.predict(frame.iloc[:300])))
    np.testing.assert_array_equal(_values(load_torch(tmp_path / "m").predict(frame)), _values(three.predict()))


def test_onnx_engine_gives_the_ensembles_forecast(fits, tmp_path):
    pytest.importorskip("onnxruntime")
    _, three = fits
    three.save(tmp_path / "m")
    three.export_onnx(tmp_path / "m")
    onnx = GateformerForecaster.load(tmp_path / "m", engine="onnx")
    np.testing.assert_allclose(_values(onnx.predict()), _values(three.predict()), rtol=1e-4, atol=1e-4)


def test_models_saved_before_ensembles_load_as_one_network():
    params = saved_params("GateformerForecaster", {"horizon": 12})
    assert params["ensemble_size"] == 1


def test_quantiles_of_the_mean_stay_ordered(frame):
    est = GateformerForecaster(ensemble_size=2, quantiles=[0.1, 0.5, 0.9], **SETTINGS).fit(frame)
    forecast = est.predict()
    low, mid, high = (forecast[f"a_q{q}"].to_numpy() for q in ("0.1", "0.5", "0.9"))
    assert (low <= mid).all() and (mid <= high).all()


def test_checkpoints_per_member_and_a_named_checkpoint_is_refused(frame, tmp_path):
    GateformerForecaster(ensemble_size=2, checkpoint_dir=tmp_path, **{**SETTINGS, "max_epochs": 1}).fit(frame)
    assert (tmp_path / "last.ckpt").exists() and (tmp_path / "member-1" / "last.ckpt").exists()
    resumed = GateformerForecaster(ensemble_size=2, checkpoint_dir=tmp_path, resume=True,
                                   **{**SETTINGS, "max_epochs": 2}).fit(frame)
    assert sorted({row["member"] for row in resumed.training_log_}) == [0, 1]
    with pytest.raises(ValueError, match="resume=.*names one checkpoint.*resume=True"):
        GateformerForecaster(ensemble_size=2, checkpoint_dir=tmp_path, resume=str(tmp_path / "last.ckpt"),
                             **SETTINGS).fit(frame)


@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_bad_ensemble_size_is_refused(frame, bad):
    with pytest.raises(ValueError, match="ensemble_size"):
        GateformerForecaster(ensemble_size=bad, **SETTINGS).fit(frame)


def test_compression_refuses_an_ensemble_and_names_the_fix(fits, frame):
    from tsformers.compress import fold_bn, magnitude

    _, three = fits
    for method in (magnitude, fold_bn):
        with pytest.raises(ValueError, match="seed ensemble of 3 networks.*ensemble_size=1"):
            method(three, frame)
