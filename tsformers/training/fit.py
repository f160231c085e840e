"""Fit a network with Lightning's Trainer: early stopping, best weights restored, clipping, seeding."""
from __future__ import annotations

import functools
import json
import logging
import math
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, EMAWeightAveraging, ModelCheckpoint
from torch.optim.swa_utils import get_ema_avg_fn

from tsformers.seeding import SEEDED_LOCK
from tsformers.training.datamodule import WindowDataModule
from tsformers.training.module import ForecastingModule


class EpochLog(Callback):
    """Keep each epoch's logged losses, for the estimator's ``training_log_``.

    Every process keeps the same rows (the losses are reduced over the processes). At the end of
    training the first process of each machine also writes them to ``path``: processes started by
    ``strategy="ddp_spawn"`` keep their callbacks' state to themselves, and the launching process
    reads the rows back from there (:meth:`read`).
    """

    def __init__(self, path=None):
        self.rows: list[dict] = []
        self.lr = None
        self.path = path

    def on_fit_end(self, trainer, module):
        if self.path is not None and trainer.local_rank == 0:
            Path(self.path).write_text(json.dumps(self.rows))

    def read(self) -> list[dict]:
        """The rows of the training processes: this process's own, or those the first training process wrote."""
        if self.path is not None and Path(self.path).is_file():
            return json.loads(Path(self.path).read_text())
        return self.rows

    def on_train_epoch_start(self, trainer, module):
        self.lr = trainer.optimizers[0].param_groups[0]["lr"]  # read before the epoch's scheduler step

    def on_train_epoch_end(self, trainer, module):
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k in ("train_loss", "val_loss")}
        self.rows.append({"epoch": trainer.current_epoch, "lr": self.lr, **metrics})


class SeedEachStep(Callback):
    """Reseed torch's generator from ``seed`` and the global step before every training step.

    Dropout then draws the same masks at step k whether training ran straight
    through or resumed from a checkpoint, so both end with the same weights.
    """

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        # Each of several processes draws its own masks for its share of the batch (one process: rank 0 of 1).
        seed = (self.seed * 1_000_003 + trainer.global_step) * trainer.world_size + trainer.global_rank
        # Not torch.manual_seed: on a machine without CUDA/XPU/MTIA it defers a seeding call for each of them
        # and formats a stack trace to remember where it came from, three per step, several percent of a small
        # model's step. Dropout on the CPU draws from the default generator, which is all it sets here.
        torch.default_generator.manual_seed(seed)
        if module.device.type == "cuda":
            torch.cuda.manual_seed_all(seed)  # initialised by now: applied at once, nothing queued
        elif module.device.type != "cpu":
            torch.manual_seed(seed)


class RestoreBest(Callback):
    """At the end of training, load the weights of the best epoch from ``checkpoint`` on every process.

    The first process, which wrote the checkpoint, reads it and broadcasts the weights
    (``trainer.strategy.broadcast``), so no other process needs to see its file system. The processes
    of ``strategy="ddp_spawn"`` then hand these weights to the launching process.
    """

    def __init__(self, checkpoint: ModelCheckpoint):
        self.checkpoint = checkpoint

    def on_fit_end(self, trainer, module):
        path, state = self.checkpoint.best_model_path, None
        if trainer.is_global_zero and path:
            state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
        state = trainer.strategy.broadcast(state, src=0)
        if state is not None:
            module.load_state_dict(state)


class ExponentialAverage(EMAWeightAveraging):
    """Lightning's ``EMAWeightAveraging`` (an average updated after every optimiser step) that pickles.

    ``ddp_spawn`` pickles the callbacks to send them to the training processes; Lightning's keeps torch's ``get_ema_avg_fn(decay)``, a local function, which does not pickle. This one
    pickles its ``decay`` and rebuilds the same function on arrival, so the average is computed alike.
    """

    def __init__(self, decay: float):
        super().__init__(decay=decay)
        self.decay = decay

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_kwargs"] = {k: v for k, v in self._kwargs.items() if k != "avg_fn"}
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._kwargs["avg_fn"] = get_ema_avg_fn(decay=self.decay)


