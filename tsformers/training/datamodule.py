"""Windows of the scaled panel as Lightning data loaders."""
from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader

from tsformers.data.windows import WindowDataset, keep_batch


class WindowDataModule(L.LightningDataModule):
    """Training and validation windows; shuffling draws from a generator seeded by ``seed``.

    Parameters
    ----------
    train, val : tuple of Tensors ``(inputs, targets)``
        Inputs ``(n_series, n_time, n_channels)`` and targets ``(n_series, n_time, n_targets)``;
        ``val`` carries ``lookback`` steps of context before its first target, or is None.
    static : Tensor of shape (n_series, n_static), optional
        Encoded static attributes of the series, passed to the network with each window.
    """

    def __init__(self, train: tuple, val: tuple | None, *, lookback: int, horizon: int,
                 n_targets: int, batch_size: int, seed: int, static: torch.Tensor | None = None):
        super().__init__()
        self.train_set = WindowDataset(train[0], lookback, horizon, n_targets, targets=train[1], static=static)
        self.val_set = None if val is None else WindowDataset(val[0], lookback, horizon, n_targets,
                                                              targets=val[1], static=static)
        self.batch_size, self.seed = batch_size, seed

    def train_dataloader(self):
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, generator=generator,
                          collate_fn=keep_batch)

    def val_dataloader(self):
        if self.val_set is None:
            return []
        return DataLoader(self.val_set, batch_size=max(self.batch_size, 256), collate_fn=keep_batch)
