"""The shared core of ``tsformers.compress``: task data from a frame, the derived estimator, counting, fine-tuning.

Every method takes a fitted estimator and a frame (calibration or fine-tuning
data, read like ``fit`` reads it: the estimator's own validation, scaling,
covariates, masks and windows) and returns a *new* fitted estimator of the same
class whose network is the compressed one (:func:`derive`). The original is
left untouched. The new estimator records its structural edits
(``network_edits_``, replayed by ``load``) and what was done to it
(``compression_``, a list of JSON records, one per method applied).
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.base import clone
from sklearn.utils.validation import check_is_fitted
from torch import Tensor, nn

from tsformers.backbone.heads import SeedEnsemble
from tsformers.data.frames import Panel
from tsformers.data.prepare import Prepared
from tsformers.data.windows import WindowDataset

__all__ = ["Batch", "TaskData", "count_flops", "count_parameters", "derive", "finetune", "forecast",
           "model_size_bytes", "mse", "resolve_budget"]


# -- data -----------------------------------------------------------------------------------------


@dataclass
class Batch:
    """Windows of scaled data: inputs (B, lookback, channels), static (B, S) or None, targets (B, horizon, n_targets)."""

    x: Tensor
    static: Tensor | None
    y: Tensor

    def __len__(self) -> int:
        return len(self.x)

    def split(self, size: int):
        for i in range(0, len(self), size):
            yield Batch(self.x[i: i + size], None if self.static is None else self.static[i: i + size],
                        self.y[i: i + size])


@dataclass
class TaskData:
    """A frame as the estimator trains on it: scaled series split into training and validation parts.

    ``prepared`` is the frame readied by the estimator's own data path
    (:meth:`~tsformers.estimators.base.BaseForecaster.prepare`: its validation,
    scaling, covariates, masks); ``train`` and ``val`` are its parts as
    :func:`tsformers.training.fit_network` takes them (``(inputs, targets)`` or
    ``(inputs, targets, spans)``, ``val`` None when the series are too short for
    one); ``panel`` is the read panel with its gaps handled (unscaled).
    """

    estimator: object
    prepared: Prepared
    train: tuple
    val: tuple | None

    @property
    def panel(self) -> Panel:
        return self.prepared.panel

    @property
    def static(self) -> Tensor | None:
        return self.prepared.static_tensor()

    @property
    def val_steps(self) -> int:
        return self.prepared.validation_steps(self.estimator.val_size)

    @classmethod
    def from_frame(cls, estimator, df, static_df=None) -> TaskData:
        """Read ``df`` (columns of the fit data, at least lookback + horizon rows a series) with ``estimator``'s schema and scaling."""
        one_network(estimator)
        prepared = estimator.prepare(df, static_df, min_rows=estimator.lookback + estimator.horizon,
                                     action="compress with")
        train, val = prepared.split(estimator.val_size)
        return cls(estimator=estimator, prepared=prepared, train=train, val=val)

    def windows(self, part: str = "train", max_windows: int | None = 256) -> Batch:
        """Up to ``max_windows`` windows of ``part`` ("train", "val" or "all"), evenly spread, deterministic.

        "val" falls back to the training part when the frame has no validation part.
        """
        f = self.estimator
        parts = {"train": [self.train], "val": [self.val or self.train], "all": [self.train] + ([self.val] if self.val else [])}
        sets = [WindowDataset(p[0], f.lookback, f.horizon, len(f.schema_.targets), targets=p[1], static=self.static,
                              spans=p[2] if len(p) > 2 else None) for p in parts[part]]
        total = sum(len(s) for s in sets)
        if total == 0:
            raise ValueError("the frame holds no complete window (lookback + horizon rows) to compress with.")
        n = total if max_windows is None else min(total, max_windows)
        picks = np.unique(np.linspace(0, total - 1, n).round().astype(np.int64))
        out, offset = [], 0
        for s in sets:
            mine = picks[(picks >= offset) & (picks < offset + len(s))] - offset
            if len(mine):
                out.append(s.__getitems__(mine.tolist()))
            offset += len(s)
        parts_ = list(zip(*out))
        x, y = torch.cat(parts_[0]), torch.cat(parts_[-1])
        static = torch.cat(parts_[1]) if len(parts_) == 3 else None
        return Batch(x, static, y)


