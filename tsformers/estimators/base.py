"""The estimator contract shared by every forecaster: fit, predict, score, save and load.

Validation, scaling, windowing, the Trainer, saving and the output frame live
here once; a concrete forecaster only stores its hyperparameters and builds its
network from the fitted data schema (``_build_network``). Lightning is imported
inside ``fit`` only, so loading a model and forecasting stay light.
"""
from __future__ import annotations

import os
import warnings
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from tsformers.backbone.heads import QuantileHead, StaticResidual
from tsformers.data.frames import (Panel, PanelSchema, as_pandas, frame_to_panel, future_values, infer_schema,
                                   output_columns, panel_to_frame)
from tsformers.data.scaling import PanelScaler
from tsformers.data.time import future_times, future_times_of
from tsformers.data.missing import MODES as MISSING_MODES
from tsformers.data.missing import interpolate_gaps, with_observed_mask
from tsformers.data.static import StaticEncoder, static_table
from tsformers.data.windows import lead_future, split_spans, split_train_val, validation_steps
from tsformers.estimators.evaluation import EvaluationMixin, check_levels, check_quantiles
from tsformers.estimators.persistence import load_estimator, save_estimator
from tsformers.seeding import seeded_call

#: Observers of every fit (``tsformers.tracking.autolog`` adds one): ``before_training(estimator,
#: trainer_kwargs) -> trainer_kwargs`` may add Lightning loggers/callbacks to a copy of the Trainer
#: settings; ``after_fit(estimator, df)`` sees the fitted estimator. Empty unless tracking is switched on.
fit_listeners: list = []


