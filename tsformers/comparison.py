"""Several forecasters on one frame, their forecasts and cross-validation side by side in neuralforecast's layout.

:class:`ModelComparison` holds tsformers estimators the way ``NeuralForecast(models=[...])`` holds
neuralforecast models: ``fit`` fits a clone of each, ``predict`` and ``cross_validation`` return one
long frame with a column per model, named as neuralforecast names them, so code written for
neuralforecast's output (``utilsforecast.evaluation.evaluate``, its plots, a leaderboard) runs on it
unchanged::

    predict:          unique_id, ds, Naive, Naive-lo-80, Naive-hi-80, Linear, Linear-lo-80, ...
    cross_validation: unique_id, ds, cutoff, Naive, Naive-lo-80, ..., Linear, ..., y

**The layout.** One row per series and timestamp (and cutoff), one ``y`` per row:

- *A long frame* (id column, time column, one target column) keeps its own column names: a frame of
  ``store, week, sales`` gives ``store, week, [cutoff,] <models>, sales``, as neuralforecast does
  when given ``id_col``/``time_col``/``target_col``; ``unique_id, ds, y`` stay ``unique_id, ds, y``.
  A long frame with several target columns has no such layout (one ``y`` per row): it is refused;
  give every estimator ``target="one column"``, or fit one comparison per target.
- *A wide frame* (a time column and one column per variable) is read as neuralforecast would see it
  after melting: each target column becomes a series whose ``unique_id`` is the column's name, and
  the values are called ``y``; the time column keeps its name (``date`` stays ``date``; a
  DatetimeIndex becomes a column named after the index, ``date`` when it has no name). Covariate
  columns (``covariates=``) are inputs, not series, and do not appear.

**The columns of each model**, after the keys: the point forecast ``<name>`` (the median or mean of
a quantile model, as its ``predict`` gives it), then ``<name>_ql<q>`` per quantile of a model fitted
with ``quantiles=`` (neuralforecast's quantile names), then ``<name>-lo-<level>`` for the levels from
the widest down and ``<name>-hi-<level>`` from the narrowest up (neuralforecast's and utilsforecast's
order; ``level=[80, 95]``: ``-lo-95, -lo-80, -hi-80, -hi-95``). The intervals are each estimator's
conformal intervals. ``cross_validation`` has ``cutoff`` (the last timestamp each forecast saw) after
the time column and the target last, as neuralforecast's ``cross_validation`` does. Rows are sorted
by series and time (and cutoff); the forecasts are float64. A polars input gives a polars output.

**Names.** A model is named after its class (``GateformerForecaster``); pass a dict
``{"name": estimator}`` to choose the names. Two models of one name are refused (neuralforecast
would append a counter, which makes the columns depend on the order of the list).

>>> from tsformers import LinearForecaster, NaiveForecaster
>>> from tsformers.comparison import ModelComparison
>>> from tsformers.datasets import make_demo
>>> df = make_demo(n_series=2, n_steps=300, layout="long")
>>> models = ModelComparison([NaiveForecaster(horizon=12), LinearForecaster(horizon=12, lookback=48)])
>>> list(models.fit(df).predict(level=[80]).columns)       # doctest: +NORMALIZE_WHITESPACE
['unique_id', 'ds', 'NaiveForecaster', 'NaiveForecaster-lo-80', 'NaiveForecaster-hi-80',
 'LinearForecaster', 'LinearForecaster-lo-80', 'LinearForecaster-hi-80']
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted

from tsformers.data.frames import as_pandas, format_level, infer_schema
from tsformers.estimators.evaluation import check_levels, check_quantiles

__all__ = ["ModelComparison"]

#: The names neuralforecast gives the series id and the target when the input has no column for them (a wide frame).
WIDE_ID, WIDE_TARGET = "unique_id", "y"
CUTOFF = "cutoff"
_INTERVAL_NAME = re.compile(r"-(?:lo|hi)-\d")   # what utilsforecast reads as an interval column


@dataclass(frozen=True)
class _Layout:
    """How an input frame maps onto neuralforecast's columns."""

    wide: bool
    id_col: str        # the output's id column: the input's (long) or "unique_id" (wide)
    time_col: str      # the input's time column
    target_col: str    # the input's target column (long) or "y" (wide)
    targets: tuple     # the estimators' target columns (one for a long frame)