class ChooseShare(Callback):
    """After training, keep the share of the network's correction that scores best on the validation windows.

    ``base`` is a :class:`~tsformers.backbone.heads.LinearBase`: its fitted linear map plus ``share`` of
    the trained network's gated correction, for each share of :data:`SHARES` (0: the map alone), scored
    by the training loss over every validation window, restored best epoch included (1: all of it). Each
    share's forecast is computed, not interpolated: a quantile head around the base is not linear in it;
    the wrapped network's output, the same for every share, is computed once per validation batch
    (:meth:`LinearBase.reusing_network_output`, :meth:`ForecastingModule.validation_losses`).
    The smallest share of the lowest loss is kept: the map where nothing beats it. Without a best
    epoch (no validation loss was recorded) the map alone is kept. Each share's loss is the module's own
    validation loss (:meth:`ForecastingModule.validation_step`, reduced over all processes), so all
    decide alike; the map is fitted before training
    and never trained, so a resumed fit decides as an uninterrupted one. Runs after :class:`RestoreBest`.
    """

    SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)

    def __init__(self, checkpoint: ModelCheckpoint, base):
        self.checkpoint, self.base = checkpoint, base
        self.losses = None   # the validation loss of each share, in the order of SHARES

    def on_fit_end(self, trainer, module):
        if self.checkpoint.best_model_score is None:
            self.base.drop_network()
            return
        training = module.training
        module.eval()
        # each share scored as an epoch's validation loss is (all processes' sums); the network runs once per
        # batch for all of them, as only the share of its output in the forecast differs
        shares = [functools.partial(self.base.keep_share, share) for share in self.SHARES]
        with torch.no_grad(), self.base.reusing_network_output():
            self.losses = module.validation_losses(trainer.datamodule.val_dataloader(), shares)
        module.train(training)
        self.base.keep_share(self.SHARES[self.losses.index(min(self.losses))])   # the first, smallest share of a tie


class EndProcessGroup(Callback):
    """When the fit is over, end the process group its strategy started (data-parallel fits only).

    Lightning ends a group at the process's exit only for NCCL. A gloo group left to the exit can abort
    the process (``std::terminate``: "terminate called without an active exception") when its worker
    threads still hold finished collectives as Python shuts down, pytorch/pytorch#190489; the
    processes of ``ddp_spawn`` exit right after the fit. So every process waits for the others
    (a barrier: no collective still in flight), then destroys the group, in the ``teardown`` hook, after
    everything of the fit that communicates (``on_fit_end``: :class:`RestoreBest`, :class:`ChooseShare`).
    A group that existed before the fit (initialised by the caller) is the caller's and is left alone;
    the next fit starts a group of its own.
    """

    def __init__(self):
        self.owned = not _process_group_running()   # judged where the fit starts; travels to spawned processes

    def teardown(self, trainer, module, stage):
        if self.owned and _process_group_running():
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()


