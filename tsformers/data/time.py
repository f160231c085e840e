"""The time axis: parsing, regular spacing, frequency inference and future timestamps.

A time axis is either calendar time (a pandas ``DatetimeIndex``, any unit or time
zone) or integer steps. Its step is a pandas offset alias (``"h"``, ``"15min"``,
``"MS"``...) for calendar time and a positive ``int`` for integer steps.

Other ways of writing time are read into one of these two and written back as
they came (:class:`TimeKind`): pandas periods (``PeriodIndex`` or a
``period[Q]`` column) become the timestamps of their starts, quarter text
(``"1959Q1"``, ``"1959-Q1"``) quarterly periods, and whole numbers in a float
column (``1700.0``, statsmodels' years) integer steps.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

Step = "str | int"
INT64_MIN, INT64_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)


QUARTER_TEXT = re.compile(r"\d{4}-?Q[1-4]")


@dataclass(frozen=True)
class TimeKind:
    """How a frame writes its time axis, so that the forecast writes its own the same way.

    ``kind`` is None for dates (datetime64) and integer steps, read as they are;
    ``"period"`` for pandas periods of frequency ``freq`` (``"Q-DEC"``, ``"M"``,
    ``"Y-DEC"``...), read as the timestamps of their starts; ``"quarter_text"``
    for text like ``"1959Q1"`` (written by ``text_format``, ``"%YQ%q"`` or
    ``"%Y-Q%q"``), read as quarterly periods; ``"float"`` for whole numbers in
    a float column (``1700.0``), read as integer steps.
    """

    kind: str | None = None
    freq: str | None = None
    text_format: str | None = None

    def describe(self) -> str:
        """The kind in words, for messages."""
        return {None: "dates or integer steps", "period": f"periods of frequency '{self.freq}'",
                "quarter_text": f"quarter text like '{pd.Period('2000Q1', 'Q').strftime(self.text_format or '%YQ%q')}'",
                "float": "whole numbers in a float column"}[self.kind]

    def restore(self, times: pd.Index) -> pd.Index:
        """``times`` as read (timestamps or integer steps) written back in this kind."""
        if self.kind == "period":
            return pd.DatetimeIndex(times).to_period(self.freq)
        if self.kind == "quarter_text":
            return pd.DatetimeIndex(times).to_period(self.freq).strftime(self.text_format)
        if self.kind == "float":
            return pd.Index(np.asarray(times, dtype=np.float64))
        return times

    def check_like(self, fitted: "TimeKind", name: str) -> None:
        """Refuse a time axis written another way than the fit data's: the forecast is written the fitted way.

        Integer steps and whole numbers in a float column are the same axis, so either is accepted.
        """
        steps = {None, "float"}
        if self == fitted or (self.kind in steps and fitted.kind in steps and self.freq == fitted.freq):
            return
        raise TypeError(
            f"time column '{name}' holds {self.describe()}, but the model was fitted on {fitted.describe()}, "
            f"and writes its forecasts so. Pass the time axis as in the fit data."
            + (f" Dates become periods by df.index = df.index.to_period('{fitted.freq}'), or "
               f"df['{name}'] = df['{name}'].dt.to_period('{fitted.freq}')."
               if fitted.kind == "period" and self.kind is None else "")
        )


def parse_times(column: pd.Series, name: str) -> pd.Index:
    """Return the time column as a ``DatetimeIndex`` or an integer ``Index`` (see :func:`read_times`)."""
    return read_times(column, name)[0]


def read_times(column: pd.Series, name: str) -> tuple[pd.Index, TimeKind]:
    """Return the time column as a ``DatetimeIndex`` or an integer ``Index``, and how it was written.

    Dates and integers are read as they are; periods as the timestamps of their
    starts; text as ISO dates, else, when every value is quarter text
    (``"1959Q1"``, ``"1959-Q1"``), as quarterly periods; whole numbers in a
    float column as integers. Anything else is refused with the fix.
    """
    kind = TimeKind()
    if isinstance(column.dtype, pd.PeriodDtype):
        periods = pd.PeriodIndex(column)
        kind = TimeKind("period", periods.freqstr)
        times = _period_starts(periods)
    elif pd.api.types.is_datetime64_any_dtype(column):
        times = pd.DatetimeIndex(column)
    elif pd.api.types.is_integer_dtype(column) and not pd.api.types.is_bool_dtype(column):
        if column.isna().any():
            row = int(np.flatnonzero(column.isna().to_numpy())[0])
            raise ValueError(f"time column '{name}' has a missing value at row {row}; drop or fill that row.")
        return pd.Index(column.to_numpy(dtype=np.int64)), kind
    elif pd.api.types.is_float_dtype(column):
        return _whole_numbers(column, name), TimeKind("float")
    elif pd.api.types.is_object_dtype(column) or pd.api.types.is_string_dtype(column):
        try:
            times = pd.DatetimeIndex(pd.to_datetime(column, format="ISO8601"))
        except (ValueError, TypeError) as err:
            quarters = _quarter_text(column)
            if quarters is None:
                _raise_mixed_offsets(column, name)
                reason = str(err).splitlines()[0].rstrip(". :")  # pandas' advice after it names other options
                raise TypeError(
                    f"time column '{name}' holds text that is not ISO dates ({reason}), nor quarters like '1959Q1'. "
                    f"Parse it first, e.g. df['{name}'] = pd.to_datetime(df['{name}'], format=...), or pass "
                    f"integer steps."
                ) from None
            times, kind = quarters
    else:
        raise TypeError(
            f"time column '{name}' has dtype {column.dtype}; it must hold dates (datetime64), periods or integer "
            f"steps. Convert it, or name the right column with time_col=."
        )
    if times.isna().any():
        row = int(np.flatnonzero(times.isna())[0])
        raise ValueError(f"time column '{name}' has a missing timestamp (NaT) at row {row}; drop or fill that row.")
    return times, kind


def _period_starts(periods: pd.PeriodIndex) -> pd.DatetimeIndex:
    """The timestamps of the periods' starts (NaT for missing periods)."""
    return periods.to_timestamp(how="start")