class ModelComparison(BaseEstimator):
    """Fit several forecasters on one frame; forecasts and cross-validation side by side, in neuralforecast's layout.

    The counterpart of ``neuralforecast.NeuralForecast(models=[...])`` for tsformers
    estimators: ``fit``, ``predict`` and ``cross_validation`` return long frames with
    one column per model (``<name>``, ``<name>-lo-80``, ``<name>-hi-80``), so that
    code written for neuralforecast's output, such as utilsforecast's ``evaluate``,
    runs on them unchanged. The module documentation describes the layout.

    Parameters
    ----------
    models : list of estimators or dict of str to estimator
        tsformers forecasters (fitted or not; each is cloned). In a list each is
        named after its class; a dict names them. All must forecast the same
        ``horizon`` from the same columns (time, id and target columns).

    Attributes
    ----------
    models_ : dict of str to estimator
        The fitted clones, by name, in the order given.

    See Also
    --------
    tsformers.estimators.base.BaseForecaster.backtest : one estimator's cross-validation, in tsformers' tidy layout.

    Notes
    -----
    Differences from neuralforecast: the horizon is each estimator's ``horizon``
    (so ``predict`` takes no ``h``); ``cross_validation``'s ``step_size`` defaults
    to the horizon (windows side by side) rather than 1; ``refit`` is True or False
    (no "every k windows"); the known-future covariates are ``future_df``
    (neuralforecast's ``futr_df``); time steps need no ``freq``, each estimator
    reads it from the data.

    Examples
    --------
    >>> from tsformers import NaiveForecaster, SeasonalNaiveForecaster
    >>> from tsformers.comparison import ModelComparison
    >>> from tsformers.datasets import make_demo
    >>> df = make_demo(n_series=2, n_steps=400, layout="long")
    >>> models = ModelComparison({"naive": NaiveForecaster(horizon=24),
    ...                           "daily": SeasonalNaiveForecaster(horizon=24, season_length=24)})
    >>> forecast = models.fit(df).predict(level=[80])
    >>> list(forecast.columns)                  # doctest: +NORMALIZE_WHITESPACE
    ['unique_id', 'ds', 'naive', 'naive-lo-80', 'naive-hi-80', 'daily', 'daily-lo-80', 'daily-hi-80']
    >>> cv = models.cross_validation(df, n_windows=2)
    >>> list(cv.columns)
    ['unique_id', 'ds', 'cutoff', 'naive', 'daily', 'y']
    >>> len(cv) == 2 * 2 * 24                   # series x windows x horizon
    True
    """

    def __init__(self, models):
        self.models = models

    # -- the models -------------------------------------------------------------------------

    def _named_models(self) -> dict:
        """The ``models`` parameter as ``{name: estimator}``, refusing what cannot become distinct columns."""
        models = self.models
        if isinstance(models, dict):
            bad = [k for k in models if not isinstance(k, str) or not k]
            if bad:
                raise TypeError(f"the keys of models name the forecast columns, so they must be non-empty "
                                f"strings; got {bad!r}.")
            named = dict(models)
        elif isinstance(models, (list, tuple)):
            names = [type(m).__name__ for m in models]
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ValueError(
                    f"models holds more than one {', '.join(repeated)}: their forecast columns would have the "
                    f"same name. Name each model with a dict, e.g. ModelComparison({{'{repeated[0]}_a': ..., "
                    f"'{repeated[0]}_b': ...}}).")
            named = dict(zip(names, models))
        else:
            raise TypeError(f"models must be a list of forecasters or a dict {{name: forecaster}}, got "
                            f"{type(models).__name__}.")
        if not named:
            raise ValueError("models is empty; pass at least one forecaster, e.g. [NaiveForecaster(horizon=24)].")
        for name, model in named.items():
            if not all(callable(getattr(model, method, None)) for method in ("fit", "predict", "backtest")):
                raise TypeError(f"model '{name}' is a {type(model).__name__}, not a tsformers forecaster (it needs "
                                f"fit, predict and backtest).")
            if _INTERVAL_NAME.search(name):
                raise ValueError(f"model name '{name}' contains '-lo-<digit>' or '-hi-<digit>', which reads as an "
                                 f"interval column in neuralforecast's layout; choose another name.")
        horizons = {name: getattr(model, "horizon", None) for name, model in named.items()}
        if len(set(horizons.values())) > 1:
            raise ValueError(f"the models forecast different horizons {horizons}; the side-by-side layout has one "
                             f"row per forecast step, so give every model the same horizon=.")
        return named

    def _layout(self, named: dict, df, static_df) -> _Layout:
        """The output columns of ``df``, checking that every model reads ``df`` the same way."""
        frame, backend = as_pandas(df)
        static_frame = None if static_df is None else as_pandas(static_df)[0]
        seen = {}
        for name, model in named.items():
            schema = getattr(model, "schema_", None) if hasattr(model, "network_") else None
            if schema is None:
                schema = infer_schema(frame, backend, time_col=model.time_col, id_col=model.id_col,
                                      target=model.target, covariates=getattr(model, "covariates", None),
                                      future_covariates=getattr(model, "future_covariates", None),
                                      static=getattr(model, "static", None), static_df=static_frame)
            seen[name] = (schema.layout, schema.id_col, schema.time_col, tuple(schema.targets))
        if len(set(seen.values())) > 1:
            described = {name: f"{layout}, id={id_col!r}, time={time_col!r}, targets={list(targets)}"
                         for name, (layout, id_col, time_col, targets) in seen.items()}
            raise ValueError(f"the models read the frame differently ({described}); give them the same id_col=, "
                             f"time_col= and target= so that their forecasts line up row by row.")
        layout, id_col, time_col, targets = next(iter(seen.values()))
        if layout == "long":
            if len(targets) > 1:
                raise ValueError(
                    f"the models forecast {len(targets)} target columns {list(targets)} of a long frame, but "
                    f"neuralforecast's layout holds one target per row. Give every model target='{targets[0]}' "
                    f"(one comparison per target), or pass a wide frame, whose target columns become series.")
            out = _Layout(wide=False, id_col=id_col, time_col=time_col, target_col=targets[0], targets=targets)
        else:
            out = _Layout(wide=True, id_col=WIDE_ID, time_col=time_col, target_col=WIDE_TARGET, targets=targets)
        taken = {out.id_col, out.time_col, out.target_col, CUTOFF} & set(named)
        if taken:
            raise ValueError(f"model name(s) {sorted(taken)} would repeat the key columns "
                             f"{[out.id_col, out.time_col, CUTOFF, out.target_col]}; choose other names.")
        if len({out.id_col, out.time_col, out.target_col, CUTOFF}) < 4:
            raise ValueError(f"the time column '{time_col}' has a name the layout gives another column "
                             f"({out.id_col!r}, {CUTOFF!r}, {out.target_col!r}); rename it.")
        return out

    # -- fit and predict ----------------------------------------------------------------------

    def fit(self, df, y=None, static_df=None):
        """Fit a clone of every model on ``df``.

        Parameters
        ----------
        df : pandas.DataFrame or polars.DataFrame
            The history, long (one target column) or wide, as each estimator's ``fit`` takes it.
        y : None
            Ignored; present for scikit-learn compatibility.
        static_df : DataFrame, optional
            Static attributes, passed to every model's ``fit``.

        Returns
        -------
        self
        """
        named = self._named_models()
        for name in [k for k in vars(self) if k.endswith("_") and not k.startswith("_")]:
            delattr(self, name)
        unfitted = {name: clone(model) for name, model in named.items()}
        layout = self._layout(unfitted, df, static_df)   # refuses before any model is trained
        static = {} if static_df is None else {"static_df": static_df}
        self.models_ = {name: model.fit(df, **static) for name, model in unfitted.items()}
        self.layout_ = layout
        return self

    def predict(self, df=None, future_df=None, static_df=None, level=None):
        """Every model's forecast of the next ``horizon`` steps, side by side.

        Parameters
        ----------
        df : DataFrame, optional
            New history (the columns of the fit data); by default each model
            forecasts after the end of the training data.
        future_df : DataFrame, optional
            Known-future covariates over the horizon, for models fitted with
            ``future_covariates`` (neuralforecast's ``futr_df``).
        static_df : DataFrame, optional
            Static attributes of series not seen in fit.
        level : float or list of float, optional
            Conformal interval levels in percent: columns ``<name>-lo-<level>`` and ``<name>-hi-<level>``.

        Returns
        -------
        DataFrame
            ``<id>, <time>, <name>, [<name>_ql<q>...], [<name>-lo-<level>...,
            <name>-hi-<level>...]`` per model, one row per series and forecast
            step, sorted by series and time; in the library of ``df`` (of the fit data
            when ``df`` is None).
        """
        check_is_fitted(self, "models_")
        levels = check_levels(level)
        layout = self.layout_
        backend = next(iter(self.models_.values())).schema_.backend if df is None else as_pandas(df)[1]
        parts = []
        for name, model in self.models_.items():
            frame = as_pandas(model.predict(df, future_df=future_df, static_df=static_df,
                                            level=levels or None))[0]
            if layout.time_col not in frame.columns:       # a wide frame with a DatetimeIndex
                frame = frame.reset_index(names=layout.time_col)
            parts.append(_long_forecast(frame, layout, _columns(model, name, levels), point=""))
        return _finish(_side_by_side(parts, [layout.id_col, layout.time_col]), [layout.id_col, layout.time_col],
                       backend)

    # -- cross-validation -----------------------------------------------------------------

    def cross_validation(self, df, n_windows: int = 1, step_size: int | None = None, refit: bool = False,
                         level=None, static_df=None):
        """Rolling-origin forecasts of every model, side by side with the actual values.

        Each model runs its own :meth:`~tsformers.estimators.base.BaseForecaster.backtest`
        on a fresh clone of the ``models`` parameter: with ``refit=False`` the clone is
        fitted once on the rows before the first window and forecasts every window (as
        neuralforecast's ``refit=False``); with ``refit=True`` a clone is fitted on the rows
        before each window. ``models_`` (from :meth:`fit`) is neither used nor changed.

        Parameters
        ----------
        df : pandas.DataFrame or polars.DataFrame
            The whole history; the last ``horizon + (n_windows - 1) * step_size`` steps of
            each series are forecast.
        n_windows : int, default=1
            Forecast origins per series.
        step_size : int, optional
            Steps between origins; the horizon by default (windows side by side; neuralforecast's default is 1).
        refit : bool, default=False
            Refit before every window.
        level : float or list of float, optional
            Conformal interval levels in percent.
        static_df : DataFrame, optional
            Static attributes, as for :meth:`fit`.

        Returns
        -------
        DataFrame
            ``<id>, <time>, cutoff, <model columns as in predict>..., <target>``: one row
            per series, window and forecast step, sorted by series, cutoff and time; ``cutoff``
            is the last timestamp the window's forecast saw, the target column holds the actual
            values. In the library of ``df``.
        """
        if not isinstance(refit, (bool, np.bool_)):
            raise ValueError(f"refit must be True or False, got {refit!r}; refitting every k windows "
                             f"(neuralforecast's refit=k) is not supported.")
        levels = check_levels(level)
        named = self._named_models()
        layout = self._layout({name: clone(model) for name, model in named.items()}, df, static_df)
        backend = as_pandas(df)[1]
        keys = [layout.id_col, layout.time_col, CUTOFF]
        parts = []
        for n, (name, model) in enumerate(named.items()):
            frame = as_pandas(clone(model).backtest(df, n_windows=n_windows, step=step_size, refit=bool(refit),
                                                    level=levels or None, static_df=static_df))[0]
            part = _long_forecast(frame, layout, _columns(model, name, levels), point="forecast")
            if n == 0:
                part[layout.target_col] = frame["actual"].to_numpy()
            parts.append(part)
        out = _side_by_side(parts, keys)
        out = out[[c for c in out.columns if c != layout.target_col] + [layout.target_col]]
        return _finish(out, [layout.id_col, CUTOFF, layout.time_col], backend)