# -- evaluation -------------------------------------------------------------------------------------


def forecast(network: nn.Module, batch: Batch, chunk: int = 512) -> Tensor:
    """The network's scaled forecast of the targets, (B, horizon, n_targets); a quantile head gives its mean."""
    n_targets = batch.y.shape[-1]
    outs = []
    for part in batch.split(chunk):
        out = network(part.x) if part.static is None else network(part.x, static=part.static)
        outs.append(out.mean(-1) if out.ndim == 4 else out[..., :n_targets])
    return torch.cat(outs)


@torch.no_grad()
def mse(network: nn.Module, batch: Batch, reference: Tensor | None = None) -> float:
    """MSE (scaled) of the network's forecast against the targets, or against ``reference`` (observed targets only)."""
    was = network.training
    network.eval()
    try:
        pred = forecast(network, batch)
    finally:
        network.train(was)
    truth = batch.y if reference is None else reference
    observed = ~torch.isnan(truth)
    return float(((pred - truth)[observed] ** 2).mean())


# -- counting ------------------------------------------------------------------------------------


def count_parameters(obj, nonzero: bool = False) -> int:
    """Parameters of an estimator's network (or of a network): every element, or only the non-zero ones.

    Integer weights of quantised modules (:class:`~tsformers.compress.structure.Int8Linear`, the int8/int4
    ``QuantLinear`` of SimQ-NAS subnets) count as parameters, one per weight however many share a byte;
    index buffers (sparsity positions) and statistics do not.
    """
    network = _network_of(obj)
    tensors = list(network.parameters())
    from tsformers.runtime.quant import QuantLinear
    from tsformers.compress.structure import Int8Linear

    tensors += [t for m in network.modules() if isinstance(m, Int8Linear) for t in (m.weight_int8, m.bias)
                if t is not None]                                   # buffers there, so not in parameters()
    # int4 weights are packed two per byte: count the logical weights, not the bytes
    quantised = [m.dequantized() for m in network.modules() if isinstance(m, QuantLinear)]
    tensors += quantised
    if nonzero:
        return int(sum(int((t != 0).sum()) for t in tensors))
    return int(sum(t.numel() for t in tensors))


def model_size_bytes(obj) -> int:
    """Bytes of the network's state dict (weights and buffers, as saved)."""
    return int(sum(t.numel() * t.element_size() for t in _network_of(obj).state_dict().values()))


_SDPA_REGISTERED = False


