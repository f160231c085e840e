"""Gradient-boosted trees as a torch module: the forecast of :class:`tsformers.GBMForecaster` without pickles.

A fitted scikit-learn ``HistGradientBoostingRegressor`` can only be saved by pickling it, and
loading a pickle runs arbitrary code. Its trees are plain arrays, though: per node the feature it
splits on, the threshold, the two children and, at a leaf, the value. :class:`TreeEnsemble` holds
those arrays as buffers and walks every tree with tensor operations (``gather`` and ``where``, one
level per step), so the fitted model is a state dict of tensors like any other network's: saved in
``weights.pt``, read back with ``weights_only=True``, exported to ONNX.

:class:`GBMWindow` is the network of :class:`tsformers.GBMForecaster`: it turns a window into the
trees' features (lags relative to the window's last value, and the forecast step) and adds the
trees' output back to the last value.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["GBMWindow", "TreeEnsemble", "window_lags"]

#: Trees walked at once. The walk holds ``rows x steps x TREE_GROUP`` node indices, so this bounds the memory
#: of a forecast (1024 windows of 7 variables and 96 steps: 88 MB per index tensor) and the size of the ONNX
#: graph (one copy of the walk per group).
TREE_GROUP = 8


def window_lags(x: Tensor) -> Tensor:
    """The lag features of windows ``(batch, lookback, n_vars)``: ``(batch * n_vars, lookback - 1)`` float64.

    Row ``b * n_vars + v`` holds ``x[b, j, v] - x[b, -1, v]`` for ``j = 0 ... lookback - 2`` (the oldest
    first): each variable of each window relative to its last value. Computed in float64 from the float32
    window, the same way when training and forecasting, so every comparison with a threshold comes out
    the same in both.
    """
    values = x.double()
    last = values[:, -1:, :]
    lags = (values[:, :-1, :] - last).transpose(1, 2)              # (B, N, L - 1)
    return lags.reshape(-1, lags.shape[-1])


class TreeEnsemble(nn.Module):
    """The sum of regression trees, evaluated with tensor operations.

    Node ``k`` of tree ``t`` sends a row left when its feature ``feature[t, k]`` is at most
    ``threshold[t, k]`` (scikit-learn's rule for numeric splits), else right. Leaves point to
    themselves, so walking ``depth`` levels brings every row to its leaf, whatever the leaf's depth;
    unused trees and nodes (the buffers are sized by the estimator's parameters, so that a saved
    model can be rebuilt before its weights are read) are such leaves with value 0.

    The features of a row are of two kinds, so that a forecast of many steps need not copy a window's
    lags once per step: ``shared`` ``(n_rows, n_shared)`` (features ``0 ... n_shared - 1``) and
    ``per_column`` ``(n_columns, n_per_column)`` (the features after them); the output ``(n_rows,
    n_columns)`` is the ensemble on every row joined with every column's features.

    Missing values are not handled: no NaN reaches the trees (the forecaster refuses or fills gaps
    before a window is cut), so scikit-learn's ``missing_go_to_left`` is not kept.

    Parameters
    ----------
    max_trees, max_nodes : int
        The buffers' size: trees, and nodes per tree (``2 * max_leaf_nodes - 1``).
    """

    def __init__(self, *, max_trees: int, max_nodes: int):
        super().__init__()
        self.register_buffer("feature", torch.zeros(max_trees, max_nodes, dtype=torch.long))
        self.register_buffer("threshold", torch.zeros(max_trees, max_nodes, dtype=torch.float64))
        self.register_buffer("child", torch.arange(max_nodes).expand(2, max_trees, max_nodes).clone())  # left, right
        self.register_buffer("value", torch.zeros(max_trees, max_nodes, dtype=torch.float64))
        self.register_buffer("baseline", torch.zeros((), dtype=torch.float64))
        # How many trees are used and how deep the deepest is: read as Python ints (n_trees_, depth_) when the
        # weights are set or loaded, so the walk is a fixed graph (ONNX export) and no level is walked in vain.
        self.register_buffer("n_trees", torch.zeros((), dtype=torch.long))
        self.register_buffer("depth", torch.zeros((), dtype=torch.long))
        self.n_trees_, self.depth_ = 0, 0
        self.register_load_state_dict_post_hook(lambda module, keys: module._read_sizes())

    def _read_sizes(self) -> None:
        if self.n_trees.device.type != "meta":
            self.n_trees_, self.depth_ = int(self.n_trees), int(self.depth)

    @torch.no_grad()
    def set_trees(self, nodes: list[np.ndarray], baseline: float) -> None:
        """Copy fitted trees in: one structured array of scikit-learn's ``TreePredictor.nodes`` per tree.

        Reads the fields ``feature_idx``, ``num_threshold``, ``left``, ``right``, ``value`` and ``is_leaf``.

        Raises
        ------
        ValueError
            More trees or nodes than the buffers hold, or a categorical split (not evaluated here).
        """
        max_trees, max_nodes = self.feature.shape
        if len(nodes) > max_trees or any(len(tree) > max_nodes for tree in nodes):
            raise ValueError(f"{len(nodes)} trees of up to {max(map(len, nodes), default=0)} nodes do not fit "
                             f"buffers of {max_trees} trees of {max_nodes} nodes.")
        if any(tree["is_categorical"].any() for tree in nodes):
            raise ValueError("a tree splits on a categorical feature, which TreeEnsemble does not evaluate.")
        feature = np.zeros((max_trees, max_nodes), dtype=np.int64)
        threshold = np.zeros((max_trees, max_nodes))
        child = np.broadcast_to(np.arange(max_nodes), (2, max_trees, max_nodes)).copy()
        value = np.zeros((max_trees, max_nodes))
        depth = 0
        for t, tree in enumerate(nodes):
            n = len(tree)
            split = ~tree["is_leaf"].astype(bool)
            feature[t, :n] = np.where(split, tree["feature_idx"], 0)
            threshold[t, :n] = np.where(split, tree["num_threshold"], 0.0)
            child[0, t, :n] = np.where(split, tree["left"], np.arange(n))       # a leaf points to itself
            child[1, t, :n] = np.where(split, tree["right"], np.arange(n))
            value[t, :n] = np.where(split, 0.0, tree["value"])
            depth = max(depth, int(tree["depth"].max()))
        for name, array in (("feature", feature), ("threshold", threshold), ("child", child), ("value", value)):
            getattr(self, name).copy_(torch.from_numpy(array))
        self.baseline.fill_(float(baseline))
        self.n_trees.fill_(len(nodes))
        self.depth.fill_(depth)
        self._read_sizes()

    def forward(self, shared: Tensor, per_column: Tensor) -> Tensor:
        """The ensemble's sum ``(n_rows, n_columns)`` float64 on every row of ``shared`` ``(n_rows, n_shared)``
        joined with every row of ``per_column`` ``(n_columns, n_per_column)``; both float64."""
        n_rows, n_shared = shared.shape
        n_columns, n_per_column = per_column.shape
        max_nodes = self.feature.shape[1]
        feature, threshold = self.feature.reshape(-1), self.threshold.reshape(-1)
        child = self.child.reshape(-1)                                        # the left children, then the right
        n_flat = feature.numel()
        value = self.value.reshape(-1)
        column_values = [per_column[:, p].view(1, n_columns, 1) for p in range(n_per_column)]
        total = torch.zeros(n_rows, n_columns, dtype=torch.float64, device=shared.device) + self.baseline
        for first in range(0, self.n_trees_, TREE_GROUP):
            trees = torch.arange(first, min(first + TREE_GROUP, self.n_trees_), device=shared.device)
            offset = trees * max_nodes                                        # the group's nodes in the flat arrays
            node = torch.zeros(n_rows, n_columns, len(trees), dtype=torch.long, device=shared.device) + offset
            # Per level: the node's feature, its value (from the row, or from the column: blended in by arithmetic,
            # which torch runs several times faster than where), the comparison, the child. torch.take, not
            # tensor[index]: the same gather, without the overhead of advanced indexing.
            for _ in range(self.depth_):
                f = torch.take(feature, node)                                 # (R, C, G)
                x = shared.gather(1, f.clamp(max=n_shared - 1).reshape(n_rows, -1)).view(f.shape)
                for p, column_value in enumerate(column_values):
                    x = x + (f == n_shared + p).double() * (column_value - x)
                # the children are numbered within their tree: back to the flat arrays
                node = torch.take(child, node + (x > torch.take(threshold, node)).long() * n_flat) + offset
            total = total + torch.take(value, node).sum(-1)
        return total


class GBMWindow(nn.Module):
    """Boosted trees on a window's lags, one ensemble for every step of the horizon and every variable.

    For each variable ``v`` of a window ``x`` ``(batch, lookback, n_vars)`` and each step ``h = 1 ...
    horizon``, the trees read the lags ``x[:, j, v] - x[:, -1, v]`` (:func:`window_lags`) and ``h``
    (feature ``lookback - 1``); the forecast is ``x[:, -1, v]`` plus their sum. The trees are set by
    :class:`tsformers.GBMForecaster`; the mean squared error they reached on the validation windows is
    kept in the ``validation_loss`` buffer (NaN without validation windows).

    Parameters
    ----------
    horizon, lookback : int
        ``lookback >= 2``: at least one lag.
    max_trees, max_leaf_nodes : int
        The ensemble's size (:class:`TreeEnsemble`).
    """

    def __init__(self, *, horizon: int, lookback: int, max_trees: int, max_leaf_nodes: int):
        super().__init__()
        if lookback < 2:
            raise ValueError(f"the trees read the lags before the window's last value, so lookback must be at "
                             f"least 2; got lookback={lookback}.")
        self.horizon, self.lookback = horizon, lookback
        self.trees = TreeEnsemble(max_trees=max_trees, max_nodes=2 * max_leaf_nodes - 1)
        # steps 1 ... horizon, the feature after the lags; rebuilt from the parameters, so not saved
        self.register_buffer("steps", torch.arange(1, horizon + 1, dtype=torch.float64).view(horizon, 1),
                             persistent=False)
        self.register_buffer("validation_loss", torch.tensor(float("nan"), dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:       # x: (B, L, N)
        batch, _, n_vars = x.shape
        change = self.trees(window_lags(x), self.steps)                  # (B * N, H)
        change = change.view(batch, n_vars, self.horizon).transpose(1, 2)
        return (change + x[:, -1:, :].double()).to(x.dtype)              # (B, H, N)
