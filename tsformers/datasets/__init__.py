"""Benchmark data sets and demo data.

>>> from tsformers.datasets import available, load_dataset, make_demo, make_pv_demo
>>> available()
['ETTh1', 'ETTh2', 'ETTm1', 'ETTm2', 'weather', 'exchange', 'illness', 'pv_golden', 'pv_cocoa']
>>> train = load_dataset("etth1", data_dir="data/", split="train")  # doctest: +SKIP
>>> pv = load_dataset("pv_golden", data_dir="data/")  # weather aligned to local time  # doctest: +SKIP
>>> demo = make_demo(n_series=2, layout="long")
>>> plant = make_pv_demo(n_steps=24 * 7, latitude=40.0, capacity=5.0)

The registry (``registry.json`` beside this module, linked from the repository's
top-level ``datasets/`` folder) ships with the package; the registered files do
not: see ``datasets/README.md`` for their sources, splits and checksums, and
set ``TSFORMERS_DATA`` (or pass ``data_dir=``) to the folder that holds them.
"""

from .demo import clear_sky_ghi, make_demo, make_pv_demo
from .registry import (
    ENV_VAR,
    SPLITS,
    available,
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
    "available",
    "clear_sky_ghi",
    "file_sha256",
    "info",
    "load_dataset",
    "load_pv",
    "make_demo",
    "make_pv_demo",
    "parse_swapped_timestamps",
    "split_bounds",
]
