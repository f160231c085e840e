"""Windows of the scaled panel as Lightning data loaders."""
from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, Sampler

from tsformers.data.windows import WindowDataset, keep_batch


class EpochShuffle(Sampler):
    """A new permutation every epoch, drawn from ``seed + epoch``.

    Lightning calls ``set_epoch`` at the start of each epoch, so the batches of
    epoch k are the same whether training ran straight through or was resumed
    from a checkpoint at epoch k.
    """

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.n, generator=generator).tolist())

    def __len__(self) -> int:
        return self.n


class WindowDataModule(L.LightningDataModule):
    """Training and validation windows; shuffling draws from a generator seeded by ``seed``.

    Parameters
    ----------
    train, val : tuple ``(inputs, targets)`` or ``(inputs, targets, spans)``
        Inputs ``(n_series, n_time, n_channels)``, targets ``(n_series, n_time, n_targets)`` and, for a
        ragged panel, the ``(first, last)`` rows each series spans;
        ``val`` carries ``lookback`` steps of context before its first target, or is None.
    static : Tensor of shape (n_series, n_static), optional
        Encoded static attributes of the series, passed to the network with each window.
    """

    def __init__(self, train: tuple, val: tuple | None, *, lookback: int, horizon: int,
                 n_targets: int, batch_size: int, seed: int, static: torch.Tensor | None = None):
        super().__init__()
        self.train_set = WindowDataset(train[0], lookback, horizon, n_targets, targets=train[1], static=static,
                                       spans=train[2] if len(train) > 2 else None)
        self.val_set = None if val is None else WindowDataset(val[0], lookback, horizon, n_targets, targets=val[1],
                                                              static=static, spans=val[2] if len(val) > 2 else None)
        self.batch_size, self.seed = batch_size, seed

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.batch_size, sampler=EpochShuffle(len(self.train_set),
                                                                                           self.seed),
                          collate_fn=keep_batch)

    def val_dataloader(self):
        if self.val_set is None:
            return []
        return DataLoader(self.val_set, batch_size=max(self.batch_size, 256), collate_fn=keep_batch)
