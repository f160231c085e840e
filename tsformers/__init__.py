"""tsformers: multivariate time-series forecasting with research transformers behind scikit-learn estimators.

>>> from tsformers import GateformerForecaster
>>> from tsformers.datasets import load_dataset, make_demo
"""
from tsformers.estimators import (AtlasForecaster, BaseForecaster, ETSForecaster, GateformerForecaster,
                                  GBMForecaster, GTrXLForecaster, LinearForecaster, LMUFormerForecaster,
                                  ModelFileError, NaiveForecaster, PVClientForecaster, SeasonalNaiveForecaster)
from tsformers._version import __version__
from tsformers.model_selection import RollingOriginSplit
from tsformers import metrics, model_selection  # noqa: F401 - tsformers.metrics.mase after import tsformers

__all__ = ["AtlasForecaster", "BaseForecaster", "ETSForecaster", "GBMForecaster", "GTrXLForecaster",
           "GateformerForecaster", "LMUFormerForecaster", "LinearForecaster", "ModelFileError", "NaiveForecaster",
           "PVClientForecaster", "RollingOriginSplit", "SeasonalNaiveForecaster", "__version__"]