def _process_group_running() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def fit_network(network: torch.nn.Module, train: tuple, val: tuple | None, *, lookback: int,
                horizon: int, n_targets: int, loss: str, learning_rate: float, weight_decay: float,
                lr_schedule: str, batch_size: int, max_epochs: int, patience: int | None, gradient_clip: float | None,
                seed: int, verbose: bool, trainer_kwargs: dict | None = None,
                static: torch.Tensor | None = None, checkpoint_dir=None, resume=False,
                quantiles: list | None = None, objective=None, linear_base=None,
                ema_decay: float | None = None, val_every_windows: int | None = None) -> list[dict]:
    """Train ``network`` in place and return the per-epoch log.

    ``train`` and ``val`` are ``(inputs, targets)`` tensors of the whole
    series (``val`` with ``lookback`` steps of context, or None).

    With validation data, training stops when the validation loss has not
    improved for ``patience`` epochs and the weights of the best epoch are
    restored (Lightning's ``EarlyStopping`` and ``ModelCheckpoint``).
    ``trainer_kwargs`` go to ``lightning.Trainer`` as they are (accelerator,
    devices, strategy, precision, logger, callbacks...).

    Data-parallel training (``strategy="ddp"``, ``"ddp_spawn"``, several devices or nodes) trains
    as one process would: ``batch_size`` is the global batch, split evenly over the processes
    (:class:`~tsformers.training.datamodule.ShardedBatches`; it must be a multiple of their number),
    each share's loss is weighted by its share of the batch's targets, the training and validation
    losses are reduced over all processes, so early stopping and the best epoch are decided alike on
    all of them, and only the first process writes checkpoints. After ``ddp_spawn`` the launching
    process holds the trained (best) weights and the log. See ``docs/scaling.md``.

    With ``checkpoint_dir``, the full training state is written there after
    every epoch (``last.ckpt``); ``resume=True`` continues from it when it
    exists (a first run simply starts), ``resume="path.ckpt"`` from that file.
    Batches are drawn per epoch from ``seed + epoch``, so a resumed run ends
    with the weights of an uninterrupted one. Training holds
    :data:`tsformers.seeding.SEEDED_LOCK`, so fits in other threads cannot
    change its dropout draws: a seed gives the same weights in any thread.

    With ``quantiles``, ``network`` ends in a quantile head and trains on the pinball loss.
    ``objective(module, inputs, pred, y) -> loss``, if given, replaces the training loss
    (see :class:`ForecastingModule`). After training, a network with ``after_training(batches,
    window_losses)`` is given up to 2,048 training windows spread over all of them and the
    per-window loss (:meth:`ForecastingModule.window_losses`), to fit what it derives from its
    trained weights (the depth gates of ``adaptive_depth`` stacks).

    ``linear_base``: the :class:`~tsformers.backbone.heads.LinearBase` inside ``network``, if any; with
    validation data the forecast keeps the share of the trained correction (none, a quarter, half, three
    quarters or all of it) that scores best on the validation windows (:class:`ChooseShare`).

    ``ema_decay``: keep an exponential moving average of the weights, updated after every optimiser step
    (Lightning's ``EMAWeightAveraging``). Validation, early stopping and the best epoch read the average,
    and the average is what the fit returns (the best epoch's, or the last one's without validation data).

    ``val_every_windows``: where there are more training windows, validate after every
    ``ceil(val_every_windows / batch_size)`` batches: Lightning's epoch becomes the first that many
    batches of its shuffled order (``limit_train_batches``), a fresh random part each time, while the
    learning-rate schedule and ``max_epochs`` keep counting passes over all the windows (the rate
    changes by the part's share of a pass's change at each such epoch; ``max_epochs / share`` of them).
    """
    data = WindowDataModule(train, val, lookback=lookback, horizon=horizon, n_targets=n_targets,
                            batch_size=batch_size, seed=seed, static=static)
    share, batches_per_part = 1.0, None   # the share of a pass one Lightning epoch trains on
    if val is not None and val_every_windows is not None and len(data.train_set) > val_every_windows:
        batches_per_part = math.ceil(val_every_windows / batch_size)
        share = min(1.0, batches_per_part * batch_size / len(data.train_set))
    module = ForecastingModule(network, n_targets=n_targets, loss=loss, learning_rate=learning_rate,
                               weight_decay=weight_decay, lr_schedule=lr_schedule, max_epochs=max_epochs,
                               quantiles=quantiles, objective=objective, epoch_share=share)
    kwargs = dict(trainer_kwargs or {})
    if kwargs.get("use_distributed_sampler"):
        raise ValueError("use_distributed_sampler=True: tsformers shards the training windows itself (batch_size is "
                         "the global batch, see docs/scaling.md); leave use_distributed_sampler out of trainer_kwargs.")
    # Under the lock: dropout draws from torch's global generator, which no other fit may reseed meanwhile;
    # it also keeps _quiet's changes to the process-wide warning filters and log levels from interleaving.
    with SEEDED_LOCK, tempfile.TemporaryDirectory(prefix="tsformers-ckpt-") as scratch, _quiet(not verbose):
        log = EpochLog(Path(scratch) / "epochs.json")
        callbacks = [log, SeedEachStep(seed), QuietWorkers(not verbose)]
        if ema_decay is not None:
            callbacks.append(ExponentialAverage(ema_decay))
        ckpt_dir = str(checkpoint_dir) if checkpoint_dir is not None else scratch
        checkpointing = val is not None or checkpoint_dir is not None
        if val is not None:
            # First of the checkpoints, so that it is the Trainer's checkpoint_callback (whose best path
            # ddp_spawn hands back to the launching process).
            best = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val_loss", mode="min",
                                   save_weights_only=True, enable_version_counter=False)
            callbacks += [best, RestoreBest(best)] + ([ChooseShare(best, linear_base)] if linear_base is not None else [])
            if patience is not None:
                callbacks.append(EarlyStopping(monitor="val_loss", mode="min", patience=patience, strict=False))
        if checkpoint_dir is not None:
            callbacks.append(ModelCheckpoint(dirpath=ckpt_dir, filename="last", enable_version_counter=False))
        callbacks += kwargs.pop("callbacks", []) + [EndProcessGroup()]   # last: after the others' teardown
        settings = dict(max_epochs=max_epochs, accelerator="cpu", devices=1, logger=False,
                        enable_progress_bar=verbose, enable_model_summary=verbose, enable_checkpointing=checkpointing,
                        gradient_clip_val=gradient_clip, num_sanity_val_steps=0, default_root_dir=ckpt_dir,
                        limit_val_batches=None if val is not None else 0, log_every_n_steps=1)
        if share < 1:
            settings.update(limit_train_batches=batches_per_part, max_epochs=math.ceil(max_epochs / share))
        trainer = L.Trainer(**{**settings, **kwargs, "callbacks": callbacks, "use_distributed_sampler": False})
        if batch_size % trainer.world_size:
            raise ValueError(f"batch_size={batch_size} is the global batch, split evenly over the "
                             f"{trainer.world_size} training processes; choose a multiple of {trainer.world_size}.")
        trainer.fit(module, datamodule=data, ckpt_path=_resume_from(resume, checkpoint_dir))
        rows = log.read()
    network.cpu()
    if callable(getattr(network, "after_training", None)):   # what a network derives from its trained weights
        network.after_training(_spread_batches(data.train_set), module.window_losses)
    return rows


