"""DataFrames in and out: pandas or polars, wide or long, to one canonical panel and back.

Wide: a time column (or a ``DatetimeIndex``) and one column per variable.
Long: an id column, a time column and value columns; Nixtla's ``unique_id`` /
``ds`` / ``y`` is detected as is. Every frame becomes a :class:`Panel` of
values ``(n_series, n_time, n_vars)`` on one shared time grid: targets first,
then past-observed covariates, then known-future covariates. Nothing is
dropped silently: a column that is neither time, id, target nor covariate
must be left out explicitly through ``target=``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from tsformers.data.time import (TimeKind, check_step, check_time_zone, check_unique, fixed_step_ticks, infer_step,
                                 order_key, read_times, regular_step, ticks, time_range, times_before)

TIME_NAMES = ("ds", "date", "time", "timestamp", "datetime")
#: Names of a time axis of whole years (``1700``, ``1700.0``), looked for after the other names and the index.
YEAR_NAMES = ("year",)
#: Columns that, beside a repeated year, split the time axis over two columns (statsmodels' macrodata), and
#: the frequency of the periods that make one axis of them.
SUB_YEAR_FIELDS = {"quarter": "Q", "month": "M"}


@dataclass
class PanelSchema:
    """What a fitted model knows about its data: column roles, layout and time axis."""

    layout: str                      # "wide" | "long"
    backend: str                     # "pandas" | "polars", the library of the fit frame
    time_col: str
    id_col: str | None
    targets: list[str]
    covariates: list[str]
    columns: list[str]               # every column of the fit frame
    series: list = field(default_factory=lambda: [None])  # ids of a long panel; [None] when wide
    step: str | int | None = None    # offset alias for dates, int for integer steps
    time_in_index: bool = False
    time_unit: str | None = None     # "ns", "us", ... of datetime columns
    time_zone: str | None = None
    future_covariates: list[str] = field(default_factory=list)
    static: list[str] = field(default_factory=list)   # per-series attributes of a long frame
    # How the fit frame wrote its time axis (tsformers.data.time.TimeKind); the forecast writes it the same way.
    time_kind: str | None = None       # None (dates, integers), "period", "quarter_text" or "float"
    period_freq: str | None = None     # the periods' frequency ("Q-DEC", "M"...) of "period" and "quarter_text"
    time_text_format: str | None = None  # "%YQ%q" or "%Y-Q%q" for "quarter_text"
    time_index_unnamed: bool = False   # the time was an index without a name (time_col is then "date")
    # The calendar features (tsformers.data.calendar) computed from the time axis as the last channels, in
    # this order: ``calendar="auto"`` resolved at fit, so that a loaded model rebuilds the same channels.
    calendar: list[str] = field(default_factory=list)

    @property
    def variables(self) -> list[str]:
        return self.targets + self.covariates + self.future_covariates

    @property
    def time_axis(self) -> TimeKind:
        """How the fit frame wrote its time axis."""
        return TimeKind(self.time_kind, self.period_freq, self.time_text_format)

    def record_time_axis(self, kind: TimeKind) -> None:
        """Keep how the fit frame wrote its time axis (saved with the model)."""
        self.time_kind, self.period_freq, self.time_text_format = kind.kind, kind.freq, kind.text_format

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PanelSchema":
        return cls(**d)


@dataclass
class Panel:
    """Values ``(n_series, n_time, n_vars)`` in float64 on one time grid.

    Series may start and end at different times (a ragged panel): series ``s``
    spans rows ``first[s]`` to ``last[s]`` (inclusive) and is NaN outside.
    ``inserted`` counts, per series, the timestamps that ``fill_gaps`` added;
    ``static`` holds the encoded static attributes ``(n_series, n_channels)``.
    """

    values: np.ndarray
    times: pd.Index
    series: list
    inserted: list = field(default_factory=list)
    static: np.ndarray | None = None
    first: np.ndarray | None = None
    last: np.ndarray | None = None

    def __post_init__(self):
        n_series, n_time = self.values.shape[:2]
        if self.first is None:
            self.first = np.zeros(n_series, dtype=np.int64)
        if self.last is None:
            self.last = np.full(n_series, n_time - 1, dtype=np.int64)

    @property
    def aligned(self) -> bool:
        return bool((self.first == 0).all() and (self.last == self.values.shape[1] - 1).all())

    @property
    def lengths(self) -> np.ndarray:
        return self.last - self.first + 1

    @property
    def ends(self) -> list:
        """Each series' last timestamp."""
        return [self.times[i] for i in self.last]

    def span_values(self) -> np.ndarray:
        """The values with NaN outside each series' span."""
        if self.aligned:
            return self.values
        rows = np.arange(self.values.shape[1])[None, :]
        inside = (rows >= self.first[:, None]) & (rows <= self.last[:, None])
        return np.where(inside[..., None], self.values, np.nan)

    def padding(self) -> np.ndarray:
        """Per series, how many cells lie outside its span."""
        return (self.values.shape[1] - self.lengths) * self.values.shape[2]

    def tail(self, n: int) -> np.ndarray:
        """The last ``n`` steps of every series, each from its own end: ``(n_series, n, n_vars)``."""
        if self.aligned:
            return self.values[:, self.values.shape[1] - n:]
        rows = self.last[:, None] - np.arange(n - 1, -1, -1)[None, :]
        return self.values[np.arange(len(self.series))[:, None], rows]

    def drop_last(self, n: int) -> "Panel":
        """The panel without the last ``n`` steps of every series."""
        if self.aligned:
            return Panel(values=self.values[:, : self.values.shape[1] - n], times=self.times[: len(self.times) - n],
                         series=self.series, inserted=self.inserted, static=self.static)
        return Panel(values=self.values, times=self.times, series=self.series, inserted=self.inserted,
                     static=self.static, first=self.first, last=self.last - n)


