"""Frames in and out of a saved model, shared by the ``tsformers`` command and :mod:`tsformers.tracking`.

A pyfunc model has one input, a DataFrame, so two things that ``predict`` takes
as separate arguments or shapes travel inside it:

- **Known-future covariates.** For a model fitted with ``future_covariates``,
  the rows after the history whose targets are all empty (NaN) carry the
  future covariates of the forecast horizon: ``split_future_rows`` turns them
  into ``predict``'s ``future_df``.
- **Packed series** (one row per series, each cell an array over time), the
  shape a Spark UDF needs: ``mlflow.pyfunc.spark_udf`` maps every input row to
  one output row, so a series has to travel as one row. ``unpack`` turns
  such a frame into the ordinary long frame and ``pack`` turns the forecast
  back into one row per series (timestamps as ISO strings, Spark UDFs return
  no timestamps).

``forecast_frame`` is the pyfunc model's ``predict``; ``forecast_against``
lines a forecast up with what was observed (autolog's validation metrics,
``tsformers backtest``); ``example_from_*`` build input examples;
``in_time_order`` puts the rows of a file in series and time order. Nothing
here imports MLflow.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from tsformers.data.frames import as_pandas, output_times, time_as_column


def model_columns(schema) -> list[str]:
    """The input columns of a model, in order: id, time, then the variables."""
    return [c for c in [schema.id_col, schema.time_col] if c] + schema.variables


def schema_static(schema) -> list[str]:
    """The static attributes of a model (per-series columns of a long frame); none for older models."""
    return list(getattr(schema, "static", None) or [])


def split_future_rows(frame: pd.DataFrame, schema) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Split ``frame`` into the history and the future rows of a model with known-future covariates.

    The future rows of a series are the rows after its last row with an
    observed target. Models without future covariates get the frame back whole.
    """
    if not schema.future_covariates:
        return frame, None
    observed = frame[schema.targets].notna().any(axis=1).to_numpy()
    if schema.layout == "wide":
        last = np.flatnonzero(observed)
        future = np.arange(len(frame)) > (last[-1] if len(last) else -1)
    else:  # per series: no observed target from this row on
        reverse = pd.Series(observed[::-1].astype(np.int64))
        remaining = reverse.groupby(frame[schema.id_col].to_numpy()[::-1]).cumsum().to_numpy()[::-1]
        future = remaining == 0
    if not future.any():
        return frame, None
    keep = [c for c in [schema.id_col, None if schema.time_in_index else schema.time_col] if c]
    return frame[~future], frame.loc[future, keep + schema.future_covariates]


def is_packed(frame: pd.DataFrame, schema) -> bool:
    """Whether ``frame`` holds one row per series with arrays over time (see the module docstring)."""
    column = frame[schema.time_col] if schema.time_col in frame.columns else None
    return column is not None and len(column) > 0 and isinstance(column.iloc[0], (list, tuple, np.ndarray))


def unpack(frame: pd.DataFrame, schema) -> pd.DataFrame:
    """The ordinary long (or wide) frame of a packed one: each row's arrays become that series' rows.

    Columns holding arrays (time, variables) are concatenated; columns holding
    one value per row (the id, static attributes) are repeated over the series' rows.
    """
    lengths = np.array([len(v) for v in frame[schema.time_col]])
    out = {}
    for name in frame.columns:
        cells = frame[name]
        if len(cells) and not isinstance(cells.iloc[0], (list, tuple, np.ndarray)):
            out[name] = np.repeat(cells.to_numpy(), lengths)
            continue
        sizes = np.array([len(v) for v in cells])
        bad = np.flatnonzero(sizes != lengths)
        if len(bad):
            raise ValueError(f"packed row {bad[0]}: column '{name}' holds {sizes[bad[0]]} values but "
                             f"'{schema.time_col}' holds {lengths[bad[0]]}; every array of a row covers the same "
                             f"time steps.")
        if name == schema.time_col:
            values = np.concatenate([np.asarray(v) for v in cells]) if len(cells) else np.array([])
            out[name] = _as_times(values)
        else:  # lists stay objects: np.asarray would turn [1.0, True] into numbers before they are checked
            values = np.concatenate([v if isinstance(v, np.ndarray) else np.asarray(v, dtype=object) for v in cells]) \
                if len(cells) else np.array([])
            out[name] = _numbers(name, values)
    return pd.DataFrame(out)


