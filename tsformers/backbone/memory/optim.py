"""Inner optimisers of a test-time memory: one step on the memory weights from a gradient.

Both follow the ATLAS update (Behrouz et al., arXiv 2505.23735), written for a
list of batched weight matrices (one memory per row):

    S_t = theta_t S_{t-1} + G_t                    (momentum of the gradient G_t)
    M_t = alpha_t M_{t-1} - eta_t  O(S_t)          (retention alpha, step size eta)

with O = identity for plain momentum gradient descent ("momentum") and O = the
Newton-Schulz orthogonalisation of Muon for ATLAS's Muon-style update ("muon").
theta, alpha, eta are per row (input-dependent gates computed by the memory layer).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tsformers.backbone.registry import register

__all__ = ["MomentumUpdate", "MuonUpdate", "newton_schulz"]

# The quintic iteration's coefficients of Muon (Jordan et al., 2024), as ATLAS uses them.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def newton_schulz(g: Tensor, *, steps: int = 5, eps: float = 1e-7) -> Tensor:
    """Approximate orthogonalisation of each matrix in a batch: G = U S V^T -> about U V^T.

    The Newton-Schulz iteration of Muon: scale X = G / ||G||_F (so every singular
    value is at most 1), then repeat X <- a X + (b A + c A^2) X with A = X X^T and
    (a, b, c) = (3.4445, -4.7750, 2.0315). That quintic pushes every singular
    value into roughly [0.7, 1.2] within 5 steps while keeping the singular
    vectors. Tall matrices are transposed first so that A is the smaller Gram
    matrix. Cost O(steps * m^2 n) per m x n matrix (m <= n), differentiable.

    g: (..., m, n) -> (..., m, n). A zero matrix stays zero (its gradient stays finite).
    """
    assert g.ndim >= 2, f"newton_schulz needs matrices (..., m, n), got shape {tuple(g.shape)}"
    a, b, c = NS_COEFFICIENTS
    tall = g.shape[-2] > g.shape[-1]
    x = g.mT if tall else g
    x = x * torch.rsqrt(x.square().sum(dim=(-2, -1), keepdim=True) + eps**2)  # ||X||_F <= 1, finite at 0
    for _ in range(steps):
        gram = x @ x.mT                                                          # (..., m, m)
        poly = torch.baddbmm(gram, gram, gram, beta=b, alpha=c) if x.ndim == 3 else b * gram + c * gram @ gram
        x = torch.baddbmm(x, poly, x, beta=a) if x.ndim == 3 else a * x + poly @ x
    return x.mT if tall else x


class _MemoryUpdate(nn.Module):
    """S <- theta S + G;  M <- alpha M - eta O(S), for each weight matrix of a batched memory."""

    def orthogonalise(self, s: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, weights: list[Tensor], momenta: list[Tensor], grads: list[Tensor], *, eta: Tensor,
                theta: Tensor, alpha: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """One step. weights, momenta, grads: lists of (R, m, n); eta, theta, alpha: (R,).

        Returns the new (weights, momenta).
        """
        eta, theta, alpha = (g[:, None, None] for g in (eta, theta, alpha))    # (R, 1, 1)
        new_weights, new_momenta = [], []
        for w, s, g in zip(weights, momenta, grads, strict=True):
            s = theta * s + g
            new_momenta.append(s)
            new_weights.append(alpha * w - eta * self.orthogonalise(s))
        return new_weights, new_momenta


@register("memory_optimizer", "momentum")
class MomentumUpdate(_MemoryUpdate):
    """Momentum gradient descent with weight decay on the memory (the Titans update, reparametrised).

    Titans (Behrouz et al., arXiv 2501.00663): S_t = theta S_{t-1} + G_t,
    M_t = alpha M_{t-1} - eta S_t. With theta = 0 it is the delta rule with
    forgetting. Cost O(size of the memory) per step.
    """

    def __init__(self, *, ns_steps: int | None = None):
        super().__init__()  # ns_steps is accepted so that every memory optimiser builds alike; unused here

    def orthogonalise(self, s: Tensor) -> Tensor:
        return s


@register("memory_optimizer", "muon")
class MuonUpdate(_MemoryUpdate):
    """The Muon-style memory update of ATLAS: momentum, then Newton-Schulz orthogonalisation of it.

    ATLAS (Behrouz et al., arXiv 2505.23735): M_t = alpha M_{t-1} - eta NS_k(S_t).
    The step's size is set by eta alone: every singular value of NS_k(S) is near 1.
    Cost O(ns_steps * m^2 n) per m x n weight matrix and step.
    """

    def __init__(self, *, ns_steps: int = 5):
        super().__init__()
        assert ns_steps >= 1, f"ns_steps must be at least 1, got {ns_steps}"
        self.ns_steps = ns_steps

    def orthogonalise(self, s: Tensor) -> Tensor:
        return newton_schulz(s, steps=self.ns_steps)
