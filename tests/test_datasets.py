"""Tests for tsformers.datasets: registry, loader, splits and demo data.

Everything runs on small fake CSV files in ``tmp_path`` whose hash is patched
into the registry; only the last test reads a real file, and only if present.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tsformers import datasets
from tsformers.datasets import available, file_sha256, load_dataset, make_demo, split_bounds
from tsformers.datasets.registry import _registry

REAL_ETTH1 = Path("/work/shared/datasets/ETTh1.csv")


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    """Start every test without TSFORMERS_DATA, whatever the caller's shell has."""
    monkeypatch.delenv(datasets.ENV_VAR, raising=False)


def write_fake(folder, name, n_rows, monkeypatch=None, freq="h"):
    """Write a fake file for ``name`` whose ``OT`` column is the row number.

    With ``monkeypatch`` given, the registry's expected SHA-256 is patched
    to the fake file's hash so that it loads.
    """
    entry = datasets.info(name)
    frame = pd.DataFrame(
        {
            "date": pd.date_range("2016-07-01", periods=n_rows, freq=freq),
            "HUFL": np.arange(n_rows) % 7,  # ints on disk, floats after loading
            "OT": np.arange(n_rows, dtype=float),
        }
    )
    path = Path(folder) / entry["file"]
    frame.to_csv(path, index=False)
    if monkeypatch is not None:
        monkeypatch.setitem(_registry()["datasets"][entry["name"]], "sha256", file_sha256(path))
    return path


# --- registry --------------------------------------------------------------------


def test_available_lists_benchmarks_only():
    assert available() == ["ETTh1", "ETTh2", "ETTm1", "ETTm2", "weather", "exchange", "illness", "pv_golden", "pv_cocoa"]


@pytest.mark.parametrize("name", ["ETTh1", "ETTh2", "ETTm1", "ETTm2", "weather", "exchange", "illness"])
def test_registry_entries_are_complete(name):
    entry = datasets.info(name)
    assert len(entry["sha256"]) == 64 and int(entry["sha256"], 16) >= 0
    assert entry["time_col"] == "date" and entry["target"] == "OT"
    assert entry["split"] in _registry()["splits"]
    pd.tseries.frequencies.to_offset(entry["freq"])  # a valid pandas alias
    for key in ("file", "source", "url", "license", "citation"):
        assert entry[key]


def test_names_are_case_insensitive_and_aliases_work():
    assert datasets.info("etth1")["name"] == "ETTh1"
    assert datasets.info("WEATHER")["name"] == "weather"
    assert datasets.info("exchange_rate")["name"] == "exchange"
    assert datasets.info("national_illness")["name"] == "illness"


