"""The exported forecasters by name: the one lookup for the command line and anything above the estimators.

It sits above the estimator modules (it imports them); the layers below find a saved
estimator's class through the class hierarchy instead (:mod:`tsformers.estimators.persistence`).
"""
from __future__ import annotations

from tsformers.estimators.atlas import AtlasForecaster
from tsformers.estimators.baselines import LinearForecaster, NaiveForecaster, SeasonalNaiveForecaster
from tsformers.estimators.ets import ETSForecaster
from tsformers.estimators.gateformer import GateformerForecaster
from tsformers.estimators.gbm import GBMForecaster
from tsformers.estimators.gtrxl import GTrXLForecaster
from tsformers.estimators.lmuformer import LMUFormerForecaster
from tsformers.estimators.pvclient import PVClientForecaster

__all__ = ["ESTIMATORS", "ESTIMATOR_NAMES", "estimator_class"]

ESTIMATORS = (AtlasForecaster, ETSForecaster, GBMForecaster, GTrXLForecaster, GateformerForecaster,
              LMUFormerForecaster, LinearForecaster, NaiveForecaster, PVClientForecaster, SeasonalNaiveForecaster)
ESTIMATOR_NAMES = tuple(sorted(cls.__name__ for cls in ESTIMATORS))


def estimator_class(name: str) -> type:
    """The exported forecaster called ``name``, in any case, with or without the ``Forecaster`` suffix.

    Parameters
    ----------
    name : str
        ``"GateformerForecaster"``, ``"Gateformer"`` or ``"gateformer"`` all find
        :class:`~tsformers.GateformerForecaster`.

    Returns
    -------
    type

    Raises
    ------
    ValueError
        No exported forecaster has that name; the message lists those that do.

    Examples
    --------
    >>> from tsformers.estimators.registry import estimator_class
    >>> estimator_class("gateformer").__name__
    'GateformerForecaster'
    """
    wanted = str(name).lower().removesuffix("forecaster")
    for cls in ESTIMATORS:
        if cls.__name__.lower().removesuffix("forecaster") == wanted:
            return cls
    raise ValueError(f"unknown estimator {name!r}; choose one of {list(ESTIMATOR_NAMES)}.")
