"""Calendar features: known-future channels computed from the time axis (``calendar=`` of the estimators).

Each feature is a position in a cycle, encoded as a sine/cosine pair: a value
``v`` counted from 0 in a cycle of ``P`` becomes ``sin(2πv/P)`` and
``cos(2πv/P)``. The pair has no jump at the end of the cycle (hour 23 lies next
to hour 0, 31 December next to 1 January, as they are in time), where the raw
number would jump from its largest value to 0; and the two values together
tell every position apart, where a sine alone would not. Both lie in [-1, 1],
so they enter the network unscaled.

=============== ================================ ======================================
name            value ``v``                      cycle ``P``
=============== ================================ ======================================
``minute``      minute of the hour, 0-59         60
``hour``        hour of the day, 0-23            24
``dayofweek``   day of the week, Monday 0        7
``dayofmonth``  day of the month - 1             days in that month (28 to 31)
``dayofyear``   day of the year - 1              days in that year (365 or 366)
``weekofyear``  ISO week - 1                     ISO weeks in that ISO year (52 or 53)
``month``       month - 1                        12
``quarter``     quarter - 1                      4
=============== ================================ ======================================

Timestamps in a time zone are read in their local (wall-clock) time. A feature
applies to a time axis whose step is shorter than the feature's shortest cycle
(:data:`SHORTEST_CYCLE`): at a longer step it would be constant (the hour of
daily data) or alias. Integer time axes have no calendar.

``calendar="auto"`` picks, by the step (its mean length over a year of steps):

=========================== ===============================================
step shorter than           features
=========================== ===============================================
1 hour                      minute, hour, dayofweek, dayofyear
1 day                       hour, dayofweek, dayofyear
7 days                      dayofweek, dayofyear
28 days (weekly)            dayofyear
89 days (monthly)           month
365 days (quarterly)        quarter
=========================== ===============================================

and refuses yearly and longer steps, at which no calendar feature varies.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from tsformers.data.time import Step, time_range

#: The features by name, in the order the documentation lists them.
FEATURES = ("minute", "hour", "dayofweek", "dayofmonth", "dayofyear", "weekofyear", "month", "quarter")

#: The shortest cycle of each feature: it applies to steps shorter than this.
SHORTEST_CYCLE = {
    "minute": pd.Timedelta(hours=1), "hour": pd.Timedelta(days=1), "dayofweek": pd.Timedelta(days=7),
    "dayofmonth": pd.Timedelta(days=28), "dayofyear": pd.Timedelta(days=365),
    "weekofyear": pd.Timedelta(days=364), "month": pd.Timedelta(days=365), "quarter": pd.Timedelta(days=365),
}

#: ``calendar="auto"``: the features of the first row whose bound the step is shorter than.
AUTO = (
    (pd.Timedelta(hours=1), ("minute", "hour", "dayofweek", "dayofyear")),
    (pd.Timedelta(days=1), ("hour", "dayofweek", "dayofyear")),
    (pd.Timedelta(days=7), ("dayofweek", "dayofyear")),
    (pd.Timedelta(days=28), ("dayofyear",)),
    (pd.Timedelta(days=89), ("month",)),
    (pd.Timedelta(days=365), ("quarter",)),
)


def mean_step(step: str) -> pd.Timedelta:
    """The mean length of a calendar step (``"h"``, ``"MS"``, ``"B"``...) over a year's worth of steps from 2001."""
    offset = pd.tseries.frequencies.to_offset(step)
    if isinstance(offset, pd.offsets.Tick):
        return pd.Timedelta(offset.nanos, unit="ns")
    grid = pd.date_range("2001-01-01", periods=9, freq=step)
    return (grid[-1] - grid[0]) / 8