def as_pandas(df) -> tuple[pd.DataFrame, str]:
    """The frame as pandas (read only; never modified) and the name of its library."""
    if isinstance(df, pd.DataFrame):
        return df, "pandas"
    try:
        import polars as pl
    except ImportError:  # pragma: no cover - polars is a dependency
        pl = None
    if pl is not None and isinstance(df, pl.DataFrame):
        return df.to_pandas(), "polars"
    if pl is not None and isinstance(df, pl.LazyFrame):
        raise TypeError("got a polars LazyFrame; collect it first: df.collect().")
    raise TypeError(f"expected a pandas or polars DataFrame, got {type(df).__name__}.")


def infer_schema(df: pd.DataFrame, backend: str, *, time_col=None, id_col=None, target=None,
                 covariates=None, future_covariates=None, static=None, static_df=None) -> PanelSchema:
    """Detect the layout and the role of every column, refusing anything ambiguous."""
    if len(df) == 0:
        raise ValueError("the frame is empty (0 rows); pass the history to fit on.")
    bad = [c for c in df.columns if not isinstance(c, str)]
    if bad:
        raise TypeError(f"column names must be strings, got {bad!r}; rename them, e.g. df.columns = df.columns.map(str).")
    columns = list(df.columns)
    time_in_index = False
    if id_col is None and "unique_id" in columns:
        id_col = "unique_id"
    _require(columns, [id_col] if id_col else [], "id_col")
    if time_col is None:
        time_col, time_in_index = detect_time_column(df, exclude={id_col})
    elif time_col not in columns:
        if df.index.name == time_col:
            time_in_index = True
        else:
            raise ValueError(f"time_col='{time_col}' is not a column; the frame has columns {columns}.")
    if id_col is None:
        _check_time_does_not_repeat(df, time_col, time_in_index, columns, target)
    roles = {time_col, id_col}
    covariates, future_covariates = _as_list(covariates), _as_list(future_covariates)
    _require(columns, covariates, "covariates")
    _require(columns, future_covariates, "future_covariates")
    static = _as_list(static)
    if static and not id_col:
        raise ValueError("static attributes describe the series of a long frame (with an id column); a wide "
                         "frame holds one series: use its columns as covariates instead.")
    extra = [] if static_df is None else list(static_df.columns)
    unknown = [c for c in static if c not in columns and c not in extra]
    if unknown:
        raise ValueError(f"unknown static attribute(s) {unknown}: not columns of the frame{' or of static_df' if extra else ''}.")
    inputs = covariates + future_covariates
    roles = roles | set(static)
    if target is None:
        candidates = [c for c in columns if c not in roles and c not in inputs]
        non_numeric = [c for c in candidates if not _is_numeric(df[c])]
        if non_numeric:
            raise TypeError(
                f"column(s) {non_numeric} are not numeric, so they cannot be forecast. Pass target=[...] "
                f"(and covariates=[...]) to name the columns to use, or convert them with pd.to_numeric."
            )
        targets = candidates
    else:
        targets = _as_list(target)
        _require(columns, targets, "target")
    named = targets + inputs
    overlap = sorted({c for c in named if named.count(c) > 1} | set(named) & roles)
    if overlap:
        raise ValueError(f"column(s) {overlap} are given more than one role (time, id, target, covariate).")
    if not targets:
        raise ValueError("there is no numeric column to forecast; name one with target=.")
    check_numeric(df, named)
    return PanelSchema(layout="long" if id_col else "wide", backend=backend, time_col=time_col, id_col=id_col,
                       targets=targets, covariates=covariates, future_covariates=future_covariates, static=static,
                       columns=columns, time_in_index=time_in_index,
                       time_index_unnamed=time_in_index and df.index.name is None)


