"""Benchmark data sets and demo data (installed as ``tsformers.datasets``).

>>> from tsformers.datasets import available, load_dataset, make_demo
>>> available()
['ETTh1', 'ETTh2', 'ETTm1', 'ETTm2', 'weather', 'exchange', 'illness']
>>> train = load_dataset("etth1", data_dir="data/", split="train")  # doctest: +SKIP
>>> demo = make_demo(n_series=2, layout="long")

The registered files are not shipped: see ``datasets/README.md`` for their
sources, splits and checksums, and set ``TSFORMERS_DATA`` (or pass
``data_dir=``) to the folder that holds them.
"""

from .demo import make_demo
from .registry import ENV_VAR, SPLITS, available, file_sha256, info, load_dataset, split_bounds

__all__ = [
    "ENV_VAR",
    "SPLITS",
    "available",
    "file_sha256",
    "info",
    "load_dataset",
    "make_demo",
    "split_bounds",
]
