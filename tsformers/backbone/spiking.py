"""Spiking neurons: multi-step leaky integrate-and-fire over the token axis, and a spike-rate counter.

References
----------
Fang et al., "SpikingJelly: An open-source machine learning infrastructure platform for
spike-based intelligence", Science Advances 2023 (``MultiStepLIFNode``: its dynamics,
hard reset and the sigmoid surrogate gradient reproduced here).
Neftci, Mostafa & Zenke, "Surrogate Gradient Learning in Spiking Neural Networks", IEEE
Signal Processing Magazine 2019.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .registry import register

__all__ = ["LIFNode", "SpikeRateCounter", "spike"]


class _SigmoidSurrogateSpike(torch.autograd.Function):
    """Heaviside forward, dΘ/dx ≈ α·σ(αx)·(1 - σ(αx)) backward."""

    @staticmethod
    def forward(ctx, x: Tensor, alpha: float) -> Tensor:
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(ctx.alpha * x)
        return grad * ctx.alpha * s * (1 - s), None


def spike(x: Tensor, alpha: float = 4.0) -> Tensor:
    """Θ(x) (1 where x >= 0, else 0) with the sigmoid surrogate gradient of slope ``alpha``."""
    return _SigmoidSurrogateSpike.apply(x, alpha)


@register("neuron", "lif")
class LIFNode(nn.Module):
    """Leaky integrate-and-fire neurons, run over the token axis (spikingjelly's MultiStepLIFNode).

    For each token t, with membrane v and input x_t:

        h_t = v_{t-1} + (x_t - (v_{t-1} - v_reset)) / tau        (charge, leak towards v_reset)
        s_t = Θ(h_t - v_threshold)                                 (fire; surrogate gradient backward)
        v_t = h_t·(1 - s_t) + v_reset·s_t                          (hard reset; s_t detached if detach_reset)

    ``forward(x, v=None) -> (spikes, v)``: x (B, T, C) -> binary spikes (B, T, C) and the
    membrane after the last token (B, C); v = v_reset where None. Cost O(T·C), sequential
    in T (the reset makes it nonlinear), exact for streaming.

    Parameters
    ----------
    tau : float, default=2.0
    v_threshold : float, default=1.0
    v_reset : float, default=0.0
    surrogate_alpha : float, default=4.0
        Slope of the sigmoid surrogate gradient.
    detach_reset : bool, default=True
        Let no gradient flow through the reset.
    """

    def __init__(self, *, tau: float = 2.0, v_threshold: float = 1.0, v_reset: float = 0.0,
                 surrogate_alpha: float = 4.0, detach_reset: bool = True):
        super().__init__()
        assert tau >= 1.0, f"tau must be >= 1 (the leak is 1/tau per token), got {tau}"
        assert v_threshold > v_reset, f"v_threshold ({v_threshold}) must exceed v_reset ({v_reset})"
        self.tau, self.v_threshold, self.v_reset = tau, v_threshold, v_reset
        self.surrogate_alpha, self.detach_reset = surrogate_alpha, detach_reset

    def extra_repr(self) -> str:
        return f"tau={self.tau}, v_threshold={self.v_threshold}, v_reset={self.v_reset}"

    def init_state(self, batch_size: int, n_channels: int) -> Tensor:
        return torch.full((batch_size, n_channels), self.v_reset)

    def forward(self, x: Tensor, v: Tensor | None = None) -> tuple[Tensor, Tensor]:
        assert x.ndim == 3, f"LIFNode expects x: (batch, time, channels), got shape {tuple(x.shape)}"
        v = torch.full_like(x[:, 0], self.v_reset) if v is None else v
        return _MultiStepLIF.apply(x, v, self.tau, self.v_threshold, self.v_reset, self.surrogate_alpha,
                                   self.detach_reset)                    # (B, T, C), (B, C)


class _MultiStepLIF(torch.autograd.Function):
    """The LIF recurrence over T tokens with a hand-written backward (one loop each way, no graph per step).

    Forward, per token: h_t = v_{t-1} + (x_t - (v_{t-1} - v_reset))/tau, s_t = Θ(h_t - v_th),
    v_t = h_t (1 - s_t) + v_reset s_t. Backward, from the last token down, with σ'_t the sigmoid
    surrogate at h_t - v_th:
    dL/dh_t = dL/ds_t σ'_t + dL/dv_t (1 - s_t) [- dL/dv_t (h_t - v_reset) σ'_t without detach_reset],
    dL/dx_t = dL/dh_t / tau,  dL/dv_{t-1} = dL/dh_t (1 - 1/tau).
    """

    @staticmethod
    def forward(ctx, x, v, tau, v_threshold, v_reset, alpha, detach_reset):
        decay = 1.0 - 1.0 / tau
        drive = (x + v_reset) / tau                                           # (B, T, C)
        hs, spikes = [], []
        for drive_t in drive.unbind(dim=1):
            h = torch.add(drive_t, v, alpha=decay)                            # charge and leak
            s = (h >= v_threshold).to(x.dtype)                                # fire
            v = torch.where(s.bool(), torch.full_like(h, v_reset), h)         # hard reset
            hs.append(h)
            spikes.append(s)
        h, spikes = torch.stack(hs, dim=1), torch.stack(spikes, dim=1)
        ctx.save_for_backward(h, spikes)
        ctx.constants = (tau, v_threshold, v_reset, alpha, detach_reset)
        return spikes, v

    @staticmethod
    def backward(ctx, grad_spikes, grad_v):
        h, spikes = ctx.saved_tensors
        tau, v_threshold, v_reset, alpha, detach_reset = ctx.constants
        sig = torch.sigmoid(alpha * (h - v_threshold))
        surrogate = alpha * sig * (1 - sig)                                   # (B, T, C)
        grad_spikes = torch.zeros_like(h) if grad_spikes is None else grad_spikes
        grad_v = torch.zeros_like(h[:, 0]) if grad_v is None else grad_v
        keep = 1 - spikes
        grad_h = torch.empty_like(h)
        for t in range(h.shape[1] - 1, -1, -1):
            g = grad_spikes[:, t] * surrogate[:, t] + grad_v * keep[:, t]
            if not detach_reset:
                g = g - grad_v * (h[:, t] - v_reset) * surrogate[:, t]
            grad_h[:, t] = g
            grad_v = g * (1.0 - 1.0 / tau)                                    # to v_{t-1}
        return grad_h / tau, grad_v, None, None, None, None, None


class SpikeRateCounter:
    """Count the spikes every :class:`LIFNode` inside ``module`` emits while the context is open::

        with SpikeRateCounter(model) as counter:
            model(x)
        counter.rate      # fraction of non-zero spikes over all neurons and tokens
        counter.binary    # True if every emitted value was 0 or 1

    ``per_layer`` maps each LIF's qualified name to its own rate.
    """

    def __init__(self, module: nn.Module):
        self.layers = {name: m for name, m in module.named_modules() if isinstance(m, LIFNode)}
        assert self.layers, f"{type(module).__name__} has no LIFNode to count"
        self._handles: list = []
        self.reset()

    def reset(self) -> None:
        self.counts = {name: [0, 0] for name in self.layers}               # name -> [non-zero, total]
        self.binary = True

    def __enter__(self) -> SpikeRateCounter:
        for name, layer in self.layers.items():
            self._handles.append(layer.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, name: str):
        def record(module, inputs, output):
            spikes = output[0].detach()
            self.counts[name][0] += int(torch.count_nonzero(spikes))
            self.counts[name][1] += spikes.numel()
            self.binary &= bool(((spikes == 0) | (spikes == 1)).all())
        return record

    @property
    def rate(self) -> float:
        fired, total = (sum(c[i] for c in self.counts.values()) for i in (0, 1))
        return fired / total if total else float("nan")

    @property
    def per_layer(self) -> dict[str, float]:
        return {name: (f / t if t else float("nan")) for name, (f, t) in self.counts.items()}