def _check_time_does_not_repeat(df: pd.DataFrame, time_col: str, time_in_index: bool, columns: list[str],
                                target) -> None:
    """Refuse a frame without an id column whose time axis repeats, with the fix its columns suggest.

    Text columns with repeated values beside it make it a long frame (one row per series and time step):
    the message names ``id_col=``. A ``quarter`` or ``month`` column beside a repeated year splits the time
    axis over two columns: the message shows how to make one axis of periods. Otherwise the rows are
    duplicates, which the reading refuses naming them.
    """
    times = df.index if time_in_index else df[time_col]
    if not pd.Index(times).has_duplicates:
        return
    text = [c for c in columns if c != time_col and not _is_numeric(df[c])
            and not pd.api.types.is_datetime64_any_dtype(df[c]) and df[c].nunique(dropna=False) > 1
            and df[c].duplicated().any()]
    if text:
        numeric = [c for c in columns if c != time_col and c not in text and _is_numeric(df[c])]
        others = [c for c in columns if c not in (time_col, text[0]) and c not in numeric]
        fix = f"id_col='{text[0]}'"
        if target is None and others:
            fix += f", target={numeric!r}"
        which = "" if len(text) == 1 else f" (or another of {text})"
        raise ValueError(
            f"the time column '{time_col}' repeats and column '{text[0]}' holds text: this looks like a long "
            f"frame, one row per series and time step. Name its id column: pass {fix} to the estimator"
            f"{which}, e.g. NaiveForecaster(horizon=..., {fix})."
        )
    split = [c for c in columns if c.lower() in SUB_YEAR_FIELDS and c != time_col]
    if split and time_col.lower() in YEAR_NAMES:
        field_name = split[0].lower()
        freq = SUB_YEAR_FIELDS[field_name]
        raise ValueError(
            f"the time column '{time_col}' repeats: with column '{split[0]}' it splits the time axis over two "
            f"columns. Make one axis of periods first, e.g. df.index = pd.PeriodIndex.from_fields("
            f"year=df.pop('{time_col}').astype(int), {field_name}=df.pop('{split[0]}').astype(int), freq='{freq}')."
        )


def frame_to_panel(df: pd.DataFrame, schema: PanelSchema, *, fitting: bool, allow_nan: bool = False,
                   fill_gaps: bool = False) -> Panel:
    """Validate ``df`` against ``schema`` and return its panel.

    With ``fitting`` the time step is inferred and stored in ``schema``;
    otherwise the frame must have the fitted columns, layout and step.
    ``allow_nan`` lets missing values through in targets and past covariates
    (for interpolation or masking downstream), but not a target that a series
    never observes (in the fit data, or in ``df`` for a series new to the
    model); ``fill_gaps`` inserts the missing timestamps of the regular
    grid as rows of missing values. Fit and predict read by the same rules:
    numbers only (:func:`check_numeric`), ids of one type, and after fit the
    fitted time zone.
    """
    if len(df) == 0:
        raise ValueError("the frame is empty (0 rows); pass at least `lookback` rows of history.")
    if not fitting:
        _check_like_fit(df, schema)
    times = _frame_times(df, schema, fitting=fitting)
    names = schema.variables
    check_numeric(df, names)
    values = df[names].to_numpy(dtype=np.float64, na_value=np.nan)
    n_nan_ok = len(schema.targets) + len(schema.covariates) if allow_nan else 0
    _check_finite(values, names, times, nan_allowed=n_nan_ok)
    groups = _in_time_order(times, _series_groups(df, schema))
    panel = _to_panel(times, values, groups, schema, fitting=fitting, allow_nan=allow_nan, fill_gaps=fill_gaps)
    if allow_nan:
        _check_targets_observed(panel, schema, fitting=fitting)
    return panel


def _frame_times(df: pd.DataFrame, schema: PanelSchema, *, fitting: bool) -> pd.Index:
    """The time axis of ``df`` as read (:func:`~tsformers.data.time.read_times`).

    With ``fitting`` its kind (periods, quarter text...) is recorded in ``schema``; otherwise it must be
    the fitted kind and time zone.
    """
    times, kind = read_times(df.index.to_series() if schema.time_in_index else df[schema.time_col], schema.time_col)
    if fitting:
        schema.record_time_axis(kind)
    else:
        kind.check_like(schema.time_axis, schema.time_col)
        check_time_zone(times, schema.time_zone, schema.time_col)
    return times


