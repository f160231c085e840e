"""One fit at a time draws from torch's global random generator, so a seed gives the same weights in any thread.

Weight initialisation (``reset_parameters`` of torch's layers) and dropout
draw from torch's process-wide default generator: neither takes a generator
of its own. A fit seeds that generator from ``random_state`` and then draws
from it, so two fits running in two threads would interleave their draws and
end with weights that depend on the timing. Every seeded section (building the
network, and the whole of training, which reseeds before each step) therefore
holds :data:`SEEDED_LOCK`: fits in several threads of one process run their
seeded sections one after another and give the weights of serial fits.
Shuffling draws from its own generator and needs no lock.
"""
from __future__ import annotations

import threading

import numpy as np
import torch

#: Held while torch's global generator is seeded and drawn from. Reentrant, so a seeded section may start
#: another (a callback that fits a model); code of your own that draws from torch's global generator in
#: another thread during a fit can hold it too, to leave the fit's draws alone.
SEEDED_LOCK = threading.RLock()


def seeded_call(seed: int, function, *args, **kwargs):
    """``function(*args, **kwargs)`` with torch's global generator seeded from ``seed``, under :data:`SEEDED_LOCK`."""
    with SEEDED_LOCK:
        torch.manual_seed(seed)
        return function(*args, **kwargs)


def seeded_apart(seed: int, function, *args, **kwargs):
    """:func:`seeded_call`, with torch's global CPU generator restored afterwards: what ``function`` draws leaves
    the caller's draws as they were (building an ensemble's other members when a saved model is read)."""
    with SEEDED_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return function(*args, **kwargs)


def member_seeds(seed: int, size: int) -> list[int]:
    """The seeds of an ensemble's ``size`` members fitted under ``seed``: ``seed`` itself first (an ensemble of
    one is the plain fit), then seeds drawn from ``numpy.random.SeedSequence([seed, member])``, so the members
    of two ensembles fitted under nearby seeds (0 and 1, say) share none."""
    return [seed] + [int(np.random.SeedSequence([seed, member]).generate_state(1)[0]) for member in range(1, size)]