def _whole_numbers(column: pd.Series, name: str) -> pd.Index:
    """A float time column of whole numbers (years such as ``1700.0``) as int64 steps; anything else refused."""
    values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    missing = np.flatnonzero(np.isnan(values))
    if len(missing):
        raise ValueError(f"time column '{name}' has a missing value at row {int(missing[0])}; drop or fill that row.")
    fractional = np.flatnonzero(~np.isfinite(values) | (values != np.round(values))
                                | (np.abs(values) >= 2.0 ** 53))
    if len(fractional):
        row = int(fractional[0])
        raise TypeError(
            f"time column '{name}' holds numbers that are not whole ({float(values[row])!r} at row {row}); a "
            f"numeric time axis counts whole steps (years, periods). Give the time as dates, periods or integer "
            f"steps first, e.g. df['{name}'] = pd.to_datetime(...)."
        )
    return pd.Index(values.astype(np.int64))


def _quarter_text(column: pd.Series) -> tuple[pd.DatetimeIndex, TimeKind] | None:
    """Text that is all quarters (``"1959Q1"`` or ``"1959-Q1"``) as the starts of quarterly periods, else None."""
    if column.isna().any():
        return None
    text = column.astype(str)
    parts = text.str.fullmatch(QUARTER_TEXT.pattern)
    if not parts.all():
        return None
    fmt = "%Y-Q%q" if "-" in text.iloc[0] else "%YQ%q"
    periods = pd.PeriodIndex(text.str.replace("-", "", regex=False), freq="Q")
    return _period_starts(periods), TimeKind("quarter_text", periods.freqstr, fmt)


def check_time_zone(times: pd.Index, fitted_zone: str | None, name: str) -> None:
    """Refuse dates in another time zone than the fit data's (``fitted_zone``, None for naive dates).

    The forecast's timestamps continue the given ones, so a frame in another
    zone would silently change the zone of the output (or shift local times).
    """
    if not isinstance(times, pd.DatetimeIndex):
        return
    zone = None if times.tz is None else str(times.tz)
    if zone == fitted_zone:
        return
    if fitted_zone is None:
        raise ValueError(
            f"time column '{name}' is in time zone '{zone}', but the model was fitted on timestamps without a time "
            f"zone (naive). Give naive timestamps in the fit data's local time, e.g. "
            f"df['{name}'] = df['{name}'].dt.tz_convert(<fit zone>).dt.tz_localize(None), or refit on zoned data."
        )
    fix = (f"df['{name}'] = df['{name}'].dt.tz_localize('{fitted_zone}')" if zone is None
           else f"df['{name}'] = df['{name}'].dt.tz_convert('{fitted_zone}')")
    found = "has no time zone (naive)" if zone is None else f"is in time zone '{zone}'"
    raise ValueError(f"time column '{name}' {found}, but the model was fitted on time zone '{fitted_zone}'. "
                     f"Convert it first, e.g. {fix}.")


def order_key(times: pd.Index) -> np.ndarray:
    """The time axis as numbers that sort as it does (the instants of zoned dates, in their own unit)."""
    return times.asi8 if isinstance(times, pd.DatetimeIndex) else times.to_numpy()


