"""What every benchmark worker does around its task, standard library only (it runs inside the other libraries'
virtual environments: ``_nf_worker.py``, ``_anchors_worker.py``): the peak memory, the result line its launcher
reads, and quiet logs."""
from __future__ import annotations

import json
import logging
import resource
import warnings


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


def emit(result: dict) -> None:
    """The one line the launcher parses (``_nfenv.run_worker``)."""
    print("RESULT " + json.dumps(result), flush=True)


def quiet(*loggers: str) -> None:
    """No warnings, and only errors from the named loggers: a worker's output is its result line."""
    warnings.filterwarnings("ignore")
    for name in loggers:
        logging.getLogger(name).setLevel(logging.ERROR)
