"""Windows of the scaled panel as Lightning data loaders."""
from __future__ import annotations

import math

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

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


class ShardedBatches(Sampler):
    """Global batches of ``batch_size`` windows in ``sampler``'s order, and this process's share of each.

    The epoch's order (the same on every process: ``sampler`` is seeded alike) is cut into global batches
    of ``batch_size`` windows, the last one shorter; process ``rank`` of ``world_size`` takes the
    ``rank``-th of ``world_size`` near-equal parts of each (``torch.tensor_split``). The shares of a step
    together are the step's global batch, without overlap or loss: no window is repeated or dropped,
    and every process runs the same number of steps. Where a global batch has fewer windows than
    there are processes (the epoch's last one), a process without a window gets index ``n + i``:
    window ``i`` as padding, which :class:`PaddedWindows` returns without targets, so it weighs nothing.
    With one process these are the batches of ``DataLoader(sampler=sampler, batch_size=batch_size)``.

    Lightning calls ``set_epoch`` on ``self.sampler`` at the start of each epoch.
    """

    def __init__(self, sampler: Sampler, batch_size: int, rank: int = 0, world_size: int = 1):
        self.sampler, self.batch_size, self.rank, self.world_size = sampler, batch_size, rank, world_size

    def __iter__(self):
        order = torch.as_tensor(list(self.sampler))
        for batch in order.split(self.batch_size):
            share = batch.tensor_split(self.world_size)[self.rank]
            yield share.tolist() if len(share) else [int(batch[0]) + len(order)]

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)


class PaddedWindows(Dataset):
    """The windows of ``windows``, and at index ``n + i`` window ``i`` with its targets hidden (NaN): padding.

    Padding fills the share of a process that has no window of its own in a global batch
    (:class:`ShardedBatches`); its targets count as missing, so it adds nothing to a loss.
    """

    def __init__(self, windows: WindowDataset):
        self.windows = windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitems__(self, indices):
        n = len(self.windows)
        if max(indices) < n:
            return self.windows.__getitems__(indices)
        index = torch.as_tensor(indices)
        *inputs, y = self.windows.__getitems__(index % n)
        y = y.clone()
        y[index >= n] = float("nan")
        return (*inputs, y)


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

    def _processes(self) -> tuple[int, int]:
        """This process's rank and the number of processes (1 outside a Trainer or without distribution)."""
        trainer = self.trainer
        return (0, 1) if trainer is None else (trainer.global_rank, trainer.world_size)

    def train_dataloader(self):
        rank, world = self._processes()
        if self.batch_size % world:
            raise ValueError(f"batch_size={self.batch_size} is the global batch, split evenly over the {world} "
                             f"training processes; choose a multiple of {world}.")
        batches = ShardedBatches(EpochShuffle(len(self.train_set), self.seed), self.batch_size, rank, world)
        return DataLoader(PaddedWindows(self.train_set), batch_sampler=batches, collate_fn=keep_batch)

    def val_dataloader(self):
        if self.val_set is None:
            return []
        rank, world = self._processes()
        # Each process validates a contiguous part of the windows; one without any gets a padding window.
        share = torch.arange(len(self.val_set)).tensor_split(world)[rank].tolist() or [len(self.val_set)]
        size = max(self.batch_size // world, 256 // world)
        return DataLoader(PaddedWindows(self.val_set), batch_size=size, sampler=share, collate_fn=keep_batch)
