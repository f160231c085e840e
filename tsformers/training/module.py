"""The one LightningModule of tsformers: any network from ``tsformers.models`` with its loss and optimiser."""
from __future__ import annotations

import lightning as L
import torch
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
    quantiles : list of float, optional
        With a quantile head (``network`` returns ``(B, horizon, n_targets, Q)``): train on the
        multi-quantile pinball loss over these levels instead of ``loss``.
    objective : callable, optional
        ``objective(module, inputs, pred, y) -> loss`` replaces the training loss (e.g. distillation
        from a teacher, ``tsformers.compress``); validation still uses ``loss``. Not saved in checkpoints.
    """

    def __init__(self, network: nn.Module, *, n_targets: int, loss: str = "mse", learning_rate: float = 1e-3,
                 weight_decay: float = 0.0, lr_schedule: str = "halving", max_epochs: int = 10,
                 quantiles: list | None = None, objective=None):
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

    def training_step(self, batch, batch_idx):
        *inputs, y = batch  # (x, y), or (x, static, y) with static attributes
        pred = self(*inputs)
        loss = self.masked_loss(pred, y) if self.objective is None else self.objective(self, inputs, pred, y)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"the training loss became {loss.item()} at epoch {self.current_epoch}, step {self.global_step}; "
                f"lower learning_rate (now {self.hparams.learning_rate}) or set gradient_clip."
            )
        # The epoch's mean training loss is logged once, on the epoch's last batch: Lightning's self.log costs
        # about as much per call as a small model's optimiser step. Same weighting as on_epoch=True.
        if batch_idx == 0:
            self._loss_sum, self._loss_count = torch.zeros((), device=loss.device), 0
        self._loss_sum += loss.detach() * len(y)
        self._loss_count += len(y)
        if self.trainer.is_last_batch or batch_idx + 1 >= self.trainer.num_training_batches:
            self.log("train_loss", self._loss_sum / self._loss_count, on_step=False, on_epoch=True, prog_bar=True,
                     batch_size=self._loss_count)
        return loss

    def validation_step(self, batch, batch_idx):
        *inputs, y = batch
        self.log("val_loss", self.masked_loss(self(*inputs), y), prog_bar=True, batch_size=len(y))

    def configure_optimizers(self):
        hp = self.hparams
        # foreach: one kernel per operation over all parameters instead of a Python loop over them
        optimizer = torch.optim.AdamW(self.parameters(), lr=hp.learning_rate, weight_decay=hp.weight_decay,
                                      foreach=True)
        if hp.lr_schedule == "halving":
            schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.5)
        elif hp.lr_schedule == "cosine":
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(hp.max_epochs, 1))
        else:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "epoch"}}