def _series_groups(df: pd.DataFrame, schema: PanelSchema) -> dict:
    """Each series' row positions in ``df`` (one series ``None`` when wide), the series in order of first appearance."""
    if schema.layout == "wide":
        return {None: np.arange(len(df))}
    _check_ids(df[schema.id_col], schema.id_col)
    groups = df.groupby(schema.id_col, sort=False, dropna=False).indices
    if any(pd.isna(k) for k in groups):
        row = int(np.flatnonzero(df[schema.id_col].isna().to_numpy())[0])
        raise ValueError(f"id column '{schema.id_col}' has a missing id at row {row}; fill or drop it.")
    return groups


def _in_time_order(times: pd.Index, groups: dict) -> dict:
    """``groups`` with each series' rows in time order: a frame's rows may come in any order.

    The sort is stable, so that rows with the same timestamp stay next to each other in their order
    for the duplicate check to name them. Sorted series (the usual case) are checked in one pass.
    """
    key = order_key(times)
    lengths = np.array([len(rows) for rows in groups.values()])
    order = np.concatenate(list(groups.values()))
    steps = np.diff(key[order])
    within = np.ones(len(steps), dtype=bool)
    within[np.cumsum(lengths)[:-1] - 1] = False
    if (steps[within] >= 0).all():
        return groups
    return {k: rows[np.argsort(key[rows], kind="stable")] for k, rows in groups.items()}


def series_rows(df, schema: PanelSchema) -> dict:
    """Each series' row positions in ``df`` in time order, the series in order of first appearance.

    ``df`` is read as :func:`frame_to_panel` reads it (any row order); keys are the ids (``None`` when wide).
    """
    frame, _ = as_pandas(df)
    times, _ = read_times(frame.index.to_series() if schema.time_in_index else frame[schema.time_col],
                          schema.time_col)
    return _in_time_order(times, _series_groups(frame, schema))


def _to_panel(times: pd.Index, values: np.ndarray, groups: dict, schema: PanelSchema, *, fitting: bool,
              allow_nan: bool, fill_gaps: bool) -> Panel:
    """The panel of validated times and values, grouped by series; see :func:`frame_to_panel`."""
    names = schema.variables
    if not fill_gaps:
        panel = _regular_panel(times, values, groups, schema, fitting=fitting)
        if panel is not None:
            return panel
    step = schema.step
    series, inserted = {}, []
    for key, rows in groups.items():
        where = "" if key is None else f" of series '{key}'"
        series_times = times[rows]
        check_unique(series_times, rows, where)
        if fill_gaps:
            if step is None:
                step = regular_step(series_times)
            grid = time_range(series_times[0], step, 1 + _steps_between(series_times[0], series_times[-1], step))
            position = grid.get_indexer(series_times)
            if (position < 0).any():
                row = rows[int(np.flatnonzero(position < 0)[0])]
                raise ValueError(f"row {row} ({times[row]}){where} is off the regular grid of step '{step}' "
                                 f"that starts at {series_times[0]}; resample the data to one grid first.")
            filled = np.full((len(grid), len(names)), np.nan)
            filled[position] = values[rows]
            full_rows = np.full(len(grid), -1)
            full_rows[position] = rows
            if not allow_nan and len(grid) > len(rows):
                k = int(np.flatnonzero(full_rows < 0)[0])
                raise ValueError(
                    f"fill_gaps inserted {len(grid) - len(rows)} missing timestamp(s){where}, the first at "
                    f"{grid[k]} after row {full_rows[k - 1]}; their values are missing, so choose "
                    f"missing='interpolate' or missing='mask'."
                )
            series[key] = (grid, filled, full_rows)
            inserted.append(len(grid) - len(rows))
        else:
            series[key] = (series_times, values[rows], rows)
            inserted.append(0)
    (first, (grid, _, grid_rows)), *_ = series.items()
    where = "" if schema.layout == "wide" else f" of series '{first}'"
    if fitting:
        schema.step = step if fill_gaps else infer_step(grid, grid_rows, where)
        schema.series = [_plain(k) for k in series]
        if isinstance(grid, pd.DatetimeIndex):
            schema.time_unit = grid.unit
            schema.time_zone = str(grid.tz) if grid.tz is not None else None
    if not fill_gaps:
        for key, (own, _, own_rows) in series.items():
            if not (fitting and key == first):
                check_step(own, schema.step, own_rows, "" if key is None else f" of series '{key}'")
    return _on_one_grid(series, schema.step, inserted)


