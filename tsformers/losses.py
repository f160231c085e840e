"""Relative distillation objectives: pairwise MarginMSE and listwise InfoNCE.

Hofstätter et al., "Improving Efficient Neural Ranking Models with Cross-Architecture
Knowledge Distillation" (2020) showed that distilling the teacher's *differences*
between pairs (MarginMSE) transfers better than matching its scores pointwise;
InfoNCE (van den Oord et al., "Representation Learning with Contrastive Predictive
Coding", 2018) is the listwise contrastive counterpart. Here they apply to
forecasts and encoder features of windows: ``margin_mse`` distils the teacher's
differences between pairs of windows in a batch, ``info_nce`` contrasts each
student embedding against the batch for contrastive encoder pre-training or
feature distillation. Both are differentiable torch functions, cost O(B^2·D).

(The training losses selected by name, ``"mse"``, ``"mae"``, ``"huber"``, live in
:mod:`tsformers.training.losses`.)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["info_nce", "margin_mse"]


def margin_mse(student: Tensor, teacher: Tensor, pairs: Tensor | None = None) -> Tensor:
    """MarginMSE: mean over pairs (i, j) of ``((s_i - s_j) - (t_i - t_j))^2``.

    Parameters
    ----------
    student, teacher : Tensor of shape (B, ...)
        Outputs (forecasts, scores or features) for the same B windows.
    pairs : LongTensor of shape (P, 2), optional
        The pairs of batch rows to compare; by default every pair ``i < j``.

    Returns
    -------
    Tensor
        A scalar, averaged over pairs and the remaining elements. It is 0 whenever
        ``student = teacher + c`` for any constant ``c`` (broadcast over the batch):
        only the differences between windows are distilled, not their level.
    """
    if student.shape != teacher.shape:
        raise ValueError(f"student and teacher must have the same shape, got {tuple(student.shape)} "
                         f"and {tuple(teacher.shape)}.")
    if student.shape[0] < 2:
        raise ValueError("margin_mse compares pairs of windows: the batch needs at least 2 rows.")
    if pairs is None:
        pairs = torch.triu_indices(student.shape[0], student.shape[0], offset=1, device=student.device).T
    i, j = pairs[:, 0], pairs[:, 1]
    return F.mse_loss(student[i] - student[j], teacher[i] - teacher[j])


def info_nce(query: Tensor, key: Tensor, temperature: float = 0.1, negatives: Tensor | None = None) -> Tensor:
    """InfoNCE: cross-entropy of picking each query's own key among all keys of the batch.

    ``logits[i, k] = cos(q_i, key_k) / temperature`` over the B keys of the batch
    (and the extra ``negatives``, if given); the positive of query i is key i:

        loss = mean_i [ -logits[i, i] + log sum_k exp(logits[i, k]) ]

    Parameters
    ----------
    query, key : Tensor of shape (B, D)
        Row i of ``key`` is the positive of row i of ``query`` (e.g. the student's
        and the teacher's embedding of the same window); inputs of more
        dimensions are flattened to (B, -1).
    temperature : float, default=0.1
    negatives : Tensor of shape (M, D), optional
        Extra negatives for every query.

    Returns
    -------
    Tensor
        A scalar; ``log(B + M)`` when every similarity is equal (the uniform guess).
    """
    q = F.normalize(query.reshape(query.shape[0], -1), dim=-1)
    k = F.normalize(key.reshape(key.shape[0], -1), dim=-1)
    if q.shape != k.shape:
        raise ValueError(f"query and key must have the same shape, got {tuple(q.shape)} and {tuple(k.shape)}.")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}.")
    if negatives is not None:
        k = torch.cat([k, F.normalize(negatives.reshape(negatives.shape[0], -1), dim=-1)])
    logits = q @ k.T / temperature                                         # (B, B + M)
    return F.cross_entropy(logits, torch.arange(q.shape[0], device=q.device))
