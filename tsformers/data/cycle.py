"""The seasonal cycle (``cycle=`` of the estimators): each target's mean profile over one period, taken out of
the scaled values before the network reads them and added back onto its forecast.

This is the residual cycle forecasting of CycleNet (Lin et al., NeurIPS 2024), with the cycle fixed to the
mean of each phase over the training part instead of learned: for a period of ``P`` steps, phase
``p = (steps since a fixed origin) mod P`` and target ``v`` of a series,

``cycle[p, v] = mean of the scaled training values of v at phase p``

and the network sees ``scaled - cycle[phase]`` and forecasts the same, so the forecast is the network's
output plus the cycle at the phases of the horizon. A daily profile of load or temperature then costs the
network nothing to carry over a 96-step window, which at hourly steps spans four days; what is left for it
is how the current days differ from the usual day. The means come from the training part only, so the
validation part stays unseen.

Phases are counted on the data's time grid from a Monday midnight (1970-01-05), so that at a step that
divides a day, phase 0 is midnight (a daily cycle) and at a daily step Monday (a weekly one); at steps of
varying length from the last step at or before it (January 1970 at monthly steps); an integer time axis
counts from step 0. Timestamps in a time zone count in their local (wall-clock) time.

``cycle="auto"`` picks the period by the step (:func:`resolve`): a day at steps that divide a day (24 at
hourly steps, 96 at 15 minutes, 144 at 10 minutes), a week at a daily step (7) and at business days (5),
a year at monthly (12) and quarterly (4) steps; none at other steps, on an integer time axis (which has no
calendar), or where the training part spans fewer than two periods (:data:`MIN_PERIODS`), whose phase
means would only copy the series.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tsformers.data.time import Step

__all__ = ["MIN_PERIODS", "SeasonalCycle", "resolve", "step_index"]

#: ``cycle="auto"`` takes no cycle where the longest series' training part spans fewer periods than this.
MIN_PERIODS = 2

#: Where phases count from: a Monday at midnight, so that phase 0 of a daily cycle is midnight, of a weekly
#: one Monday.
ORIGIN = pd.Timestamp("1970-01-05")

_DAY, _WEEK = pd.Timedelta(days=1), pd.Timedelta(days=7)
# auto's periods at steps of varying length: business days (a week of 5), months and quarters (a year)
_CALENDAR_PERIODS = {"B": 5, "M": 12, "MS": 12, "ME": 12, "BM": 12, "BMS": 12, "BME": 12, "Q": 4, "QS": 4,
                     "QE": 4, "BQ": 4, "BQS": 4, "BQE": 4}


def resolve(cycle, step: Step, where: str = "") -> int | None:
    """The period in steps that ``cycle=`` asks for on a time axis of ``step``, or None for no cycle.

    Parameters
    ----------
    cycle : None, "auto" or int
        The parameter as given: an int is the period in steps (at least 2).
    step : str or int
        The fitted step: an offset alias for dates, an int for integer steps.
    where : str
        Names the estimator in messages.

    Raises
    ------
    ValueError
        ``cycle`` is neither None, "auto" nor an int of at least 2.
    """
    if cycle is None:
        return None
    if isinstance(cycle, str):
        if cycle != "auto":
            raise ValueError(f"cycle={cycle!r}{where} is not a period; pass 'auto' (a day, a week or a year by the "
                             f"data's step), a period in steps (e.g. cycle=24 for hourly data), or None.")
        return _auto_period(step)
    if isinstance(cycle, (bool, np.bool_)) or not isinstance(cycle, (int, np.integer)) or cycle < 2:
        raise ValueError(f"cycle={cycle!r}{where}: a period is a whole number of steps of at least 2 (e.g. "
                         f"cycle=24 for a daily cycle of hourly data); or pass 'auto' or None.")
    return int(cycle)


def _auto_period(step: Step) -> int | None:
    if not isinstance(step, str):
        return None                                   # integer steps: no calendar to read a cycle from
    offset = pd.tseries.frequencies.to_offset(step)
    length = _fixed_length(offset)
    if length is not None:
        for span in (_DAY, _WEEK):
            if length < span and span % length == pd.Timedelta(0):
                return span // length
        return None
    return _CALENDAR_PERIODS.get(offset.rule_code.split("-")[0]) if offset.n == 1 else None


def _fixed_length(offset) -> pd.Timedelta | None:
    """The length of a step of fixed length in wall-clock time (hours, minutes..., days), else None (months...)."""
    if isinstance(offset, pd.offsets.Tick):
        return pd.Timedelta(offset.nanos, unit="ns")
    if isinstance(offset, pd.offsets.Day):    # a calendar day on pandas 3, 24 hours of wall-clock time here
        return pd.Timedelta(days=offset.n)
    return None


def step_index(time, step: Step) -> int:
    """How many steps of ``step`` lie from :data:`ORIGIN` (from 0 on an integer axis) to ``time``."""
    if not isinstance(step, str):
        return int(time) // int(step)
    time = pd.Timestamp(time)
    if time.tz is not None:
        time = time.tz_localize(None)                 # wall-clock time, as the calendar features read it
    offset = pd.tseries.frequencies.to_offset(step)
    length = _fixed_length(offset)
    if length is not None:
        return (time - ORIGIN) // length
    anchor = offset.rollback(ORIGIN)                  # the last step at or before the origin (Jan 1970 monthly)
    first, last = (anchor, time) if time >= anchor else (time, anchor)
    count = len(pd.date_range(first, last, freq=offset)) - 1
    return count if time >= anchor else -count


@dataclass
class SeasonalCycle:
    """Each series' mean profile of its targets over a period, in the scaled units.

    Attributes
    ----------
    period : int
        Steps per cycle.
    profile : ndarray of shape (n_series, period, n_targets)
        The mean scaled value of each target at each phase (0 where a phase was never observed).
    """

    period: int
    profile: np.ndarray

    @classmethod
    def fit(cls, scaled: np.ndarray, first_phase: int, period: int) -> "SeasonalCycle":
        """The phase means of ``scaled`` ``(n_series, n_time, n_targets)`` (gaps NaN), whose row 0 is at phase
        ``first_phase``."""
        n_series, n_time, n_targets = scaled.shape
        phases = (first_phase + np.arange(n_time)) % period
        observed = np.isfinite(scaled)
        sums = np.zeros((n_series, period, n_targets))
        counts = np.zeros((n_series, period, n_targets))
        np.add.at(sums, (slice(None), phases), np.where(observed, scaled, 0.0))
        np.add.at(counts, (slice(None), phases), observed.astype(np.float64))
        profile = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
        return cls(period=period, profile=profile)

    def at(self, first_phase: int, n_time: int, rows: np.ndarray | None = None) -> np.ndarray:
        """The profile over ``n_time`` consecutive steps from phase ``first_phase``: ``(n_series or len(rows),
        n_time, n_targets)``."""
        profile = self.profile if rows is None else self.profile[rows]
        return profile[:, (first_phase + np.arange(n_time)) % self.period]

    def from_starts(self, first_phase: int, rows: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
        """The profile of series ``rows`` over ``length`` steps from each grid row ``starts`` (a grid whose row 0
        is at phase ``first_phase``): ``(len(rows), length, n_targets)``."""
        phases = (first_phase + np.asarray(starts)[:, None] + np.arange(length)) % self.period
        return self.profile[np.asarray(rows)[:, None], phases]

    def select(self, rows: np.ndarray) -> "SeasonalCycle":
        return SeasonalCycle(period=self.period, profile=self.profile[rows])

    def to_dict(self) -> dict:
        return {"period": self.period, "profile": self.profile.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "SeasonalCycle":
        profile = np.asarray(d["profile"], dtype=np.float64)
        if profile.ndim != 3 or profile.shape[1] != int(d["period"]):
            raise ValueError(f"a seasonal cycle's profile has shape {profile.shape}, not (series, period="
                             f"{d['period']}, targets); the model file is damaged.")
        return cls(period=int(d["period"]), profile=profile)
