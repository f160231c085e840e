"""The estimator contract, written once and checked on every forecaster that ``tsformers`` exports.

Like ``tests/backbone/test_contract.py`` for the registry (and scikit-learn's
``parametrize_with_checks``): a forecaster is checked the moment it is exported,
with the small settings of its ``get_test_params()``. The streaming contract runs on
the forecasters that carry a stream state (``state_`` after fit), found by fitting,
not by name. What is particular to one model is tested in its own module.
"""
from __future__ import annotations

import ast
import copy
import functools
import inspect
import re

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

import tsformers
from tsformers import BaseForecaster

HORIZON, LOOKBACK, N_ROWS, FIT_ROWS = 6, 24, 240, 200
COLUMNS = ["load", "temp", "price"]


def _exported_forecasters() -> list[type]:
    """The concrete forecasters of ``tsformers.__all__``: those that take settings (base classes take none)."""
    found = [getattr(tsformers, name) for name in tsformers.__all__ if name.endswith("Forecaster")]
    return [cls for cls in found if isinstance(cls, type) and "horizon" in inspect.signature(cls).parameters]


def small(cls, **params) -> BaseForecaster:
    """``cls`` with the contract's settings; those it does not take (a baseline's ``max_epochs``) are left out."""
    accepted = inspect.signature(cls).parameters
    settings = {**cls.get_test_params(), "horizon": HORIZON, "lookback": LOOKBACK, "max_epochs": 1,
                "random_state": 0, **params}
    return cls(**{key: value for key, value in settings.items() if key in accepted})


