"""The public estimators."""
from tsformers.estimators.base import BaseForecaster
from tsformers.estimators.gateformer import GateformerForecaster

__all__ = ["BaseForecaster", "GateformerForecaster"]
