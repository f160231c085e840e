"""Tests for tsformers.datasets: registry, loader, splits and demo data.

Everything runs on small fake CSV files in ``tmp_path`` whose hash is patched
into the registry; only the last test reads a real file, and only if present.
Downloads are served by a local ``http.server`` on 127.0.0.1; every test starts
with ``HOME`` in a temporary folder and ``TSFORMERS_DATA_URL`` at a closed
local port, so no test reaches the internet or the real cache.
"""

import http.server
import io
import socket
import threading
import shutil
import urllib.parse
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tsformers import datasets
from tsformers.datasets import available, file_sha256, load_dataset, make_demo, split_bounds
from tsformers.datasets import registry
from tsformers.datasets.registry import _registry

REAL_ETTH1 = Path("/work/shared/datasets/ETTh1.csv")


def closed_port_url():
    """A URL on 127.0.0.1 where nothing listens (the port was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/data"


@pytest.fixture(autouse=True)
def _no_env(monkeypatch, tmp_path_factory):
    """Start every test without TSFORMERS_DATA, with a temporary HOME (so the cache is
    ``HOME/.cache/tsformers``) and downloads aimed at a closed local port, whatever the
    caller's shell has: a test that downloads by mistake fails instead of using the network."""
    monkeypatch.delenv(datasets.ENV_VAR, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.setenv(datasets.URL_ENV_VAR, closed_port_url())


def cache_folder():
    """The default cache under the test's HOME."""
    return Path.home() / ".cache" / "tsformers"


class FileServer:
    """Serve ``folder`` on 127.0.0.1 from a background thread, counting the requests.

    ``mode`` changes what a GET answers: ``"ok"`` the file, ``"short"`` the full
    Content-Length but half the body and then a closed connection, ``"stall"``
    nothing until the test ends (for timeouts).
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        self.requests = []
        self.mode = "ok"
        self.release = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                if server.mode == "stall":
                    server.release.wait(10)
                    return
                path = server.folder / urllib.parse.unquote(self.path.rsplit("/", 1)[-1])
                if not path.is_file():
                    self.send_error(404)
                    return
                body = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.mode == "short":
                    body = body[: len(body) // 2]
                    self.close_connection = True
                self.wfile.write(body)

            def log_message(self, *args):  # keep the test output clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/mirror"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A local mirror serving ``tmp_path / "served"``, set as ``TSFORMERS_DATA_URL``."""
    folder = tmp_path / "served"
    folder.mkdir()
    srv = FileServer(folder)
    monkeypatch.setenv(datasets.URL_ENV_VAR, srv.url)
    yield srv
    srv.close()


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


def test_download_urls_are_pinned_upstream_urls():
    # every file downloads from a URL fixed to one commit, so the registered hashes stay valid
    pinned = {
        "ETT": ("https://raw.githubusercontent.com/zhouhaoyi/ETDataset/", "ETT-small/{file}"),
        "zip": ("https://raw.githubusercontent.com/aspire-zero/long_term_forecast_data/", None),
        "pv": ("https://raw.githubusercontent.com/AbishaiTom/Solar-Forecasting-XGBoost/", None),
    }
    archives = {"weather": ("weather.zip", "weather/weather.csv"),
                "exchange": ("exchange_rate.zip", "exchange_rate/exchange_rate.csv"),
                "illness": ("illness.zip", "illness/national_illness.csv")}
    upstream_pv = {"pv_golden": "final_golden_dataset.csv", "pv_cocoa": "final_cocoa.csv"}
    for name in available():
        entry = datasets.info(name)
        kind = "ETT" if name.startswith("ETT") else "zip" if name in archives else "pv"
        prefix, path = pinned[kind]
        assert entry["download_url"].startswith(prefix), name
        commit, rest = entry["download_url"][len(prefix):].split("/", 1)
        assert len(commit) == 40 and int(commit, 16) >= 0
        if kind == "ETT":
            assert rest == path.format(file=entry["file"]) and "archive_member" not in entry
        elif kind == "zip":
            assert (rest, entry["archive_member"]) == archives[name]
            assert entry["archive_member"].endswith("/" + entry["file"])
        else:
            assert rest == upstream_pv[name] and "archive_member" not in entry
        assert entry["bytes"] > 0


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
        load_dataset("ETTh1", data_dir=tmp_path, download_if_missing=False)
    msg = str(err.value)
    for part in ("ETTh1.csv", str(tmp_path), "TSFORMERS_DATA", "data_dir=", "zhouhaoyi/ETDataset", "ETT-small"):
        assert part in msg


def test_by_hand_message_for_an_archived_file(tmp_path):
    # illness ships upstream inside a zip: the message names the archive, the member and the folder
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("illness", data_dir=tmp_path, download_if_missing=False)
    msg = str(err.value)
    for part in ("national_illness.csv", "illness/national_illness.csv inside", "illness.zip", "Autoformer",
                 "aspire-zero", str(tmp_path), "TSFORMERS_DATA environment", "data_dir="):
        assert part in msg
    assert files_in(tmp_path) == []


def test_exchange_message_names_both_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="exchange_rate.csv") as err:
        load_dataset("exchange", data_dir=tmp_path, download_if_missing=False)
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


