"""Missing values as an explicit choice: interpolate short gaps, or mask them and tell the network.

``missing="interpolate"`` fills each gap of a series linearly in time (the grid
is regular, so linear in position is linear in time) when it is at most
``max_gap`` steps long (:data:`DEFAULT_MAX_GAP` unless told), and refuses longer gaps and gaps at either end of a
series, which have nothing to interpolate from. ``missing="mask"`` keeps the
gaps: inputs get 0 there plus an observed-mask channel per masked variable
(as GluonTS and neuralforecast's ``available_mask`` do), and missing targets
are left out of the loss.

:class:`MissingPolicy` is the one place that says what each choice means at
each step of the data path (:mod:`tsformers.data.prepare`): whether a frame may
hold gaps when it is read, how they are filled, which channels the network gets,
and what a forecast origin inside a gap sees.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tsformers.data.frames import Panel

MODES = ("error", "interpolate", "mask")

#: The longest gap ``missing="interpolate"`` fills when ``max_gap`` is not given. A straight line through a
#: longer outage invents a stretch of the series the model then trains on and forecasts from, so a longer
#: gap is refused with its length, and filling it is an explicit choice (``max_gap=k`` or ``missing="mask"``).
DEFAULT_MAX_GAP = 3


@dataclass(frozen=True)
class MissingPolicy:
    """What one ``missing=`` choice does to a panel, step by step.

    Parameters
    ----------
    mode : {"error", "interpolate", "mask"}
        "error": a missing value in a target or past covariate is refused when
        the frame is read. "interpolate": gaps are read, then filled linearly
        (:meth:`fill`); at a forecast origin inside a gap, the gap is held at the
        last value observed before it (:meth:`last_observed_before`).
        "mask": gaps are read and kept; the network gets them as 0 plus an
        observed-mask channel per variable (:meth:`with_masks`), and missing
        targets are left out of the loss.
    max_gap : int, optional
        The longest gap, in steps, that "interpolate" fills (:data:`DEFAULT_MAX_GAP` when None);
        longer ones are refused.
    """

    mode: str = "error"
    max_gap: int | None = None

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"missing must be one of {list(MODES)}, got {self.mode!r}.")

    @property
    def gap_limit(self) -> int:
        """The longest gap "interpolate" fills: ``max_gap``, or :data:`DEFAULT_MAX_GAP` when it is None."""
        return DEFAULT_MAX_GAP if self.max_gap is None else self.max_gap

    @property
    def allows_gaps(self) -> bool:
        """Whether a frame may hold missing values in its targets and past covariates when it is read."""
        return self.mode != "error"

    def fill(self, panel: Panel, names: list[str]) -> Panel:
        """The panel with its gaps interpolated ("interpolate"); any other mode returns ``panel`` itself.

        ``names`` are the panel's variables, for the messages.
        """
        if self.mode != "interpolate" or not np.isnan(panel.values).any():
            return panel
        values = interpolate_gaps(panel.values, names, panel.series, panel.times, self.gap_limit,
                                  spans=(panel.first, panel.last), limit_is_default=self.max_gap is None)
        return Panel(values=values, times=panel.times, series=panel.series, inserted=panel.inserted,
                     static=panel.static, first=panel.first, last=panel.last)

    def with_masks(self, values: np.ndarray, n_gappy: int) -> np.ndarray:
        """The network's view of the first ``n_gappy`` variables (those that may hold gaps).

        "mask": ``(n_series, n_time, n_vars)`` -> ``(n_series, n_time, n_vars + n_gappy)``, gaps zeroed and
        an observed-mask channel per gappy variable after them (:func:`with_observed_mask`). Otherwise
        ``values`` itself.
        """
        return with_observed_mask(values, n_gappy if self.mode == "mask" else 0)

    def last_observed_before(self, raw_values: np.ndarray, rows: np.ndarray, origins: np.ndarray,
                             n_gappy: int) -> np.ndarray | None:
        """Per forecast window, the last row observed before its origin, where a filled gap runs up to it.

        Interpolation fills a gap from both of its ends; where a gap runs up to an origin, its far end lies
        after the origin, so a forecast from there must hold those steps at the last value observed before
        it instead. ``raw_values`` ``(n_series, n_time, >= n_gappy)`` are the values as read (gaps NaN);
        window ``i`` forecasts series ``rows[i]`` from row ``origins[i]``. Returns ``(n, n_gappy)`` row
        indices, or None when nothing needs holding (no "interpolate", or no gap reaches an origin).
        """
        if self.mode != "interpolate" or not np.isnan(raw_values[..., :n_gappy]).any():
            return None
        last = last_observed(raw_values[..., :n_gappy])[rows, origins - 1]        # (n, G)
        return None if (last == (origins - 1)[:, None]).all() else last

    @staticmethod
    def report(raw: Panel, filled: Panel) -> dict:
        """Per series: timestamps inserted by fill_gaps, values interpolated, values left missing (masked)."""
        before = np.isnan(raw.span_values()).sum(axis=(1, 2)) - raw.padding()
        after = np.isnan(filled.span_values()).sum(axis=(1, 2)) - raw.padding()
        return {"series": list(raw.series), "inserted_timestamps": [int(n) for n in raw.inserted],
                "interpolated": [int(n) for n in before - after], "masked": [int(n) for n in after]}


def interpolate_gaps(values: np.ndarray, names: list[str], series: list, times, max_gap: int | None,
                     spans=None, limit_is_default: bool = False) -> np.ndarray:
    """Fill the NaN gaps of ``values`` ``(n_series, n_time, n_vars)`` linearly; return a copy.

    Gaps longer than ``max_gap`` steps are refused (None: no limit). ``spans`` ``(first, last)`` limits
    each series to the rows it covers (a ragged panel); ``limit_is_default`` says in the message that the
    user did not choose the limit.
    """
    out = values.copy()
    n_time = values.shape[1]
    for s, key in enumerate(series):
        first, last = (0, n_time - 1) if spans is None else (int(spans[0][s]), int(spans[1][s]))
        steps = np.arange(last - first + 1)
        for j, name in enumerate(names):
            column = out[s, first: last + 1, j]  # a view: filled in place
            missing = np.isnan(column)
            if not missing.any():
                continue
            where = f"column '{name}'" + ("" if key is None else f" of series '{key}'")
            start, length = _longest_run(missing)
            if missing[0] or missing[-1]:
                edge = 0 if missing[0] else len(column) - 1
                raise ValueError(f"{where} is missing at its {'start' if edge == 0 else 'end'} ({times[first + edge]}), "
                                 f"where there is nothing to interpolate from; trim those rows or use missing='mask'.")
            if max_gap is not None and length > max_gap:
                chosen = " (the default)" if limit_is_default else ""
                raise ValueError(f"{where} has a gap of {length} steps from {times[first + start]}, longer than "
                                 f"max_gap={max_gap}{chosen}; pass max_gap={length} or more to interpolate it, "
                                 f"use missing='mask', or fill it yourself.")
            column[missing] = np.interp(steps[missing], steps[~missing], column[~missing])
    return out


def last_observed(values: np.ndarray) -> np.ndarray:
    """For each step, the index of the last non-missing value at or before it (-1 where none).

    ``(n_series, n_time, n_vars)`` -> the same shape, int64.
    """
    steps = np.arange(values.shape[1], dtype=np.int64)[None, :, None]
    return np.maximum.accumulate(np.where(np.isnan(values), -1, steps), axis=1)


def hold_trailing_gaps(window: np.ndarray, positions: np.ndarray, last: np.ndarray, values: np.ndarray,
                       rows: np.ndarray) -> np.ndarray:
    """Replace the values of ``window`` after ``last`` by the value at ``last``: a gap that runs up to a forecast
    origin is held at its last observed value, since interpolating it would read values after the origin.

    ``window`` ``(n, L, G)`` covers the panel rows ``positions`` ``(n, L)`` of the series ``rows`` ``(n,)`` of
    ``values`` ``(n_series, n_time, >= G)``; ``last`` ``(n, G)`` is the last observed row before each origin.
    Returns a copy.
    """
    held = values[rows[:, None], last, np.arange(last.shape[1])]              # (n, G)
    trailing = positions[:, :, None] > last[:, None, :]
    return np.where(trailing, held[:, None, :], window)


def with_observed_mask(values: np.ndarray, n_masked: int) -> np.ndarray:
    """Zero the gaps of the first ``n_masked`` variables and insert one observed-mask channel for each after them.

    ``(n_series, n_time, n_vars)`` -> ``(n_series, n_time, n_vars + n_masked)``, channel order:
    the masked variables, their masks (1 = observed), the remaining variables.
    """
    if n_masked == 0:
        return values
    head, rest = values[..., :n_masked], values[..., n_masked:]
    observed = ~np.isnan(head)
    return np.concatenate([np.where(observed, head, 0.0), observed.astype(values.dtype), rest], axis=-1)


def _longest_run(missing: np.ndarray) -> tuple[int, int]:
    """Start and length of the longest run of True."""
    edges = np.diff(np.concatenate([[0], missing.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    k = int(np.argmax(ends - starts))
    return int(starts[k]), int(ends[k] - starts[k])
