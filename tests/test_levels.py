"""The streaming estimators' causal normalisation (``normalize``): exact streaming, level equivariance, trends.

LMUFormer, GTrXL and ATLAS read the whole history through a recurrent state, so they cannot
normalise each window by its own statistics. ``normalize="last_value"`` (their default, a tsformers
extension) feeds them each step's change and adds their forecast onto the last observed value;
``"none"`` is the papers' form. The tests below check what that promises, against references
computed here: the forecast of the full history, the forecast of the unshifted series plus the
shift, and the last-value forecast on a series whose level leaves the range seen in training.
"""

import numpy as np
import pandas as pd
import pytest
from sklearn.utils._param_validation import InvalidParameterError

from tsformers.backbone import linear_base_of
from tsformers.estimators.atlas import AtlasForecaster
from tsformers.estimators.gtrxl import GTrXLForecaster
from tsformers.estimators.lmuformer import LMUFormerForecaster

H, L = 12, 48
N_TRAIN, N = 480, 720

# tiny networks; the learning rates are those at which 15 epochs learn the synthetic series below
SMALL = {
    "lmuformer": (LMUFormerForecaster, {"d_model": 16, "memory_size": 16, "learning_rate": 3e-3}),
    "gtrxl": (GTrXLForecaster, {"d_model": 16, "n_heads": 2, "d_ff": 32, "n_layers": 1, "segment_len": L,
                                "mem_len": L, "learning_rate": 1e-2}),
    "atlas": (AtlasForecaster, {"d_model": 16, "n_heads": 2, "d_ff": 32, "d_key": 4, "window": 16,
                                "chunk_size": 8, "omega_window": 4, "learning_rate": 3e-3}),
}


def estimator(name, **kw):
    cls, params = SMALL[name]
    return cls(horizon=H, lookback=L, random_state=0, **(params | kw))


def trend_and_shift(n=N):
    """A daily cycle on a rising trend, with a step of +3 twelve steps after the training part ends.

    Over the test part the level lies above anything the training part held (it ends near 4.8
    + 3 = 7.8 against at most 5.8): a model that reads and forecasts values extrapolates.
    """
    rng = np.random.default_rng(0)
    t = np.arange(n)
    y = np.sin(2 * np.pi * t / 24) + 0.01 * t + 3.0 * (t >= N_TRAIN + 12) + 0.05 * rng.standard_normal(n)
    return pd.DataFrame({"date": pd.date_range("2024-01-01", periods=n, freq="h"), "y": y})


def two_variables(n=300):
    rng = np.random.default_rng(1)
    t = np.arange(n)
    return pd.DataFrame({"date": pd.date_range("2024-01-01", periods=n, freq="h"),
                         "a": np.sin(2 * np.pi * t / 12) + 0.1 * rng.standard_normal(n) + 0.01 * t,
                         "b": np.cos(2 * np.pi * t / 8) + 0.1 * rng.standard_normal(n)})


def values(forecast):
    return forecast[["a", "b"]].to_numpy()


@pytest.fixture(scope="module", params=list(SMALL))
def fitted(request):
    """Each estimator with its default normalisation, one epoch on the first 250 rows of two variables."""
    df = two_variables()
    return request.param, estimator(request.param, max_epochs=1).fit(df.iloc[:250]), df


def test_the_default_is_last_value_in_all_three():
    for name in SMALL:
        assert SMALL[name][0]().get_params()["normalize"] == "last_value"


@pytest.mark.parametrize("name", list(SMALL))
def test_update_then_predict_equals_the_forecast_from_the_full_history(name):
    df = two_variables()
    est = estimator(name, max_epochs=1).fit(df.iloc[:250])  # its own: update changes the state
    assert linear_base_of(est.network_).network.normalize == "last_value"   # inside the default linear base
    full = values(est.predict(df))
    est.update(df.iloc[250:251]).update(df.iloc[251:290]).update(df.iloc[290:])
    np.testing.assert_allclose(values(est.predict()), full, rtol=1e-4, atol=1e-5)


def test_adding_a_constant_moves_the_forecast_by_exactly_that_constant(fitted):
    name, est, df = fitted
    shift = {"a": 40.0, "b": -25.0}
    shifted = df.assign(a=df["a"] + shift["a"], b=df["b"] + shift["b"])
    before, after = values(est.predict(df)), values(est.predict(shifted))
    # float32 inside the network: the shift is about 40 / 0.6 = 70 scaled units, rounded to ~1e-5 each
    np.testing.assert_allclose(after, before + [shift["a"], shift["b"]], atol=2e-4)


@pytest.mark.parametrize("name", list(SMALL))
def test_without_normalisation_a_constant_changes_the_forecast(name):
    """The reference for the test above: reading the values, a new level changes the forecast's shape."""
    df = two_variables()
    est = estimator(name, max_epochs=1, normalize="none", linear_base=False).fit(df.iloc[:250])
    shifted = df.assign(a=df["a"] + 40.0, b=df["b"] - 25.0)
    moved = values(est.predict(shifted)) - [40.0, -25.0] - values(est.predict(df))
    assert np.abs(moved).max() > 1e-2


def _rolling_mse(est, df):
    """MSE of the forecasts from origins every H steps after the training part, and of the last value."""
    y = df["y"].to_numpy()
    model, naive = [], []
    for origin in range(N_TRAIN + L, N - H + 1, H):
        truth = y[origin:origin + H]
        model.append(np.mean((est.predict(df.iloc[:origin])["y"].to_numpy() - truth) ** 2))
        naive.append(np.mean((y[origin - 1] - truth) ** 2))
    return float(np.mean(model)), float(np.mean(naive))


@pytest.mark.parametrize("name", list(SMALL))
def test_on_a_trend_with_a_level_shift_the_default_beats_the_last_value_and_none_does_worse(name):
    """Trained on the first 480 steps, forecast from 15 origins after a level never seen in training.

    The networks alone (``linear_base=False``), whose normalisation this is. Measured here (seed 0,
    15 epochs, one thread): MSE last_value / none / last value forecast LMUFormer 0.021 / 6.43 /
    0.907, GTrXL 0.063 / 2.69 / 0.907, ATLAS 0.093 / 0.169 / 0.907. ATLAS's "none" keeps its
    instance normalisation at the output (RevIN with the window's mean), which carries it across
    the level too, but less well than the changes.
    """
    df = trend_and_shift()
    scores = {}
    for normalize in ("last_value", "none"):
        est = estimator(name, max_epochs=15, lr_schedule="cosine", normalize=normalize,
                        linear_base=False).fit(df.iloc[:N_TRAIN])
        scores[normalize], naive = _rolling_mse(est, df)
    assert scores["last_value"] < 0.25 * naive, (scores, naive)
    assert scores["none"] > 1.25 * scores["last_value"], (scores, naive)


def test_normalize_is_validated_in_fit():
    df = two_variables()
    for name in SMALL:
        with pytest.raises(InvalidParameterError, match="normalize"):
            estimator(name, max_epochs=1, normalize="revin").fit(df)
    # GTrXL's head reference: the changes always forecast from the last value
    with pytest.raises(ValueError, match="last_value_anchor=False needs normalize='none'"):
        estimator("gtrxl", max_epochs=1, last_value_anchor=False).fit(df)
    plain = estimator("gtrxl", max_epochs=1, normalize="none", last_value_anchor=False).fit(df)
    network = linear_base_of(plain.network_).network
    assert network.normalize == "none" and not network.last_value_anchor