# --- downloads from a local server -----------------------------------------------


def files_in(folder):
    """Every entry of ``folder``, hidden temporary files included."""
    return sorted(p.name for p in Path(folder).iterdir()) if Path(folder).exists() else []


def test_download_into_cache_then_read_from_cache(server, monkeypatch):
    served = write_fake(server.folder, "ETTh1", 30, monkeypatch)
    reference = load_dataset("ETTh1", data_dir=server.folder, download_if_missing=False)
    assert server.requests == []

    frame = load_dataset("ETTh1")
    pd.testing.assert_frame_equal(frame, reference)
    assert server.requests == ["/mirror/ETTh1.csv"]
    assert files_in(cache_folder()) == ["ETTh1.csv"]  # no temporary file left next to it
    assert (cache_folder() / "ETTh1.csv").read_bytes() == served.read_bytes()
    assert (cache_folder() / "ETTh1.csv").stat().st_mode & 0o777 == 0o644
    assert datasets.data_home() == cache_folder()

    again = load_dataset("etth1")  # from the cache: no second request
    pd.testing.assert_frame_equal(again, reference)
    assert server.requests == ["/mirror/ETTh1.csv"]


def test_folder_precedence_data_dir_then_env_then_cache(server, monkeypatch, tmp_path):
    write_fake(server.folder, "ETTh1", 12, monkeypatch)
    explicit, env, xdg = tmp_path / "explicit", tmp_path / "env", tmp_path / "xdg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    monkeypatch.setenv(datasets.ENV_VAR, str(env))
    assert datasets.data_home(explicit) == explicit

    assert len(load_dataset("ETTh1", data_dir=explicit)) == 12
    assert files_in(explicit) == ["ETTh1.csv"] and files_in(env) == [] and files_in(xdg) == []

    assert datasets.data_home() == env
    assert len(load_dataset("ETTh1")) == 12
    assert files_in(env) == ["ETTh1.csv"] and files_in(xdg) == []

    monkeypatch.delenv(datasets.ENV_VAR)
    assert datasets.data_home() == xdg / "tsformers"
    assert len(load_dataset("ETTh1")) == 12
    assert files_in(xdg / "tsformers") == ["ETTh1.csv"]
    assert not cache_folder().exists()  # XDG_CACHE_HOME replaced ~/.cache
    assert len(server.requests) == 3


def test_registry_download_url_is_used_without_a_mirror(server, monkeypatch):
    write_fake(server.folder, "ETTh2", 5, monkeypatch)
    monkeypatch.delenv(datasets.URL_ENV_VAR)
    monkeypatch.setitem(_registry()["datasets"]["ETTh2"], "download_url", server.url + "/ETTh2.csv")
    assert len(load_dataset("ETTh2")) == 5
    assert server.requests == ["/mirror/ETTh2.csv"]


def test_present_file_is_read_without_a_request(server, monkeypatch, tmp_path):
    write_fake(tmp_path, "ETTh1", 8, monkeypatch)
    assert len(load_dataset("ETTh1", data_dir=tmp_path)) == 8
    assert datasets.download("ETTh1", data_dir=tmp_path) == tmp_path / "ETTh1.csv"
    assert server.requests == []


