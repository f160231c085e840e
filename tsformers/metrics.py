"""Forecast error metrics on arrays (any shape; the mean is over every element)."""
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