def _columns(model, name: str, levels: list[float]) -> list[tuple[str, str]]:
    """``(suffix in the estimator's output, column in neuralforecast's layout)``, the point forecast first."""
    pairs = [("", name)]
    for q in check_quantiles(model.get_params().get("quantiles")) or []:
        pairs.append((f"_q{format_level(q)}", f"{name}_ql{format_level(q)}"))
    pairs += [(f"_lo{format_level(v)}", f"{name}-lo-{format_level(v)}") for v in reversed(levels)]
    pairs += [(f"_hi{format_level(v)}", f"{name}-hi-{format_level(v)}") for v in levels]
    return pairs


def _long_forecast(frame: pd.DataFrame, layout: _Layout, pairs: list, point: str) -> pd.DataFrame:
    """One model's forecasts as key columns and its named columns.

    ``frame`` is the model's ``predict`` output (``point=""``: the columns are ``<target><suffix>``)
    or its ``backtest`` (``point="forecast"``: ``forecast``, ``q0.1``, ``lo80``, one row per target).
    """
    backtest = bool(point)

    def source(target, suffix):
        if backtest:
            return suffix[1:] if suffix else point
        return target + suffix

    def keys(*names):   # the key columns with their dtypes (ids as given, timestamps with their unit)
        return pd.DataFrame({out_name: frame[name].reset_index(drop=True) for out_name, name in names})

    if backtest:   # rows already per series (long: the id column; wide: the target column)
        out = keys((layout.id_col, "target" if layout.wide else layout.id_col), (layout.time_col, layout.time_col),
                   (CUTOFF, CUTOFF))
        for suffix, column in pairs:
            out[column] = frame[source(None, suffix)].to_numpy(dtype=np.float64)
        return out
    if not layout.wide:
        out = keys((layout.id_col, layout.id_col), (layout.time_col, layout.time_col))
        for suffix, column in pairs:
            out[column] = frame[source(layout.target_col, suffix)].to_numpy(dtype=np.float64)
        return out
    blocks = []
    for target in layout.targets:   # a wide frame: each target column is a series
        block = keys((layout.time_col, layout.time_col))
        block.insert(0, layout.id_col, pd.Series([target] * len(frame)))
        for suffix, column in pairs:
            block[column] = frame[source(target, suffix)].to_numpy(dtype=np.float64)
        blocks.append(block)
    return pd.concat(blocks, ignore_index=True)


def _side_by_side(parts: list[pd.DataFrame], keys: list[str]) -> pd.DataFrame:
    """The models' frames joined on ``keys``; every model must forecast the same rows."""
    out = parts[0]
    for part in parts[1:]:
        joined = out.merge(part, on=keys, how="outer", validate="one_to_one", indicator=True)
        if (joined["_merge"] != "both").any():
            raise ValueError("the models forecast different series or timestamps, so their forecasts do not line "
                             "up; check that every model is fitted on the same frame with the same horizon.")
        out = joined.drop(columns="_merge")
    return out


def _finish(out: pd.DataFrame, order: list[str], backend: str):
    """Sorted rows, a fresh index, in the library of the input."""
    out = out.sort_values(order, kind="stable").reset_index(drop=True)
    if backend == "polars":
        import polars as pl

        return pl.from_pandas(out)
    return out