def test_download_function_returns_the_verified_file(server, monkeypatch):
    served = write_fake(server.folder, "ETTm1", 6, monkeypatch, freq="15min")
    path = datasets.download("ettm1")
    assert path == cache_folder() / "ETTm1.csv"
    assert file_sha256(path) == file_sha256(served)
    path.write_text("date,OT\n")  # a cached file that no longer matches is refused, not re-fetched
    with pytest.raises(ValueError, match="checksum mismatch.*delete it"):
        datasets.download("ETTm1")
    assert server.requests == ["/mirror/ETTm1.csv"]


def test_corrupt_download_is_deleted_and_reported(server, monkeypatch):
    write_fake(server.folder, "ETTh1", 20, monkeypatch)
    served = server.folder / "ETTh1.csv"
    with open(served, "a") as handle:  # the server now holds a different file than the registry's
        handle.write("2016-07-01 20:00:00,1,20.0\n")
    with pytest.raises(ValueError, match="checksum mismatch") as err:
        load_dataset("ETTh1")
    msg = str(err.value)
    assert datasets.info("ETTh1")["sha256"] in msg and file_sha256(served) in msg
    assert server.url + "/ETTh1.csv" in msg
    assert files_in(cache_folder()) == []


def test_offline_message_names_url_and_folder(monkeypatch):
    url = closed_port_url()
    monkeypatch.setenv(datasets.URL_ENV_VAR, url)
    with pytest.raises(datasets.DownloadError) as err:
        load_dataset("ETTh1")
    assert isinstance(err.value, FileNotFoundError)  # callers that caught a missing file still do
    msg = str(err.value)
    assert f"could not download ETTh1.csv from {url}/ETTh1.csv" in msg
    assert f"put it in {cache_folder()}" in msg and "TSFORMERS_DATA_URL" in msg
    assert files_in(cache_folder()) == []


def test_http_error_is_reported(server):
    wanted = r"ETTh1.csv from http://127.0.0.1:\d+/mirror/ETTh1.csv \(HTTP 404"
    with pytest.raises(datasets.DownloadError, match=wanted):
        load_dataset("ETTh1")
    assert files_in(cache_folder()) == []


def test_interrupted_download_leaves_no_partial_file(server, monkeypatch):
    write_fake(server.folder, "ETTh1", 200, monkeypatch)
    size = (server.folder / "ETTh1.csv").stat().st_size
    server.mode = "short"
    with pytest.raises(datasets.DownloadError, match=f"closed after {size // 2} of {size} bytes"):
        load_dataset("ETTh1")
    assert files_in(cache_folder()) == []
    server.mode = "ok"  # the next try starts from scratch and succeeds
    assert len(load_dataset("ETTh1")) == 200
    assert files_in(cache_folder()) == ["ETTh1.csv"]


def test_stalled_server_times_out(server, monkeypatch):
    write_fake(server.folder, "ETTh1", 5, monkeypatch)
    server.mode = "stall"
    monkeypatch.setattr(registry, "DOWNLOAD_TIMEOUT", 0.3)
    with pytest.raises(datasets.DownloadError, match="timed out"):
        load_dataset("ETTh1")
    assert files_in(cache_folder()) == []


def test_ctrl_c_during_download_leaves_no_partial_file(server, monkeypatch):
    write_fake(server.folder, "ETTh1", 50, monkeypatch)

    def interrupt(file, size):
        def show(received):
            if received:
                raise KeyboardInterrupt
        return show

    monkeypatch.setattr(registry, "_progress", interrupt)
    with pytest.raises(KeyboardInterrupt):
        load_dataset("ETTh1")
    assert files_in(cache_folder()) == []


def test_unwritable_folder_is_reported(server, monkeypatch, tmp_path):
    write_fake(server.folder, "ETTh1", 5, monkeypatch)
    not_a_folder = tmp_path / "plain_file"
    not_a_folder.write_text("x")
    with pytest.raises(datasets.DownloadError, match="cannot write to the folder.*writable folder"):
        load_dataset("ETTh1", data_dir=not_a_folder)
    assert server.requests == []


def test_bad_mirror_url_is_refused(monkeypatch):
    monkeypatch.setenv(datasets.URL_ENV_VAR, "example.org/tsformers")
    with pytest.raises(ValueError, match="TSFORMERS_DATA_URL='example.org/tsformers' is not an http"):
        load_dataset("ETTh1")


