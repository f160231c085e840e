"""Plots of forecasts and backtests (matplotlib, imported only by this module).

``Forecaster.plot()`` draws a forecast; :func:`plot_backtest` draws the frame
that ``Forecaster.backtest()`` returns. Both return a
:class:`matplotlib.figure.Figure` that is not registered with pyplot (no
global state, nothing to close) and that displays itself in a notebook. Every
drawn element carries a ``gid`` naming what it is: ``"history"``,
``"forecast"``, ``"actual"``, ``"q0.1-0.9"`` (a band between two quantiles),
``"interval80"`` (a conformal interval), so tests and users can find them.

A forecast line starts at the last observed value before it (the end of the history; in a
backtest, the value at the window's cutoff when it is known), so that it continues the data
without a gap. When ``max_series`` leaves series out, the figure's title says so: "showing 4 of
8 series (left out: ...); pass series=[...] to choose which, or max_series=8 to show all".

>>> fig = forecaster.plot(level=[80])             # doctest: +SKIP
>>> fig.savefig("forecast.png")                   # doctest: +SKIP
>>> plot_backtest(forecaster.backtest(df, n_windows=4))   # doctest: +SKIP
"""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from tsformers.data.frames import format_level

__all__ = ["ForecastFigure", "plot_backtest"]

_HISTORY, _FORECAST, _ACTUAL = "0.25", "C0", "0.25"


