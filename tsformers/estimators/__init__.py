"""The public estimators."""
from tsformers.estimators.base import BaseForecaster
from tsformers.estimators.gateformer import GateformerForecaster
from tsformers.estimators.gtrxl import GTrXLForecaster
from tsformers.estimators.persistence import ModelFileError
from tsformers.estimators.pvclient import PVClientForecaster

__all__ = ["BaseForecaster", "GTrXLForecaster", "GateformerForecaster", "ModelFileError", "PVClientForecaster"]
