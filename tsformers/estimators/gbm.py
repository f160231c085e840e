"""``GBMForecaster``: gradient-boosted trees on lags, the baseline mlforecast and Darts users compare against.

scikit-learn's ``HistGradientBoostingRegressor`` is fitted on rows cut from the training windows, then
its trees are copied into a torch module (:class:`~tsformers.models.gbm.GBMWindow`), so the fitted
model is a network like the others: saved as tensors and loaded without unpickling anything,
exported to ONNX, and given intervals, backtests and the command line by
:class:`~tsformers.estimators.base.BaseForecaster`.
"""
from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from tsformers.data.prepare import Prepared
from tsformers.data.windows import WindowDataset
from tsformers.estimators.baselines import _TargetsOnly, _docs
from tsformers.models.gbm import GBMWindow, window_lags

__all__ = ["GBMForecaster"]


@_docs
class GBMForecaster(_TargetsOnly):
    """Gradient-boosted trees on the window's lags, one model for every step, variable and series.

    The global, direct model of mlforecast and Darts' ``LightGBMModel``, with scikit-learn's
    ``HistGradientBoostingRegressor``. Every (window, target variable, forecast step) of the
    training part is one row:

    - **features**: the ``lookback - 1`` lags ``x[t - j] - x[t]`` (``j = lookback - 1 ... 1``) of the
      variable's scaled values, relative to the window's last value ``x[t]``, and the step ``h``
      (1 ... ``horizon``), named in ``feature_names_``;
    - **target**: ``x[t + h] - x[t]``; the forecast is ``x[t]`` plus the trees' output.

    One regressor serves every step (the step is a feature: the direct strategy in one model rather
    than ``horizon`` models, each refitted from scratch) and every variable of every series (channel
    independence, as :class:`LinearForecaster`; no series or variable index is a feature, so the
    trees cannot split on an arbitrary column order, and a comparison with the linear map isolates
    trees against a linear map). Relative to the last value, a level the training part never
    reached is no trouble for the trees, which cannot extrapolate beyond the values they saw.

    **No calendar features**: the network reads windows of values only (the data path passes no
    timestamps to it), so hour, weekday and the like are not features; the lags carry a season up
    to ``lookback`` steps long.

    **Rows**: at most ``max_samples`` rows are drawn at random (``random_state``) from the training
    windows, and a quarter as many from the validation windows: ETTh1 (7 variables, 8,449 training
    windows of 96 steps, 5.7 million rows) is fitted on 200,000 in well under a minute on one core.

    **Early stopping**: boosting stops once the loss on the validation windows (the final ``val_size``
    of each series, after the training part in time, never a random share of the rows, which would
    let the trees see the future of the windows they are scored on) has not improved by ``1e-7`` for
    ``n_iter_no_change`` rounds; without validation windows all ``max_iter`` rounds are run.

    **No pickles**: the fitted trees are copied into :class:`~tsformers.models.gbm.TreeEnsemble`, arrays
    of the splits and leaves walked with tensor operations, and the regressor is dropped. The torch
    forecast equals ``HistGradientBoostingRegressor.predict`` to float64 rounding (tested).

    Parameters
    ----------
    horizon : int, default=96
        Number of steps to forecast.
    lookback : int, default=96
        Number of past steps the trees read (at least 2: the lags before the last value).
    max_iter : int, default=200
        Boosting rounds (trees) at most.
    learning_rate : float, default=0.1
        Shrinkage of each tree.
    max_leaf_nodes : int, default=31
        Leaves per tree at most (at least 2).
    min_samples_leaf : int, default=20
        Rows per leaf at least.
    l2_regularization : float, default=0.0
        L2 penalty on the leaf values.
    n_iter_no_change : int, default=10
        Rounds without improvement on the validation windows before boosting stops.
    max_samples : int, default=200_000
        Training rows at most (a quarter as many validation rows), drawn at random without replacement.
    random_state : int, default=0
        Seeds the draw of rows and the regressor's binning of features.
    %(parameters)s

    Attributes
    ----------
    network_ : torch.nn.Module
        The fitted :class:`~tsformers.models.gbm.GBMWindow`.
    n_trees_ : int
        Trees fitted (``max_iter`` or fewer, after early stopping).
    validation_loss_ : float
        Mean squared error of the trees on the validation rows (scaled units, relative to the last
        value); NaN without validation windows.
    feature_names_ : list of str
        The trees' features, in order: ``lag_{j}`` (``x[t - j] - x[t]``), then ``step``.
    %(attributes)s

    See Also
    --------
    LinearForecaster : the same windows and normalisation, a ridge-fitted linear map.

    References
    ----------
    Ke et al., "LightGBM: A Highly Efficient Gradient Boosting Decision Tree", NeurIPS 2017.
    Januschowski et al., "Forecasting with trees", International Journal of Forecasting 38(4), 2022.

    Examples
    --------
    >>> from tsformers import GBMForecaster
    >>> from tsformers.datasets import make_demo
    >>> df = make_demo(n_steps=600)
    >>> f = GBMForecaster(horizon=24, lookback=48, max_iter=50).fit(df)
    >>> f.predict().shape
    (24, 4)
    >>> f.feature_names_[-3:]
    ['lag_2', 'lag_1', 'step']
    """

    _parameter_constraints = {
        **_TargetsOnly._parameter_constraints,
        "lookback": [Interval(Integral, 2, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "max_leaf_nodes": [Interval(Integral, 2, None, closed="left")],
        "min_samples_leaf": [Interval(Integral, 1, None, closed="left")],
        "l2_regularization": [Interval(Real, 0, None, closed="left")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "max_samples": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, horizon=96, lookback=96, *, max_iter=200, learning_rate=0.1, max_leaf_nodes=31,
                 min_samples_leaf=20, l2_regularization=0.0, n_iter_no_change=10, max_samples=200_000,
                 random_state=0, target=None, time_col=None, id_col=None, val_size=0.1, scaler="standard",
                 missing="error", max_gap=None, fill_gaps=False):
        super().__init__(horizon, lookback, target=target, time_col=time_col, id_col=id_col, val_size=val_size,
                         scaler=scaler, missing=missing, max_gap=max_gap, fill_gaps=fill_gaps)
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.n_iter_no_change = n_iter_no_change
        self.max_samples = max_samples
        self.random_state = random_state

    # -- fitted attributes, kept in the network so that they are saved with it ------------------------------

    @property
    def n_trees_(self) -> int:
        """Trees fitted (``max_iter`` or fewer, after early stopping)."""
        check_is_fitted(self, "network_")
        return int(self.network_.trees.n_trees)

    @property
    def validation_loss_(self) -> float:
        """Mean squared error on the validation rows, scaled and relative to the last value (NaN without them)."""
        check_is_fitted(self, "network_")
        return float(self.network_.validation_loss)

    @property
    def feature_names_(self) -> list[str]:
        """The trees' features in order: ``lag_{j}`` for ``x[t - j] - x[t]``, oldest first, then ``step``."""
        check_is_fitted(self, "network_")
        return [f"lag_{j}" for j in range(self.lookback - 1, 0, -1)] + ["step"]

    # -- fit ------------------------------------------------------------------------------------------------

    def _build_network(self, n_vars: int) -> torch.nn.Module:
        return GBMWindow(horizon=self.horizon, lookback=self.lookback, max_trees=self.max_iter,
                         max_leaf_nodes=self.max_leaf_nodes)

    def _fit_network(self, data: Prepared, n_vars: int) -> tuple[torch.nn.Module, list[dict]]:
        from sklearn.ensemble import HistGradientBoostingRegressor  # only when fitting, as Lightning is

        train, val = data.split(self.val_size)
        rng = np.random.default_rng(self.random_state)
        features, change = self._rows(train, self.max_samples, rng)
        val_features, val_change = self._rows(val, max(1, self.max_samples // 4), rng) if val is not None \
            else (None, None)
        if val_features is not None and len(val_change) == 0:
            val_features = val_change = None
        regressor = HistGradientBoostingRegressor(
            loss="squared_error", learning_rate=self.learning_rate, max_iter=self.max_iter,
            max_leaf_nodes=self.max_leaf_nodes, min_samples_leaf=self.min_samples_leaf,
            l2_regularization=self.l2_regularization, categorical_features=None,
            # the validation rows are the validation windows, later in time; never a random share of the rows
            early_stopping=val_features is not None, n_iter_no_change=self.n_iter_no_change,
            random_state=self.random_state)
        regressor.fit(features, change, X_val=val_features, y_val=val_change)
        network = self._build_network(n_vars)
        # _predictors and _baseline_prediction are private scikit-learn API: tests/test_gbm.py checks that the
        # network forecasts what regressor.predict does, so a change in them fails there, not in users' models
        network.trees.set_trees([predictors[0].nodes for predictors in regressor._predictors],
                                float(regressor._baseline_prediction.item()))
        if val_features is not None:
            with torch.no_grad():
                network.validation_loss.fill_(float(np.mean((regressor.predict(val_features) - val_change) ** 2)))
        return network, []   # no epochs: training_log_ counts epochs wherever it is read (CLI, MLflow)

    def _rows(self, part: tuple, cap: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The trees' rows of a part of :meth:`Prepared.split`: features ``(n, lookback)`` (the lags, then the
        step) and targets ``(n,)``, one per (window, target variable, step), at most ``cap`` drawn at random.

        Rows whose target is missing are left out.
        """
        inputs, targets, *spans = part
        n_targets, lookback, horizon = targets.shape[-1], self.lookback, self.horizon
        windows = WindowDataset(inputs, lookback, horizon, n_targets, targets=targets,
                                spans=spans[0] if spans else None)
        total = len(windows) * n_targets * horizon
        chosen = np.arange(total) if total <= cap else np.sort(rng.choice(total, cap, replace=False))
        window, rest = np.divmod(chosen, n_targets * horizon)
        variable, step = np.divmod(rest, horizon)
        if windows.index is None:                                    # window i -> (series, start), as WindowDataset
            series, start = np.divmod(window, windows.n_windows)
        else:
            series, start = windows.index[torch.from_numpy(window)].numpy().T
        series, start, variable = (torch.from_numpy(a) for a in (series, start, variable))
        # only the chosen variable of each window is cut: the rows, not every channel of every window
        past = inputs[series[:, None], start[:, None] + torch.arange(lookback), variable[:, None]]   # (n, L)
        lags = window_lags(past[:, :, None]).numpy()                   # the network's own features
        future = targets[series, start + lookback + torch.from_numpy(step), variable].double()
        change = (future - past[:, -1].double()).numpy()
        features = np.hstack([lags, (step + 1.0)[:, None]])
        keep = np.isfinite(change)
        return features[keep], change[keep]

    @classmethod
    def get_test_params(cls) -> dict:
        # few rounds; a row cap the contract's small data exceeds, so that random_state draws the rows
        return {"max_iter": 60, "max_samples": 2000}
