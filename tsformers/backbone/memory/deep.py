"""A deep associative memory: an MLP whose weights are the state, written by gradient steps.

Written functionally: the weights are explicit batched tensors, one memory per
row (a series, a head), passed in and returned, so that a forecaster can carry
them as streaming state and every row learns on its own. The gradient of the
associative loss is computed in closed form (backpropagation through the MLP
written out), so it needs no autograd at test time (it runs under
``torch.inference_mode``) and stays differentiable for training the outer weights.

References
----------
Behrouz, Zhong & Mirrokni, "Titans: Learning to Memorize at Test Time", arXiv 2501.00663, 2025.
Behrouz et al., "ATLAS: Learning to Optimally Memorize the Context at Test Time", arXiv 2505.23735, 2025.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["DeepMemory", "associative_loss", "memory_grad", "memory_read"]

_SQRT_2PI = math.sqrt(2 * math.pi)


def _gelu(z: Tensor) -> Tensor:
    return nn.functional.gelu(z)


def _gelu_grad(z: Tensor) -> Tensor:
    """d gelu(z) / dz for the exact (erf) GELU: Phi(z) + z phi(z)."""
    return 0.5 * (1 + torch.erf(z / math.sqrt(2))) + z * torch.exp(-0.5 * z * z) / _SQRT_2PI


def _silu_grad(z: Tensor) -> Tensor:
    s = torch.sigmoid(z)
    return s * (1 + z * (1 - s))


ACTIVATIONS = {"gelu": (_gelu, _gelu_grad), "silu": (nn.functional.silu, _silu_grad)}


def _forward(weights: list[Tensor], u: Tensor, activation: str) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """The MLP with its intermediates: output, layer inputs a_0..a_{L-1}, pre-activations z_1..z_{L-1}."""
    act = ACTIVATIONS[activation][0]
    inputs, pre = [u], []
    a = u
    for i, w in enumerate(weights):
        z = a @ w                                                   # (R, n, d_i) @ (R, d_i, d_{i+1})
        if i == len(weights) - 1:
            return z, inputs, pre
        pre.append(z)
        a = act(z)
        inputs.append(a)
    raise AssertionError("a memory needs at least one weight matrix")


def memory_read(weights: list[Tensor], u: Tensor, *, activation: str = "gelu") -> Tensor:
    """M(u): the memory's forward pass with no update. weights[i]: (R, d_i, d_{i+1}); u: (R, n, d_0) -> (R, n, d_L)."""
    return _forward(weights, u, activation)[0]


def associative_loss(weights: list[Tensor], u: Tensor, v: Tensor, omega: Tensor, *,
                     activation: str = "gelu") -> Tensor:
    """sum_i omega_i ||M(u_i) - v_i||^2 per row. u: (R, n, d_0), v: (R, n, d_L), omega: (R, n) -> (R,)."""
    err = memory_read(weights, u, activation=activation) - v
    return (omega * err.square().sum(dim=-1)).sum(dim=-1)


def memory_grad(weights: list[Tensor], u: Tensor, v: Tensor, omega: Tensor, *,
                activation: str = "gelu") -> list[Tensor]:
    """Gradient of :func:`associative_loss` with respect to each weight matrix, in closed form.

    With a_0 = u, z_i = a_{i-1} W_i, a_i = act(z_i) and output o = z_L:
    delta_L = 2 omega (o - v), dW_i = a_{i-1}^T delta_i, delta_{i-1} = (delta_i W_i^T) * act'(z_{i-1}).
    Cost O(n * sum_i d_i d_{i+1}) per row, like one forward and backward pass.
    Returns a list shaped like ``weights``.
    """
    act_grad = ACTIVATIONS[activation][1]
    out, inputs, pre = _forward(weights, u, activation)
    delta = 2 * omega[..., None] * (out - v)                        # (R, n, d_L)
    grads = [None] * len(weights)
    for i in range(len(weights) - 1, -1, -1):
        grads[i] = inputs[i].mT @ delta                             # (R, d_i, n) @ (R, n, d_{i+1})
        if i:
            delta = (delta @ weights[i].mT) * act_grad(pre[i - 1])  # (R, n, d_i)
    return grads


class DeepMemory(nn.Module):
    """An MLP memory M(u) = act(... act(u W_1) ...) W_L whose weights are the recurrent state.

    Titans / ATLAS (Behrouz et al., 2025): the memory is a deep network (``depth``
    >= 1 weight matrices, no biases; 1 is a matrix memory) written at test time
    by gradient steps on the associative loss ||M(k) - v||^2 and read by a plain
    forward pass M(q). This module holds only the learned *initial* weights, one
    set per head (meta-learned, as in Titans and TTT); the current weights are
    batched tensors (R, d_i, d_{i+1}) passed to :meth:`read` and :meth:`grad`,
    with R = rows x heads. Cost per token O(sum_i d_i d_{i+1}).
    """

    def __init__(self, d_in: int, d_out: int, *, depth: int = 2, d_hidden: int | None = None, n_heads: int = 1,
                 activation: str = "gelu"):
        super().__init__()
        assert depth >= 1, f"a memory needs depth >= 1, got {depth}"
        assert activation in ACTIVATIONS, f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}"
        d_hidden = d_hidden or 4 * d_out
        self.dims = [d_in] + [d_hidden] * (depth - 1) + [d_out]
        self.n_heads, self.activation = n_heads, activation
        self.init_weights = nn.ParameterList(
            nn.Parameter(torch.randn(n_heads, d_i, d_next) / math.sqrt(d_i))
            for d_i, d_next in zip(self.dims[:-1], self.dims[1:])
        )

    def initial(self, rows: int) -> list[Tensor]:
        """The initial weights for ``rows`` independent memories per head: each (rows * n_heads, d_i, d_{i+1})."""
        return [w.expand(rows, *w.shape).reshape(rows * self.n_heads, *w.shape[1:]) for w in self.init_weights]

    def read(self, weights: list[Tensor], u: Tensor) -> Tensor:
        return memory_read(weights, u, activation=self.activation)

    def grad(self, weights: list[Tensor], u: Tensor, v: Tensor, omega: Tensor) -> list[Tensor]:
        return memory_grad(weights, u, v, omega, activation=self.activation)

    def loss(self, weights: list[Tensor], u: Tensor, v: Tensor, omega: Tensor) -> Tensor:
        return associative_loss(weights, u, v, omega, activation=self.activation)
