"""Property-based fuzzing of the data layer through an estimator: a clear error or a sound forecast, nothing else.

Random frames (sizes down to zero rows, dtypes, NaN/inf, time zones,
duplicate, unsorted and missing timestamps, column orders, pandas or polars)
go through ``fit`` and ``predict``. The only outcomes allowed are a
``ValueError``/``TypeError`` whose message names a column or a row, or a
finite forecast with the right shape and timestamps; when fitting succeeds,
every input row is accounted for (used, or reported as interpolated/masked).

``TSF_FUZZ_EXAMPLES`` raises the number of examples (CI runs a small profile).
"""
import inspect
import os

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import tsformers
from tsformers import GateformerForecaster

pytestmark = pytest.mark.filterwarnings("ignore:Series.values returning an ndarray")  # polars.from_pandas on tz data

EXAMPLES = int(os.environ.get("TSF_FUZZ_EXAMPLES", "25"))
HORIZON, LOOKBACK = 3, 6
TINY = dict(horizon=HORIZON, lookback=LOOKBACK, d_model=4, d_ff=4, n_heads=1, patch_len=2, stride=2, max_epochs=0)
ESTIMATORS = sorted((getattr(tsformers, n) for n in dir(tsformers) if n.endswith("Forecaster") and n != "BaseForecaster"),
                    key=lambda c: c.__name__)


# sizes that fit a lookback of 6, for the estimators that have such parameters
SHORT = dict(patch_len=2, stride=2, conv_kernel=4, window=4, chunk_size=4, omega_window=4, segment_len=4, mem_len=4,
             season_length=4)


def tiny(cls, **params):
    """The class's small test settings, untrained (max_epochs=0: the data path and the network are what is fuzzed)."""
    if cls is GateformerForecaster:
        return cls(**TINY, **params)
    names = inspect.signature(cls).parameters
    short = {k: v for k, v in SHORT.items() if k in names}
    settings = {**cls.get_test_params(), **short, "horizon": HORIZON, "lookback": LOOKBACK, "max_epochs": 0, **params}
    return cls(**{k: v for k, v in settings.items() if k in names})  # a baseline takes no max_epochs


ZONES = [None, "UTC", "Asia/Kolkata", "America/New_York"]


@st.composite
def frames(draw):
    n = draw(st.integers(0, 40))
    n_cols = draw(st.integers(1, 3))
    names = draw(st.lists(st.sampled_from(["a", "b", "load", "temp", "y", "x1"]), min_size=n_cols,
                          max_size=n_cols, unique=True))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    start = pd.Timestamp("2024-03-01")
    times = pd.date_range(start, periods=n, freq=draw(st.sampled_from(["h", "15min", "D", "MS"])),
                          tz=draw(st.sampled_from(ZONES)))
    df = pd.DataFrame({"date": times})
    for name in names:
        kind = draw(st.sampled_from(["float", "float32", "int", "text", "bool"]))
        column = rng.standard_normal(n)
        if kind == "float32":
            column = column.astype(np.float32)
        elif kind == "int":
            column = (column * 10).astype(np.int64)
        elif kind == "text":
            column = column.astype(str)
        elif kind == "bool":
            column = column > 0
        df[name] = column
    if n and draw(st.booleans()):  # damage some cells
        for _ in range(draw(st.integers(1, 3))):
            col = draw(st.sampled_from(names))
            if pd.api.types.is_float_dtype(df[col]):
                df.loc[draw(st.integers(0, n - 1)), col] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    if n > 2:
        damage = draw(st.sampled_from(["none", "none", "duplicate", "swap", "drop"]))
        i = draw(st.integers(1, n - 2))
        if damage == "duplicate":
            df.loc[i, "date"] = df.loc[i - 1, "date"]
        elif damage == "swap":
            df = df.iloc[[*range(i), i + 1, i, *range(i + 2, n)]].reset_index(drop=True)
        elif damage == "drop":
            df = df.drop(index=i).reset_index(drop=True)
    if draw(st.booleans()):  # long layout, rows of the series interleaved or grouped
        df = df.melt(id_vars="date", var_name="unique_id", value_name="value")
        if n and draw(st.booleans()):  # ragged: one series starts later and ends earlier
            key = draw(st.sampled_from(names))
            cut_head, cut_tail = draw(st.integers(0, n // 3)), draw(st.integers(0, n // 3))
            mine = (df["unique_id"] == key).to_numpy()
            order = np.cumsum(mine)
            df = df[~(mine & ((order <= cut_head) | (order > n - cut_tail)))].reset_index(drop=True)
        if draw(st.booleans()):
            df = df.sort_values("date", kind="stable").reset_index(drop=True)
    order = draw(st.permutations(list(df.columns)))
    return df[list(order)], draw(st.sampled_from(["pandas", "polars"]))


def _names_a_column_or_row(message: str, df: pd.DataFrame) -> bool:
    return any(f"'{c}'" in message for c in df.columns) or "row" in message or "empty" in message


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=frames(), missing=st.sampled_from(["error", "interpolate", "mask"]), fill_gaps=st.booleans())
def test_fit_and_predict_give_a_clear_error_or_a_sound_forecast(cls, case, missing, fill_gaps):
    df, library = case
    if library == "polars":
        try:
            data = pl.from_pandas(df)
        except Exception:  # a mixed-type object column has no polars twin: not a frame a polars user has
            assume(False)
    else:
        data = df
    # the baselines refuse missing="mask" by their parameter constraints (tests/test_baselines.py checks it)
    assume(cls._parameter_constraints["missing"][0].is_satisfied_by(missing))
    est = tiny(cls, missing=missing, fill_gaps=fill_gaps)
    try:
        est.fit(data)
        out = est.predict()
    except (ValueError, TypeError) as err:
        assert _names_a_column_or_row(str(err), df), f"unclear error: {err}"
        return
    out = out.to_pandas() if library == "polars" else out
    long = "unique_id" in df.columns
    value_columns = ["value"] if long else [c for c in df.columns if c != "date"]
    n_series = df["unique_id"].nunique() if long else 1
    values = out[value_columns].to_numpy(dtype=float)
    assert values.shape == (HORIZON * n_series, len(value_columns))
    assert np.isfinite(values).all()
    if long:  # each series continues from its own end (series of a ragged panel end at different times)
        ends = df.groupby("unique_id")["date"].max()
        firsts = out.groupby("unique_id")["date"].min()
        assert (pd.to_datetime(firsts) > pd.to_datetime(ends[firsts.index])).all()
    else:
        assert (pd.to_datetime(out["date"]) > pd.to_datetime(df["date"]).max()).all()
    # row accounting: every cell of every input row is used, interpolated or masked, or was inserted
    n_missing = int(df[value_columns].isna().sum().sum())
    report = est.report_
    inserted = sum(report["inserted_timestamps"])
    assert sum(report["interpolated"]) + sum(report["masked"]) == n_missing + len(value_columns) * inserted
    assert len(df) + inserted >= n_series * (LOOKBACK + HORIZON)


@pytest.mark.parametrize("n", [0, 1, LOOKBACK + HORIZON - 1])
def test_tiny_frames_are_refused_clearly(n):
    df = pd.DataFrame({"date": pd.date_range("2024", periods=n, freq="h"), "y": np.arange(n, dtype=float)})
    with pytest.raises(ValueError, match="empty|rows"):
        GateformerForecaster(**TINY).fit(df)