def _regular_panel(times: pd.Index, values: np.ndarray, groups: dict, schema: PanelSchema, *,
                   fitting: bool) -> Panel | None:
    """The panel of a frame whose series all follow the step exactly, checked in one pass over the rows.

    Returns None where that does not hold or cannot be checked this way (steps of varying length): the
    series-by-series path then finds the offending row and names it.
    """
    keys = list(groups)
    series = [_plain(k) for k in keys]
    if fitting:
        rows = groups[keys[0]]
        where = "" if keys[0] is None else f" of series '{keys[0]}'"
        first_times = times[rows]
        check_unique(first_times, rows, where)
        step = infer_step(first_times, rows, where)
    else:
        step = schema.step
    step_ticks = fixed_step_ticks(times, step)
    if step_ticks is None:
        return None
    try:
        all_ticks = ticks(times)
    except (OverflowError, ValueError):  # dates beyond the nanosecond range
        return None
    lengths = np.array([len(groups[k]) for k in keys])
    order = np.concatenate([groups[k] for k in keys])
    steps = np.diff(all_ticks[order])
    within = np.ones(len(steps), dtype=bool)
    within[np.cumsum(lengths)[:-1] - 1] = False  # the step from one series' last row to the next one's first
    if not (steps[within] == step_ticks).all():
        return None
    if fitting:
        schema.step = step
        schema.series = list(series)
        if isinstance(times, pd.DatetimeIndex):
            schema.time_unit = times.unit
            schema.time_zone = str(times.tz) if times.tz is not None else None
    starts = np.cumsum(lengths) - lengths
    first_ticks = all_ticks[order[starts]]
    inserted = [0] * len(keys)
    if (first_ticks == first_ticks[0]).all() and (lengths == lengths[0]).all():  # aligned: the usual case
        n = int(lengths[0])
        stacked = values[order].reshape(len(keys), n, values.shape[1])
        return Panel(values=stacked, times=times[order[:n]], series=series, inserted=inserted,
                     first=np.zeros(len(keys), dtype=np.int64), last=np.full(len(keys), n - 1, dtype=np.int64))
    start = int(first_ticks.argmin())
    offsets = (first_ticks - first_ticks[start]) // step_ticks
    if ((first_ticks - first_ticks[start]) % step_ticks).any():
        return None  # a series starts off the common grid: the general path says which
    n_time = int((offsets + lengths).max())
    grid = time_range(times[order[starts[start]]], step, n_time)
    panel_values = np.full((len(keys), n_time, values.shape[1]), np.nan)
    series_index = np.repeat(np.arange(len(keys)), lengths)
    position = np.arange(len(order)) - np.repeat(starts, lengths) + np.repeat(offsets, lengths)
    panel_values[series_index, position] = values[order]
    return Panel(values=panel_values, times=grid, series=series, inserted=inserted,
                 first=offsets.astype(np.int64), last=(offsets + lengths - 1).astype(np.int64))


def _on_one_grid(series: dict, step, inserted: list) -> Panel:
    """Place every series on the grid from the earliest start to the latest end; NaN outside each one's span."""
    grids = [g for g, _, _ in series.values()]
    if all(len(g) == len(grids[0]) and (g == grids[0]).all() for g in grids[1:]):  # the usual case: aligned
        stacked = np.stack([v for _, v, _ in series.values()])  # (n_series, n_time, n_vars)
        n = stacked.shape[1]
        return Panel(values=stacked, times=grids[0], series=[_plain(k) for k in series], inserted=inserted,
                     first=np.zeros(len(series), dtype=np.int64), last=np.full(len(series), n - 1, dtype=np.int64))
    start, end = min(g[0] for g in grids), max(g[-1] for g in grids)
    grid = time_range(start, step, 1 + _steps_between(start, end, step))
    firsts = grid.get_indexer([g[0] for g in grids])
    if (firsts < 0).any():
        key = list(series)[int(np.flatnonzero(firsts < 0)[0])]
        raise ValueError(f"series '{key}' starts off the common time grid of step '{step}' from {start}; "
                         f"align the series' timestamps to one grid first.")
    n_vars = next(iter(series.values()))[1].shape[1]
    values = np.full((len(series), len(grid), n_vars), np.nan)
    for s, (own, own_values, _) in enumerate(series.values()):
        values[s, firsts[s]: firsts[s] + len(own)] = own_values
    lengths = np.array([len(g) for g in grids])
    return Panel(values=values, times=grid, series=[_plain(k) for k in series], inserted=inserted,
                 first=firsts.astype(np.int64), last=(firsts + lengths - 1).astype(np.int64))