def frame(n: int = N_ROWS, seed: int = 0) -> pd.DataFrame:
    """Three hourly series around different positive levels (the forecast must come back in their scale;
    PV-Client clips forecasts at zero, as PV power)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return pd.DataFrame({
        "date": pd.date_range("2024-01-01", periods=n, freq="h"),
        "load": 10 + np.sin(2 * np.pi * t / 24) + 0.1 * rng.standard_normal(n),
        "temp": 3 + np.cos(2 * np.pi * t / 12) + 0.1 * rng.standard_normal(n),
        "price": 6 + 0.5 * np.sin(2 * np.pi * t / 8) + 0.1 * rng.standard_normal(n),
    })


def values(forecast: pd.DataFrame) -> np.ndarray:
    return forecast[COLUMNS].to_numpy(dtype=float)


@functools.cache
def _fit(cls) -> tuple[BaseForecaster, object]:
    """A ``cls`` fitted on the first FIT_ROWS rows, once per session, and what its ``fit`` returned."""
    estimator = small(cls)
    return estimator, estimator.fit(frame().iloc[:FIT_ROWS])


ESTIMATORS = _exported_forecasters()
# the stream state is what a streaming forecaster fits besides its weights (the fits are the ones the tests use)
STREAMING = [cls for cls in ESTIMATORS if hasattr(_fit(cls)[0], "state_")]
# Another seed must change the forecast only where a seed is taken: the baselines (NaiveForecaster,
# SeasonalNaiveForecaster, LinearForecaster, ETSForecaster) take no random_state, since their fit draws nothing
# at random (GBMForecaster does: it draws its rows, and its test settings cap them below the contract's data).
# They are left out of this one check by this selection, not by a skip (CI fails on skips).
SEEDED = [cls for cls in ESTIMATORS if "random_state" in inspect.signature(cls).parameters]


def test_every_exported_forecaster_is_checked():
    assert {cls.__name__ for cls in ESTIMATORS} == {"AtlasForecaster", "ETSForecaster", "GBMForecaster",
                                                    "GTrXLForecaster", "GateformerForecaster", "LMUFormerForecaster",
                                                    "LinearForecaster", "NaiveForecaster", "PVClientForecaster",
                                                    "SeasonalNaiveForecaster"}
    assert {cls.__name__ for cls in STREAMING} == {"AtlasForecaster", "GTrXLForecaster", "LMUFormerForecaster"}
    assert {cls.__name__ for cls in ESTIMATORS} - {cls.__name__ for cls in SEEDED} == {
        "ETSForecaster", "LinearForecaster", "NaiveForecaster", "SeasonalNaiveForecaster"}


def _documented_parameters(cls) -> list[tuple[str, str | None]]:
    """Each (name, documented default or None) of the class docstring's Parameters section, once per entry:
    ``d_model, n_heads : int, default=64, 4`` documents two names with a default each."""
    doc = inspect.cleandoc(cls.__doc__)
    section = doc.split("Parameters\n----------\n", 1)[1]
    section = re.split(r"\n\w[\w ]*\n-+\n", section)[0]  # up to the next numpydoc section
    found = []
    for line in section.splitlines():
        if not line or line[0].isspace():
            continue
        names = [name.strip() for name in line.split(" : ", 1)[0].split(",")]
        default = re.search(r"default=(.*)$", line)
        values = [None] * len(names) if default is None else [v.strip() for v in default.group(1).split(",")]
        if default is not None and len(names) == 1:
            values = [default.group(1).strip()]
        assert len(values) == len(names), f"{cls.__name__}: {line!r} gives {len(values)} defaults for {names}"
        found += list(zip(names, values))
    return found


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_the_docstring_documents_every_parameter_once_with_its_true_default(cls):
    documented = _documented_parameters(cls)
    names = [name for name, _ in documented]
    signature = inspect.signature(cls).parameters
    assert sorted(names) == sorted(signature), (
        f"documented twice: {sorted({n for n in names if names.count(n) > 1})}, not documented: "
        f"{sorted(set(signature) - set(names))}, documented but not taken: {sorted(set(names) - set(signature))}")
    for name, default in documented:
        if default is None:
            continue
        shown = ast.literal_eval(default) if default not in ("None", "True", "False") else eval(default)
        assert shown == signature[name].default, (
            f"{cls.__name__}({name}=...) defaults to {signature[name].default!r}; its docstring says {default}")


@pytest.fixture(params=ESTIMATORS, ids=lambda cls: cls.__name__)
def fitted(request):
    """One fitted forecaster per class (trained once), on the first FIT_ROWS rows; tests that change it
    take a copy."""
    return _fit(request.param)[0]


# -- the estimator contract ---------------------------------------------------------------------


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_predict_before_fit_raises_not_fitted(cls):
    with pytest.raises(NotFittedError, match=f"This {cls.__name__} instance is not fitted yet. Call 'fit'"):
        small(cls).predict()


def test_fit_returns_self_and_the_forecast_continues_the_series_in_its_scale(fitted):
    history = frame().iloc[:FIT_ROWS]
    assert _fit(type(fitted))[1] is fitted
    for forecast, last in ((fitted.predict(), history["date"].iloc[-1]),
                           (fitted.predict(frame().iloc[:150]), frame()["date"].iloc[149])):
        assert list(forecast.columns) == ["date", *COLUMNS] and forecast.shape == (HORIZON, 4)
        expected = pd.date_range(last, periods=HORIZON + 1, freq="h")[1:]
        assert (forecast["date"].to_numpy() == expected.to_numpy()).all()
        assert np.isfinite(values(forecast)).all()
    # each column near its own level, not standardised
    levels = history[COLUMNS].tail(48)
    assert (np.abs(values(fitted.predict()).mean(0) - levels.mean().to_numpy()) < 3 * levels.std().to_numpy()).all()


def test_get_params_and_clone_round_trip(fitted):
    params = fitted.get_params()
    twin = clone(fitted)
    assert type(twin) is type(fitted) and twin.get_params() == params
    assert not hasattr(twin, "network_")
    assert type(fitted)(**params).get_params() == params


def test_save_and_load_give_identical_forecasts(fitted, tmp_path):
    path = fitted.save(tmp_path / "model")
    loaded = BaseForecaster.load(path)
    assert type(loaded) is type(fitted) and loaded.get_params() == fitted.get_params()
    pd.testing.assert_frame_equal(loaded.predict(), fitted.predict())
    pd.testing.assert_frame_equal(loaded.predict(frame().iloc[:150]), fitted.predict(frame().iloc[:150]))


def test_the_same_random_state_gives_identical_forecasts(fitted):
    again = small(type(fitted)).fit(frame().iloc[:FIT_ROWS]).predict()
    pd.testing.assert_frame_equal(again, fitted.predict())


@pytest.mark.parametrize("cls", SEEDED, ids=lambda cls: cls.__name__)
def test_another_random_state_gives_another_forecast(cls):
    """Another seed trains other weights; the forecast differs too, unless both fits dropped the network for
    their linear base's map (``linear_base``: the map is solved in closed form, which no seed changes)."""
    history = frame().iloc[:FIT_ROWS]
    other, fitted = small(cls, random_state=1).fit(history), _fit(cls)[0]
    weights = [m.network_.state_dict() for m in (other, fitted)]
    assert any(not torch.equal(a, weights[1][k]) for k, a in weights[0].items() if a.is_floating_point())
    if all(getattr(m, "network_used_", True) is False for m in (other, fitted)):
        np.testing.assert_array_equal(values(other.predict()), values(fitted.predict()))
    else:
        assert not np.array_equal(values(other.predict()), values(fitted.predict()))