class ForecastFigure(Figure):
    """A matplotlib Figure that renders itself as PNG in Jupyter (without pyplot)."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()


def _figure(n_panels: int, title: str, note: str = "") -> tuple[ForecastFigure, list]:
    fig = ForecastFigure(figsize=(9, 2.4 * max(n_panels, 1)), layout="constrained")
    axes = [fig.add_subplot(max(n_panels, 1), 1, k + 1) for k in range(n_panels)]
    _title(fig, title, note)
    return fig, axes


def _quantile_pairs(levels: list[float]) -> list[tuple[int, int]]:
    """Index pairs of symmetric quantile levels, outermost first: [0.1, 0.5, 0.9] -> [(0, 2)]."""
    return [(k, len(levels) - 1 - k) for k in range(len(levels) // 2)]


def _band_alpha(k: int, n: int) -> float:
    return 0.15 + 0.25 * (k + 1) / max(n, 1)   # inner bands darker


def _select(panels: list, labels: list, select, max_series: int, noun: str = "series") -> tuple[list, str]:
    """The indices of the panels to draw and, when ``max_series`` leaves some out, a note saying so.

    The note counts the panels asked for (every one when ``select`` is None): "showing 4 of 8 series
    (left out: e, f, g, ...); pass series=[...] to choose which, or max_series=8 to show all".
    """
    if select is not None:
        wanted = [select] if isinstance(select, (str, int, np.integer)) else list(select)
        known = {p[0] for p in panels}
        missing = [w for w in wanted if w not in known]
        if missing:
            raise ValueError(f"series {missing} are not in the forecast; choose among {sorted(known, key=str)}.")
        candidates = [i for i, p in enumerate(panels) if p[0] in wanted]
    else:
        candidates = list(range(len(panels)))
    chosen, left = candidates[:max_series], [labels[i] for i in candidates[max_series:]]
    if not left:
        return chosen, ""
    listed = ", ".join(left[:3]) + (", ..." if len(left) > 3 else "")
    return chosen, (f"showing {len(chosen)} of {len(candidates)} {noun} (left out: {listed}); pass series=[...] "
                    f"to choose which, or max_series={len(candidates)} to show all")


def _title(fig, title: str, note: str) -> None:
    fig.suptitle("\n".join(t for t in (title, note) if t), fontsize=10)


def draw_forecast_panels(*, schema, series_keys: list, history: np.ndarray, history_times: list, point: np.ndarray,
                         forecast_times: list, quantiles: np.ndarray | None, levels_q: list | None,
                         intervals: dict, select=None, max_series: int = 4, title: str = "") -> ForecastFigure:
    """The figure of ``Forecaster.plot``: per (series, target) panel, history, forecast and bands.

    ``history`` is ``(n_series, n_history, n_targets)``, ``point`` ``(n_series, horizon, n_targets)``,
    ``quantiles`` ``(n_series, horizon, n_targets, Q)``, ``intervals`` ``{"_lo80": ..., "_hi80": ...}``.
    """
    targets = schema.targets
    if schema.layout == "long":   # a panel per series (and per target if several)
        panels = [(key, s, j) for s, key in enumerate(series_keys) for j in range(len(targets))]
        labels = [str(key) if len(targets) == 1 else f"{key}: {targets[j]}" for key, s, j in panels]
    else:                         # a wide frame: each target column is a series
        panels = [(name, 0, j) for j, name in enumerate(targets)]
        labels = list(targets)
    noun = "series" if schema.layout == "wide" or len(targets) == 1 else "panels (series and target)"
    chosen, note = _select(panels, labels, select, max_series, noun)
    fig, axes = _figure(len(chosen), title, note)
    levels = sorted({k[3:] for k in intervals if k.startswith("_lo")}, key=float, reverse=True)
    for ax, i in zip(axes, chosen):
        _, s, j = panels[i]
        ht, ft = history_times[s], forecast_times[s]
        ax.plot(ht, history[s, :, j], color=_HISTORY, lw=1.2, label="history", gid="history")
        for n, level in enumerate(levels):   # widest interval first, lightest
            ax.fill_between(ft, intervals[f"_lo{level}"][s, :, j], intervals[f"_hi{level}"][s, :, j],
                            facecolor="none", edgecolor="C1", lw=1.0, linestyle=("--", ":", "-.")[n % 3],
                            label=f"{level}% interval", gid=f"interval{level}")
        if quantiles is not None:
            pairs = _quantile_pairs(levels_q)
            for n, (lo, hi) in enumerate(pairs):
                name = f"q{format_level(levels_q[lo])}-{format_level(levels_q[hi])}"
                ax.fill_between(ft, quantiles[s, :, j, lo], quantiles[s, :, j, hi], color=_FORECAST,
                                alpha=_band_alpha(n, len(pairs)), lw=0,
                                label=f"{format_level(levels_q[lo])}-{format_level(levels_q[hi])} quantiles",
                                gid=name)
        fx, fy = _joined(ht, history[s, :, j], ft, point[s, :, j])
        ax.plot(fx, fy, color=_FORECAST, lw=1.6, label="forecast", gid="forecast")
        ax.set_title(labels[i], fontsize=9, loc="left")
        ax.tick_params(labelsize=7)
    if axes:
        axes[0].legend(fontsize=7, loc="upper left", ncol=3)
    return fig


def _joined(history_times, history_values, times, values):
    """The forecast line from the last observed point on, so that it continues the history without a gap.

    The last history step is prepended when it is observed (a finite value); otherwise the line starts
    at the first forecast step.
    """
    if len(history_values) and np.isfinite(history_values[-1]):
        x = pd.Index(history_times[-1:]).append(pd.Index(times))
        return x, np.concatenate([[history_values[-1]], np.asarray(values, dtype=float)])
    return times, values


def plot_backtest(frame, series=None, max_series: int = 4, title: str | None = None, history=None,
                  n_history: int | None = None) -> ForecastFigure:
    """Draw a backtest: the actual values and the forecast from every cutoff, with their bands.

    Each forecast line starts at the observed value at its cutoff (the last step its
    forecast saw), so that it continues the actual values without a gap: the value is read
    from ``history`` or, without it, from the frame's own actual values (the rows of an
    earlier window; the first window of side-by-side windows then starts at its first step).
    When ``max_series`` leaves panels out, the figure's title says which and how many.

    Parameters
    ----------
    frame : pandas.DataFrame or polars.DataFrame
        The frame of ``Forecaster.backtest`` (columns ``target``, ``cutoff``,
        the time column, ``actual``, ``forecast``, optional ``q*``/``lo*``/``hi*``,
        and the id column of a long frame).
    series : list, optional
        Series ids (long) or target columns (wide) to draw; by default the first ``max_series``.
    max_series : int, default=4
        At most this many panels (one per series and target).
    title : str, optional
    history : pandas.DataFrame or polars.DataFrame, optional
        The frame the backtest was run on: its observed values before the first forecast
        are drawn (``"history"``) and every forecast line starts at the value at its cutoff.
    n_history : int, optional
        Steps of ``history`` to draw before the first forecast; by default as many as the
        backtest's forecasts span.

    Returns
    -------
    matplotlib.figure.Figure
        Per panel: a ``"history"`` line (with ``history``), one ``"actual"`` line, one
        ``"forecast"`` line per cutoff, and per cutoff the band of the outermost quantile pair
        (``"q0.1-0.9"``) and of each interval.

    Examples
    --------
    >>> frame = forecaster.backtest(df, n_windows=3)          # doctest: +SKIP
    >>> plot_backtest(frame, history=df, series=["store_7"])  # doctest: +SKIP
    """
    if not isinstance(frame, pd.DataFrame):
        frame = frame.to_pandas()
    fixed = {"window", "target", "cutoff", "h", "actual", "forecast"}
    quantile_cols = [c for c in frame.columns if c.startswith("q") and _is_number(c[1:])]
    level_cols = sorted({c[2:] for c in frame.columns if c[:2] in ("lo", "hi") and _is_number(c[2:])},
                        key=float, reverse=True)
    keys = [c for c in frame.columns if c not in fixed and c not in quantile_cols
            and not (c[:2] in ("lo", "hi") and _is_number(c[2:]))]
    id_col, time_col = (keys[0], keys[1]) if len(keys) >= 2 else (None, keys[0])
    targets = list(pd.unique(frame["target"]))
    if id_col is None:
        groups = [((None, t), frame[frame["target"] == t]) for t in targets]
        names = [str(t) for t in targets]
        panel_keys = targets
    else:
        grouped = frame.groupby([id_col, "target"], sort=False)
        groups = [(key, part) for key, part in grouped]
        names = [str(k[0]) if len(targets) == 1 else f"{k[0]}: {k[1]}" for k, _ in groups]
        panel_keys = [k[0] for k, _ in groups]
    noun = "series" if id_col is None or len(targets) == 1 else "panels (series and target)"
    chosen, note = _select([(k,) for k in panel_keys], names, series, max_series, noun)
    cutoffs = list(pd.unique(frame["cutoff"]))
    fig, axes = _figure(len(chosen), title or f"backtest: {frame['window'].nunique() if 'window' in frame else ''} "
                                              f"windows", note)
    past = None if history is None else _history_frame(history, time_col)
    q_levels = sorted(float(c[1:]) for c in quantile_cols)
    outer = (f"q{format_level(q_levels[0])}", f"q{format_level(q_levels[-1])}") if len(q_levels) >= 2 else None
    for ax, i in zip(axes, chosen):
        (key, target), part = groups[i]
        actual = part.drop_duplicates(time_col).sort_values(time_col)
        observed = pd.Series(actual["actual"].to_numpy(dtype=float), index=pd.Index(actual[time_col]))
        if past is not None:
            before = _history_of(past, id_col, key, target, time_col)
            before = before[before.index < observed.index.min()]
            before = before.iloc[-(n_history if n_history is not None else len(observed)):] if len(before) else before
            if len(before):
                ax.plot(before.index, before.to_numpy(), color=_HISTORY, lw=1.2, label="history", gid="history")
            observed = pd.concat([before, observed])
        ax.plot(actual[time_col], actual["actual"], color=_ACTUAL, lw=1.2, label="actual", gid="actual")
        for n, (cutoff, window) in enumerate(part.groupby("cutoff", sort=True)):
            color = f"C{n % 10}"
            window = window.sort_values(time_col)
            for m, level in enumerate(level_cols):
                ax.fill_between(window[time_col], window[f"lo{level}"], window[f"hi{level}"], color=color,
                                alpha=0.1 + 0.1 * m, lw=0, gid=f"interval{level}")
            if outer is not None:
                ax.fill_between(window[time_col], window[outer[0]], window[outer[1]], color=color, alpha=0.2, lw=0,
                                gid=f"{outer[0]}-{outer[1][1:]}")
            at_cutoff = observed.loc[[cutoff]] if cutoff in observed.index else observed.iloc[:0]
            x, y = _joined(at_cutoff.index, at_cutoff.to_numpy(), pd.Index(window[time_col]), window["forecast"])
            ax.plot(x, y, color=color, lw=1.4, gid="forecast", label=f"from {cutoff}" if len(cutoffs) <= 6 else None)
        ax.set_title(names[i], fontsize=9, loc="left")
        ax.tick_params(labelsize=7)
    if axes:
        axes[0].legend(fontsize=7, loc="upper left", ncol=4)
    return fig


def _history_frame(history, time_col: str) -> pd.DataFrame:
    """``history`` as pandas with the time axis as a column named like the backtest's."""
    past = history if isinstance(history, pd.DataFrame) else history.to_pandas()
    if time_col not in past.columns:
        if past.index.name != time_col and not isinstance(past.index, pd.DatetimeIndex):
            raise ValueError(f"history has no time column '{time_col}' (the backtest's); pass the frame the "
                             f"backtest was run on.")
        past = past.reset_index(names=time_col)
    return past


def _history_of(past: pd.DataFrame, id_col, key, target, time_col: str) -> pd.Series:
    """One panel's observed values in ``history``, by time (sorted, missing values left out)."""
    if target not in past.columns or (id_col is not None and id_col not in past.columns):
        raise ValueError(f"history has no column '{target if target not in past.columns else id_col}'; pass the "
                         f"frame the backtest was run on.")
    rows = past if id_col is None else past[past[id_col] == key]
    values = pd.Series(rows[target].to_numpy(dtype=float), index=pd.Index(rows[time_col])).sort_index()
    return values[np.isfinite(values.to_numpy())]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