def tails_panel(values: np.ndarray, ends: list, step, series: list, static: np.ndarray | None = None) -> Panel:
    """The panel of per-series tails ``values`` ``(n_series, n, n_vars)``, series ``s`` ending at ``ends[s]``.

    On the grid of ``step``: one aligned panel of ``n`` rows when the series end together, else a ragged
    panel from the earliest start to the latest end, each series spanning its own ``n`` rows.
    """
    n = values.shape[1]
    if all(end == ends[0] for end in ends):
        return Panel(values=values, times=times_before(ends[0], step, n), series=series, static=static)
    start = min(times_before(end, step, n)[0] for end in ends)
    grid = time_range(start, step, 1 + _steps_between(start, max(ends), step))
    last = grid.get_indexer(pd.Index(list(ends))).astype(np.int64)
    out = np.full((len(series), len(grid), values.shape[2]), np.nan)
    for s, end in enumerate(last):
        out[s, end - n + 1: end + 1] = values[s]
    return Panel(values=out, times=grid, series=series, static=static, first=last - n + 1, last=last)


def future_values(df, schema: PanelSchema, series: list, expected: list) -> np.ndarray:
    """The known-future covariates over the forecast horizon, ``(n_series, horizon, n_future)``.

    ``df`` must hold, for every series, a row at each timestamp of its
    ``expected`` index (the steps after its history); rows beyond the horizon are allowed.
    """
    frame, _ = as_pandas(df)
    names = schema.future_covariates
    needed = [c for c in [schema.id_col, None if schema.time_in_index else schema.time_col] + names if c]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"future_df lacks column(s) {missing}; it needs {needed} over the {len(expected[0])} "
                         f"steps after the history.")
    times = _frame_times(frame, schema, fitting=False)
    check_numeric(frame, names)
    values = frame[names].to_numpy(dtype=np.float64, na_value=np.nan)
    _check_finite(values, names, times)
    if schema.layout == "wide":
        groups = {None: np.arange(len(frame))}
    else:
        _check_ids(frame[schema.id_col], schema.id_col)
        groups = frame.groupby(schema.id_col, sort=False).indices
    out = np.empty((len(series), len(expected[0]), len(names)))
    for i, (key, steps) in enumerate(zip(series, expected)):
        where = "" if key is None else f" for series '{key}'"
        if key not in groups:
            raise ValueError(f"future_df has no rows{where}; give its future covariates {names} too.")
        rows = groups[key]
        position = pd.Index(times[rows]).get_indexer(steps)
        if (position < 0).any():
            first = steps[int(np.flatnonzero(position < 0)[0])]
            raise ValueError(
                f"future_df covers {int((position >= 0).sum())} of the {len(steps)} forecast steps{where}: "
                f"{first} is missing. Give the future covariates {names} at every step from {steps[0]} "
                f"to {steps[-1]}."
            )
        out[i] = values[rows[position]]
    return out


def panel_to_frame(forecast: np.ndarray, times: pd.Index, series: list, schema: PanelSchema, backend: str,
                   extra: dict[str, np.ndarray] | None = None):
    """Turn a forecast ``(n_series, horizon, n_targets)`` into a frame in the layout and library of the input.

    ``extra`` maps column-name suffixes to arrays shaped like ``forecast``
    (quantiles, interval bounds); each target's columns follow its point column
    (``load``, ``load_q0.1``, ``load_q0.9``, ``load_lo80``, ``load_hi80``, ``temp``, ...).
    """
    n_series, horizon, _ = forecast.shape
    per_series = list(times) if isinstance(times, list) else [times] * n_series
    written = {id(t): output_times(t, schema) for t in per_series}  # series that end together share an index
    per_series = [written[id(t)] for t in per_series]
    times = per_series[0]
    blocks = {"": forecast, **(extra or {})}
    if schema.layout == "wide":
        out = pd.DataFrame({schema.time_col: times})
        for j, name in enumerate(schema.targets):
            for suffix, block in blocks.items():
                out[name + suffix] = block[0, :, j]
    else:
        ids = np.repeat(np.array(series, dtype=object), horizon)
        stacked_times = per_series[0].append(per_series[1:]) if n_series > 1 else per_series[0]
        out = pd.DataFrame({schema.id_col: restore_ids(ids, series), schema.time_col: stacked_times})
        for j, name in enumerate(schema.targets):
            for suffix, block in blocks.items():
                out[name + suffix] = block[:, :, j].reshape(-1)
    if backend == "polars":
        import polars as pl

        return pl.from_pandas(out)
    if schema.time_in_index:
        out = out.set_index(schema.time_col)
        if schema.time_index_unnamed:
            out.index.name = None
    return out


