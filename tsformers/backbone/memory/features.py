"""Feature maps applied to the keys and queries of an associative memory, for capacity.

References
----------
Behrouz et al., "ATLAS: Learning to Optimally Memorize the Context at Test Time",
arXiv 2505.23735, 2025 (section on memory capacity: polynomial feature maps).
"""

from __future__ import annotations

import math
from collections import Counter
from itertools import combinations_with_replacement

import torch
from torch import Tensor, nn

from tsformers.backbone.registry import register

__all__ = ["PolynomialFeatures", "polynomial_dim"]


def polynomial_dim(d: int, degree: int) -> int:
    """Number of monomials of degree 0..``degree`` in ``d`` variables: sum_i C(d + i - 1, i)."""
    return sum(math.comb(d + i - 1, i) for i in range(degree + 1))


@register("feature_map", "polynomial")
class PolynomialFeatures(nn.Module):
    """All monomials of degree 0..p of a vector, scaled per degree: phi_p(x) = [a_i m_i(x)]_{i=0..p}.

    ATLAS (Behrouz et al., 2025, arXiv 2505.23735): a matrix memory under the
    delta rule stores O(d_k) independent key/value pairs; mapping keys and
    queries through a degree-p polynomial raises that to O(d_k^p). m_i(x) holds
    the C(d+i-1, i) distinct monomials of degree i, each multiplied by the square
    root of its multinomial coefficient, so that m_i(q) . m_i(k) = (q . k)^i.
    The learnable per-degree scales a_i start at 1/sqrt(i!), so that at
    initialisation

        phi(q) . phi(k) = sum_i a_i^2 (q . k)^i = sum_{i<=p} (q . k)^i / i!,

    the degree-p Taylor expansion of the softmax kernel exp(q . k) that the paper
    uses to motivate the map (its kernel coefficients a_i^2 start at 1/i!).

    Cost O(d^p) per token, no token mixing. x: (..., d) -> (..., polynomial_dim(d, p)).
    """

    def __init__(self, d: int, *, degree: int = 2, learnable: bool = True):
        super().__init__()
        assert d >= 1 and degree >= 1, f"need d >= 1 and degree >= 1, got d={d}, degree={degree}"
        self.d, self.degree = d, degree
        self.d_out = polynomial_dim(d, degree)
        scales = torch.tensor([1 / math.sqrt(math.factorial(i)) for i in range(degree + 1)])
        self.scales = nn.Parameter(scales) if learnable else nn.Parameter(scales, requires_grad=False)
        for i in range(1, degree + 1):
            combos = list(combinations_with_replacement(range(d), i))
            index = torch.tensor(combos, dtype=torch.long)                            # (C(d+i-1, i), i)
            weight = torch.tensor([math.sqrt(_multinomial(c)) for c in combos])       # (C(d+i-1, i),)
            self.register_buffer(f"index{i}", index, persistent=False)
            self.register_buffer(f"weight{i}", weight, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        assert x.shape[-1] == self.d, f"PolynomialFeatures was built for d={self.d}, got {x.shape[-1]}"
        blocks = [self.scales[0] * torch.ones_like(x[..., :1])]                         # degree 0: (..., 1)
        for i in range(1, self.degree + 1):
            monomials = x[..., getattr(self, f"index{i}")].prod(dim=-1)                # (..., C(d+i-1, i))
            blocks.append(self.scales[i] * getattr(self, f"weight{i}") * monomials)
        return torch.cat(blocks, dim=-1)                                                 # (..., d_out)


def _multinomial(combo: tuple[int, ...]) -> int:
    """Number of orderings of a multiset of indices: i! / prod(count_j!)."""
    counts = Counter(combo).values()
    return math.factorial(len(combo)) // math.prod(math.factorial(c) for c in counts)