def test_download_if_missing_false_makes_no_request(server, monkeypatch):
    write_fake(server.folder, "ETTh1", 5, monkeypatch)
    with pytest.raises(FileNotFoundError, match="download_if_missing=False"):
        load_dataset("ETTh1", download_if_missing=False)
    with pytest.raises(FileNotFoundError, match="pv_golden_co_2020.csv"):
        datasets.load_pv("pv_golden", download_if_missing=False)
    assert server.requests == []


def test_pv_files_download_from_a_mirror(server):
    # no registry URL for PV, but a mirror is used; here it lacks the file
    with pytest.raises(datasets.DownloadError, match="pv_cocoa_fl_2019.csv.*HTTP 404"):
        load_dataset("pv_cocoa")
    assert server.requests == ["/mirror/pv_cocoa_fl_2019.csv"]


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_line_only_on_a_terminal(server, monkeypatch, capsys):
    write_fake(server.folder, "ETTh1", 40, monkeypatch)
    size = (server.folder / "ETTh1.csv").stat().st_size
    load_dataset("ETTh1")
    assert capsys.readouterr().err == ""  # not a terminal: quiet (logs, CI)

    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    load_dataset("ETTh1", data_dir=server.folder.parent / "second")
    assert terminal.getvalue() == f"\rtsformers: downloading ETTh1.csv: {size / 1e6:.1f} of {size / 1e6:.1f} MB\n"


@pytest.mark.skipif(not REAL_ETTH1.exists(), reason=f"{REAL_ETTH1} not present")
def test_real_etth1_downloads_with_the_registered_hash(monkeypatch):
    # the shared copy is byte-identical to upstream: served locally, it must pass the real registry hash
    srv = FileServer(REAL_ETTH1.parent)
    try:
        monkeypatch.setenv(datasets.URL_ENV_VAR, srv.url)
        frame = load_dataset("ETTh1")
    finally:
        srv.close()
    assert frame.shape == (17420, 8)
    assert file_sha256(cache_folder() / "ETTh1.csv") == datasets.info("ETTh1")["sha256"]
    assert srv.requests == ["/mirror/ETTh1.csv"]


# --- files shipped upstream inside a zip archive -------------------------------------------


def write_archive(server, name, members, monkeypatch):
    """Serve ``server.folder / <name>.zip`` holding ``members`` ({path inside: bytes}) as the registry's URL.

    The mirror variable is unset, so the registry's URL (the archive) is what a download reads.
    """
    archive = server.folder / f"{name}.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for inside, data in members.items():
            bundle.writestr(inside, data)
    monkeypatch.delenv(datasets.URL_ENV_VAR)
    monkeypatch.setitem(_registry()["datasets"][name], "download_url", f"{server.url}/{archive.name}")
    return archive


def fake_illness(tmp_path, monkeypatch, n_rows=30):
    """A fake national_illness.csv whose hash and size are patched into the registry: its bytes."""
    path = write_fake(tmp_path, "illness", n_rows, monkeypatch, freq="W-TUE")
    monkeypatch.setitem(_registry()["datasets"]["illness"], "bytes", path.stat().st_size)
    return path.read_bytes()


def test_archived_file_is_extracted_verified_and_the_archive_deleted(server, monkeypatch, tmp_path):
    (tmp_path / "made").mkdir()
    data = fake_illness(tmp_path / "made", monkeypatch)
    write_archive(server, "illness", {"illness/national_illness.csv": data, "illness/README.txt": b"other"},
                  monkeypatch)
    frame = load_dataset("ili")
    assert len(frame) == 30 and frame["OT"].tolist() == list(range(30))
    assert files_in(cache_folder()) == ["national_illness.csv"]      # no archive, no .part, no other member
    assert (cache_folder() / "national_illness.csv").read_bytes() == data
    assert server.requests == ["/mirror/illness.zip"]
    load_dataset("illness")                                           # read from the cache from now on
    assert len(server.requests) == 1


def test_archived_file_under_another_top_folder_is_found_by_name(server, monkeypatch, tmp_path):
    (tmp_path / "made").mkdir()
    data = fake_illness(tmp_path / "made", monkeypatch)
    write_archive(server, "illness", {"dataset/illness/national_illness.csv": data}, monkeypatch)
    assert len(load_dataset("illness")) == 30


