"""Per-series, per-variable standard scaling, fitted on the training part only."""
from __future__ import annotations

from dataclasses import dataclass

import warnings

import numpy as np


@dataclass
class PanelScaler:
    """Standardise each (series, variable) with the mean and standard deviation of its training part.

    The scale is a standard deviation whatever the magnitude of the values
    (``1e-30`` or ``1e30``): multiplying a series by a positive factor
    multiplies its forecast by it. A constant variable (e.g. PV power at night
    over a whole window), whose deviation is only rounding error, is scaled by
    its magnitude instead, and an all-zero one by 1, so nothing is ever
    divided by zero (see :func:`safe_scale`).

    Attributes
    ----------
    mean, scale : ndarray of shape (n_series, n_vars)
    """

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray) -> "PanelScaler":
        """Statistics of ``values`` ``(n_series, n_time, n_vars)`` over time, ignoring missing values."""
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing column: mean 0, scale 1 below
            mean = np.nanmean(values, axis=1)
            scale = safe_scale(np.nanstd(values, axis=1), np.nanmax(np.abs(values), axis=1),
                               (~np.isnan(values)).sum(axis=1))
        mean[np.isnan(mean)] = 0.0
        return cls(mean=mean, scale=scale)

    @classmethod
    def identity(cls, n_series: int, n_vars: int) -> "PanelScaler":
        return cls(mean=np.zeros((n_series, n_vars)), scale=np.ones((n_series, n_vars)))

    def transform(self, values: np.ndarray) -> np.ndarray:
        return (values - self.mean[:, None, :]) / self.scale[:, None, :]

    def inverse(self, values: np.ndarray, n_leading: int | None = None) -> np.ndarray:
        """Undo the scaling of ``values`` ``(n_series, n_time, k)`` whose k variables are the first k."""
        k = values.shape[-1] if n_leading is None else n_leading
        return values * self.scale[:, None, :k] + self.mean[:, None, :k]

    def select(self, rows: np.ndarray) -> "PanelScaler":
        return PanelScaler(mean=self.mean[rows], scale=self.scale[rows])

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "PanelScaler":
        return cls(mean=np.asarray(d["mean"], dtype=np.float64), scale=np.asarray(d["scale"], dtype=np.float64))


def safe_scale(std: np.ndarray, magnitude: np.ndarray, n_observed: np.ndarray) -> np.ndarray:
    """Standard deviations made safe to divide by, judged relative to the values' ``magnitude`` (largest ``|x|``).

    A deviation within the rounding error of computing it from ``n_observed``
    values of that magnitude (``n * eps * magnitude``, as scikit-learn judges a
    constant feature) marks a constant: scaled by its magnitude, or by 1 when
    it is zero or nothing was observed. An absolute floor would call every
    series of tiny values constant and forecast them on the scale of 1.
    """
    std, magnitude = np.asarray(std, dtype=np.float64), np.asarray(magnitude, dtype=np.float64)
    rounding = np.maximum(np.asarray(n_observed, dtype=np.float64), 1.0) * np.finfo(np.float64).eps * magnitude
    constant = ~(std > rounding)  # also NaN: an all-missing variable
    fallback = np.where(magnitude > 0, magnitude, 1.0)  # NaN magnitude (all missing) compares False: 1
    return np.where(constant, fallback, std)
