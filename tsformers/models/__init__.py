"""The networks: plain ``torch.nn.Module``s mapping (batch, lookback, n_vars) to (batch, horizon, n_targets)."""

from .gateformer import Gateformer
from .gtrxl import GTrXL
from .pvclient import PVClient

__all__ = ["GTrXL", "Gateformer", "PVClient"]
