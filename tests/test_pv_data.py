"""PV data: the demo plant's physics, and the loader of the real PV files (timestamps, weather in UTC, gaps).

The loader tests run on a small fake file in ``tmp_path`` whose hash is patched into the registry; the
last test reads the real golden file, and only if it is present.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tsformers import datasets
from tsformers.datasets import (
    clear_sky_ghi,
    file_sha256,
    load_dataset,
    load_pv,
    make_pv_demo,
    parse_swapped_timestamps,
    split_bounds,
)
from tsformers.datasets.registry import _registry

REAL_GOLDEN = Path("/work/shared/datasets/pv_golden_co_2020.csv")


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(datasets.ENV_VAR, raising=False)
    monkeypatch.setenv(datasets.URL_ENV_VAR, "http://127.0.0.1:9/")   # a closed port: no test downloads


# -- the demo plant --------------------------------------------------------------------------

def test_demo_columns_and_determinism():
    df = make_pv_demo(n_steps=24 * 3, seed=3)
    assert list(df.columns) == ["date", "power", "ghi", "clearsky_ghi", "temperature", "humidity", "cloud_cover"]
    pd.testing.assert_frame_equal(df, make_pv_demo(n_steps=24 * 3, seed=3))
    assert not df.equals(make_pv_demo(n_steps=24 * 3, seed=4))
    assert df["date"].diff().iloc[1:].eq(pd.Timedelta(hours=1)).all()


def test_day_length_follows_solar_geometry():
    """Sunrise to sunset lasts 2/15 * arccos(-tan(lat) tan(declination)) hours (the sunset hour angle)."""
    for lat, day in [(40.0, "2024-06-21"), (40.0, "2024-12-21"), (-35.0, "2024-06-21"), (0.0, "2024-03-20")]:
        minutes = pd.date_range(day, periods=24 * 60, freq="min")
        daylight = (clear_sky_ghi(minutes, lat) > 0).sum() / 60.0
        decl = np.deg2rad(23.45) * np.sin(2 * np.pi * (284 + minutes[0].day_of_year) / 365)
        expected = 2 / 15 * np.rad2deg(np.arccos(-np.tan(np.deg2rad(lat)) * np.tan(decl)))
        assert daylight == pytest.approx(expected, abs=2 / 60), (lat, day)
    summer, winter = (clear_sky_ghi(pd.date_range(d, periods=24, freq="h"), 40.0) for d in ("2024-06-21", "2024-12-21"))
    assert summer.argmax() == winter.argmax() == 12 and summer.max() > 1.5 * winter.max()
    noon = clear_sky_ghi(pd.DatetimeIndex(["2024-03-20 12:00"]), 0.0)[0]  # sun nearly overhead at the equator
    assert noon == pytest.approx(1098 * np.exp(-0.057), rel=1e-3)


def test_power_physics_night_clouds_and_temperature_derating():
    capacity = 4.0
    df = make_pv_demo(n_steps=24 * 30, freq="30min", latitude=35.0, capacity=capacity, seed=0)
    night = df["clearsky_ghi"] == 0
    assert night.any() and (df.loc[night, ["power", "ghi"]] == 0).all().all()
    assert df["power"].between(0, capacity).all() and (df["power"] > 0).any()
    # clouds only dim the sky: ghi stays below clear sky (up to the 2 % noise) and falls with cover
    day = ~night
    ratio = df.loc[day, "ghi"] / df.loc[day, "clearsky_ghi"]
    assert (ratio < 1.1).all() and np.corrcoef(df.loc[day, "cloud_cover"], ratio)[0, 1] < -0.8
    assert df["cloud_cover"].between(0, 1).all()
    # the NOCT cell temperature and -0.4 %/C derating, recomputed from the columns
    cell = df["temperature"] + 25.0 / 800.0 * df["ghi"]
    expected = np.clip(capacity * df["ghi"] / 1000.0 * (1 - 0.004 * (cell - 25.0)), 0, capacity)
    np.testing.assert_allclose(df["power"], expected, rtol=1e-12)
    warm = df.assign(temperature=df["temperature"] + 10.0)
    cell_warm = warm["temperature"] + 25.0 / 800.0 * warm["ghi"]
    assert (capacity * warm["ghi"] / 1000 * (1 - 0.004 * (cell_warm - 25)))[day].lt(df["power"][day] + 1e-12).all()


@pytest.mark.parametrize("kwargs, match", [({"latitude": 80.0}, "latitude"), ({"capacity": 0}, "capacity"),
                                           ({"freq": "fortnight"}, "freq"), ({"n_steps": 0}, "n_steps")])
def test_demo_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_pv_demo(**kwargs)


# -- timestamps with day and month swapped ---------------------------------------------------

def test_parse_swapped_timestamps_keeps_time_order():
    text = pd.Series(["31-01-2020 23:00", "02-01-2020 00:00", "02-01-2020 03:00", "13-02-2020 00:00",
                      "03-01-2020 00:00"])
    parsed = parse_swapped_timestamps(text)
    assert parsed.tolist() == pd.to_datetime(["2020-01-31 23:00", "2020-02-01 00:00", "2020-02-01 03:00",
                                              "2020-02-13 00:00", "2020-03-01 00:00"]).tolist()
    with pytest.raises(ValueError, match="row 1.*not later"):
        parse_swapped_timestamps(pd.Series(["13-02-2020 00:00", "01-01-2020 00:00"]))


# -- the loader, on a fake golden file -------------------------------------------------------

START = pd.Timestamp("2020-01-10 00:00")
LOCAL = pd.date_range(START, periods=6 * 24, freq="h")             # 10 to 15 January, local standard time
SHORT_GAP = LOCAL[[34, 35]]                                          # 2 missing hours: interpolated
LONG_GAP = LOCAL[80:88]                                              # 8 missing hours: the day before


def power_at(t: pd.DatetimeIndex) -> np.ndarray:
    hours = t.hour.to_numpy() + t.day.to_numpy() / 10.0
    return np.where((hours > 6) & (hours < 18), 1000 * np.sin(np.pi * (hours - 6) / 12), -5.0)


def ghi_at(t: pd.DatetimeIndex) -> np.ndarray:
    """The weather as a function of *local* time, to be found again after the alignment."""
    return np.maximum(power_at(t), 0) / 5 + 1.0


def write_fake_golden(folder: Path, monkeypatch) -> tuple[Path, pd.DatetimeIndex]:
    entry = datasets.info("pv_golden")
    kept = LOCAL.difference(SHORT_GAP.union(LONG_GAP))
    stamps = [t.strftime("%m-%d-%Y %H:%M" if t.day <= 12 else "%d-%m-%Y %H:%M") for t in kept]
    utc_label = kept                                                 # the weather in row u is for local u - 7 h
    frame = pd.DataFrame({"timestamp": stamps, "date": kept.strftime("%d-%m-%Y"), "time_x": kept.strftime("%H:%M"),
                          "ac_power__773": power_at(kept), "poa_irradiance__771": ghi_at(kept)})
    for k, name in enumerate(entry["pv"]["weather"]):
        frame[name] = ghi_at(utc_label - pd.Timedelta(hours=7)) + k
    for name in entry["pv"]["drop"]:
        if name not in frame:
            frame[name] = "Golden, CO" if name == "site_location" else 1.0
    path = folder / entry["file"]
    frame.to_csv(path, index=False)
    monkeypatch.setitem(_registry()["datasets"]["pv_golden"], "sha256", file_sha256(path))
    return path, kept


def test_pv_loader_fixes_timestamps_and_aligns_the_weather_by_time(tmp_path, monkeypatch):
    _, kept = write_fake_golden(tmp_path, monkeypatch)
    raw = load_pv("pv_golden", data_dir=tmp_path, fill_gaps=False)
    assert raw["timestamp"].tolist() == kept.tolist()
    assert list(raw.columns[:3]) == ["timestamp", "ac_power__773", "poa_irradiance__771"]
    assert not {"date", "time_x", "site_location", "latitude", "dc_capacity_kW"} & set(raw.columns)
    assert raw.attrs["site"]["capacity_kw"] == 6.0 and raw.attrs["site"]["latitude"] == pytest.approx(39.7416)
    # the weather for local t came from the row labelled t + 7 h; where that row is missing, NaN
    source = pd.DatetimeIndex(raw["timestamp"]) + pd.Timedelta(hours=7)
    has_weather = source.isin(kept)
    np.testing.assert_allclose(raw.loc[has_weather, "GHI"], ghi_at(kept[has_weather]))
    np.testing.assert_allclose(raw.loc[has_weather, "Temperature"], ghi_at(kept[has_weather]) + 6)
    assert raw.loc[~has_weather, "GHI"].isna().all() and (~has_weather).sum() == 7 + 2 + 7  # end, short, long gap
    # the plant's own sensor is aligned as written, and negative night power is kept as measured
    np.testing.assert_allclose(raw["poa_irradiance__771"], ghi_at(kept))
    assert (raw["ac_power__773"] < 0).any()


def test_pv_loader_fills_gaps_on_the_regular_grid(tmp_path, monkeypatch):
    _, kept = write_fake_golden(tmp_path, monkeypatch)
    df = load_dataset("golden", data_dir=tmp_path)                  # load_dataset hands PV files to load_pv
    assert df["timestamp"].tolist() == LOCAL.tolist() and not df.isna().any().any()
    power = df.set_index("timestamp")["ac_power__773"]
    before, after = LOCAL[33], LOCAL[36]
    expected = np.interp([34, 35], [33, 36], [power[before], power[after]])
    np.testing.assert_allclose(power[SHORT_GAP], expected)          # short: linear in time
    np.testing.assert_allclose(power[LONG_GAP], power[LONG_GAP - pd.Timedelta(days=1)])  # long: the day before
    ghi = df.set_index("timestamp")["GHI"]
    np.testing.assert_allclose(ghi[LOCAL[-7:]], ghi[LOCAL[-7:] - pd.Timedelta(days=1)])  # weather past the file
    weather_known = LOCAL.isin(kept) & (LOCAL + pd.Timedelta(hours=7)).isin(kept)
    assert df.attrs["filled"] == {**{c: 10 for c in ("ac_power__773", "poa_irradiance__771")},
                                  **{c: int((~weather_known).sum()) for c in datasets.info("golden")["pv"]["weather"]}}


def test_pv_split_follows_the_files_rows_by_time(tmp_path, monkeypatch):
    _, kept = write_fake_golden(tmp_path, monkeypatch)
    bounds = split_bounds("pv_golden", len(kept))
    full = load_pv("pv_golden", data_dir=tmp_path)
    parts = {s: load_pv("pv_golden", data_dir=tmp_path, split=s) for s in ("train", "val", "test")}
    pd.testing.assert_frame_equal(pd.concat(parts.values(), ignore_index=True), full)
    assert parts["val"]["timestamp"].iloc[0] == kept[bounds["val"][0]]
    assert parts["test"]["timestamp"].iloc[0] == kept[bounds["test"][0]]
    with_context = load_pv("pv_golden", data_dir=tmp_path, split="test", context=24)
    assert len(with_context) == len(parts["test"]) + 24
    pd.testing.assert_frame_equal(with_context.iloc[24:].reset_index(drop=True), parts["test"])


def test_pv_loader_checks_the_file(tmp_path, monkeypatch):
    path, _ = write_fake_golden(tmp_path, monkeypatch)
    with open(path, "a") as handle:
        handle.write("\n")
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_pv("pv_golden", data_dir=tmp_path)
    with pytest.raises(ValueError, match="not a PV data set"):
        load_pv("ETTh1", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="pv_cocoa_fl_2019.csv.*AbishaiTom/Solar-Forecasting-XGBoost"):
        load_dataset("pv_cocoa", data_dir=tmp_path, download_if_missing=False)


def test_pv_registry_entries():
    for name, target, offset in [("pv_golden", "ac_power__773", -7), ("pv_cocoa", "ac_power__5034", -5)]:
        entry = datasets.info(name)
        assert entry["target"] == target and entry["pv"]["utc_offset_hours"] == offset
        assert entry["time_col"] == "timestamp" and entry["split"] == "ratio_70_10_20"
        assert len(entry["sha256"]) == 64 and entry["pv"]["capacity_kw"] == 6.0
    assert datasets.info("golden")["name"] == "pv_golden" and datasets.info("PV_COCOA_FL_2019")["name"] == "pv_cocoa"


@pytest.mark.skipif(not REAL_GOLDEN.is_file(), reason="the real golden PV file is not in the shared folder")
def test_real_golden_file():
    raw = load_pv("pv_golden", data_dir=REAL_GOLDEN.parent, fill_gaps=False)
    csv = pd.read_csv(REAL_GOLDEN, usecols=["date", "time_x"])
    helper = pd.to_datetime(csv["date"] + " " + csv["time_x"], format="%d-%m-%Y %H:%M")
    assert (raw["timestamp"].to_numpy() == helper.to_numpy()).all(), "the day/month fix agrees with the date column"
    assert raw["ac_power__773"].corr(raw["GHI"]) > 0.8, "weather aligned to local time (-0.28 as written)"
    df = load_dataset("pv_golden", data_dir=REAL_GOLDEN.parent)
    assert len(df) == 366 * 24 and not df.isna().any().any() and df.attrs["filled"]["ac_power__773"] == 345
    assert (df["ac_power__773"] < 0).any(), "negative night power is the model's to clip, not the loader's"
    sizes = [len(load_dataset("pv_golden", data_dir=REAL_GOLDEN.parent, split=s)) for s in ("train", "val", "test")]
    assert sum(sizes) == len(df) and split_bounds("pv_golden", 8439)["test"] == (8439 - 1687, 8439)