def _register_cpu_sdpa_flops() -> None:
    """FlopCounterMode has no formula for the CPU flash-attention op that SDPA dispatches to; add the usual one."""
    global _SDPA_REGISTERED
    if _SDPA_REGISTERED:
        return
    from torch.utils import flop_counter as fc

    aten = torch.ops.aten
    op = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is not None and op not in fc.flop_registry and op.default not in fc.flop_registry:
        @fc.register_flop_formula(op, get_raw=False)
        def _cpu_flash_sdpa(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
            return fc.sdpa_flop_count(query_shape, key_shape, value_shape)
    _SDPA_REGISTERED = True


def count_flops(obj, x: Tensor | None = None, static: Tensor | None = None) -> int:
    """Forward FLOPs (a multiply-add counts 2) of one forecast: of an estimator, for one window by default.

    Uses ``torch.utils.flop_counter.FlopCounterMode`` with a formula for the CPU
    scaled-dot-product-attention kernel (which the stock counter counts as 0),
    plus each module's ``flop_adjustment`` where the counter cannot see the real
    cost (int8 kernels, sparse factors).
    """
    from torch.utils.flop_counter import FlopCounterMode

    _register_cpu_sdpa_flops()
    network = _network_of(obj)
    if x is None:
        f = obj
        check_is_fitted(f, "network_")
        x = torch.zeros(1, f.lookback, f.n_features_in_)
        n_static = f.static_encoder_.n_channels
        if static is None and n_static:
            static = torch.zeros(1, n_static)
    extra = [0]
    handles = [m.register_forward_hook(lambda m, i, o: extra.__setitem__(0, extra[0] + m.flop_adjustment(i, o)))
               for m in network.modules() if hasattr(m, "flop_adjustment")]
    was = network.training
    network.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            network(x) if static is None else network(x, static=static)
    finally:
        network.train(was)
        for h in handles:
            h.remove()
    return int(counter.get_total_flops() + extra[0])


def resolve_budget(budget: float, reference: int, what: str = "flop_budget") -> int:
    """A budget given as a fraction (0, 1] of ``reference``, or as an absolute count (> 1)."""
    if budget <= 0:
        raise ValueError(f"{what} must be positive, got {budget}")
    return int(budget * reference) if budget <= 1 else int(budget)


def one_network(estimator) -> nn.Module:
    """The fitted network of ``estimator``, which the compression methods edit: one network, not a seed ensemble."""
    check_is_fitted(estimator, "network_")
    if isinstance(estimator.network_, SeedEnsemble):
        size = len(estimator.network_.members)
        raise ValueError(f"{type(estimator).__name__} was fitted as a seed ensemble of {size} networks "
                         f"(ensemble_size={size}), and compression edits one network's layers. Fit it with "
                         f"ensemble_size=1 to compress it, or compress one member: set "
                         f"estimator.network_ = estimator.network_.members[0] on a copy first.")
    return estimator.network_


def _network_of(obj) -> nn.Module:
    if isinstance(obj, nn.Module):
        return obj
    check_is_fitted(obj, "network_")
    return obj.network_


# -- the derived estimator ----------------------------------------------------------------------------


def derive(estimator, network: nn.Module, edits: list, record: dict, data: TaskData | None = None,
           params: dict | None = None):
    """A new fitted estimator: ``estimator``'s fitted state with ``network`` (compressed) in place of its own.

    ``edits`` are the structural edits made to a network built from the
    estimator's parameters (appended to those the estimator already carries);
    ``record`` (JSON) is appended to ``compression_`` with the parameter and FLOP
    counts before and after. ``params`` overrides constructor parameters (a smaller
    student). Streaming estimators recompute their state with the new network from
    ``data``'s frame, so ``predict()`` without data then forecasts after that frame's
    end; conformal calibration errors are recomputed from it too.
    """
    if getattr(estimator, "network_used_", True) is False:
        warnings.warn(
            f"{type(estimator).__name__}'s fit kept its linear base alone (correction_share_ = 0): its network "
            "never reaches the forecast, so the compressed model forecasts exactly as the original and the "
            "compression's scores say nothing about accuracy. Compress a fit that uses its network "
            "(network_used_ is True), or one with linear_base=False.", UserWarning, stacklevel=3)
    new = clone(estimator)
    if params:
        new.set_params(**params)
    for key, value in vars(estimator).items():
        if key.endswith("_") and not key.startswith("_") and key != "network_":
            setattr(new, key, copy.deepcopy(value))
    network.eval()
    new.network_ = network
    new.network_edits_ = ([] if params else list(getattr(estimator, "network_edits_", []))) + list(edits)
    before = {"parameters": count_parameters(estimator), "flops": count_flops(estimator)}
    after = {"parameters": count_parameters(new), "flops": count_flops(new)}
    new.compression_ = list(getattr(estimator, "compression_", [])) + [
        {**record, "parameters_before": before["parameters"], "parameters_after": after["parameters"],
         "flops_before": before["flops"], "flops_after": after["flops"]}]
    if data is not None:
        new.refresh(data.prepared)  # the streaming state and conformal errors of the new network
    return new


# -- fine-tuning (through the Lightning module that trains every estimator) -----------------------------


def finetune(estimator, network: nn.Module, data: TaskData, *, epochs: int, learning_rate: float | None = None,
             objective=None) -> list[dict]:
    """Train ``network`` in place for ``epochs`` on ``data`` with the estimator's training settings.

    Runs the estimator's :meth:`~tsformers.estimators.base.BaseForecaster.train_network`
    (Lightning's Trainer and the package's ``ForecastingModule``): the estimator's loss, optimiser, schedule,
    batch size, clipping, seed, early stopping with best weights restored when the
    frame has a validation part. ``objective(module, inputs, pred, y) -> loss``
    replaces the training loss (distillation). Returns the per-epoch log.
    """
    if epochs <= 0:
        return []
    network.train()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        log = estimator.train_network(network, data.prepared, max_epochs=epochs, learning_rate=learning_rate,
                                      objective=objective, verbose=False)
    network.eval()
    return log