def test_score_is_the_negative_mse_of_the_last_horizon_in_the_original_scale(fitted):
    df = frame()
    forecast = fitted.predict(df.iloc[:-HORIZON])
    expected = -np.mean((values(forecast) - df[COLUMNS].iloc[-HORIZON:].to_numpy()) ** 2)
    assert fitted.score(df) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="lookback \\+ horizon"):
        fitted.score(df.iloc[:LOOKBACK + HORIZON - 1])


# -- the streaming contract ---------------------------------------------------------------------


@pytest.fixture(params=STREAMING, ids=lambda cls: cls.__name__)
def streaming(request):
    """The fitted forecaster of a streaming class (the one ``fitted`` gives); tests that update it take a copy."""
    return _fit(request.param)[0]


def test_predict_after_fit_forecasts_from_the_state_of_the_fit_data(streaming):
    np.testing.assert_allclose(values(streaming.predict()), values(streaming.predict(frame().iloc[:FIT_ROWS])),
                               rtol=1e-4, atol=1e-5)


def test_update_then_predict_equals_predicting_from_the_full_history(streaming):
    df = frame()
    state = {k: v.clone() for k, v in streaming.state_.items()}
    updated = copy.deepcopy(streaming)
    for start, stop in ((FIT_ROWS, FIT_ROWS + 1), (FIT_ROWS + 1, FIT_ROWS + 13), (FIT_ROWS + 13, N_ROWS)):
        updated.update(df.iloc[start:stop])                                     # one row, a few, the rest
    streamed = updated.predict()
    np.testing.assert_allclose(values(streamed), values(streaming.predict(df)), rtol=1e-4, atol=1e-5)
    assert streamed["date"].iloc[0] == df["date"].iloc[-1] + pd.Timedelta(hours=1)
    assert not np.allclose(values(streamed), values(streaming.predict()))   # the update moved the forecast
    # predicting, with or without data, leaves the stored state alone
    assert all(torch.equal(streaming.state_[k], v) for k, v in state.items())


def test_update_refuses_rows_that_do_not_continue_the_series(streaming):
    with pytest.raises(ValueError, match="continue"):
        copy.deepcopy(streaming).update(frame().iloc[FIT_ROWS + 5:FIT_ROWS + 10])


def test_the_state_survives_save_and_load(streaming, tmp_path):
    df = frame()
    updated = copy.deepcopy(streaming).update(df.iloc[FIT_ROWS:FIT_ROWS + 20])
    updated.save(tmp_path / "model")
    loaded = type(streaming).load(tmp_path / "model")
    assert loaded.state_.keys() == updated.state_.keys()
    pd.testing.assert_frame_equal(loaded.predict(), updated.predict())
    more = df.iloc[FIT_ROWS + 20:FIT_ROWS + 30]
    pd.testing.assert_frame_equal(loaded.update(more).predict(), updated.update(more).predict())