def check_unique(times: pd.Index, rows: np.ndarray, where: str) -> None:
    """Refuse duplicate timestamps in a sorted time axis, naming the rows of the input frame."""
    diffs = np.diff(order_key(times))
    if (diffs == 0).any():
        i = int(np.flatnonzero(diffs == 0)[0])
        raise ValueError(
            f"duplicate timestamp {times[i]} at rows {rows[i]} and {rows[i + 1]}{where}. Drop or aggregate "
            f"the duplicates first, e.g. df.drop_duplicates(...) or df.groupby(time).mean()."
        )


def infer_step(times: pd.Index, rows: np.ndarray, where: str) -> Step:
    """The step of a sorted, duplicate-free time axis; irregular spacing is an error naming the row."""
    if isinstance(times, pd.DatetimeIndex):
        freq = _infer_freq(times) if len(times) >= 3 else None
        if freq is None and len(times) == 2:
            freq = pd.tseries.frequencies.to_offset(times[1] - times[0]).freqstr
        if freq is not None:
            return freq
        _raise_irregular(times.as_unit("ns").asi8, times, rows, where, pd.Timedelta)
    diffs = np.diff(times.to_numpy())
    if len(diffs) == 0 or (diffs == diffs[0]).all():
        return int(diffs[0]) if len(diffs) else 1
    _raise_irregular(times.to_numpy(), times, rows, where, int)


def regular_step(times: pd.Index) -> Step:
    """The step of a time axis that may have gaps: its inferred frequency, else its most common spacing."""
    if isinstance(times, pd.DatetimeIndex):
        freq = _infer_freq(times) if len(times) >= 3 else None
        if freq is not None:
            return freq
        diffs = np.diff(times.as_unit("ns").asi8)
        values, counts = np.unique(diffs, return_counts=True)
        return pd.tseries.frequencies.to_offset(pd.Timedelta(int(values[np.argmax(counts)]))).freqstr
    diffs = np.diff(times.to_numpy())
    values, counts = np.unique(diffs, return_counts=True)
    return int(values[np.argmax(counts)]) if len(diffs) else 1


def check_step(times: pd.Index, step: Step, rows: np.ndarray, where: str) -> None:
    """Check that a time axis follows the fitted step exactly."""
    expected = time_range(times[0], step, len(times))
    if isinstance(times, pd.DatetimeIndex) != isinstance(expected, pd.DatetimeIndex):
        kind = "dates" if isinstance(expected, pd.DatetimeIndex) else "integer steps"
        raise TypeError(f"the time column{where} must hold {kind}, as the data the model was fitted on.")
    mismatch = np.flatnonzero(np.asarray(times != expected))
    if len(mismatch):
        i = int(mismatch[0])
        own = _regular_step_of(times)
        if own is not None and own != step:
            # regular data at another step: not gaps to fill, but data of another frequency
            raise ValueError(
                f"the data{where} is regular at another step than the model's: the model's step is "
                f"'{step}'{_step_words(step)}, and this data's is '{own}'{_step_words(own)}. Resample it to "
                f"the model's step (e.g. df.resample({step!r}, on=<time column>).mean()), or fit a model on data of "
                f"this step."
            )
        raise ValueError(
            f"irregular spacing{where}: row {rows[i]} has time {times[i]}, but the model's step "
            f"'{step}' expects {expected[i]}. Pass fill_gaps=True to insert missing timestamps, or resample "
            f"the data to that regular grid first."
        )


def _regular_step_of(times: pd.Index) -> Step | None:
    """The step of a time axis that is regular on its own (:func:`infer_step`), else None (or under 3 rows)."""
    if len(times) < 3:
        return None
    try:
        return infer_step(times, np.arange(len(times)), "")
    except ValueError:
        return None


_STEP_WORDS = {"min": "minutes", "h": "hourly", "D": "daily", "B": "business days", "W": "weekly",
               "MS": "monthly", "ME": "monthly", "QS": "quarterly", "QE": "quarterly", "YS": "yearly", "YE": "yearly"}


def _step_words(step: Step) -> str:
    """`` (quarterly)`` for 'QS-JAN' and the like: the step in words, where a reader might not know the alias."""
    if not isinstance(step, str):
        return f" (every {step})"
    base = step.split("-")[0]
    return f" ({_STEP_WORDS[base]})" if base in _STEP_WORDS else ""   # '2h' and the like speak for themselves


