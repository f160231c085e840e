"""The baselines a user would reach for, in the same API: magnitude pruning, dynamic int8, plain distillation."""
from __future__ import annotations

import copy
import warnings

import torch
from torch import nn
from torch.nn.utils import prune

from tsformers.compress.core import TaskData, derive, finetune, one_network
from tsformers.compress.structure import Int8Linear, install
from tsformers.compress.units import mlp_units, prune_mlp

__all__ = ["DistillObjective", "distill", "magnitude", "quantize_dynamic"]


def magnitude(estimator, df=None, amount: float = 0.5, structured: bool = False, finetune_epochs: int = 0,
              static_df=None):
    """Magnitude pruning with ``torch.nn.utils.prune``, made permanent.

    ``structured=False``: global L1 unstructured pruning of every Linear weight
    (``prune.global_unstructured``), then ``prune.remove``: the same shapes with
    ``amount`` of the weights zero (fewer non-zero parameters, not fewer FLOPs on a
    dense CPU kernel). ``structured=True``: ``prune.ln_structured`` (L2) on the rows of
    each MLP's first Linear, then those neurons are removed physically. With
    ``finetune_epochs`` (needs ``df``), a short fine-tuning follows (zeros of the
    unstructured variant may then refill). Applies to every estimator.
    """
    if not 0 <= amount < 1:
        raise ValueError(f"amount must be in [0, 1), got {amount}")
    network = copy.deepcopy(one_network(estimator)).eval()
    edits: list = []
    if structured:
        units = mlp_units(network)
        if not units:
            raise ValueError(f"{type(estimator).__name__}'s network has no FeedForward/ConvFFN MLP to prune.")
        for u in units:
            prune.ln_structured(u.module.fc1, "weight", amount=amount, n=2, dim=0)
            keep = u.module.fc1.weight_mask.any(dim=1).nonzero().squeeze(1).tolist()
            prune.remove(u.module.fc1, "weight")
            prune_mlp(network, u, keep or [0], edits)
    else:
        linears = [(m, "weight") for m in network.modules() if type(m) is nn.Linear]
        prune.global_unstructured(linears, pruning_method=prune.L1Unstructured, amount=amount)
        for m, name in linears:
            prune.remove(m, name)
    data = None
    if finetune_epochs:
        if df is None:
            raise ValueError("finetune_epochs needs the training frame df.")
        data = TaskData.from_frame(estimator, df, static_df)
        finetune(estimator, network, data, epochs=finetune_epochs)
    record = {"method": "magnitude", "amount": amount, "structured": structured, "finetune_epochs": finetune_epochs}
    return derive(estimator, network, edits, record, data)


def quantize_dynamic(estimator, df=None):
    """Dynamic int8 quantisation of every Linear with ``torch.ao.quantization.quantize_dynamic``.

    Weights become int8 (per tensor), activations are quantised on the fly in each
    call (CPU kernels: fbgemm/x86 or qnnpack). The quantised layers are stored as
    plain int8 tensors with their scale (:class:`~tsformers.compress.structure.Int8Linear`),
    so the model saves and loads with ``weights_only=True``. Not trainable afterwards.
    Applies to every estimator (its Linear layers; attention kernels and convolutions stay float).
    """
    network = copy.deepcopy(one_network(estimator)).eval()
    paths = [p for p, m in network.named_modules() if type(m) is nn.Linear]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = torch.ao.quantization.quantize_dynamic(copy.deepcopy(network), {nn.Linear}, dtype=torch.qint8)
    edits: list = []
    for path in paths:
        install(network, path, Int8Linear.from_quantized(quantized.get_submodule(path)), edits)
    return derive(estimator, network, edits, {"method": "quantize_dynamic", "layers": len(paths)})


class DistillObjective:
    """Training loss of a student: ``alpha`` · loss(student, truth) + (1 − alpha) · MSE(student, teacher).

    The teacher is frozen and kept out of the student's module tree (and its checkpoints).
    """

    def __init__(self, teacher: nn.Module, alpha: float = 0.5):
        self._teacher = [teacher.eval().requires_grad_(False)]
        self.alpha = alpha

    def __call__(self, module, inputs, pred, y):
        teacher = self._teacher[0].to(pred.device)
        with torch.no_grad():
            x, *static = inputs
            target = teacher(x) if not static else teacher(x, static=static[0])
            target = target[..., : pred.shape[-1]] if target.ndim == 3 else target   # the targets' channels
        soft = ((pred - target) ** 2).mean()
        return self.alpha * module.masked_loss(pred, y) + (1 - self.alpha) * soft


def distill(estimator, df, alpha: float = 0.5, epochs: int | None = None, learning_rate: float | None = None,
            static_df=None, **smaller_params):
    """Plain knowledge distillation into a smaller model of the same class.

    The student is the estimator's class with ``smaller_params`` changed (e.g.
    ``d_model=8, d_ff=16``), a fresh network seeded by ``random_state``, trained
    on ``df`` through the estimator's Lightning training for ``epochs`` (default: the
    estimator's ``max_epochs``) on ``alpha`` · task loss + (1 − alpha) · MSE to the
    teacher's forecast. The student saves and loads as an ordinary estimator with
    those parameters. Applies to every estimator.
    """
    if not smaller_params:
        raise ValueError("name the student's smaller parameters, e.g. distill(f, df, d_model=16, d_ff=32).")
    data = TaskData.from_frame(estimator, df, static_df)
    network = estimator.new_network(**smaller_params)
    log = finetune(estimator, network, data, epochs=estimator.max_epochs if epochs is None else epochs,
                   learning_rate=learning_rate, objective=DistillObjective(copy.deepcopy(one_network(estimator)), alpha))
    record = {"method": "distill", "alpha": alpha, "student": smaller_params,
              "val_loss": log[-1].get("val_loss") if log else None}
    return derive(estimator, network, [], record, data, params=smaller_params)
