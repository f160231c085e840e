"""The one LightningModule of tsformers: any network from ``tsformers.models`` with its loss and optimiser."""
from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.callbacks import WeightAveraging
from torch import nn

from tsformers.training.losses import make_loss


class ForecastingModule(L.LightningModule):
    """Train a forecasting network: ``network(x)`` maps ``(B, lookback, n_vars)`` to ``(B, horizon, >= n_targets)``.

    Parameters
    ----------
    network : nn.Module
        A plain torch network; its first ``n_targets`` output variables are compared to the targets.
    n_targets : int
    loss : {"mse", "mae", "huber"}
    learning_rate, weight_decay : float
        AdamW's (``weight_decay=0`` is Adam).
    lr_schedule : {"halving", "cosine", "constant"}
        ``"halving"`` halves the rate after every epoch (the "type1" schedule of
        the Time-Series-Library papers); ``"cosine"`` anneals to 0 over ``max_epochs``.
    max_epochs : int
        Needed by the cosine schedule.
    epoch_share : float, default=1.0
        The share of a pass over the training windows one epoch trains on (below 1 with
        ``val_every_windows``): both schedules count passes, so each epoch moves the rate by that
        share of a pass's change (halving: ``0.5 ** epoch_share`` an epoch).
    quantiles : list of float, optional
        With a quantile head (``network`` returns ``(B, horizon, n_targets, Q)``): train on the
        multi-quantile pinball loss over these levels instead of ``loss``.
    objective : callable, optional
        ``objective(module, inputs, pred, y) -> loss`` replaces the training loss (e.g. distillation
        from a teacher, ``tsformers.compress``); validation still uses ``loss``. Not saved in checkpoints.

    Notes
    -----
    A network may add to its training loss: if it has ``auxiliary_loss(batch_loss)``, the
    returned tensor (or None) is added, where ``batch_loss()`` is the ``loss`` of the
    network's forecast of the batch as the network runs at the time of the call (an
    adaptive-depth network runs it once per shallower exit,
    :class:`~tsformers.backbone.stacks.adaptive_depth.ExitSupervised`). Validation
    and early stopping read the forecast's loss alone.
    """

    def __init__(self, network: nn.Module, *, n_targets: int, loss: str = "mse", learning_rate: float = 1e-3,
                 weight_decay: float = 0.0, lr_schedule: str = "halving", max_epochs: int = 10,
                 quantiles: list | None = None, objective=None, epoch_share: float = 1.0):
        super().__init__()
        self.save_hyperparameters(ignore=["network", "objective"])
        self.network = network
        self.loss_fn = make_loss(loss, quantiles)
        self.objective = objective

    def forward(self, x: torch.Tensor, static: torch.Tensor | None = None) -> torch.Tensor:
        out = self.network(x) if static is None else self.network(x, static=static)
        return out if out.ndim == 4 else out[..., : self.hparams.n_targets]  # quantile heads: targets only

    def masked_loss(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The loss over the observed targets only: missing ones (NaN, with ``missing="mask"``) do not count."""
        observed = ~torch.isnan(y)
        if observed.all():  # (pred has a last quantile axis more than y with a quantile head)
            return self.loss_fn(pred, y)
        return self.loss_fn(pred[observed], y[observed])

    def window_losses(self, inputs: tuple, y: torch.Tensor) -> torch.Tensor:
        """(W,): the ``loss`` of each window's forecast of ``inputs``, over its observed targets only."""
        pred = self(*inputs)
        return torch.stack([self.masked_loss(p[None], t[None]) for p, t in zip(pred, y)])

    def training_step(self, batch, batch_idx):
        *inputs, y = batch  # (x, y), or (x, static, y) with static attributes
        pred = self(*inputs)
        loss = self.masked_loss(pred, y) if self.objective is None else self.objective(self, inputs, pred, y)
        auxiliary = getattr(self.network, "auxiliary_loss", None)
        extra = None if auxiliary is None else auxiliary(lambda: self.masked_loss(self(*inputs), y))
        if extra is not None:
            loss = loss + extra
        world = self.trainer.world_size
        if world > 1:
            # This process holds one share of the step's global batch. DDP averages the processes' gradients, so
            # each share's mean loss is weighted by its share of the global batch's observed targets (times the
            # number of processes): the averaged gradient is the gradient of the global batch's mean loss, as in
            # one process. One all-reduce brings the global counts and whether any share's loss is not finite.
            observed = (~torch.isnan(y)).sum().to(loss.dtype)
            rows = (~torch.isnan(y)).flatten(1).any(1).sum().to(loss.dtype)  # padding windows have no targets
            bad = (observed > 0) & ~torch.isfinite(loss)  # a share of padding only has no loss (NaN) to check
            stats = self.trainer.strategy.reduce(torch.stack([observed, rows, bad.to(loss.dtype)]), reduce_op="sum")
            total, n_rows, n_bad = stats.unbind()
            if n_bad > 0:  # every process stops, not only the one whose share diverged
                self._diverged(loss if bad else torch.tensor(float("nan")))
            # A share of padding only (a global batch smaller than the number of processes) weighs nothing,
            # but still runs backward through every parameter, as DDP needs.
            loss = loss * (observed * world / total) if observed > 0 else pred.sum() * 0.0
            batch_loss, batch_rows = loss.detach() / world, n_rows  # this share's part of the global batch loss
        else:
            if not torch.isfinite(loss):
                self._diverged(loss)
            batch_loss, batch_rows = loss.detach(), len(y)
        # The epoch's mean training loss is logged once, on the epoch's last batch: Lightning's self.log costs
        # about as much per call as a small model's optimiser step. Same weighting as on_epoch=True.
        if batch_idx == 0:
            self._loss_sum, self._loss_count = torch.zeros((), device=loss.device), 0
        self._loss_sum += batch_loss * batch_rows
        self._loss_count += batch_rows
        if self.trainer.is_last_batch or batch_idx + 1 >= self.trainer.num_training_batches:
            loss_sum = self._loss_sum if world == 1 else self.trainer.strategy.reduce(self._loss_sum, reduce_op="sum")
            self.log("train_loss", loss_sum / self._loss_count, on_step=False, on_epoch=True, prog_bar=True,
                     batch_size=1, sync_dist=world > 1)  # the same value on every process: their mean is it
        return loss

    def _diverged(self, loss):
        raise FloatingPointError(
            f"the training loss became {loss.item()} at epoch {self.current_epoch}, step {self.global_step}; "
            f"lower learning_rate (now {self.hparams.learning_rate}) or set gradient_clip."
        )

    def on_validation_epoch_start(self):
        self._val_sum = self._val_count = torch.zeros((), device=self.device)

    def validation_step(self, batch, batch_idx):
        *inputs, y = batch
        observed = (~torch.isnan(y)).sum()
        if observed > 0:  # a padding window (a process with no validation windows of its own) weighs nothing
            self._val_sum = self._val_sum + self.masked_loss(self(*inputs), y).detach() * observed
            self._val_count = self._val_count + observed

    def validation_losses(self, batches, variants: list) -> list[float]:
        """The validation loss (:meth:`validation_loss`, all processes') of each of ``variants``, functions that
        set the network up for one variant, over the same ``batches``: each batch is moved to the device once
        and scored by every variant in turn, each variant's sums kept apart in the order of the batches, so
        each loss is what a whole validation pass of that variant alone gives."""
        self.on_validation_epoch_start()
        # validation_step replaces the sums rather than adding in place, so every variant may start from these zeros
        totals = [(self._val_sum, self._val_count)] * len(variants)
        for i, batch in enumerate(batches):
            batch = self.transfer_batch_to_device(batch, self.device, 0)
            for k, variant in enumerate(variants):
                variant()
                self._val_sum, self._val_count = totals[k]
                self.validation_step(batch, i)
                totals[k] = (self._val_sum, self._val_count)
        losses = []
        for total in totals:
            self._val_sum, self._val_count = total
            losses.append(float(self.validation_loss()))
        return losses

    def on_validation_epoch_end(self):
        self.log("val_loss", self.validation_loss(), prog_bar=True, batch_size=1,
                 sync_dist=self.trainer.world_size > 1)

    def validation_loss(self) -> torch.Tensor:
        """The mean loss over every observed validation target of every process since
        ``on_validation_epoch_start``: the processes' sums and counts are added (one all-reduce), so each
        process has the same value and early stopping and the best-epoch checkpoint decide alike on all."""
        totals = torch.stack([self._val_sum, self._val_count.to(self._val_sum.dtype)])
        if self.trainer.world_size > 1:
            totals = self.trainer.strategy.reduce(totals, reduce_op="sum")
        return totals[0] / totals[1]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # With a WeightAveraging callback (``ema_decay``, or one of trainer_kwargs' callbacks) validation scores
        # the averaged weights, and Lightning's callback puts them into full checkpoints only: it is not called
        # for a weights-only one, such as the best epoch's that the fit restores, which would then hold the raw
        # weights of an epoch chosen for its average's loss. The module's own hook runs for every checkpoint.
        if "current_model_state" in checkpoint:  # a full checkpoint: the callback has done it
            return
        for callback in self.trainer.callbacks:
            if isinstance(callback, WeightAveraging):
                callback.on_save_checkpoint(self.trainer, self, checkpoint)
                for key in ("current_model_state", "averaging_state"):  # weights only: the average alone
                    checkpoint.pop(key, None)

    def configure_optimizers(self):
        hp = self.hparams
        # fused: the whole update of every parameter in one kernel instead of foreach=True's one kernel per
        # operation; the same update up to float rounding, 1.12 times the CPU step speed at batch 8
        # (benchmarks/train_overhead.py)
        optimizer = torch.optim.AdamW(self.parameters(), lr=hp.learning_rate, weight_decay=hp.weight_decay,
                                      fused=True)
        if hp.lr_schedule == "halving":
            schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.5 ** hp.epoch_share)
        elif hp.lr_schedule == "cosine":
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer,
                                                                  T_max=max(hp.max_epochs, 1) / hp.epoch_share)
        else:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "epoch"}}