def time_range(start, step: Step, periods: int) -> pd.Index:
    """``periods`` timestamps from ``start`` (inclusive) on the grid of ``step``."""
    if isinstance(step, str):
        return pd.date_range(start, periods=periods, freq=step)
    last = int(start) + int(step) * (periods - 1)  # Python ints: numpy's int64 would wrap around silently
    if not INT64_MIN <= last <= INT64_MAX:
        raise ValueError(
            f"the integer time axis runs past int64's range: {periods} steps of {step} from {int(start)} end at "
            f"{last}, beyond {INT64_MAX if last > 0 else INT64_MIN}, so the timestamps would wrap around. Number "
            f"the time steps from a smaller origin, e.g. df[time_col] -= df[time_col].min()."
        )
    return pd.Index(int(start) + step * np.arange(periods, dtype=np.int64))


def times_before(end, step: Step, n: int) -> pd.Index:
    """The ``n`` timestamps up to and including ``end`` on the grid of ``step``."""
    if isinstance(step, str):
        return pd.date_range(end=end, periods=n, freq=step)
    return pd.Index(int(end) - step * np.arange(n - 1, -1, -1, dtype=np.int64))


def future_times(last, step: Step, horizon: int) -> pd.Index:
    """The ``horizon`` timestamps that follow ``last``."""
    return time_range(last, step, horizon + 1)[1:]


def future_times_of(ends, step: Step, horizon: int) -> list[pd.Index]:
    """:func:`future_times` after each end; series that end together share one index (the usual panel)."""
    by_end: dict = {}
    return [by_end[end] if end in by_end else by_end.setdefault(end, future_times(end, step, horizon))
            for end in ends]


def fixed_step_ticks(times: pd.Index, step: Step) -> int | None:
    """The step as a whole number of ``ticks(times)``, or None when its length varies (``"MS"``, ``"B"``,
    calendar days in a time zone) or the kind of ``times`` (dates or steps) does not match the step's."""
    if isinstance(step, str):
        if not isinstance(times, pd.DatetimeIndex) or times.tz is not None:
            return None
        offset = pd.tseries.frequencies.to_offset(step)
        if not isinstance(offset, pd.offsets.Tick):
            return None
        return int(offset.nanos)
    if isinstance(times, pd.DatetimeIndex):
        return None
    return int(step)


def ticks(times: pd.Index) -> np.ndarray:
    """The time axis as int64: nanoseconds for dates, the steps themselves otherwise."""
    if isinstance(times, pd.DatetimeIndex):
        return times.as_unit("ns").asi8
    return times.to_numpy(dtype=np.int64)


def _infer_freq(times: pd.DatetimeIndex) -> str | None:
    """``pd.infer_freq`` as an alias string, on pandas versions that return a string or an offset."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        freq = pd.infer_freq(times)
    return None if freq is None else pd.tseries.frequencies.to_offset(freq).freqstr


def _raise_irregular(ticks: np.ndarray, times: pd.Index, rows: np.ndarray, where: str, unit) -> None:
    diffs = np.diff(ticks)
    values, counts = np.unique(diffs, return_counts=True)
    usual = values[np.argmax(counts)]
    i = int(np.flatnonzero(diffs != usual)[0])
    raise ValueError(
        f"irregular spacing{where}: row {rows[i + 1]} ({times[i + 1]}) comes {unit(int(diffs[i]))} after "
        f"the previous row, but the usual step is {unit(int(usual))}. Pass fill_gaps=True to insert the missing "
        f"timestamps (then handled by missing=), or resample to a regular grid first."
    )


def _raise_mixed_offsets(column: pd.Series, name: str) -> None:
    """Say so when ISO dates fail to parse only because their UTC offsets differ (e.g. across a DST change)."""
    try:
        pd.to_datetime(column, format="ISO8601", utc=True)
    except (ValueError, TypeError):
        return  # not ISO dates at all: the caller says so
    offsets = column.astype(str).str.extract(r"(Z|[+-]\d{2}(?::?\d{2})?)$", expand=False).fillna("none")
    differ = np.flatnonzero((offsets != offsets.iloc[0]).to_numpy())
    example = "" if not len(differ) else (
        f" ('{column.iloc[0]}' at row 0, '{column.iloc[int(differ[0])]}' at row {int(differ[0])})")
    raise ValueError(
        f"time column '{name}' holds ISO dates with mixed UTC offsets{example}, like local times across a "
        f"daylight-saving change (or dates with and without an offset), so they have no single time zone. "
        f"Convert them to one first: df['{name}'] = pd.to_datetime(df['{name}'], utc=True), then "
        f".dt.tz_convert('<zone>') for local time."
    )
