"""DSFormer: each Linear weight as a dense–sparse product W ≈ D·S, learnt on the task loss."""
from __future__ import annotations

import copy
import re

import torch
from torch import Tensor, nn

from tsformers.compress.core import TaskData, derive, finetune, one_network
from tsformers.compress.structure import FactorizedLinear, install

__all__ = ["STEFactorizedLinear", "dsformer", "sparsity_mask"]


def sparsity_mask(s: Tensor, nnz_per_col: int | None = None, n_m: tuple[int, int] | None = None) -> Tensor:
    """The boolean support of S (rank × in) kept by magnitude: ``nnz_per_col`` largest entries of every column,
    or ``n_m = (N, M)``: the N largest of every M consecutive entries of a row."""
    a = s.detach().abs()
    if nnz_per_col is not None:
        top = a.topk(nnz_per_col, dim=0).indices                                   # (nnz, in)
        return torch.zeros_like(a, dtype=torch.bool).scatter(0, top, True)
    n, m = n_m
    groups = a.reshape(a.shape[0], -1, m)                                           # (rank, in/M, M)
    top = groups.topk(n, dim=-1).indices
    return torch.zeros_like(groups, dtype=torch.bool).scatter(-1, top, True).reshape(a.shape)


class STEFactorizedLinear(nn.Module):
    """The Straight-Through Factorizer during training: x ↦ D·proj(S)·x + b.

    proj keeps the sparsity pattern's largest-magnitude entries of S; the backward pass
    treats the projection as the identity, so every entry of S keeps learning and the
    support can move. ``finalize()`` gives the compact :class:`FactorizedLinear`.
    """

    def __init__(self, linear: nn.Linear, rank: int, nnz_per_col: int | None, n_m: tuple[int, int] | None):
        super().__init__()
        self.nnz_per_col, self.n_m = nnz_per_col, n_m
        w = linear.weight.detach()
        u, sv, vh = torch.linalg.svd(w, full_matrices=False)           # start from the best rank-r factors
        root = sv[:rank].sqrt()
        self.dense = nn.Parameter(u[:, :rank] * root)                  # (out, rank)
        self.sparse = nn.Parameter(root[:, None] * vh[:rank])          # (rank, in), projected in forward
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone())

    def projected(self) -> Tensor:
        mask = sparsity_mask(self.sparse, self.nnz_per_col, self.n_m)
        hard = self.sparse * mask
        return self.sparse + (hard - self.sparse).detach()              # forward: hard; backward: identity

    @property
    def weight(self) -> Tensor:
        return self.dense @ self.projected()

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.linear(nn.functional.linear(x, self.projected()), self.dense, self.bias)

    @torch.no_grad()
    def finalize(self) -> FactorizedLinear:
        mask = sparsity_mask(self.sparse, self.nnz_per_col, self.n_m)
        positions = mask.flatten().nonzero().squeeze(1)
        out = FactorizedLinear(self.sparse.shape[1], self.dense.shape[0], self.dense.shape[1], len(positions),
                               bias=self.bias is not None)
        out.dense.copy_(self.dense)
        out.values.copy_(self.sparse.flatten()[positions])
        out.positions.copy_(positions)
        if self.bias is not None:
            out.bias.copy_(self.bias)
        return out


def dsformer(estimator, df, rank: int = 8, nnz_per_col: int | None = 2, n_m: tuple[int, int] | None = None,
             epochs: int = 1, layers=None, learning_rate: float | None = None, static_df=None):
    """DSFormer: replace Linear layers by dense–sparse factors W ≈ D·S trained on the task loss.

    D is dense (out × ``rank``), S (``rank`` × in) semi-structured sparse with either
    exactly ``nnz_per_col`` non-zeros in every column, or N:M sparsity ``n_m=(N, M)``
    along its rows (every M consecutive inputs of a row keep N). The factors start
    from the truncated SVD of W and are then learnt jointly on the estimator's
    training loss over ``df`` for ``epochs`` epochs (Lightning, the estimator's
    settings) with the straight-through factorizer (:class:`STEFactorizedLinear`):
    the support of S follows the largest magnitudes and may change while training.
    The result stores S compactly (values and positions): parameters d_out·rank +
    nnz(S) (+ bias) per layer.

    Layers: every ``nn.Linear`` whose path matches one of the regular expressions in
    ``layers`` (default: all), where the factors are smaller than the dense weight
    (and, for N:M, the input width is a multiple of M). Applies to every estimator.

    References
    ----------
    Chand et al., "DSFormer: Effective Compression of Text-Transformers by Dense-Sparse
    Weight Factorization", 2023.
    """
    if (nnz_per_col is None) == (n_m is None):
        raise ValueError("give exactly one of nnz_per_col and n_m=(N, M).")
    if nnz_per_col is not None and not 1 <= nnz_per_col <= rank:
        raise ValueError(f"nnz_per_col must be in [1, rank={rank}], got {nnz_per_col}")
    if n_m is not None and not (len(n_m) == 2 and 1 <= n_m[0] <= n_m[1]):
        raise ValueError(f"n_m must be (N, M) with 1 <= N <= M, got {n_m}")
    data = TaskData.from_frame(estimator, df, static_df)
    network = copy.deepcopy(one_network(estimator))
    patterns = None if layers is None else [re.compile(p) for p in ([layers] if isinstance(layers, str) else layers)]
    chosen = []
    for path, m in network.named_modules():
        if type(m) is not nn.Linear or (patterns and not any(p.search(path) for p in patterns)):
            continue
        d_out, d_in = m.out_features, m.in_features
        if rank >= min(d_out, d_in) or (n_m is not None and d_in % n_m[1]):
            continue
        nnz = nnz_per_col * d_in if nnz_per_col is not None else rank * d_in * n_m[0] // n_m[1]
        if d_out * rank + nnz < d_out * d_in:
            chosen.append(path)
    if not chosen:
        raise ValueError(f"no Linear layer of {type(estimator).__name__} gets smaller with rank={rank}; "
                         f"lower the rank or the non-zeros.")
    for path in chosen:
        network.set_submodule(path, STEFactorizedLinear(network.get_submodule(path), rank, nnz_per_col, n_m))
    log = finetune(estimator, network, data, epochs=epochs, learning_rate=learning_rate)
    edits: list = []
    for path in chosen:
        install(network, path, network.get_submodule(path).finalize(), edits)
    record = {"method": "dsformer", "rank": rank, "nnz_per_col": nnz_per_col, "n_m": None if n_m is None else list(n_m),
              "layers": chosen, "epochs": epochs, "val_loss": log[-1].get("val_loss") if log else None}
    return derive(estimator, network, edits, record, data)