def test_archive_without_the_member_is_refused_and_nothing_is_left(server, monkeypatch, tmp_path):
    (tmp_path / "made").mkdir()
    fake_illness(tmp_path / "made", monkeypatch)
    write_archive(server, "illness", {"illness/other.csv": b"date,OT\n"}, monkeypatch)
    with pytest.raises(ValueError, match=r"holds no illness/national_illness.csv \(its members: illness/other.csv"):
        load_dataset("illness")
    assert files_in(cache_folder()) == []


def test_member_of_another_size_is_refused_before_it_is_written(server, monkeypatch, tmp_path):
    (tmp_path / "made").mkdir()
    data = fake_illness(tmp_path / "made", monkeypatch)
    write_archive(server, "illness", {"illness/national_illness.csv": data + b"x" * 10_000}, monkeypatch)
    wanted = f"holds illness/national_illness.csv of {len(data) + 10_000} bytes, not the registered {len(data)}"
    with pytest.raises(ValueError, match=wanted):
        load_dataset("illness")
    assert files_in(cache_folder()) == []


def test_member_with_another_hash_is_deleted_and_reported(server, monkeypatch, tmp_path):
    (tmp_path / "made").mkdir()
    data = fake_illness(tmp_path / "made", monkeypatch)
    changed = data.replace(b"2002", b"2003", 1) if b"2002" in data else data[:-2] + b"9\n"
    assert len(changed) == len(data) and changed != data
    write_archive(server, "illness", {"illness/national_illness.csv": changed}, monkeypatch)
    with pytest.raises(ValueError, match="checksum mismatch for national_illness.csv downloaded from "
                                         "illness/national_illness.csv inside http"):
        load_dataset("illness")
    assert files_in(cache_folder()) == []


def test_a_page_that_is_not_a_zip_is_refused_with_the_way_out(server, monkeypatch, tmp_path):
    (tmp_path / "made").mkdir()
    fake_illness(tmp_path / "made", monkeypatch)
    (server.folder / "illness.zip").write_text("<html>sign in to continue</html>")
    monkeypatch.delenv(datasets.URL_ENV_VAR)
    monkeypatch.setitem(_registry()["datasets"]["illness"], "download_url", f"{server.url}/illness.zip")
    with pytest.raises(ValueError, match="did not return a zip archive") as err:
        load_dataset("illness")
    assert "set TSFORMERS_DATA_URL to a mirror that serves national_illness.csv" in str(err.value)
    assert files_in(cache_folder()) == []


def test_a_mirror_serves_the_archived_file_itself(server, monkeypatch, tmp_path):
    fake = write_fake(server.folder, "illness", 12, monkeypatch, freq="W-TUE")
    assert len(load_dataset("illness")) == 12                         # TSFORMERS_DATA_URL + file name, no zip
    assert server.requests == ["/mirror/national_illness.csv"]
    assert file_sha256(cache_folder() / "national_illness.csv") == file_sha256(fake)


REAL_DATA = REAL_ETTH1.parent


@pytest.mark.skipif(not (REAL_DATA / "national_illness.csv").exists() or not (REAL_DATA / "pv_golden_co_2020.csv").exists(),
                    reason=f"the real national_illness.csv and pv_golden_co_2020.csv are not in {REAL_DATA}")
def test_real_files_download_from_the_registered_kind_of_url(server, monkeypatch):
    # the real files, packed as upstream ships them (illness in its zip, PV as a plain file under its
    # upstream name), served locally: they must pass the registry's real hash and size unpatched
    upstream = datasets.info("pv_golden")["download_url"].rsplit("/", 1)[-1]
    shutil.copy(REAL_DATA / "pv_golden_co_2020.csv", server.folder / upstream)
    write_archive(server, "illness", {"illness/national_illness.csv": (REAL_DATA / "national_illness.csv").read_bytes()},
                  monkeypatch)
    monkeypatch.setitem(_registry()["datasets"]["pv_golden"], "download_url", f"{server.url}/{upstream}")
    assert load_dataset("illness").shape == (966, 8)
    assert datasets.load_pv("pv_golden").shape[0] > 8000
    assert files_in(cache_folder()) == ["national_illness.csv", "pv_golden_co_2020.csv"]
    for name in ("illness", "pv_golden"):
        entry = datasets.info(name)
        path = cache_folder() / entry["file"]
        assert file_sha256(path) == entry["sha256"] and path.stat().st_size == entry["bytes"]