def _numbers(name: str, values: np.ndarray) -> np.ndarray:
    """The values of a packed column as float64, refusing what predict refuses: bools and text, named."""
    if values.dtype.kind in "iuf":
        return values.astype(np.float64)
    wrong = next((v for v in values if v is not None and not (isinstance(v, (int, float, np.integer, np.floating))
                                                               and not isinstance(v, (bool, np.bool_)))), None)
    if wrong is not None or values.dtype.kind == "b":
        example = values[0] if wrong is None else wrong
        raise TypeError(f"column '{name}' holds {type(example).__name__} values such as {example!r}, not numbers; "
                        f"convert it (pd.to_numeric) before forecasting.")
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def pack(forecast: pd.DataFrame, schema, horizon: int) -> pd.DataFrame:
    """One row per series of a long (or wide) forecast frame, each cell an array over the horizon."""
    forecast = time_as_column(forecast, schema)
    n_series = len(forecast) // horizon
    times = forecast[schema.time_col]
    if pd.api.types.is_datetime64_any_dtype(times):
        times = pd.Series(_iso(pd.DatetimeIndex(times)))
    out = {}
    if schema.id_col:
        out[schema.id_col] = forecast[schema.id_col].to_numpy()[::horizon]
    out[schema.time_col] = list(times.to_numpy().reshape(n_series, horizon))
    for name in [c for c in forecast.columns if c not in (schema.id_col, schema.time_col)]:
        out[name] = list(forecast[name].to_numpy(dtype=np.float64).reshape(n_series, horizon))
    return pd.DataFrame(out)


def forecast_frame(forecaster, frame, future_df=None, static_df=None) -> pd.DataFrame:
    """The forecast of every series in ``frame`` as a pandas frame, the pyfunc model's output.

    ``frame`` is a frame ``predict`` takes, optionally followed by the future
    rows of the known-future covariates, or the packed form with one row per
    series (then the output has one row per series too, each cell an array
    over the horizon and the timestamps as ISO strings).
    """
    frame, _ = as_pandas(frame)
    schema = forecaster.schema_
    packed = is_packed(frame, schema)
    if packed:
        frame = unpack(frame, schema)
    if schema.time_in_index and schema.time_col in frame.columns:
        frame = frame.set_index(schema.time_col)
    if future_df is None:
        history, future = split_future_rows(frame, schema)
    else:
        history, future = frame, as_pandas(future_df)[0]
        if schema.time_in_index and schema.time_col in future.columns:
            future = future.set_index(schema.time_col)
    out = forecaster.predict(history, future_df=future, **({} if static_df is None else {"static_df": static_df}))
    out = time_as_column(out, schema)
    return pack(out, schema, forecaster.horizon) if packed else out


