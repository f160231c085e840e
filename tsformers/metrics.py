"""Forecast error metrics on arrays (any shape; the mean is over every element), and `evaluate` for backtest frames."""
from __future__ import annotations

import numpy as np


def mse(y_true, y_pred) -> float:
    """Mean squared error."""
    return float(np.mean((np.asarray(y_pred, dtype=float) - np.asarray(y_true, dtype=float)) ** 2))


def mae(y_true, y_pred) -> float:
    """Mean absolute error."""
    return float(np.mean(np.abs(np.asarray(y_pred, dtype=float) - np.asarray(y_true, dtype=float))))


def rmse(y_true, y_pred) -> float:
    """Root mean squared error."""
    return float(np.sqrt(mse(y_true, y_pred)))


def _capacity(capacity) -> float:
    """Check that a plant capacity is a positive finite number."""
    value = float(capacity)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"capacity must be a positive number (the plant's rated power), got {capacity!r}")
    return value


def nmae(y_true, y_pred, capacity) -> float:
    """Mean absolute error normalised by the plant capacity: MAE / capacity (multiply by 100 for %).

    The usual PV reporting: dividing by the rated power instead of the
    observed power keeps night-time steps (power 0) from dividing by zero and
    makes plants of different sizes comparable.
    """
    return mae(y_true, y_pred) / _capacity(capacity)


def nrmse(y_true, y_pred, capacity) -> float:
    """Root mean squared error normalised by the plant capacity: RMSE / capacity (multiply by 100 for %)."""
    return rmse(y_true, y_pred) / _capacity(capacity)


def mase(y_true, y_pred, y_train, season: int = 1) -> float:
    """Mean absolute scaled error: MAE divided by the in-sample MAE of the seasonal naive forecast.

    ``mean(|y_true - y_pred|) / mean(|y_train[t] - y_train[t - season]|)`` (Hyndman & Koehler,
    2006); ``y_train`` is the history the forecast was made from (time on axis 0). Below 1: better
    than repeating the value one season earlier, in sample.
    """
    train = np.asarray(y_train, dtype=float)
    if season < 1 or train.shape[0] <= season:
        raise ValueError(f"y_train needs more than season={season} steps (has {train.shape[0]}).")
    scale = float(np.mean(np.abs(train[season:] - train[:-season])))
    if not scale > 0:
        raise ValueError("y_train is constant over each season: the naive error that scales MASE is 0.")
    return mae(y_true, y_pred) / scale


def smape(y_true, y_pred) -> float:
    """Symmetric mean absolute percentage error, in percent (0 to 200), as in the M4 competition.

    ``100 * mean(2 |y_pred - y_true| / (|y_true| + |y_pred|))``; a step where both are 0 counts as 0.
    """
    t, p = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    denominator = np.abs(t) + np.abs(p)
    ratio = np.divide(2 * np.abs(p - t), denominator, out=np.zeros(np.broadcast(t, p).shape),
                      where=denominator > 0)
    return float(100 * np.mean(ratio))


def pinball_loss(y_true, y_quantiles, quantiles) -> float:
    """Pinball (quantile) loss averaged over every element and level: the loss quantile models train on.

    ``y_quantiles[..., k]`` forecasts level ``quantiles[k]`` of ``y_true``; per level,
    ``max(q * e, (q - 1) * e)`` with ``e = y_true - y_quantiles[..., k]``.
    """
    levels = np.asarray(quantiles, dtype=float)
    pred = np.asarray(y_quantiles, dtype=float)
    if pred.shape[-1] != len(levels):
        raise ValueError(f"y_quantiles has {pred.shape[-1]} levels on its last axis, quantiles {len(levels)}.")
    error = np.asarray(y_true, dtype=float)[..., None] - pred
    return float(np.mean(np.maximum(levels * error, (levels - 1) * error)))


def crps(y_true, y_quantiles, quantiles) -> float:
    """The continuous ranked probability score, approximated from evenly spaced quantile forecasts.

    CRPS is twice the pinball loss integrated over the levels (Gneiting & Raftery, 2007); with levels
    spread evenly over (0, 1), such as 0.05, 0.10, ..., 0.95, twice their mean pinball loss approximates
    it (the mean weighted quantile loss of GluonTS). Lower is better; for a point forecast (one level,
    0.5) it is the MAE. In the units of ``y_true``.
    """
    levels = np.asarray(quantiles, dtype=float)
    if levels.ndim != 1 or len(levels) > 1 and not np.allclose(np.diff(levels), levels[1] - levels[0]):
        raise ValueError(f"crps needs evenly spaced quantile levels, got {levels.tolist()}; use pinball_loss "
                         f"for arbitrary levels.")
    return 2.0 * pinball_loss(y_true, y_quantiles, levels)


def coverage(y_true, lower, upper) -> float:
    """The share of ``y_true`` inside ``[lower, upper]`` (an 80% interval should give about 0.8)."""
    t = np.asarray(y_true, dtype=float)
    return float(np.mean((t >= np.asarray(lower, dtype=float)) & (t <= np.asarray(upper, dtype=float))))


def interval_width(lower, upper) -> float:
    """The mean width ``upper - lower`` of prediction intervals."""
    return float(np.mean(np.asarray(upper, dtype=float) - np.asarray(lower, dtype=float)))


