"""The networks: plain ``torch.nn.Module``s mapping (batch, lookback, n_vars) to (batch, horizon, n_targets)."""

from .atlas import Atlas
from .baselines import ETS, Linear, Naive, SeasonalNaive
from .gateformer import Gateformer
from .gbm import GBMWindow, TreeEnsemble
from .gtrxl import GTrXL
from .lmuformer import LMUFormer
from .pvclient import PVClient

__all__ = ["Atlas", "ETS", "GBMWindow", "GTrXL", "Gateformer", "LMUFormer", "Linear", "Naive", "PVClient",
           "SeasonalNaive", "TreeEnsemble"]