def test_unknown_dataset_lists_choices(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'nope'.*ETTh1.*illness"):
        load_dataset("nope", data_dir=tmp_path)


# --- file lookup and checksum ----------------------------------------------------


def test_missing_file_message(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("ETTh1", data_dir=tmp_path)
    msg = str(err.value)
    for part in ("ETTh1.csv", str(tmp_path), "TSFORMERS_DATA", "data_dir=", "zhouhaoyi/ETDataset", "ETT-small"):
        assert part in msg


def test_no_directory_message():
    with pytest.raises(FileNotFoundError, match="national_illness.csv.*TSFORMERS_DATA.*Autoformer"):
        load_dataset("illness")


def test_exchange_message_names_both_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="exchange_rate.csv") as err:
        load_dataset("exchange", data_dir=tmp_path)
    assert "thuml/Autoformer" in str(err.value)
    assert "laiguokun/multivariate-time-series-data" in str(err.value)


def test_checksum_mismatch_message(tmp_path):
    path = write_fake(tmp_path, "ETTh1", 10)  # registry still expects the real hash
    expected = datasets.info("ETTh1")["sha256"]
    with pytest.raises(ValueError, match="checksum") as err:
        load_dataset("ETTh1", data_dir=tmp_path)
    msg = str(err.value)
    assert "ETTh1.csv" in msg and expected in msg and file_sha256(path) in msg


def test_file_sha256_matches_hashlib(tmp_path):
    import hashlib

    path = tmp_path / "blob.bin"
    data = np.random.default_rng(0).bytes(3 * (1 << 20) + 17)  # several chunks
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()


def test_env_var_lookup(tmp_path, monkeypatch):
    write_fake(tmp_path, "illness", 30, monkeypatch, freq="7D")
    monkeypatch.setenv("TSFORMERS_DATA", str(tmp_path))
    frame = load_dataset("illness")
    assert len(frame) == 30


def test_data_dir_wins_over_env_var(tmp_path, monkeypatch):
    write_fake(tmp_path, "illness", 30, monkeypatch, freq="7D")
    monkeypatch.setenv("TSFORMERS_DATA", str(tmp_path / "elsewhere"))
    assert len(load_dataset("illness", data_dir=tmp_path)) == 30


def test_loaded_dtypes(tmp_path, monkeypatch):
    write_fake(tmp_path, "ETTh2", 50, monkeypatch)
    frame = load_dataset("etth2", data_dir=str(tmp_path))
    assert list(frame.columns) == ["date", "HUFL", "OT"]
    assert pd.api.types.is_datetime64_any_dtype(frame["date"])
    assert (frame.dtypes.iloc[1:] == np.float64).all()


# --- splits ----------------------------------------------------------------------


def test_ett_hour_split_rows(tmp_path, monkeypatch):
    write_fake(tmp_path, "ETTh1", 14410, monkeypatch)
    parts = {s: load_dataset("ETTh1", data_dir=tmp_path, split=s)["OT"] for s in ("train", "val", "test")}
    assert (parts["train"].iloc[0], parts["train"].iloc[-1], len(parts["train"])) == (0, 8639, 8640)
    assert (parts["val"].iloc[0], parts["val"].iloc[-1], len(parts["val"])) == (8640, 11519, 2880)
    assert (parts["test"].iloc[0], parts["test"].iloc[-1], len(parts["test"])) == (11520, 14399, 2880)
    assert len(load_dataset("ETTh1", data_dir=tmp_path)) == 14410


def test_ett_split_bounds():
    assert split_bounds("ETTh2", 17420) == {"train": (0, 8640), "val": (8640, 11520), "test": (11520, 14400)}
    assert split_bounds("ettm1", 69680) == {"train": (0, 34560), "val": (34560, 46080), "test": (46080, 57600)}
    with pytest.raises(ValueError, match="at least 14400 rows"):
        split_bounds("ETTh1", 14399)


def test_ratio_split_bounds():
    # num_train = int(0.7 n), num_test = int(0.2 n), val gets the rest
    assert split_bounds("weather", 52696) == {"train": (0, 36887), "val": (36887, 42157), "test": (42157, 52696)}
    assert split_bounds("exchange", 7588) == {"train": (0, 5311), "val": (5311, 6071), "test": (6071, 7588)}
    assert split_bounds("illness", 966) == {"train": (0, 676), "val": (676, 773), "test": (773, 966)}
    assert split_bounds("illness", 101) == {"train": (0, 70), "val": (70, 81), "test": (81, 101)}


def test_ratio_split_rows(tmp_path, monkeypatch):
    write_fake(tmp_path, "weather", 101, monkeypatch, freq="10min")
    val = load_dataset("weather", data_dir=tmp_path, split="val")["OT"]
    test = load_dataset("weather", data_dir=tmp_path, split="test")["OT"]
    assert val.tolist() == list(range(70, 81))
    assert test.tolist() == list(range(81, 101))


def test_context_prepends_lookback(tmp_path, monkeypatch):
    write_fake(tmp_path, "ETTh1", 14400, monkeypatch)
    val = load_dataset("ETTh1", data_dir=tmp_path, split="val", context=96)["OT"]
    assert (val.iloc[0], val.iloc[-1], len(val)) == (8640 - 96, 11519, 2880 + 96)
    test = load_dataset("ETTh1", data_dir=tmp_path, split="test", context=336)["OT"]
    assert (test.iloc[0], len(test)) == (11520 - 336, 2880 + 336)
    train = load_dataset("ETTh1", data_dir=tmp_path, split="train", context=96)["OT"]
    assert (train.iloc[0], len(train)) == (0, 8640)  # nothing before row 0


def test_context_never_before_row_zero(tmp_path, monkeypatch):
    write_fake(tmp_path, "illness", 100, monkeypatch, freq="7D")
    val = load_dataset("illness", data_dir=tmp_path, split="val", context=500)["OT"]
    assert val.tolist() == list(range(0, 80))


@pytest.mark.parametrize("kwargs, match", [
    ({"split": "validation"}, "unknown split 'validation'.*train.*val.*test"),
    ({"split": "val", "context": -1}, "context must be a non-negative integer"),
    ({"split": "val", "context": 1.5}, "context must be a non-negative integer"),
])
def test_bad_split_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_dataset("ETTh1", data_dir=tmp_path, **kwargs)


# --- demo data -------------------------------------------------------------------


def test_demo_is_deterministic():
    pd.testing.assert_frame_equal(make_demo(seed=3), make_demo(seed=3))
    assert not make_demo(seed=3).equals(make_demo(seed=4))


def test_demo_wide_layout():
    frame = make_demo()
    assert frame.shape == (24 * 7 * 8, 4)
    assert list(frame.columns) == ["date", "series_0", "series_1", "series_2"]
    assert pd.api.types.is_datetime64_any_dtype(frame["date"])
    assert (frame["date"].diff().dropna() == pd.Timedelta("1h")).all()
    assert not frame.isna().any().any()


def test_demo_long_layout_matches_wide():
    wide = make_demo(n_series=4, n_steps=100, freq="15min", seed=1)
    long = make_demo(n_series=4, n_steps=100, freq="15min", seed=1, layout="long")
    assert list(long.columns) == ["unique_id", "ds", "y"]
    assert len(long) == 400 and long["unique_id"].nunique() == 4
    back = long.pivot(index="ds", columns="unique_id", values="y").reset_index(drop=True)
    np.testing.assert_array_equal(back[wide.columns[1:]].to_numpy(), wide.iloc[:, 1:].to_numpy())
    assert (long["ds"].iloc[1] - long["ds"].iloc[0]) == pd.Timedelta("15min")


def test_demo_has_daily_seasonality():
    frame = make_demo(n_series=5, seed=7)
    for col in frame.columns[1:]:
        y = frame[col] - frame[col].rolling(168, center=True, min_periods=1).mean()  # drop the trend
        assert y.autocorr(24) > y.autocorr(12) + 0.5, col


def test_demo_series_differ():
    frame = make_demo(n_series=3)
    assert frame["series_0"].std() != pytest.approx(frame["series_1"].std(), rel=0.05)
    assert frame["series_0"].mean() != pytest.approx(frame["series_2"].mean(), rel=0.05)


@pytest.mark.parametrize("kwargs, match", [
    ({"n_series": 0}, "n_series must be a positive integer"),
    ({"n_series": 2.0}, "n_series must be a positive integer"),
    ({"n_steps": -5}, "n_steps must be a positive integer"),
    ({"n_steps": True}, "n_steps must be a positive integer"),
    ({"freq": "fortnight-ish"}, "freq must be a pandas frequency alias"),
    ({"layout": "tall"}, "unknown layout 'tall'.*wide.*long"),
])
def test_demo_argument_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_demo(**kwargs)


# --- the real file, only where it exists -----------------------------------------


@pytest.mark.skipif(not REAL_ETTH1.exists(), reason=f"{REAL_ETTH1} not present")
def test_real_etth1():
    frame = load_dataset("ETTh1", data_dir=REAL_ETTH1.parent)
    assert frame.shape == (17420, 8)
    assert frame["date"].iloc[0] == pd.Timestamp("2016-07-01 00:00")
    assert len(load_dataset("ETTh1", data_dir=REAL_ETTH1.parent, split="train")) == 8640
