"""The public estimators.

Each is imported on first use (PEP 562): ``import tsformers.estimators`` (or a module
below it, such as :mod:`tsformers.estimators.modelfile`) does not import torch or
scikit-learn; ``from tsformers.estimators import GateformerForecaster`` does.
"""
import importlib

#: Public name -> the module that defines it.
_EXPORTS = {
    "AtlasForecaster": "tsformers.estimators.atlas",
    "BaseForecaster": "tsformers.estimators.base",
    "LinearForecaster": "tsformers.estimators.baselines",
    "NaiveForecaster": "tsformers.estimators.baselines",
    "SeasonalNaiveForecaster": "tsformers.estimators.baselines",
    "ETSForecaster": "tsformers.estimators.ets",
    "GBMForecaster": "tsformers.estimators.gbm",
    "GateformerForecaster": "tsformers.estimators.gateformer",
    "GTrXLForecaster": "tsformers.estimators.gtrxl",
    "LMUFormerForecaster": "tsformers.estimators.lmuformer",
    "ModelFileError": "tsformers.estimators.modelfile",
    "PVClientForecaster": "tsformers.estimators.pvclient",
}

__all__ = ["AtlasForecaster", "BaseForecaster", "ETSForecaster", "GBMForecaster", "GTrXLForecaster",
           "GateformerForecaster", "LMUFormerForecaster", "LinearForecaster", "ModelFileError", "NaiveForecaster",
           "PVClientForecaster", "SeasonalNaiveForecaster"]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
