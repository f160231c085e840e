"""Per-series, per-variable standard scaling, fitted on the training part only."""
from __future__ import annotations

from dataclasses import dataclass

import warnings

import numpy as np


@dataclass
class PanelScaler:
    """Standardise each (series, variable) with the mean and standard deviation of its training part.

    A constant variable (standard deviation 0, e.g. PV power at night over a
    whole window) keeps scale 1, so nothing is ever divided by zero.

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
            scale = np.nanstd(values, axis=1)
        mean[np.isnan(mean)] = 0.0
        scale[~(scale > 1e-12)] = 1.0
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
