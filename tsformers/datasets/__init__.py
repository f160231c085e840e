"""Benchmark data sets and demo data.

>>> from tsformers.datasets import available, load_dataset, make_demo, make_pv_demo
>>> available()
['ETTh1', 'ETTh2', 'ETTm1', 'ETTm2', 'weather', 'exchange', 'illness', 'pv_golden', 'pv_cocoa']
>>> train = load_dataset("etth1", split="train")  # downloaded once into ~/.cache/tsformers  # doctest: +SKIP
>>> pv = load_dataset("pv_golden", data_dir="data/")  # weather aligned to local time  # doctest: +SKIP
>>> demo = make_demo(n_series=2, layout="long")
>>> plant = make_pv_demo(n_steps=24 * 7, latitude=40.0, capacity=5.0)

The registry (``registry.json`` beside this module, linked from the repository's
top-level ``datasets/`` folder) ships with the package; the registered files do
not. :func:`load_dataset` reads a file from one folder (:func:`data_home`):
``data_dir=`` when given, else ``$TSFORMERS_DATA``, else the cache
``~/.cache/tsformers`` (``$XDG_CACHE_HOME/tsformers``). A missing file is
downloaded into that folder from the registry's URL at a fixed commit (the
Autoformer files come out of the zip archive upstream ships them in),
SHA-256-checked and renamed into place (:func:`download`);
``$TSFORMERS_DATA_URL`` names a mirror instead. ``datasets/README.md`` gives
their sources, licences, splits and checksums.
"""

from .demo import clear_sky_ghi, make_demo, make_pv_demo
from .registry import (
    ENV_VAR,
    SPLITS,
    URL_ENV_VAR,
    DownloadError,
    available,
    data_home,
    download,
    file_sha256,
    info,
    load_dataset,
    load_pv,
    parse_swapped_timestamps,
    split_bounds,
)

__all__ = [
    "ENV_VAR",
    "SPLITS",
    "URL_ENV_VAR",
    "DownloadError",
    "available",
    "clear_sky_ghi",
    "data_home",
    "download",
    "file_sha256",
    "info",
    "load_dataset",
    "load_pv",
    "make_demo",
    "make_pv_demo",
    "parse_swapped_timestamps",
    "split_bounds",
]