def evaluate(frame, by=None, *, history=None, season: int = 1):
    """Metrics of a ``Forecaster.backtest`` frame, per group of ``by`` columns (overall by default).

    Per group: ``n`` (observed values), ``mse``, ``mae``, ``rmse``, ``smape``; with
    ``history``, ``mase``; with quantile columns ``pinball``; per interval level L
    ``coverage_L`` and ``width_L``. Missing actual values are left out.

    Parameters
    ----------
    frame : pandas.DataFrame or polars.DataFrame
        The output of ``backtest``.
    by : str or list of str, optional
        Columns to group by (``"h"``, ``"window"``, the id column, ``"target"``).
    history : DataFrame, optional
        The frame the backtest was run on (or the training data), to scale
        MASE: per series and target, the in-sample MAE of the seasonal naive
        forecast over its rows up to that series' first cutoff in ``frame``.
        ``mase`` is then the mean of the absolute errors divided by their
        series' scale: for one series and target it is :func:`mase`, and on a
        panel every series counts by its number of forecast values, whatever
        its units.
    season : int, default=1
        The seasonal period of the MASE scale.

    Returns
    -------
    pandas.DataFrame
        One row per group.
    """
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        frame = frame.to_pandas()
    q_cols = [c for c in frame.columns if c.startswith("q") and _number(c[1:]) is not None]
    levels = sorted({c[2:] for c in frame.columns if c[:2] in ("lo", "hi") and _number(c[2:]) is not None},
                    key=float)
    if history is not None:
        frame = frame.assign(_mase_scale=_mase_scales(frame, history, season))
    by = [by] if isinstance(by, str) else list(by or [])
    groups = frame.groupby(by, sort=False, dropna=False) if by else [((), frame)]
    rows = []
    for key, part in groups:
        part = part[part["actual"].notna()]
        y, f = part["actual"].to_numpy(float), part["forecast"].to_numpy(float)
        row = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        row.update(n=len(y), mse=mse(y, f) if len(y) else np.nan, mae=mae(y, f) if len(y) else np.nan)
        row.update(rmse=float(np.sqrt(row["mse"])), smape=smape(y, f) if len(y) else np.nan)
        if history is not None:
            row["mase"] = float(np.mean(np.abs(y - f) / part["_mase_scale"].to_numpy(float))) if len(y) else np.nan
        if q_cols:
            row["pinball"] = pinball_loss(y, part[q_cols].to_numpy(float), [_number(c[1:]) for c in q_cols]) \
                if len(y) else np.nan
        for level in levels:
            lo, hi = part[f"lo{level}"].to_numpy(float), part[f"hi{level}"].to_numpy(float)
            row[f"coverage_{level}"] = coverage(y, lo, hi) if len(y) else np.nan
            row[f"width_{level}"] = interval_width(lo, hi) if len(y) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def _mase_scales(frame, history, season: int) -> np.ndarray:
    """Per row of a backtest ``frame``, its series' and target's seasonal naive MAE over ``history`` up to the
    series' first cutoff (the MASE denominator)."""
    import pandas as pd

    if isinstance(season, bool) or not isinstance(season, (int, np.integer)) or season < 1:
        raise ValueError(f"season must be a positive integer (the seasonal period of MASE), got {season!r}.")
    if not isinstance(history, pd.DataFrame):
        history = history.to_pandas()
    columns = list(frame.columns)
    time_col = columns[columns.index("cutoff") + 1]                   # backtest: ..., cutoff, <time>, h, ...
    id_col = columns[columns.index("target") - 1] if columns.index("target") > 1 else None
    if id_col is not None and id_col not in history.columns:
        raise ValueError(f"history has no id column '{id_col}', which the backtest frame has: pass the frame the "
                         f"backtest was run on.")
    times = history.index.to_series(index=history.index) if time_col not in history.columns else history[time_col]
    history = history.assign(_time=pd.Index(times).to_numpy())
    parts = {None: history} if id_col is None else dict(tuple(history.groupby(id_col, sort=False)))
    group_cols = ["target"] if id_col is None else [id_col, "target"]
    scales = np.full(len(frame), np.nan)
    for group, rows in frame.groupby(group_cols, sort=False).indices.items():
        key, target = (None, group) if id_col is None else group
        if isinstance(target, tuple):  # pandas gives 1-tuples for a one-column list
            target = target[0]
        where = f"target '{target}'" + ("" if key is None else f" of series '{key}'")
        part = parts.get(key)
        if part is None or target not in part.columns:
            raise ValueError(f"history has no values of {where}: pass the frame the backtest was run on.")
        cutoff = frame["cutoff"].to_numpy()[rows].min()
        past = part.loc[part["_time"] <= cutoff].sort_values("_time")[target].to_numpy(float)
        naive = np.abs(past[season:] - past[:-season]) if len(past) > season else past[:0]
        if not np.isfinite(naive).any():
            raise ValueError(f"history holds {len(past)} values of {where} up to its first cutoff {cutoff}: MASE "
                             f"with season={season} needs two observed values {season} steps apart.")
        scale = float(np.nanmean(naive))
        if not scale > 0:
            raise ValueError(f"{where} is constant over each season of history up to {cutoff}: the seasonal naive "
                             f"error that scales MASE is 0.")
        scales[rows] = scale
    return scales


def _number(text: str):
    try:
        return float(text)
    except ValueError:
        return None
