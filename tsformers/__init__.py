"""tsformers: multivariate time-series forecasting with research transformers behind scikit-learn estimators.

>>> from tsformers import GateformerForecaster
>>> from tsformers.datasets import load_dataset, make_demo

The public names are imported on first use (PEP 562): ``import tsformers`` imports
neither torch, Lightning, scikit-learn nor MLflow; an estimator imports what it needs
when it is first touched (``tsformers.GateformerForecaster``, ``from tsformers import ...``).
"""
import importlib

from tsformers._version import __version__

__all__ = ["AtlasForecaster", "BaseForecaster", "ETSForecaster", "GBMForecaster", "GTrXLForecaster",
           "GateformerForecaster", "LMUFormerForecaster", "LinearForecaster", "ModelComparison", "ModelFileError",
           "NaiveForecaster", "PVClientForecaster", "RollingOriginSplit", "SeasonalNaiveForecaster", "__version__"]

#: Public names defined outside tsformers.estimators -> their module.
_ELSEWHERE = {"RollingOriginSplit": "tsformers.model_selection", "ModelComparison": "tsformers.comparison"}
#: Submodules reachable as attributes after ``import tsformers`` (``tsformers.metrics.mase``).
_SUBMODULES = ("metrics", "model_selection")


def __getattr__(name: str):
    if name in _SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    elif name in __all__:
        value = getattr(importlib.import_module(_ELSEWHERE.get(name, "tsformers.estimators")), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | set(_SUBMODULES))