def _spread_batches(windows, *, limit: int = 2048, size: int = 256):
    """``(inputs, y)`` batches of at most ``limit`` training windows spread evenly over all of them, in order."""
    index = torch.linspace(0, len(windows) - 1, min(len(windows), limit)).round().long().unique()
    for chunk in index.split(size):
        *inputs, y = windows.__getitems__(chunk.tolist())
        yield tuple(inputs), y


def _resume_from(resume, checkpoint_dir):
    """The checkpoint to resume from, or None to start afresh."""
    if resume is False or resume is None:
        return None
    if resume is True:
        if checkpoint_dir is None:
            raise ValueError("resume=True needs checkpoint_dir=, where training writes last.ckpt after every epoch.")
        last = Path(checkpoint_dir) / "last.ckpt"
        return str(last) if last.is_file() else None
    if not Path(resume).is_file():
        raise FileNotFoundError(f"resume={resume!r}: no such checkpoint file.")
    return str(resume)


_QUIET_WARNINGS = (".*does not have many workers.*", ".*Checkpoint directory.*exists and is not empty.*",
                   ".*treespec, LeafSpec.*")
_LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "pytorch_lightning")


class QuietWorkers(Callback):
    """Silence Lightning in the processes ``strategy="ddp_spawn"`` starts, as :func:`_quiet` does in this one.

    Those processes unpickle the Trainer and its callbacks before anything else; unpickling this
    callback sets their warning filters and log levels (the processes end with the training).
    """

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def __setstate__(self, state):
        self.__dict__.update(state)
        for message in _QUIET_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        if self.enabled:
            for name in _LIGHTNING_LOGGERS:
                logging.getLogger(name).setLevel(logging.WARNING)


@contextmanager
def _quiet(enabled: bool):
    """Silence Lightning's start-up chatter and its advice on data-loader workers unless verbose."""
    with warnings.catch_warnings():
        for message in _QUIET_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        if not enabled:
            yield
            return
        loggers = [logging.getLogger(n) for n in _LIGHTNING_LOGGERS]
        levels = [lg.level for lg in loggers]
        for lg in loggers:
            lg.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)
