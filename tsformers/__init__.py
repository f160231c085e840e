"""tsformers: multivariate time-series forecasting with research transformers behind scikit-learn estimators.

>>> from tsformers import GateformerForecaster
>>> from tsformers.datasets import load_dataset, make_demo
"""
from tsformers.estimators import (AtlasForecaster, BaseForecaster, GateformerForecaster, GBMForecaster,
                                  GTrXLForecaster, LinearForecaster, LMUFormerForecaster, ModelFileError,
                                  NaiveForecaster, PVClientForecaster, SeasonalNaiveForecaster)
from tsformers._version import __version__
from tsformers.model_selection import RollingOriginSplit

__all__ = ["AtlasForecaster", "BaseForecaster", "GBMForecaster", "GTrXLForecaster", "GateformerForecaster",
           "LMUFormerForecaster", "LinearForecaster", "ModelFileError", "NaiveForecaster", "PVClientForecaster", "RollingOriginSplit",
           "SeasonalNaiveForecaster", "__version__"]