def output_times(times: pd.Index, schema: PanelSchema) -> pd.Index:
    """Timestamps or integer steps as read, written as the fit data wrote them: its unit, periods, text, floats."""
    if isinstance(times, pd.DatetimeIndex) and schema.time_unit and schema.time_kind is None:
        times = times.as_unit(schema.time_unit)
    return schema.time_axis.restore(times)


def time_as_column(frame: pd.DataFrame, schema: PanelSchema) -> pd.DataFrame:
    """``frame`` with a time index (of a model whose fit data had one) as its ``schema.time_col`` column."""
    if not schema.time_in_index or schema.time_col in frame.columns:
        return frame
    return frame.rename_axis(schema.time_col).reset_index()


def _steps_between(start, end, step) -> int:
    if isinstance(step, int):
        return int((end - start) // step)
    return len(pd.date_range(start, end, freq=step)) - 1


def _check_like_fit(df: pd.DataFrame, schema: PanelSchema) -> None:
    columns = list(df.columns)
    needed = [c for c in [schema.id_col, None if schema.time_in_index else schema.time_col] + schema.variables if c]
    missing = [c for c in needed if c not in columns]
    if missing:
        raise ValueError(
            f"column(s) {missing} are missing, but the model was fitted on them; pass a frame with the "
            f"columns {needed}."
        )
    unknown = [c for c in columns if c not in schema.columns and not (schema.time_in_index and c == schema.time_col)]
    if unknown:
        raise ValueError(
            f"column(s) {unknown} were not in the data the model was fitted on (columns {schema.columns}); "
            f"drop them, or refit with them."
        )


def check_numeric(df: pd.DataFrame, names: list[str]) -> None:
    """Refuse value columns that are not numbers (bool, text, dates), naming the column: the one rule of fit and predict.

    ``to_numpy(float)`` would otherwise turn ``True`` into 1 and the text ``"1.5"`` into 1.5 at predict.
    """
    for name in names:
        if not _is_numeric(df[name]):
            raise TypeError(
                f"column '{name}' has dtype {df[name].dtype}, not numbers; convert it (pd.to_numeric) "
                f"or leave it out of target=/covariates=/future_covariates=."
            )


def output_columns(schema: PanelSchema, quantiles=(), levels=()) -> list[str]:
    """The value columns of a forecast frame: per target its point, quantile and interval columns.

    Refuses names that collide: a generated column (``y_q0.1``, ``y_lo80``)
    that is also a column of the fit data, the id or time column, or another
    generated column would overwrite it, or be mistaken for it.
    """
    suffixes = [f"_q{format_level(q)}" for q in quantiles]
    suffixes += [f"_{side}{format_level(v)}" for v in levels for side in ("lo", "hi")]
    generated = [(name + suffix, name, suffix) for name in schema.targets for suffix in suffixes]
    taken = {c: f"column '{c}' of the fit data" for c in [*schema.columns, schema.time_col, schema.id_col] if c}
    for column, target, suffix in generated:
        if column in taken:
            quantile = suffix.startswith("_q")
            what = f"quantile {suffix[2:]}" if quantile else f"{suffix[3:]}% interval"
            other = "" if quantile else ", or ask for another level"
            raise ValueError(
                f"the forecast's {what} column of target '{target}' would be named '{column}', which is already "
                f"the {taken[column]}. Rename one of them and refit{other}, e.g. "
                f"df.rename(columns={{'{column}': '{column}_input'}})."
            )
        taken[column] = f"{suffix} column of target '{target}'"
    return [name + suffix for name in schema.targets for suffix in ["", *suffixes]]


def _check_ids(ids: pd.Series, id_col: str) -> None:
    """Refuse ids of mixed types: ``1``, ``1.0`` and ``True`` would be merged into one series, ``"1"`` kept apart."""
    categorical = isinstance(ids.dtype, pd.CategoricalDtype)
    values = pd.Series(ids.cat.categories) if categorical else ids
    if not pd.api.types.is_object_dtype(values) or not pd.api.types.infer_dtype(values, skipna=True).startswith("mixed"):
        return
    kinds = [type(v).__name__ for v in values.to_numpy()]  # only on the way to the error: a pass in Python
    first = {kind: i for i, kind in reversed(list(enumerate(kinds)))}
    place = "category" if categorical else "row"
    examples = ", ".join(f"{values.iloc[i]!r} ({kind}) at {place} {i}" for kind, i in sorted(first.items(),
                                                                                          key=lambda item: item[1]))
    raise TypeError(
        f"id column '{id_col}' mixes {'categories' if categorical else 'values'} of types {sorted(first)}: "
        f"{examples}. Ids of different types that compare equal (1, 1.0, True) would be merged into one series; "
        f"convert them to one type first, e.g. df['{id_col}'] = df['{id_col}'].astype(str)."
    )


def _check_targets_observed(panel: Panel, schema: PanelSchema, *, fitting: bool) -> None:
    """Refuse a target with no observed value in a series (NaN throughout): its forecast would be invented.

    After fit, only series new to the model: a fitted series was observed in the fit data, which gave its
    scale, so new rows (``update``, a history) may all be missing and masked.
    """
    never = np.isnan(panel.values[..., : len(schema.targets)]).all(axis=1)  # NaN outside the spans too
    if not fitting and never.any():
        fitted = set(schema.series)
        never[[key in fitted for key in panel.series]] = False
    if not never.any():
        return
    s, j = (int(i) for i in np.argwhere(never)[0])
    where = "" if panel.series[s] is None else f" of series '{panel.series[s]}'"
    raise ValueError(
        f"target '{schema.targets[j]}'{where} has no observed value (all {int(panel.lengths[s])} are missing), so "
        f"there is nothing to forecast it from; drop that series, or leave '{schema.targets[j]}' out of target=."
    )


def _check_finite(values: np.ndarray, names: list[str], times: pd.Index, nan_allowed: int = 0) -> None:
    """Refuse inf anywhere, and NaN except in the first ``nan_allowed`` variables."""
    bad = ~np.isfinite(values)
    bad[:, :nan_allowed] &= ~np.isnan(values[:, :nan_allowed])
    if not bad.any():
        return
    j = int(np.flatnonzero(bad.any(axis=0))[0])
    rows = np.flatnonzero(bad[:, j])
    kind = "missing values (NaN)" if np.isnan(values[rows[0], j]) else "infinite values (inf)"
    raise ValueError(
        f"column '{names[j]}' has {len(rows)} {kind}/non-finite value(s), first at row {rows[0]} "
        f"(time {times[rows[0]]}). Fill them first, or let the estimator handle them with "
        f"missing='interpolate' or missing='mask', or leave the column out of target=."
    )


def detect_time_column(df: pd.DataFrame, exclude: set) -> tuple[str, bool]:
    """The time column and whether it is the index.

    In order: the one column of dates or periods; else a column named like a time axis (``ds``, ``date``,
    ...); else a ``DatetimeIndex`` or ``PeriodIndex`` (named ``date`` when it has no name); else a
    column named ``year``.
    """
    dated = [c for c in df.columns if c not in exclude and (pd.api.types.is_datetime64_any_dtype(df[c])
                                                            or isinstance(df[c].dtype, pd.PeriodDtype))]
    if len(dated) == 1:
        return dated[0], False
    if len(dated) > 1:
        raise ValueError(f"several date columns {dated}; say which one is the time axis with time_col=.")
    named = [c for c in df.columns if c.lower() in TIME_NAMES and c not in exclude]
    if named:
        return named[0], False
    if isinstance(df.index, (pd.DatetimeIndex, pd.PeriodIndex)):
        return df.index.name or "date", True
    years = [c for c in df.columns if c.lower() in YEAR_NAMES and c not in exclude]
    if years:
        return years[0], False
    raise ValueError(
        f"no time column found among {list(df.columns)}: pass time_col= (a column of dates, periods or integer "
        f"steps), or use a DatetimeIndex or PeriodIndex."
    )


def _require(columns: list[str], names: list[str], argument: str) -> None:
    unknown = [c for c in names if c not in columns]
    if unknown:
        raise ValueError(f"unknown column(s) {unknown} in {argument}=; the frame has columns {columns}.")


def _as_list(names) -> list[str]:
    if names is None:
        return []
    return [names] if isinstance(names, str) else list(names)


def _is_numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def _plain(key):
    """numpy scalars to Python ones, so that ids survive JSON."""
    return key.item() if isinstance(key, np.generic) else key


def restore_ids(ids: np.ndarray, series: list) -> np.ndarray:
    """The object array ``ids`` (values of ``series``) in the type of the ids: bool, int64, float64, else object."""
    if all(isinstance(s, (bool, np.bool_)) for s in series):  # before int: True is an int to isinstance
        return ids.astype(bool)
    if all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in series):
        return ids.astype(np.int64)
    if all(isinstance(s, (float, np.floating)) for s in series):
        return ids.astype(np.float64)
    return ids


def format_level(value: float) -> str:
    """A quantile or interval level as it appears in column names: ``0.1`` -> ``"0.1"``, ``80.0`` -> ``"80"``."""
    return np.format_float_positional(float(value), trim="-")
