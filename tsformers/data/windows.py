"""Sliding windows over a panel, as strided views, and the time-ordered train/validation split."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where tensors are made: the forecast path reads numpy
    import torch


class WindowDataset:
    """Every (input, target) window of a panel, as views: no copy of the data, only of each batch.

    A map-style dataset as torch's ``DataLoader`` reads one (``__len__``, ``__getitem__`` and the
    batched ``__getitems__``); torch is imported when one is built, so that this module (the
    numpy windows of a forecast) loads without it.

    Window ``i`` of series ``s`` reads ``values[s, i : i + lookback]`` as input
    (all channels) and ``targets[s, i + lookback : i + lookback + horizon]`` as
    target. ``__getitems__`` gathers a whole batch with one indexing
    operation (:func:`cut_windows`), so only the batch is ever copied.

    Parameters
    ----------
    values : Tensor of shape (n_series, n_time, n_channels)
        The network's input channels.
    lookback, horizon : int
    n_targets : int
        Without ``targets``, the first ``n_targets`` channels of ``values`` are the targets.
    targets : Tensor of shape (n_series, n_time, n_targets), optional
        The targets, where they differ from the input channels (missing targets stay NaN here).
    static : Tensor of shape (n_series, n_static), optional
        Encoded static attributes; then a batch is ``(x, static, y)`` instead of ``(x, y)``.
    spans : tuple of int arrays ``(first, last)``, optional
        For a ragged panel: the rows each series spans (inclusive); only windows
        inside a series' span are drawn.
    """

    def __init__(self, values: torch.Tensor, lookback: int, horizon: int, n_targets: int,
                 targets: torch.Tensor | None = None, static: torch.Tensor | None = None, spans=None):
        assert values.ndim == 3, f"values must be (n_series, n_time, n_vars), got {tuple(values.shape)}"
        assert values.shape[1] >= lookback + horizon, "a series is shorter than lookback + horizon"
        targets = values[..., :n_targets] if targets is None else targets
        assert targets.shape[:2] == values.shape[:2], "targets and values must share series and time"
        self.lookback, self.horizon, self.n_targets = lookback, horizon, n_targets
        self.windows = sliding_windows(values, lookback)                          # (S, W', C, L), a view
        self.target_windows = sliding_windows(targets[:, lookback:], horizon)    # (S, W, n_targets, H), a view
        self.n_windows = self.target_windows.shape[1]
        self.static = static
        self.index = None  # window i -> (series, start) through arithmetic, or this table for ragged panels
        if spans is not None:
            import torch

            first, last = (np.asarray(a) for a in spans)
            starts = [np.arange(f, l - lookback - horizon + 2) for f, l in zip(first, last)]
            self.index = torch.from_numpy(np.concatenate(
                [np.stack([np.full(len(st), s), st], axis=1) for s, st in enumerate(starts)]
                or [np.zeros((0, 2), dtype=np.int64)]).astype(np.int64))

    def __len__(self) -> int:
        return self.windows.shape[0] * self.n_windows if self.index is None else len(self.index)

    def __getitem__(self, index: int):
        return tuple(part[0] for part in self.__getitems__([index]))

    def __getitems__(self, indices):
        import torch

        index = torch.as_tensor(indices)
        if self.index is None:
            series, start = index // self.n_windows, index % self.n_windows
        else:
            series, start = self.index[index].unbind(-1)
        x = cut_windows(self.windows, series, start)                              # (B, L, C)
        y = cut_windows(self.target_windows, series, start)                       # (B, H, n_targets)
        if self.static is None:
            return x, y
        return x, self.static[series], y


def lead_future(values, n_future: int, horizon: int, future=None):
    """Shift the last ``n_future`` channels (known-future covariates) ``horizon`` steps earlier.

    Row t of the result holds those covariates at t + horizon, so a window
    ending at t sees them up to the end of its forecast horizon, and any
    network can use them as ordinary input channels. The final ``horizon``
    rows take ``future`` ``(n_series, horizon, n_future)`` (the values after
    the data), or NaN where no window may read them.

    Works on numpy arrays and torch tensors ``(n_series, n_time, n_vars)``; returns a copy.
    """
    led = values.copy() if isinstance(values, np.ndarray) else values.clone()
    if n_future == 0:
        return led
    n_time = led.shape[1]
    ahead = min(horizon, n_time)  # the rows whose led values lie after the data (all of them in a short run)
    tail = future[:, horizon - ahead:] if future is not None else np.full((led.shape[0], ahead, n_future), np.nan)
    if not isinstance(led, np.ndarray):
        import torch

        tail = torch.as_tensor(tail, dtype=led.dtype)
    led[:, : n_time - ahead, -n_future:] = values[:, horizon:, -n_future:]
    led[:, n_time - ahead:, -n_future:] = tail
    return led


def keep_batch(batch):
    """The collate function for :class:`WindowDataset`: ``__getitems__`` already built the batch."""
    return batch


def validation_steps(n_time: int, lookback: int, horizon: int, val_size: float | int) -> int:
    """How many final time steps of each series form the validation targets (0: no validation).

    ``val_size`` is a fraction of the series length or a number of steps. The
    validation part needs room for at least one window (``horizon`` steps) and
    the training part for at least one full window (``lookback + horizon``);
    if the series is too short for both, everything is used for training.
    """
    steps = int(round(val_size * n_time)) if isinstance(val_size, float) else int(val_size)
    if steps < horizon or n_time - steps < lookback + horizon:
        return 0
    return steps


def split_spans(first, last, n_time: int, lookback: int, val_steps: int):
    """The spans of a ragged panel's series in the parts :func:`split_train_val` cuts (None: no validation)."""
    if val_steps == 0:
        return (first, last), None
    cut = n_time - val_steps
    return (first, np.minimum(last, cut - 1)), (np.maximum(first - (cut - lookback), 0), last - (cut - lookback))


def split_train_val(values: np.ndarray, lookback: int, val_steps: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Time-ordered split: the training part, and the validation part with its ``lookback`` context."""
    if val_steps == 0:
        return values, None
    cut = values.shape[1] - val_steps
    return values[:, :cut], values[:, cut - lookback:]


def sliding_windows(values, length: int):
    """Every window of ``length`` steps of each series, as a view: ``(n_series, n_time - length + 1, C, length)``.

    ``values`` ``(n_series, n_time, C)`` is a numpy array or a torch tensor; nothing is copied.
    """
    if isinstance(values, np.ndarray):
        return np.lib.stride_tricks.sliding_window_view(values, length, axis=1)
    return values.unfold(1, length, 1)


def cut_windows(windows, rows, starts):
    """The windows ``(n, length, C)`` that start at ``starts`` in the series ``rows`` of :func:`sliding_windows`.

    The one place the package cuts windows from a panel: training batches, the last window of each series and
    the windows before each backtest origin. Only the selected windows are copied.
    """
    if isinstance(windows, np.ndarray):
        return np.ascontiguousarray(windows[rows, starts].swapaxes(1, 2))
    return windows[rows, starts].mT.contiguous()


def windows_before(values, rows, ends, length: int):
    """The ``length`` rows before each end: window ``i`` is ``values[rows[i], ends[i] - length : ends[i]]``.

    ``values`` ``(n_series, n_time, C)``, a numpy array or a torch tensor; ``rows`` and ``ends`` ``(n,)``
    integer arrays of the same library. Returns ``(n, length, C)``, a copy (:func:`cut_windows`).
    """
    return cut_windows(sliding_windows(values, length), rows, ends - length)
