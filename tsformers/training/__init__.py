"""Training: the LightningModule, the DataModule and the fit routine (imported lazily by estimators)."""
from tsformers.training.datamodule import WindowDataModule
from tsformers.training.fit import fit_network
from tsformers.training.module import ForecastingModule

__all__ = ["ForecastingModule", "WindowDataModule", "fit_network"]