def resolve(calendar, step: Step, where: str = "") -> list[str]:
    """The calendar features ``calendar=`` asks for on a time axis of ``step``, checked; [] for None.

    Parameters
    ----------
    calendar : None, "auto", str or list of str
        The parameter as given.
    step : str or int
        The fitted step: an offset alias for dates, an int for integer steps.
    where : str
        Names the estimator in messages.

    Raises
    ------
    ValueError
        An unknown name, a repeated one, a feature that does not vary at the step (naming those that do), any
        feature on an integer time axis, or ``"auto"`` at a step of a year or more.
    """
    if calendar is None:
        return []
    names = [calendar] if isinstance(calendar, str) and calendar != "auto" else calendar
    if isinstance(step, (int, np.integer)) or step is None:
        raise ValueError(
            f"calendar={calendar!r}{where}: the time axis counts integer steps, which have no calendar (no hour, "
            f"day or month). Pass the time as dates or periods (e.g. df['time'] = pd.to_datetime(...)), or leave "
            f"calendar=None and give such features as future_covariates.")
    length = mean_step(step)
    applicable = [name for name in FEATURES if length < SHORTEST_CYCLE[name]]
    if names == "auto":
        for bound, features in AUTO:
            if length < bound:
                return list(features)
        raise ValueError(f"calendar='auto'{where}: no calendar feature varies at the data's step '{step}' (a year "
                         f"or longer); leave calendar=None.")
    names = list(names)
    unknown = [n for n in names if n not in FEATURES]
    if unknown:
        raise ValueError(f"unknown calendar feature(s) {unknown}{where}; choose from {list(FEATURES)}, or pass "
                         f"calendar='auto'.")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"calendar feature(s) {repeated} are named more than once{where}; name each once.")
    if not names:
        raise ValueError(f"calendar=[]{where} names no feature; pass None for no calendar features.")
    constant = [n for n in names if n not in applicable]
    if constant:
        raise ValueError(
            f"calendar feature(s) {constant}{where} do not vary at the data's step '{step}' (their cycle is not "
            f"longer than the step). At this step these apply: {applicable}" + ("." if applicable else
                                                                                 " (none); leave calendar=None."))
    return names


def cycle_positions(times: pd.DatetimeIndex, name: str) -> np.ndarray:
    """The position of each timestamp in the feature's cycle, as a fraction in [0, 1): ``v / P`` of the module."""
    if name == "minute":
        return times.minute.to_numpy() / 60.0
    if name == "hour":
        return times.hour.to_numpy() / 24.0
    if name == "dayofweek":
        return times.day_of_week.to_numpy() / 7.0
    if name == "dayofmonth":
        return (times.day.to_numpy() - 1) / times.days_in_month.to_numpy()
    if name == "dayofyear":
        return (times.day_of_year.to_numpy() - 1) / np.where(times.is_leap_year, 366.0, 365.0)
    if name == "weekofyear":
        iso = times.isocalendar()
        weeks_in_year = pd.DatetimeIndex(pd.to_datetime(iso["year"].astype(str) + "-12-28")).isocalendar()["week"]
        return (iso["week"].to_numpy(dtype=np.float64) - 1) / weeks_in_year.to_numpy(dtype=np.float64)
    if name == "month":
        return (times.month.to_numpy() - 1) / 12.0
    if name == "quarter":
        return (times.quarter.to_numpy() - 1) / 4.0
    raise ValueError(f"unknown calendar feature {name!r}; choose from {list(FEATURES)}.")


def encode(times: pd.DatetimeIndex, names: list[str]) -> np.ndarray:
    """``(len(times), 2 * len(names))``: per feature its sine then its cosine, features in the order of ``names``."""
    out = np.empty((len(times), 2 * len(names)))
    for k, name in enumerate(names):
        angle = 2 * np.pi * cycle_positions(times, name)
        out[:, 2 * k], out[:, 2 * k + 1] = np.sin(angle), np.cos(angle)
    return out


def channel_names(names: list[str]) -> list[str]:
    """The names of the channels :func:`encode` makes: ``hour_sin``, ``hour_cos``, ..."""
    return [f"{name}_{part}" for name in names for part in ("sin", "cos")]


def calendar_channels(times: pd.Index, step: Step, names: list[str], horizon: int) -> np.ndarray:
    """The calendar channels of a run of rows, led by ``horizon`` steps as known-future covariates are.

    Row ``t`` holds the features of the timestamp ``horizon`` steps after ``times[t]`` on the grid of ``step``,
    so a window ending at ``t`` sees the calendar up to the end of its forecast horizon. ``times`` is a run of
    consecutive timestamps of the grid (a panel's time axis, or part of it).

    Returns
    -------
    ndarray of shape (len(times), 2 * len(names))
    """
    if not len(times):
        return np.empty((0, 2 * len(names)))
    led = time_range(times[0], step, len(times) + horizon)[horizon:]
    return encode(pd.DatetimeIndex(led), names)
