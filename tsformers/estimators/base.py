"""The estimator contract shared by every forecaster: fit, predict, update, score, save and load.

Data reaches a network through one path, :mod:`tsformers.data.prepare`
(read, gaps, scaling, channels, windows; :meth:`BaseForecaster.prepare`);
networks are trained in one place (:meth:`BaseForecaster.train_network`); the
output frame, saving and loading live here once. A concrete forecaster only
stores its hyperparameters and builds its network from the fitted data schema
(``_build_network``, one of :mod:`tsformers.estimators.networks`); one with a
recurrent state derives from :class:`~tsformers.estimators.streaming.StreamingForecaster`.
Lightning is imported only to train, so loading a model and forecasting stay light.
The steps of a forecast that need no torch (reading, scaling, the output frame) are
:class:`~tsformers.estimators.forecasting.ForecastPath`, shared with the ONNX
engine of ``tsformers forecast``; how the torch network is built and run is
:class:`~tsformers.estimators.network_path.NetworkForecastPath`, shared with a
saved model read without scikit-learn (:mod:`tsformers.estimators.saved`).
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

from tsformers.backbone.heads import SeedEnsemble, linear_base_of, linear_bases_of
from tsformers.data.calendar import resolve as resolve_calendar
from tsformers.data.cycle import MIN_PERIODS, SeasonalCycle
from tsformers.data.cycle import resolve as resolve_cycle
from tsformers.data.frames import Panel, PanelSchema, as_pandas, infer_schema, output_columns
from tsformers.data.missing import MODES as MISSING_MODES
from tsformers.data.prepare import Prepared, fit_scaler, prepare
from tsformers.data.scaling import PanelScaler
from tsformers.data.static import StaticEncoder, static_table
from tsformers.data.time import future_times
from tsformers.data.windows import split_train_val, validation_steps
from tsformers.estimators.evaluation import check_score_metric
from tsformers.estimators.forecasting import CHUNK as _CHUNK
from tsformers.estimators.network_path import NetworkForecastPath
from tsformers.estimators.persistence import load_estimator, save_estimator
from tsformers.estimators.ridge import fit_ridge_map
from tsformers.seeding import member_seeds, seeded_call

#: Observers of every fit (``tsformers.tracking.autolog`` adds one): ``before_training(estimator,
#: trainer_kwargs) -> trainer_kwargs`` may add Lightning loggers/callbacks to a copy of the Trainer
#: settings; ``after_fit(estimator, df)`` sees the fitted estimator. Empty unless tracking is switched on.
fit_listeners: list = []

class BaseForecaster(NetworkForecastPath, BaseEstimator):
    """Base class of the tsformers forecasters (not used directly).

    Subclasses list every parameter in ``__init__`` (scikit-learn reads the
    signature), declare in ``_tags`` whether their network reads static
    attributes itself (``"static"``) and implement ``_build_network(n_vars)``; a
    model fitted without gradient training (the baselines) overrides ``_fit_network``.
    Every step that readies data goes through :mod:`tsformers.data.prepare`
    (:meth:`prepare`); forecasters with a recurrent state derive from
    :class:`~tsformers.estimators.streaming.StreamingForecaster`. Conformal
    intervals, backtests and plots come from
    :class:`~tsformers.estimators.evaluation.EvaluationMixin` (its module documents them).
    """

    #: "static": the network takes static attributes itself (else a StaticResidual adds them).
    #: "trainable": fit learns the network from the data (False for the last-value and seasonal baselines).
    _tags = {"static": False, "trainable": True}

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
        "val_every_windows": [Interval(Integral, 1, None, closed="left"), None],
        "patience": [Interval(Integral, 1, None, closed="left"), None],
        "val_size": [Interval(Real, 0, 1, closed="left"), Interval(Integral, 0, None, closed="left")],
        "scaler": [StrOptions({"standard"}), None],
        "gradient_clip": [Interval(Real, 0, None, closed="neither"), None],
        "ema_decay": [Interval(Real, 0, 1, closed="neither"), None],
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
        "calendar": [str, list, tuple, None],
        "cycle": [StrOptions({"auto"}), Interval(Integral, 2, None, closed="left"), None],
    }

    # -- the network (built and run by NetworkForecastPath) ------------------------------

    def _linear_bases(self, attribute: str) -> list:
        check_is_fitted(self, "network_")
        bases = linear_bases_of(self.network_)
        if not bases:
            raise AttributeError(f"{attribute} is defined with linear_base=True only: without a linear base "
                                 "the forecast is the network's")
        return bases

    @property
    def network_used_(self) -> bool:
        """With ``linear_base=True``: whether the network contributes to the forecast (a share of an open gate;
        with ``ensemble_size`` > 1, in any member)."""
        return any(base.network_used for base in self._linear_bases("network_used_"))

    @property
    def correction_share_(self) -> float:
        """With ``linear_base=True``: the share of the network's correction the forecast keeps (0 to 1), chosen
        on the validation windows (with ``ensemble_size`` > 1, each member's own; their mean)."""
        shares = [float(base.share) for base in self._linear_bases("correction_share_")]
        return sum(shares) / len(shares)

    def new_network(self, **params) -> torch.nn.Module:
        """An untrained network for the fitted data, built from this estimator's parameters with ``params`` replacing some.

        Seeded with ``random_state`` as :meth:`fit` seeds it, for the fitted
        schema, static attributes and input channels: :mod:`tsformers.compress`
        builds a smaller student this way (``new_network(d_model=16)``).
        """
        self._check_fitted()
        builder = type(self)(**{**self.get_params(), **params})
        builder.schema_, builder.static_encoder_ = self.schema_, self.static_encoder_
        network = seeded_call(self.random_state, builder._network, self.n_features_in_)
        fitted, new = linear_bases_of(self.network_), linear_bases_of(network)
        if fitted and new:  # the linear map is the data's, not the network's size: the same in every member
            for base in new:
                base.set_map(fitted[0].weight, fitted[0].bias)
        return network

    @classmethod
    def get_test_params(cls) -> dict:
        """Small settings for the shared contract tests."""
        return {}

    def _slots(self) -> dict:
        """The parameters that take a backbone part by registry name: ``{parameter: Slot(kinds, names)}``.

        ``names`` are those ``fit`` accepts given the other parameters as they are;
        :func:`tsformers.backbone.available` reads them. An estimator without such a slot has none.
        """
        return {}

    def _network_static_width(self) -> int:
        """Columns of the per-series ``static`` input the network takes (0: none): the encoded static attributes."""
        return self.static_encoder_.n_channels

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
        self._quantile_levels()  # refuses bad levels before any work
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
        # a forecaster without the parameter (the baselines, subclasses written before it) takes no calendar
        schema.calendar = resolve_calendar(getattr(self, "calendar", None), schema.step, f" of {type(self).__name__}")
        encoder = StaticEncoder.fit(static_table(frame, schema.id_col, schema.static, raw.series, static_frame)) \
            if schema.static else StaticEncoder()
        raw.static = encoder.transform(static_table(frame, schema.id_col, schema.static, raw.series, static_frame)) \
            if schema.static else None
        self._check_length(raw, self.lookback + self.horizon, "fit")
        data = prepare(raw, schema, self._missing_policy(), self._training_scaler, lookback=self.lookback,
                       horizon=self.horizon, cycle=self._training_cycle)
        val_steps = data.validation_steps(self.val_size)
        self.schema_, self.scaler_, self.static_encoder_, self.static_ = schema, data.scaler, encoder, raw.static
        self.cycle_ = data.cycle
        n_vars = data.inputs.shape[-1]

        network, log = self._fit_network(data, n_vars)
        network.eval()

        self.network_ = network
        if getattr(network, "mean_depth", None) is not None:  # adaptive-depth stacks: the blocks their gates run
            self.mean_depth_ = network.mean_depth
        self.report_ = data.missing_report()
        self.history_ = data.panel.tail(self.lookback).copy()  # raw values, for predict() without data
        self.ends_ = data.panel.ends
        self.last_time_ = max(self.ends_)
        self.training_log_ = log
        self.n_features_in_ = n_vars
        self._after_training(data)
        self.conformal_scale_ = "window"
        self.conformal_ = self._calibrate(data, val_steps)  # residuals for predict(level=...)
        for listener in fit_listeners:
            listener.after_fit(self, df)
        return self

    def _fit_network(self, data: Prepared, n_vars: int) -> tuple[torch.nn.Module, list[dict]]:
        """The network fitted to ``data`` (``n_vars`` input channels) and its log: the step of :meth:`fit` that learns.

        Here the network is built under ``random_state`` and trained by :meth:`train_network`
        (Lightning, early stopping on the validation part). A model fitted otherwise (a closed-form
        solve, or nothing to fit) overrides this method and only this; everything before (reading,
        gaps, scaling, windows) and after (history, conformal calibration, saving) stays shared.
        """
        if data.validation_steps(self.val_size) == 0 and self.val_size and self.max_epochs:
            warnings.warn(
                f"the series ({data.panel.values.shape[1]} steps) are too short for a validation part of "
                f"val_size={self.val_size} besides training windows; training on all of it without early stopping.",
                UserWarning, stacklevel=3)
        network = seeded_call(self.random_state, self._network, n_vars)  # under a lock: see tsformers.seeding
        bases = linear_bases_of(network)
        if bases:  # the linear map first: the network learns what it leaves
            weights, _ = fit_ridge_map(data, lookback=self.lookback, horizon=self.horizon, val_size=self.val_size,
                                       who="linear_base=True", remedy="linear_base=False, ")
            for base in bases:
                base.set_map(torch.from_numpy(weights[:-1].T), torch.from_numpy(weights[-1]))
        log = []
        if self.max_epochs > 0:
            trainer_kwargs = dict(self.trainer_kwargs or {})
            for listener in fit_listeners:
                trainer_kwargs = listener.before_training(self, trainer_kwargs)
            if not isinstance(network, SeedEnsemble):
                return network, self.train_network(network, data, trainer_kwargs=trainer_kwargs, checkpoints=True)
            # each member on its own, as a fit under its seed would train it: its batches, dropout and early stop
            seeds = member_seeds(self.random_state, len(network.members))
            for number, (member, seed) in enumerate(zip(network.members, seeds)):
                rows = self.train_network(member, data, trainer_kwargs=trainer_kwargs, checkpoints=True, seed=seed,
                                          member=number)
                log += [{**row, "member": number} for row in rows]
        return network, log

    def _training_scaler(self, filled: Panel) -> PanelScaler:
        """Statistics of each series' training part only, so that the validation part stays unseen."""
        val_steps = validation_steps(int(filled.lengths.max()), self.lookback, self.horizon, self.val_size)
        return fit_scaler(split_train_val(filled.values, self.lookback, val_steps)[0], self.scaler)

    def _training_cycle(self, data: Prepared) -> SeasonalCycle | None:
        """The targets' seasonal cycle (``cycle=``) from the training part of each series only, so that the
        validation part stays unseen; None without one (a forecaster without the parameter takes none)."""
        where = f" of {type(self).__name__}"
        cycle = getattr(self, "cycle", None)
        period = resolve_cycle(cycle, data.schema.step, where)
        if period is None:
            return None
        val_steps = data.validation_steps(self.val_size)
        train = split_train_val(data.scaled[..., : data.n_targets], self.lookback, val_steps)[0]
        longest = int((np.minimum(data.panel.last + 1, train.shape[1]) - data.panel.first).max())
        if cycle == "auto" and longest < MIN_PERIODS * period:
            return None                  # phase means of fewer than two periods would only copy the series
        if longest < period:
            raise ValueError(
                f"cycle={cycle!r}{where}: the longest series has {longest} training steps (before the validation "
                f"part of val_size={self.val_size}), fewer than one period of {period} steps, so some phases were "
                f"never seen. Pass a shorter period, cycle='auto' or None, or a longer history.")
        return SeasonalCycle.fit(train, data.first_phase, period)

    def _after_training(self, data: Prepared) -> None:
        """Hook: what a model derives from its training data once the network is trained (a streaming state)."""

    def train_network(self, network: torch.nn.Module, data: Prepared, *, max_epochs: int | None = None,
                      learning_rate: float | None = None, objective=None, verbose: bool | None = None,
                      trainer_kwargs: dict | None = None, checkpoints: bool = False, seed: int | None = None,
                      member: int = 0) -> list[dict]:
        """Train ``network`` in place on the windows of ``data`` with this estimator's training settings.

        The one place a network is trained: :meth:`fit` and :mod:`tsformers.compress` (fine-tuning) call it.
        Runs :func:`tsformers.training.fit_network` (Lightning's Trainer) with the estimator's loss,
        quantiles, optimiser, schedule, batch size, clipping, seed and early stopping on the validation
        part of ``data`` (:meth:`~tsformers.data.prepare.Prepared.split` by ``val_size``).

        Parameters
        ----------
        network : torch.nn.Module
            A network for this estimator's data (built like ``network_``).
        data : Prepared
            From :meth:`prepare` (or the fit data).
        max_epochs, learning_rate, verbose, trainer_kwargs : optional
            Replace the estimator's settings of those names.
        objective : callable, optional
            ``objective(module, inputs, pred, y) -> loss`` replaces the training loss (distillation).
        checkpoints : bool, default=False
            Write and resume from ``checkpoint_dir`` / ``resume`` (as ``fit`` does).
        seed : int, optional
            Replaces ``random_state`` as the seed of the batches' order and the dropout draws.
        member : int, default=0
            Which member of an ensemble (``ensemble_size``) this is: member k > 0 keeps its checkpoints in
            ``checkpoint_dir/member-k``, and a logger of ``trainer_kwargs`` that can log a member apart (with a
            ``for_member(k)`` method, as :func:`tsformers.tracking.autolog`'s) gives way to member k's.

        Returns
        -------
        list of dict
            The per-epoch log (``training_log_``).
        """
        from tsformers.training import fit_network  # Lightning only when training

        train, val = data.split(self.val_size)
        trainer_kwargs = dict(self.trainer_kwargs or {}) if trainer_kwargs is None else trainer_kwargs
        if member and "logger" in trainer_kwargs:  # _member_logger keeps what cannot log a member apart
            trainer_kwargs = {**trainer_kwargs, "logger": _member_logger(trainer_kwargs["logger"], member)}
        checkpoint_dir, resume = (self.checkpoint_dir, self.resume) if checkpoints else (None, False)
        if member and checkpoint_dir is not None:
            if not isinstance(resume, bool):
                raise ValueError(f"resume={str(resume)!r} names one checkpoint, and an ensemble of "
                                 f"ensemble_size={self.ensemble_size} trains one network per member, each with its "
                                 f"own: pass resume=True to resume every member from its own last.ckpt under "
                                 f"checkpoint_dir, or ensemble_size=1.")
            checkpoint_dir = Path(checkpoint_dir) / f"member-{member}"
        return fit_network(network, train, val, lookback=self.lookback, horizon=self.horizon,
                           n_targets=len(data.schema.targets), loss=self.loss,
                           learning_rate=learning_rate or self.learning_rate, weight_decay=self.weight_decay,
                           lr_schedule=self.lr_schedule, batch_size=self.batch_size,
                           max_epochs=self.max_epochs if max_epochs is None else max_epochs, patience=self.patience,
                           gradient_clip=self.gradient_clip, seed=self.random_state if seed is None else seed,
                           verbose=self.verbose if verbose is None else verbose,
                           trainer_kwargs=trainer_kwargs,
                           static=data.static_tensor(), checkpoint_dir=checkpoint_dir, resume=resume,
                           quantiles=self._quantile_levels(), objective=objective, linear_base=linear_base_of(network),
                           # a forecaster without the parameter (subclasses written before it) averages nothing
                           ema_decay=getattr(self, "ema_decay", None),
                           val_every_windows=getattr(self, "val_every_windows", None))

    # -- the data path, predict: ForecastPath (tsformers.estimators.forecasting) ---------------

    # -- update ----------------------------------------------------------------------------

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
            One or more new rows for every fitted series, with the columns of the fit data, in any order.

        Returns
        -------
        self
        """
        self._check_fitted()
        data = self.prepare(df)
        if set(data.panel.series) != set(self.schema_.series):
            raise ValueError(f"update needs rows for exactly the fitted series {self.schema_.series}, "
                             f"got {data.panel.series}.")
        if list(data.panel.series) != list(self.schema_.series):  # rows in another order: the fitted one
            position = {key: i for i, key in enumerate(data.panel.series)}
            data = data.select(np.array([position[key] for key in self.schema_.series]))
        panel = data.panel
        for key, end, first in zip(panel.series, self.ends_, panel.first):
            expected = future_times(end, self.schema_.step, 1)[0]
            if panel.times[first] != expected:
                where = "" if key is None else f" '{key}'"
                raise ValueError(f"update rows must continue the series{where}: its first new timestamp should be "
                                 f"{expected} (one step after {end}), got {panel.times[first]}.")
        self._advance_state(data)
        new = [panel.values[s, f: l + 1] for s, (f, l) in enumerate(zip(panel.first, panel.last))]
        self.history_ = np.stack([np.concatenate([old, rows])[-self.lookback:] for old, rows in zip(self.history_, new)])
        self.ends_ = panel.ends
        self.last_time_ = max(self.ends_)
        return self

    def _advance_state(self, new: Prepared) -> None:
        """Hook: fold the new rows of :meth:`update` into what the model carries besides its history (a state)."""

    def refresh(self, data: Prepared) -> None:
        """Recompute what a fitted model derives from its network, for a ``network_`` that was replaced.

        :mod:`tsformers.compress` calls it on the estimator it derives, with its
        calibration frame (:meth:`prepare`): when that frame holds the fitted
        series, the conformal errors of ``predict(level=...)`` are recomputed
        from it (a streaming model also recomputes its state from it).
        """
        if getattr(self, "conformal_", None) is not None and list(data.panel.series) == list(self.schema_.series):
            self.conformal_ = self._calibrate(data, data.validation_steps(self.val_size))

    # -- forecasts -------------------------------------------------------------------------

    def _check_fitted(self) -> None:
        check_is_fitted(self, "network_")  # scikit-learn's NotFittedError

    def _rolling_forecasts(self, data: Prepared, n_windows: int, step: int, *, intervals: bool) -> dict:
        """Forecast ``n_windows`` origins per series, ``step`` apart, the last ``horizon`` steps before its end.

        Windowed networks read the ``lookback`` rows before each origin, all
        origins of all series in batches; streaming networks run their recurrence
        over the history before each origin (:meth:`_origin_forecasts`). Returns the
        series row and origin (row index of the first forecast step) of each window,
        the point forecasts ``(n, H, T)``, the quantiles ``(n, H, T, Q)`` or None, the
        observed targets ``(n, H, T)`` (NaN where missing) and, with ``intervals``, each window's scale
        ``(n, T)`` (that of its conformal errors, :meth:`_interval_scale`; None without: it reads each lookback
        window again).
        """
        lookback, horizon = self.lookback, self.horizon
        panel = data.panel
        n_series = len(panel.series)
        offsets = horizon + step * np.arange(n_windows - 1, -1, -1, dtype=np.int64)   # steps before the end
        origins = panel.last[:, None] + 1 - offsets[None, :]                         # (S, K)
        context = origins[:, 0] - panel.first
        if (context < lookback).any():
            s = int(np.argmin(context))
            who = "the series has" if panel.series == [None] else f"series '{panel.series[s]}' has"
            raise ValueError(
                f"too short for {n_windows} windows {step} steps apart: {who} {int(panel.lengths[s])} rows, but "
                f"lookback + horizon + (n_windows - 1) * step = {lookback + horizon + (n_windows - 1) * step} "
                f"are needed. Lower n_windows or step, or pass a longer history.")
        rows = np.repeat(np.arange(n_series), n_windows)
        starts = origins.reshape(-1)
        held = data.last_observed_before(rows, starts)
        with torch.no_grad():
            out = self._origin_forecasts(data, rows, starts, held)
        out = data.restore_cycle(out, rows, starts)
        window_scaler = data.scaler.select(rows)
        point, quantiles = self._to_original(out, window_scaler)
        truth = data.raw.values[rows[:, None], starts[:, None] + np.arange(horizon), : len(self.schema_.targets)]
        scale = (self._interval_scale(data, rows, starts, window_scaler.scale[:, : len(self.schema_.targets)])
                 if intervals else None)
        return {"rows": rows, "origins": starts, "point": point, "quantiles": quantiles, "truth": truth,
                "scale": scale}

    def _origin_forecasts(self, data: Prepared, rows: np.ndarray, origins: np.ndarray,
                          held: np.ndarray | None) -> torch.Tensor:
        """The network's scaled output at each origin ``(n, H, ...)``: window ``i`` ends before ``origins[i]`` of
        series ``rows[i]`` (series-major, ``n_windows`` per series); ``held`` as in ``Prepared.windows_before``."""
        static = data.static_tensor()
        parts = []
        for chunk in range(0, len(rows), _CHUNK):
            r, o = rows[chunk: chunk + _CHUNK], origins[chunk: chunk + _CHUNK]
            window = data.windows_before(r, o, None if held is None else held[chunk: chunk + _CHUNK])
            x = torch.from_numpy(window.astype(np.float32))
            parts.append(self._run_network(x, None if static is None else static[torch.from_numpy(r)]))
        return torch.cat(parts)

    def _calibration_origins_at_most(self, aligned: bool) -> int | None:
        """Hook: a cap on the calibration origins per series (None: only the window budget caps them)."""
        return None

    def _check_future_covariates(self, schema: PanelSchema) -> None:
        if schema.future_covariates and self.horizon > self.lookback:
            raise ValueError(f"future_covariates enter the network led by horizon={self.horizon} steps, which "
                             f"needs lookback >= horizon; got lookback={self.lookback}.")

    def score(self, df, y=None, *, history=None, metric: str = "mse", season: int = 1, level=None,
              static_df=None) -> float:
        """How well the model forecasts the last ``horizon`` steps of each series in ``df``; higher is better.

        The forecast is made from the rows before those steps (at least
        ``lookback`` of them, counting ``history``), in the original scale of the
        data; known-future covariates are read from the last ``horizon`` rows.
        It is the one-window :meth:`backtest` (the point forecast: the median or
        mean of a quantile model), summarised by ``metric`` and negated, as
        scikit-learn's model selection expects. For ``GridSearchCV`` scoring by
        another metric, see :func:`tsformers.model_selection.make_forecast_scorer`.

        Parameters
        ----------
        df : pandas.DataFrame or polars.DataFrame
            Rows with the columns of the fit data; the last ``horizon`` steps of
            each series are forecast and scored.
        y : None
            Ignored; present for scikit-learn compatibility (the targets are columns of ``df``).
        history : DataFrame, optional
            Rows that precede ``df`` (same columns; each series ending before its
            first row in ``df``): the forecast reads them as context, so ``df`` may
            hold only held-out rows. ``score(test, history=train)`` equals
            ``score(concat([train, test]))``.
        metric : {"mse", "mae", "rmse", "mase", "smape", "pinball", "coverage"}, default="mse"
            What is negated, over the observed values of the scored steps (gaps do not count):

            - ``"mse"``, ``"mae"``, ``"rmse"``, ``"smape"``: pooled over every series,
              target and step, in the data's units (``"smape"`` in percent): on a
              panel the series with the largest values weigh the most.
            - ``"mase"``: per series and target, the MAE divided by the in-sample MAE
              of the seasonal naive forecast (``season`` steps back) over the rows
              before the scored steps, then averaged with every series and target
              weighing the same. Scale-free: the choice for panels of series of
              different sizes.
            - ``"pinball"``: the pinball loss of the quantiles (a model fitted with ``quantiles=``).
            - ``"coverage"``: the calibration error ``|coverage - level / 100|`` of the
              conformal ``level`` % intervals (``predict(level=...)``).
        season : int, default=1
            The seasonal period of ``"mase"`` (1: the last value; 24: a day of hourly data).
        level : float, optional
            The interval level in percent of ``"coverage"`` (e.g. 80).
        static_df : DataFrame, optional
            Static attributes of series not seen in fit, when they are not columns of ``df``.

        Returns
        -------
        float
            ``-loss``; 0 is a perfect forecast.
        """
        return self._score_last_horizon(df, history=history, metric=metric, season=season, level=level,
                                        static_df=static_df)

    def _score_last_horizon(self, df, *, history, metric: str, season: int, level, static_df,
                            held_out: bool = False) -> float:
        """:meth:`score`; ``held_out``: refuse a frame whose scored steps the model was fitted on, or series it
        was not fitted on (the symptoms of a cross-validation split that does not follow time)."""
        self._check_fitted()
        levels = check_score_metric(metric, season, level)
        frame = df if history is None else self._prepend_history(history, df)
        data = self.prepare(frame, static_df, min_rows=self.lookback + self.horizon, action="score")
        done = self._rolling_forecasts(data, 1, self.horizon, intervals=bool(levels))
        if held_out:
            self._check_held_out(data, done["origins"])
        return -self._window_loss(data, done, metric, season, levels)

    def _prepend_history(self, history, df) -> pd.DataFrame:
        """``history`` followed by ``df`` (one pandas frame), refusing a history that does not end before ``df``."""
        past, _ = as_pandas(history)
        rows, _ = as_pandas(df)
        schema = self.schema_

        def last_and_first(frame):
            times = frame.index if schema.time_in_index else frame[schema.time_col]
            times = pd.Series(pd.Index(times), index=frame.index)
            if schema.layout == "wide":
                return {None: (times.max(), times.min())}
            grouped = times.groupby(frame[schema.id_col].to_numpy(), sort=False)
            return {key: (part.max(), part.min()) for key, part in grouped}

        before, after = last_and_first(past), last_and_first(rows)
        for key, (_, first) in after.items():
            if key in before and not before[key][0] < first:
                where = "" if key is None else f" of series '{key}'"
                raise ValueError(f"history must end before df starts: the history{where} runs to "
                                 f"{before[key][0]}, but df starts at {first}. Pass as history only the rows "
                                 f"before df.")
        return pd.concat([past, rows], ignore_index=not schema.time_in_index)

    def _check_held_out(self, data: Prepared, origins: np.ndarray) -> None:
        """Refuse a scored window that starts within the fitted data, or a series that was not fitted."""
        fitted_end = dict(zip(self.schema_.series, self.ends_))
        for key, origin in zip(data.panel.series, origins):
            where = "the frame" if key is None else f"series '{key}'"
            if key not in fitted_end:
                raise ValueError(
                    f"the test fold holds {where}, which is not in the training fold: the split does not follow "
                    f"time series by series (scikit-learn's TimeSeriesSplit and KFold split the rows of a long "
                    f"frame, mixing series). Use cv=tsformers.RollingOriginSplit(horizon=..., lookback=...), "
                    f"which splits every series at the same forecast origin.")
            start = data.raw.times[origin]
            if not start > fitted_end[key]:
                raise ValueError(
                    f"the forecast scored for {where} starts at {start}, but the model was fitted on data up to "
                    f"{fitted_end[key]}: it would be scored on values it was trained on. The split does not "
                    f"follow time (scikit-learn's KFold or ShuffleSplit train on rows after the test fold). Use "
                    f"cv=tsformers.RollingOriginSplit(horizon=..., lookback=...), whose training folds end where "
                    f"the forecast starts.")

    # -- persistence -----------------------------------------------------------------------

    def save(self, path) -> Path:
        """Save the fitted forecaster to the directory ``path``, atomically.

        The directory holds ``config.json`` (format and package version,
        parameters, data schema, scaling statistics), ``weights.pt`` (tensors
        only, read back with ``weights_only=True``) and ``manifest.json`` (the
        SHA-256 and size of every other file, so :meth:`load` refuses any
        changed file). ``path`` may be new, empty, or a model directory written
        by tsformers holding nothing but its model files (``config.json``,
        ``weights.pt``, ``manifest.json``, ``model.onnx``), which is replaced
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
        self._check_fitted()
        return save_estimator(self, path)

    @classmethod
    def load(cls, path, engine: str = "torch"):
        """Load a forecaster saved with :meth:`save`; no pickled objects are read.

        ``BaseForecaster.load`` returns whichever estimator the directory holds.
        A damaged directory (a missing, changed, truncated or linked file,
        broken JSON, a newer format) raises :class:`ModelFileError` naming it.

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
        self._check_fitted()
        from tsformers.estimators.onnx import export_estimator

        return export_estimator(self, path)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags


def _member_logger(logger, member: int):
    """``trainer_kwargs["logger"]`` for an ensemble's member ``member``: each logger with a ``for_member`` method
    replaced by what it returns, any other kept (it logs every member's epochs under the same names)."""
    if isinstance(logger, (list, tuple)):
        return [_member_logger(one, member) for one in logger]
    for_member = getattr(logger, "for_member", None)
    return logger if for_member is None else for_member(member)
