"""Windows of a frame for a fitted estimator, and Lightning training of a ``ForecastingModule`` subclass.

Compression methods that train with extra terms (the supernet's sandwich rule,
ScaleKD's feature losses) subclass :class:`~tsformers.training.ForecastingModule`
(its loss, optimiser and schedule) and train it here with Lightning's
``Trainer`` on the estimator's own windows: the frame is validated and scaled
with the *fitted* statistics, exactly as ``fit`` prepares its data.
"""
from __future__ import annotations

import copy

import numpy as np
import torch

from tsformers.data.frames import as_pandas
from tsformers.data.windows import WindowDataset, split_train_val, validation_steps


def frame_windows(estimator, df, val_size=None) -> tuple[tuple, tuple | None, torch.Tensor | None]:
    """``(train, val, static)`` tensors of ``df`` for the fitted ``estimator`` (as ``fit`` builds them).

    ``val_size`` defaults to the estimator's; 0 gives no validation part.
    """
    frame, _ = as_pandas(df)
    raw = estimator._read(frame, estimator.schema_, fitting=False)
    estimator._check_length(raw, estimator.lookback + estimator.horizon, "compress")
    panel = estimator._fill_missing(raw)
    if not panel.aligned:
        raise ValueError("compression data must be an aligned panel (every series over the same timestamps).")
    scaler = estimator._scaler_for(panel)
    scaled = scaler.transform(panel.values)
    n_targets = len(estimator.schema_.targets)
    inputs = torch.from_numpy(estimator._network_inputs(scaled).astype(np.float32))
    targets = torch.from_numpy(scaled[..., :n_targets].astype(np.float32))
    val_size = estimator.val_size if val_size is None else val_size
    steps = validation_steps(int(panel.lengths.max()), estimator.lookback, estimator.horizon, val_size)
    train = tuple(split_train_val(t, estimator.lookback, steps)[0] for t in (inputs, targets))
    val = None if steps == 0 else tuple(split_train_val(t, estimator.lookback, steps)[1] for t in (inputs, targets))
    static = None if panel.static is None else torch.from_numpy(panel.static.astype(np.float32))
    return train, val, static


def window_batches(estimator, part: tuple, static=None, max_windows: int | None = None, seed: int = 0,
                   batch_size: int = 256) -> list[tuple]:
    """Batches ``(x, y)`` (or ``(x, static, y)``) of the windows of ``part``; a seeded subset of ``max_windows``."""
    data = WindowDataset(part[0], estimator.lookback, estimator.horizon, len(estimator.schema_.targets),
                         targets=part[1], static=static)
    index = torch.arange(len(data))
    if max_windows is not None and len(data) > max_windows:
        index = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:max_windows].sort().values
    return [data.__getitems__(chunk.tolist()) for chunk in index.split(batch_size)]


def module_kwargs(estimator, **overrides) -> dict:
    """The ``ForecastingModule`` settings of the estimator (loss, rate, schedule...), with overrides."""
    kwargs = dict(n_targets=len(estimator.schema_.targets), loss=estimator.loss,
                  learning_rate=estimator.learning_rate, weight_decay=estimator.weight_decay,
                  lr_schedule=estimator.lr_schedule, max_epochs=estimator.max_epochs,
                  quantiles=estimator._quantile_levels())
    kwargs.update(overrides)
    return kwargs


def train_module(module, estimator, train: tuple, val: tuple | None, *, static=None, max_epochs: int = 1,
                 batch_size: int | None = None, seed: int | None = None, max_steps: int = -1) -> list[dict]:
    """Train a ``ForecastingModule`` (or subclass) with Lightning's Trainer on CPU; return the epoch log."""
    import lightning as L

    from tsformers.training.datamodule import WindowDataModule
    from tsformers.training.fit import EpochLog, SeedEachStep, _quiet

    seed = estimator.random_state if seed is None else seed
    data = WindowDataModule(train, val, lookback=estimator.lookback, horizon=estimator.horizon,
                            n_targets=len(estimator.schema_.targets), batch_size=batch_size or estimator.batch_size,
                            seed=seed, static=static)
    log = EpochLog()
    with _quiet(False):
        trainer = L.Trainer(max_epochs=max_epochs, max_steps=max_steps, accelerator="cpu", devices=1, logger=False,
                            enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                            num_sanity_val_steps=0, limit_val_batches=None if val is not None else 0,
                            callbacks=[log, SeedEachStep(seed)], log_every_n_steps=1)
        trainer.fit(module, datamodule=data)
    module.cpu()
    return log.rows


def with_network(estimator, network: torch.nn.Module):
    """A copy of the fitted ``estimator`` whose network is ``network`` (in eval mode); the original is untouched."""
    new = copy.copy(estimator)
    for name, value in vars(estimator).items():
        if name.endswith("_") and name != "network_" and isinstance(value, (np.ndarray, list, dict)):
            setattr(new, name, copy.deepcopy(value))
    new.network_ = network.eval()
    return new