def forecast_against(forecaster, history: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Forecast the ``horizon`` steps after ``history`` and line the forecast up with the observed ``truth``.

    ``truth`` holds the rows of those steps (their known-future covariates
    feed the forecast). Returns its id, time and target columns plus a
    ``<target>__forecast`` column per target.
    """
    schema = forecaster.schema_
    keys = [c for c in [schema.id_col, schema.time_col] if c]
    future = truth[keys + schema.future_covariates] if schema.future_covariates else None
    pred = forecast_frame(forecaster, history, future_df=future)
    truth = truth[keys + schema.targets].reset_index(drop=True)
    truth[schema.time_col] = pd.Index(truth[schema.time_col]).astype(pred[schema.time_col].dtype)
    pred = pred.rename(columns={t: f"{t}__forecast" for t in schema.targets})
    return truth.merge(pred, on=keys, how="left", validate="one_to_one")


def holdout_forecast(forecaster, frame: pd.DataFrame) -> pd.DataFrame:
    """:func:`forecast_against` of the last ``horizon`` rows of each series, forecast from the rows before them."""
    schema, h = forecaster.schema_, forecaster.horizon
    frame = time_as_column(frame, schema)
    if schema.layout == "long":
        groups = frame.groupby(schema.id_col, sort=False)
        return forecast_against(forecaster, groups.head(-h), groups.tail(h))
    return forecast_against(forecaster, frame.iloc[:-h], frame.iloc[-h:])


def in_time_order(frame: pd.DataFrame, id_col: str | None, time_col: str | None) -> pd.DataFrame:
    """``frame`` with the rows of each series in time order, the series in the order they first appear.

    A file's rows need no order: Parquet files written by parallel jobs are often
    shuffled. The sort is stable (rows with equal times keep their order, for the
    duplicate check to name them) and keeps the index (the input's row numbers).
    Times that do not compare (mixed types) are left for the validation to name.
    """
    if not time_col or time_col not in frame.columns or len(frame) < 2:
        return frame
    times = frame[time_col].to_numpy()
    try:
        if id_col and id_col in frame.columns:
            order = np.lexsort((times, pd.factorize(frame[id_col])[0]))
        else:
            order = np.argsort(times, kind="stable")
    except TypeError:
        return frame
    if (order == np.arange(len(order))).all():
        return frame
    return frame.iloc[order]


def example_from_history(est, n_series: int = 2) -> pd.DataFrame:
    """An input example built from the history a fitted estimator keeps: its last ``lookback`` rows.

    Only for models without known-future covariates (their future values are
    not kept); ``example_from_frame`` serves those.
    """
    schema = est.schema_
    n_series = min(n_series, len(schema.series))
    values = est.history_[:n_series]  # (n_series, lookback, n_vars), each series up to its own end
    n_time = values.shape[1]
    ends = list(getattr(est, "ends_", None) or [est.last_time_] * len(schema.series))[:n_series]
    if isinstance(schema.step, str):
        times = [pd.date_range(end=end, periods=n_time, freq=schema.step) for end in ends]
    else:
        times = [pd.Index(int(end) - schema.step * np.arange(n_time - 1, -1, -1, dtype=np.int64)) for end in ends]
    times = [output_times(t, schema) for t in times]  # as the fit data wrote them: unit, periods, text
    times = times[0].append(times[1:]) if len(times) > 1 else times[0]
    out = {}
    if schema.layout == "long":
        ids = schema.series[:n_series]
        out[schema.id_col] = np.repeat(np.array(ids, dtype=object), n_time)
        if all(isinstance(s, (int, np.integer)) for s in ids):
            out[schema.id_col] = out[schema.id_col].astype(np.int64)
    out[schema.time_col] = times
    for j, name in enumerate(schema.variables):
        out[name] = values[:, :, j].reshape(-1)
    return pd.DataFrame(out)


def example_from_frame(est, df, n_series: int = 2) -> pd.DataFrame:
    """An input example cut from the fit data: per series the rows ``predict`` reads.

    That is the last ``lookback`` rows, plus, for a model with known-future
    covariates, ``horizon`` rows after them with the targets blanked (the
    future rows of :func:`split_future_rows`).
    """
    schema = est.schema_
    frame, _ = as_pandas(df)
    frame = time_as_column(frame, schema)
    n_future = est.horizon if schema.future_covariates else 0
    keep = est.lookback + n_future
    frame = frame[model_columns(schema) + [c for c in schema_static(schema) if c in frame.columns]]
    if schema.layout == "long":
        ids = frame[schema.id_col].drop_duplicates().iloc[:n_series]
        frame = frame[frame[schema.id_col].isin(ids)].groupby(schema.id_col, sort=False).tail(keep)
        position = frame.groupby(schema.id_col, sort=False).cumcount(ascending=False).to_numpy()
    else:
        frame = frame.tail(keep)
        position = np.arange(len(frame))[::-1]
    frame = frame.reset_index(drop=True)
    if n_future:
        frame[schema.targets] = frame[schema.targets].astype(np.float64)
        frame.loc[position < n_future, schema.targets] = np.nan
    return frame


def _as_times(values: np.ndarray):
    """Concatenated time values as datetimes (from Timestamps, datetime64 or ISO strings) or int64."""
    if values.dtype.kind in "iu" or len(values) and isinstance(values[0], (int, np.integer)):
        return values.astype(np.int64)
    if values.dtype.kind == "M":
        return values
    strings = len(values) and isinstance(values[0], str)
    return pd.to_datetime(pd.Series(values), format="ISO8601" if strings else None).array


def _iso(times: pd.DatetimeIndex) -> np.ndarray:
    """ISO 8601 strings of timestamps; time-zone aware ones in UTC with a ``Z``."""
    if times.tz is not None:
        return np.datetime_as_string(times.tz_convert("UTC").tz_localize(None).to_numpy(), timezone="UTC")
    return np.datetime_as_string(times.to_numpy())