class BaseForecaster(EvaluationMixin, BaseEstimator):
    """Base class of the tsformers forecasters (not used directly).

    Subclasses list every parameter in ``__init__`` (scikit-learn reads the
    signature), declare capabilities in ``_tags`` and implement
    ``_build_network(n_vars)``. Quantiles, conformal intervals, backtests and
    plots come from :class:`~tsformers.estimators.evaluation.EvaluationMixin`
    (its module documents them).
    """

    _tags = {"multivariate": True, "streaming": False, "static": False, "quantiles": False}

    _parameter_constraints = {
        "horizon": [Interval(Integral, 1, None, closed="left")],
        "lookback": [Interval(Integral, 1, None, closed="left")],
        "target": [str, list, tuple, None],
        "covariates": [str, list, tuple, None],
        "future_covariates": [str, list, tuple, None],
        "time_col": [str, None],
        "id_col": [str, None],
        "loss": [StrOptions({"mse", "mae", "huber"})],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "lr_schedule": [StrOptions({"halving", "cosine", "constant"})],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_epochs": [Interval(Integral, 0, None, closed="left")],
        "patience": [Interval(Integral, 1, None, closed="left"), None],
        "val_size": [Interval(Real, 0, 1, closed="left"), Interval(Integral, 0, None, closed="left")],
        "scaler": [StrOptions({"standard"}), None],
        "gradient_clip": [Interval(Real, 0, None, closed="neither"), None],
        "random_state": [Interval(Integral, 0, 2**32 - 1, closed="both")],
        "verbose": ["boolean"],
        "trainer_kwargs": [dict, None],
        "missing": [StrOptions(set(MISSING_MODES))],
        "max_gap": [Interval(Integral, 1, None, closed="left"), None],
        "fill_gaps": ["boolean"],
        "static": [str, list, tuple, None],
        "unknown_static": [StrOptions({"error", "zeros"})],
        "checkpoint_dir": [str, os.PathLike, None],
        "resume": ["boolean", str, os.PathLike],
        "quantiles": [list, tuple, None],
    }

    # -- to implement -------------------------------------------------------------------

    def _build_network(self, n_vars: int) -> torch.nn.Module:
        """The untrained network for ``n_vars`` input variables (targets first)."""
        raise NotImplementedError

    def _network(self, n_vars: int) -> torch.nn.Module:
        """The estimator's network; with static attributes and no static input of its own, behind a static residual."""
        network = self._build_network(n_vars)
        n_static = self.static_encoder_.n_channels
        if n_static and not self._tags["static"]:
            network = StaticResidual(network, n_static=n_static, horizon=self.horizon,
                                     n_targets=len(self.schema_.targets))
        levels = self._quantile_levels()
        if levels:  # any network's (B, H, N) forecast becomes non-crossing quantiles (B, H, n_targets, Q)
            network = QuantileHead(network, quantiles=levels, horizon=self.horizon,
                                   n_targets=len(self.schema_.targets))
        return network

    @classmethod
    def get_test_params(cls) -> dict:
        """Small settings for the shared contract tests."""
        return {}

    # -- fit -------------------------------------------------------------------------------

    def fit(self, df, y=None, static_df=None):
        """Fit the forecaster on the history in ``df``.

        Parameters
        ----------
        df : pandas.DataFrame or polars.DataFrame
            Wide (a time column and one column per variable) or long (an id
            column, a time column and value columns; ``unique_id``/``ds``/``y``
            is detected). Every series needs at least ``lookback + horizon`` rows.
        y : None
            Ignored; present for scikit-learn compatibility.
        static_df : DataFrame, optional
            Static attributes (``static=``) that are not columns of ``df``: the id
            column and one row per series.

        Returns
        -------
        self
        """
        self._validate_params()
        check_quantiles(self.quantiles)
        for name in [k for k in vars(self) if k.endswith("_") and not k.startswith("_")]:
            delattr(self, name)
        frame, backend = as_pandas(df)
        static_frame = None if static_df is None else as_pandas(static_df)[0]
        schema = infer_schema(frame, backend, time_col=self.time_col, id_col=self.id_col, target=self.target,
                              covariates=self.covariates, future_covariates=self.future_covariates,
                              static=self.static, static_df=static_frame)
        output_columns(schema, quantiles=self._quantile_levels() or ())  # refuses names the forecast would reuse
        self._check_future_covariates(schema)
        raw = self._read(frame, schema, fitting=True)
        encoder = StaticEncoder.fit(static_table(frame, schema.id_col, schema.static, raw.series, static_frame)) \
            if schema.static else StaticEncoder()
        raw.static = encoder.transform(static_table(frame, schema.id_col, schema.static, raw.series, static_frame)) \
            if schema.static else None
        self._check_length(raw, self.lookback + self.horizon, "fit")
        panel = self._fill_missing(raw, schema)

        n_targets = len(schema.targets)
        n_time = panel.values.shape[1]
        val_steps = validation_steps(int(panel.lengths.max()), self.lookback, self.horizon, self.val_size)
        if val_steps == 0 and self.val_size and self.max_epochs:
            warnings.warn(
                f"the series ({panel.values.shape[1]} steps) are too short for a validation part of "
                f"val_size={self.val_size} besides training windows; training on all of it without early stopping.",
                UserWarning, stacklevel=2)
        train_part, _ = split_train_val(panel.values, self.lookback, val_steps)
        scaler = self._fit_scaler(train_part)
        self.schema_, self.scaler_, self.static_encoder_, self.static_ = schema, scaler, encoder, raw.static
        scaled = scaler.transform(panel.values)
        inputs = torch.from_numpy(self._network_inputs(scaled).astype(np.float32))
        targets = torch.from_numpy(scaled[..., :n_targets].astype(np.float32))  # missing targets stay NaN
        train = tuple(split_train_val(t, self.lookback, val_steps)[0] for t in (inputs, targets))
        val = None if val_steps == 0 else tuple(split_train_val(t, self.lookback, val_steps)[1]
                                                for t in (inputs, targets))
        if not panel.aligned:  # draw only windows inside each series' own span
            train_spans, val_spans = split_spans(panel.first, panel.last, n_time, self.lookback, val_steps)
            train, val = (*train, train_spans), None if val is None else (*val, val_spans)
        n_vars = inputs.shape[-1]

        network = seeded_call(self.random_state, self._network, n_vars)  # under a lock: see tsformers.seeding
        log = []
        if self.max_epochs > 0:
            from tsformers.training import fit_network  # Lightning only when training

            trainer_kwargs = dict(self.trainer_kwargs or {})
            for listener in fit_listeners:
                trainer_kwargs = listener.before_training(self, trainer_kwargs)
            log = fit_network(network, train, val, lookback=self.lookback, horizon=self.horizon,
                              n_targets=n_targets, loss=self.loss, learning_rate=self.learning_rate,
                              weight_decay=self.weight_decay, lr_schedule=self.lr_schedule,
                              batch_size=self.batch_size, max_epochs=self.max_epochs, patience=self.patience,
                              gradient_clip=self.gradient_clip, seed=self.random_state, verbose=self.verbose,
                              trainer_kwargs=trainer_kwargs,
                              static=None if raw.static is None else torch.from_numpy(raw.static.astype(np.float32)),
                              checkpoint_dir=self.checkpoint_dir, resume=self.resume,
                              quantiles=self._quantile_levels())
        network.eval()

        self.network_ = network
        self.report_ = self._missing_report(raw, panel)
        self.history_ = panel.tail(self.lookback).copy()  # raw values, for predict() without data
        self.ends_ = panel.ends
        self.last_time_ = max(self.ends_)
        self.training_log_ = log
        self.n_features_in_ = n_vars
        if self._tags["streaming"]:
            self.state_ = self._advance_panel(None, Panel(values=scaled, times=panel.times, series=panel.series,
                                                          first=panel.first, last=panel.last, static=raw.static))
        self.conformal_ = self._calibrate(raw, val_steps)  # residuals for predict(level=...)
        for listener in fit_listeners:
            listener.after_fit(self, df)
        return self

    def _fit_scaler(self, values: np.ndarray) -> PanelScaler:
        if self.scaler is None:
            return PanelScaler.identity(values.shape[0], values.shape[2])
        return PanelScaler.fit(values)

    # -- predict ---------------------------------------------------------------------------

    def predict(self, df=None, future_df=None, static_df=None, level=None):
        """Forecast the next ``horizon`` steps.

        Parameters
        ----------
        df : pandas.DataFrame or polars.DataFrame, optional
            New history with the columns of the fit data (at least ``lookback``
            rows per series): the forecast starts after its end. Without it,
            the forecast follows the end of the training data and of every
            :meth:`update` since.
        future_df : pandas.DataFrame or polars.DataFrame, optional
            The known-future covariates (``future_covariates``) at every step of
            the horizon: the time column (and id column of a long frame) and
            those columns. Required when the model has future covariates.
        static_df : DataFrame, optional
            Static attributes of series not seen in fit, when they are not columns of ``df``.
        level : float or list of float, optional
            Conformal prediction intervals to add, in percent (``level=[80, 95]``).

        Returns
        -------
        DataFrame
            In the library and layout of the input (of the fit data when
            ``df`` is None): the future timestamps and one column per target,
            followed by ``{target}_q{q}`` per quantile (``quantiles=``) and
            ``{target}_lo{level}``/``{target}_hi{level}`` per interval (see
            :mod:`tsformers.estimators.evaluation`).
        """
        check_is_fitted(self, "network_")
        levels = check_levels(level)
        output_columns(self.schema_, quantiles=self._quantile_levels() or (), levels=levels)
        if df is None:
            panel, backend = self._stored_panel(), self.schema_.backend
        else:
            frame, backend = as_pandas(df)
            panel = self._read(frame, self.schema_, fitting=False, static_df=static_df)
            self._check_length(panel, self.lookback, "predict")
            panel = self._fill_missing(panel)
        ends = self.ends_ if df is None else panel.ends
        times = future_times_of(ends, self.schema_.step, self.horizon)
        future = self._future_values(future_df, panel.series, times)
        forecast, quantiles, scale = self._forecast(panel, future, from_state=df is None, full=True)
        extra = self._extra_columns(quantiles, self._intervals(forecast, scale, levels))
        return panel_to_frame(forecast, times, panel.series, self.schema_, backend, extra=extra)

    def update(self, df):
        """Fold new observations into the fitted model, so that ``predict()`` forecasts after them.

        The rows must continue every series one step after the last known
        timestamp. Streaming models advance their recurrent state by the new
        rows only; the others slide their stored lookback window. Either way the
        cost does not grow with the length of the history, and the trained
        weights are not changed.

        Parameters
        ----------
        df : pandas.DataFrame or polars.DataFrame
            One or more new rows per series, with the columns of the fit data.

        Returns
        -------
        self
        """
        check_is_fitted(self, "network_")
        frame, _ = as_pandas(df)
        panel = self._fill_missing(self._read(frame, self.schema_, fitting=False))
        if list(panel.series) != list(self.schema_.series):
            raise ValueError(f"update needs rows for exactly the fitted series {self.schema_.series} in that order, "
                             f"got {panel.series}.")
        for key, end, first in zip(panel.series, self.ends_, panel.first):
            expected = future_times(end, self.schema_.step, 1)[0]
            if panel.times[first] != expected:
                where = "" if key is None else f" '{key}'"
                raise ValueError(f"update rows must continue the series{where}: its first new timestamp should be "
                                 f"{expected} (one step after {end}), got {panel.times[first]}.")
        if self._tags["streaming"]:
            scaled = Panel(values=self.scaler_.transform(panel.values), times=panel.times, series=panel.series,
                           first=panel.first, last=panel.last)
            self.state_ = self._advance_panel(self.state_, scaled)
        new = [panel.values[s, f: l + 1] for s, (f, l) in enumerate(zip(panel.first, panel.last))]
        self.history_ = np.stack([np.concatenate([old, rows])[-self.lookback:] for old, rows in zip(self.history_, new)])
        self.ends_ = panel.ends
        self.last_time_ = max(self.ends_)
        return self

    def _read(self, frame, schema: PanelSchema, *, fitting: bool, static_df=None) -> Panel:
        """The validated panel of a frame, with gaps let through only where ``missing`` says what to do.

        After fit, the panel also carries the encoded static attributes of its
        series: the fitted ones, or for a new series its own from ``frame`` or ``static_df``.
        """
        panel = frame_to_panel(frame, schema, fitting=fitting, allow_nan=self.missing != "error",
                               fill_gaps=self.fill_gaps)
        if schema.static and not fitting:
            known = {key: i for i, key in enumerate(schema.series)}
            new = [key for key in panel.series if key not in known]
            codes = {key: self.static_[i] for key, i in known.items()}
            if new:
                table = static_table(frame, schema.id_col, schema.static, new,
                                     None if static_df is None else as_pandas(static_df)[0])
                codes.update(zip(new, self.static_encoder_.transform(table, self.unknown_static)))
            panel.static = np.stack([codes[key] for key in panel.series])
        return panel

    def _fill_missing(self, panel: Panel, schema: PanelSchema | None = None) -> Panel:
        """Interpolate the gaps of ``panel`` when ``missing="interpolate"``; masking happens in the inputs."""
        if self.missing != "interpolate" or not np.isnan(panel.values).any():
            return panel
        names = (schema or self.schema_).variables
        values = interpolate_gaps(panel.values, names, panel.series, panel.times, self.max_gap,
                                  spans=(panel.first, panel.last))
        return Panel(values=values, times=panel.times, series=panel.series, inserted=panel.inserted,
                     static=panel.static, first=panel.first, last=panel.last)

    def _network_inputs(self, scaled: np.ndarray, future: np.ndarray | None = None) -> np.ndarray:
        """The network's channels, in order: targets and past covariates, their observed masks (``missing="mask"``),
        known-future covariates led by the horizon."""
        n_masked = len(self.schema_.targets) + len(self.schema_.covariates) if self.missing == "mask" else 0
        return lead_future(with_observed_mask(scaled, n_masked), len(self.schema_.future_covariates),
                           self.horizon, future)

    @staticmethod
    def _missing_report(raw: Panel, filled: Panel) -> dict:
        """Per series: timestamps inserted by fill_gaps, values interpolated, values left missing (masked)."""
        before = np.isnan(raw.span_values()).sum(axis=(1, 2)) - raw.padding()
        after = np.isnan(filled.span_values()).sum(axis=(1, 2)) - raw.padding()
        return {"series": list(raw.series), "inserted_timestamps": [int(n) for n in raw.inserted],
                "interpolated": [int(n) for n in before - after], "masked": [int(n) for n in after]}

    def _stored_panel(self) -> Panel:
        """The end of the training data (and of the updates since), as predict() without data sees it."""
        return Panel(values=self.history_, times=pd.Index(range(self.lookback)), series=self.schema_.series,
                     static=self.static_)

    def _forecast(self, panel: Panel, future: np.ndarray | None = None, from_state: bool = False,
                  full: bool = False):
        """Forecast ``(n_series, horizon, n_targets)`` in the original scale from the end of ``panel``.

        Windowed models read the last ``lookback`` steps; streaming models read
        their stored state (``from_state``) or run their recurrence over the whole panel.
        With ``full``, also the quantiles ``(n_series, horizon, n_targets, Q)`` (None
        without ``quantiles``) and the targets' scale per series ``(n_series, n_targets)``.
        """
        scaler = self._scaler_for(panel)
        n_targets, n_future = len(self.schema_.targets), len(self.schema_.future_covariates)
        with torch.no_grad():  # not inference_mode: a memory may take gradient steps at test time
            if self._tags["streaming"]:
                state = self.state_ if from_state else self._advance_panel(None, Panel(
                    values=scaler.transform(panel.values), times=panel.times, series=panel.series,
                    first=panel.first, last=panel.last, static=panel.static))
                out = self.network_.forecast(state)
            else:
                scaled = scaler.transform(panel.tail(self.lookback))
                if n_future:
                    future = (future - scaler.mean[:, None, -n_future:]) / scaler.scale[:, None, -n_future:]
                x = torch.from_numpy(self._network_inputs(scaled, future).astype(np.float32))
                if panel.static is None:
                    out = torch.cat([self.network_(chunk) for chunk in x.split(1024)])
                else:
                    static = torch.from_numpy(panel.static.astype(np.float32))
                    out = torch.cat([self.network_(chunk, static=s) for chunk, s in zip(x.split(1024),
                                                                                        static.split(1024))])
        point, quantiles = self._to_original(out, scaler)
        return (point, quantiles, scaler.scale[:, :n_targets]) if full else point

    def _advance(self, state: dict, scaled: np.ndarray) -> dict:
        """Advance a streaming network's state by scaled observations ``(n_series, n_time, n_vars)``."""
        inputs = self._network_inputs(scaled)
        with torch.no_grad():
            return self.network_.advance(state, torch.from_numpy(inputs.astype(np.float32)))

    def _advance_panel(self, state: dict | None, scaled: Panel) -> dict:
        """Advance the state of every series by its own span of ``scaled`` (from ``init_state`` when None).

        Series that span the same rows advance together; a ragged panel takes one call per distinct span.
        """
        if scaled.aligned:
            state = self._init_state(scaled, np.arange(len(scaled.series))) if state is None else state
            return self._advance(state, scaled.values)
        spans = {}
        for s, span in enumerate(zip(scaled.first.tolist(), scaled.last.tolist())):
            spans.setdefault(span, []).append(s)
        out = None
        for (first, last), rows in spans.items():
            rows_t = torch.as_tensor(rows)
            start = self._init_state(scaled, rows) if state is None else {k: v[rows_t] for k, v in state.items()}
            part = self._advance(start, scaled.values[rows, first: last + 1])
            if out is None:
                out = {k: v.new_zeros((len(scaled.series), *v.shape[1:])) for k, v in part.items()}
            for k, v in part.items():
                out[k][rows_t] = v
        return out

    def _init_state(self, panel: Panel, rows) -> dict:
        """A fresh state for some series of ``panel``, carrying their static attributes where the network needs them."""
        state = self.network_.init_state(len(rows))
        if isinstance(self.network_, StaticResidual) or getattr(self.network_, "needs_static", False):
            state["static"] = torch.from_numpy(panel.static[rows].astype(np.float32))
        return state

    def _postprocess(self, forecast: np.ndarray) -> np.ndarray:
        """Hook for physical constraints on the forecast ``(n_series, horizon, n_targets)``, original units."""
        return forecast

    def _future_values(self, future_df, series: list, times: list) -> np.ndarray | None:
        names = self.schema_.future_covariates
        if not names:
            if future_df is not None:
                raise ValueError("future_df was given, but the model was fitted without future_covariates; "
                                 "refit with future_covariates=[...] to use known-future values.")
            return None
        if future_df is None:
            raise ValueError(
                f"the model was fitted with future_covariates {names}: pass their values for the {self.horizon} "
                f"steps from {times[0][0]} to {times[0][-1]} as future_df= (the time column and those columns)."
            )
        return future_values(future_df, self.schema_, series, times)

    def _check_future_covariates(self, schema: PanelSchema) -> None:
        if not schema.future_covariates:
            return
        if self._tags["streaming"]:
            raise ValueError(f"{type(self).__name__} forecasts from a streaming state and takes no "
                             f"future_covariates; pass them as covariates= (past-observed) instead.")
        if self.horizon > self.lookback:
            raise ValueError(f"future_covariates enter the network led by horizon={self.horizon} steps, which "
                             f"needs lookback >= horizon; got lookback={self.lookback}.")

    def _scaler_for(self, panel: Panel) -> PanelScaler:
        """The fitted statistics of each series; a series unseen in fit is scaled by its own history."""
        known = {key: i for i, key in enumerate(self.schema_.series)}
        rows = [known.get(key) for key in panel.series]
        if all(r is not None for r in rows):
            return self.scaler_.select(np.asarray(rows))
        own = self._fit_scaler(panel.span_values())
        for i, r in enumerate(rows):
            if r is not None:
                own.mean[i], own.scale[i] = self.scaler_.mean[r], self.scaler_.scale[r]
        return own

    def score(self, df, y=None) -> float:
        """Negative mean squared error of forecasting the last ``horizon`` steps of each series in ``df``.

        The forecast is made from the rows before those steps (at least
        ``lookback`` of them), in the original scale of the data; known-future
        covariates are read from the last ``horizon`` rows. Higher is better, as
        scikit-learn's model selection expects. It is the one-window
        :meth:`backtest` (the point forecast: the median or mean of a quantile model).

        Returns
        -------
        float
        """
        check_is_fitted(self, "network_")
        frame, _ = as_pandas(df)
        raw = self._read(frame, self.schema_, fitting=False)
        self._check_length(raw, self.lookback + self.horizon, "score")
        done = self._rolling_forecasts(raw, 1, self.horizon)
        return -float(np.nanmean((done["point"] - done["truth"]) ** 2))  # observed values only: gaps do not count

    def _check_length(self, panel: Panel, needed: int, action: str) -> None:
        n_time = int(panel.lengths.min())
        if n_time < needed:
            what = "lookback + horizon" if needed == self.lookback + self.horizon else "lookback"
            who = "the frame has" if panel.series == [None] else \
                f"series '{panel.series[int(np.argmin(panel.lengths))]}' has"
            raise ValueError(
                f"too short to {action}: {who} {n_time} rows, but {what} = {needed} rows are needed "
                f"(lookback={self.lookback}, horizon={self.horizon}). Pass a longer history or lower lookback."
            )

    # -- persistence -----------------------------------------------------------------------

    def save(self, path) -> Path:
        """Save the fitted forecaster to the directory ``path``, atomically.

        The directory holds ``config.json`` (format and package version,
        parameters, data schema, scaling statistics, the checksum of the
        weights) and ``weights.pt`` (tensors only, read back with
        ``weights_only=True``). ``path`` may be new, empty, or a model
        directory written by tsformers holding nothing but its model files
        (``config.json``, ``weights.pt``, ``model.onnx``), which is replaced
        whole. Any other existing path is refused with :class:`FileExistsError`
        and left untouched: ``save`` never deletes a file it did not write.

        Returns
        -------
        pathlib.Path

        Raises
        ------
        FileExistsError
            ``path`` is a file, or a directory holding files other than a
            tsformers model's.
        """
        check_is_fitted(self, "network_")
        return save_estimator(self, path)

    @classmethod
    def load(cls, path, engine: str = "torch"):
        """Load a forecaster saved with :meth:`save`; no pickled objects are read.

        ``BaseForecaster.load`` returns whichever estimator the directory holds.
        A damaged directory (missing file, edited or truncated weights, broken
        JSON, a newer format) raises :class:`ModelFileError` saying so.

        Parameters
        ----------
        path : str or pathlib.Path
        engine : {"torch", "onnx"}, default="torch"
            "onnx" forecasts with the directory's ``model.onnx`` (see
            :meth:`export_onnx`) through ONNX Runtime instead of the torch network.

        Returns
        -------
        BaseForecaster
        """
        if engine not in ("torch", "onnx"):
            raise ValueError(f"engine must be 'torch' or 'onnx', got {engine!r}.")
        estimator = load_estimator(cls, path)
        if engine == "onnx":
            from tsformers.estimators.onnx import attach

            attach(estimator, path)
        return estimator

    def export_onnx(self, path) -> Path:
        """Export the fitted network as an ONNX graph with a dynamic batch axis.

        ``path`` is either a directory written by :meth:`save` holding this
        model (the graph goes in as ``model.onnx``, stamped with the checksum of
        its weights, so ``tsformers forecast --engine onnx`` and
        ``load(path, engine="onnx")`` use it) or a file name ending in ``.onnx``.
        The file is written atomically. ONNX Runtime then forecasts what the
        torch network does (to about 1e-6; tested to 1e-4). Needs ``tsformers[onnx]``.

        Exported: Gateformer and PV-Client (the window graph), LMUFormer (a graph
        of 8 streaming steps and the forecast, run over the history a block at a
        time), GTrXL (the forward pass over its receptive field,
        ``n_layers * mem_len + 1`` steps: shorter histories need the torch engine).
        Not exported: ATLAS, whose forecast writes its test-time memory on a chunk
        schedule read from the streaming state (data-dependent control flow): it
        raises :class:`~tsformers.runtime.onnx.OnnxExportError` saying so.

        Returns
        -------
        pathlib.Path
            The ONNX file.
        """
        check_is_fitted(self, "network_")
        from tsformers.estimators.onnx import export_estimator

        return export_estimator(self, path)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags
