"""The public estimators."""
from tsformers.estimators.atlas import AtlasForecaster
from tsformers.estimators.base import BaseForecaster
from tsformers.estimators.baselines import LinearForecaster, NaiveForecaster, SeasonalNaiveForecaster
from tsformers.estimators.ets import ETSForecaster
from tsformers.estimators.gateformer import GateformerForecaster
from tsformers.estimators.gbm import GBMForecaster
from tsformers.estimators.gtrxl import GTrXLForecaster
from tsformers.estimators.lmuformer import LMUFormerForecaster
from tsformers.estimators.modelfile import ModelFileError
from tsformers.estimators.pvclient import PVClientForecaster

__all__ = ["AtlasForecaster", "BaseForecaster", "ETSForecaster", "GBMForecaster", "GTrXLForecaster",
           "GateformerForecaster", "LMUFormerForecaster", "LinearForecaster", "ModelFileError", "NaiveForecaster",
           "PVClientForecaster", "SeasonalNaiveForecaster"]
