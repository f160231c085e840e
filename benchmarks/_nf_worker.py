"""Runs inside the neuralforecast virtual environment (``benchmarks/.venv-nf``), started by ``side_by_side.py``.

It imports neither tsformers nor Lightning's ``lightning`` package, only numpy, pandas, torch and neuralforecast,
so each library runs in its own interpreter with its own dependencies. It reads one JSON spec (a file
given as the only argument) and prints one JSON line prefixed with ``RESULT `` on stdout.

Accuracy (``"task": "accuracy"``), the literature protocol with neuralforecast's public API:

* the rows ``[0, test_end)`` of the CSV, every variable scaled with the mean and standard deviation
  the caller computed on the train rows (the same numbers our estimators fit);
* one long frame, a ``unique_id`` per variable and integer ``ds`` (rows as steps, as in the papers);
* ``NeuralForecast.cross_validation(val_size=val_steps, test_size=test_steps, step_size=1, refit=False)``:
  one fit on train + val (early stopping on the val windows), then every stride-1 test window;
* MSE/MAE over all windows, horizon steps and variables, on the scaled data.

Epochs become steps: one epoch is ``ceil(n_train_windows / batch)`` steps of ``batch`` multivariate windows
(``windows_batch_size = batch * n_vars`` univariate windows for channel-independent PatchTST), validation
once per epoch, early stopping after ``patience`` epochs without improvement, the learning rate halved
every epoch (``num_lr_decays = max_epochs``; with ``"schedule": "type3"`` the PatchTST scripts' schedule), MSE loss, no scaler inside neuralforecast (the data are
already scaled; the models keep their own RevIN / instance normalisation as in the papers).
"""
from __future__ import annotations

import json
import math
import os
import sys
import time

from _worker_io import emit, peak_rss_mib, quiet  # this folder is the script's: sys.path[0]

T_START = time.perf_counter()


def _quiet():
    quiet("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric", "neuralforecast")


def _n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


COUNTS = {"train_steps": 0, "val_checks": 0}


def _counter():
    """A Lightning callback (pytorch_lightning, as neuralforecast uses) counting steps and validations in a global,
    so the counts survive any copy neuralforecast makes of the model."""
    import pytorch_lightning as pl

    class Counter(pl.Callback):
        def on_train_batch_end(self, *args, **kwargs):
            COUNTS["train_steps"] += 1

        def on_validation_end(self, *args, **kwargs):
            COUNTS["val_checks"] += 1

    return Counter()


TRAINER = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
               num_sanity_val_steps=0)


def build_model(name: str, horizon: int, lookback: int, n_series: int, hp: dict, seed: int, **extra):
    """A neuralforecast model from the spec's hyperparameters (names as in the papers' scripts)."""
    from neuralforecast.losses.pytorch import MSE
    from neuralforecast.models import PatchTST, iTransformer

    common = dict(h=horizon, input_size=lookback, loss=MSE(), valid_loss=MSE(), scaler_type="identity",
                  random_seed=seed, learning_rate=hp.get("learning_rate", 1e-4), **TRAINER, **extra)
    if name == "itransformer":
        return iTransformer(n_series=n_series, hidden_size=hp["d_model"], d_ff=hp["d_ff"], e_layers=hp["e_layers"],
                            n_heads=hp.get("n_heads", 8), dropout=hp.get("dropout", 0.1), use_norm=True, **common)
    if name in ("patchtst", "patchtst-authors"):
        return PatchTST(hidden_size=hp["d_model"], linear_hidden_size=hp["d_ff"], encoder_layers=hp["e_layers"],
                        n_heads=hp["n_heads"], dropout=hp.get("dropout", 0.1), fc_dropout=hp.get("dropout", 0.1),
                        head_dropout=0.0, patch_len=hp.get("patch_len", 16), stride=hp.get("stride", 8),
                        revin=True, **common)
    raise ValueError(f"unknown model {name!r}")


class Type3:
    """The PatchTST scripts' "type3" learning-rate factor per optimiser step: 1 for the first 4 epochs, then 0.9
    per epoch (their ``adjust_learning_rate`` runs after each 1-based epoch ``e`` and sets the rate of epoch
    e + 1: lr for e < 3, else lr * 0.9 ** (e - 3)). A class, not a lambda, so Lightning's checkpoint can pickle it."""

    def __init__(self, steps_per_epoch: int):
        self.steps_per_epoch = steps_per_epoch

    def __call__(self, step: int) -> float:
        epoch = step // self.steps_per_epoch  # 0-based epoch of this step
        return 0.9 ** max(epoch - 3, 0)


def schedule(hp: dict, steps_per_epoch: int, max_epochs: int) -> dict:
    """neuralforecast's learning-rate arguments for ``hp["schedule"]``: halved every epoch (TSLib's type1, the
    default: ``num_lr_decays = max_epochs``) or the PatchTST scripts' type3."""
    if hp.get("schedule", "type1") == "type1":
        return dict(num_lr_decays=max_epochs)
    if hp["schedule"] == "type3":
        import torch

        return dict(lr_scheduler=torch.optim.lr_scheduler.LambdaLR,
                    lr_scheduler_kwargs=dict(lr_lambda=Type3(steps_per_epoch)))
    raise ValueError(f"unknown schedule {hp['schedule']!r}")


def accuracy(spec: dict) -> dict:
    import numpy as np
    import pandas as pd
    import torch

    torch.set_num_threads(spec.get("threads", 1))
    _quiet()
    t_import = time.perf_counter()
    from neuralforecast import NeuralForecast

    import_s = time.perf_counter() - t_import
    frame = pd.read_csv(spec["csv"])
    columns = spec["columns"]
    values = frame[columns].to_numpy(dtype=np.float64)[: spec["test_end"]]
    values = (values - np.asarray(spec["mean"])) / np.asarray(spec["scale"])
    n_time, n_vars = values.shape
    long = pd.DataFrame({
        "unique_id": np.repeat(np.asarray(columns, dtype=object), n_time),
        "ds": np.tile(np.arange(n_time, dtype=np.int64), n_vars),
        "y": values.T.reshape(-1).astype(np.float32),
    })
    lookback, horizon, hp = spec["lookback"], spec["horizon"], spec["hp"]
    batch, max_epochs, patience = hp["batch_size"], hp.get("max_epochs", 10), hp.get("patience", 3)
    n_train_windows = spec["train_end"] - lookback - horizon + 1
    steps_per_epoch = math.ceil(n_train_windows / batch)
    multivariate = spec["model"] == "itransformer"
    extra = dict(max_steps=steps_per_epoch * max_epochs, val_check_steps=steps_per_epoch,
                 early_stop_patience_steps=patience, **schedule(hp, steps_per_epoch, max_epochs),
                 batch_size=batch if multivariate else n_vars,
                 windows_batch_size=batch if multivariate else batch * n_vars,
                 valid_batch_size=None, inference_windows_batch_size=256 if multivariate else 256 * n_vars,
                 callbacks=[_counter()])
    model = build_model(spec["model"], horizon, lookback, n_vars, hp, spec["seed"], **extra)
    n_params = _n_params(model)
    nf = NeuralForecast(models=[model], freq=1)
    load_start = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    cv = nf.cross_validation(df=long, val_size=spec["val_steps"], test_size=spec["test_steps"], n_windows=None,
                             step_size=1, refit=False, verbose=False)
    fit_test_s, fit_test_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    col = [c for c in cv.columns if c not in ("unique_id", "ds", "cutoff", "y")][0]
    err = cv[col].to_numpy(np.float64) - cv["y"].to_numpy(np.float64)
    n_windows = cv["cutoff"].nunique()
    return {
        "library": "neuralforecast", "model": spec["model"], "mse": float(np.mean(err ** 2)),
        "mae": float(np.mean(np.abs(err))), "n_windows": int(n_windows), "n_predictions": int(err.size),
        "fit_test_s": fit_test_s, "fit_test_cpu_s": fit_test_cpu_s, "import_s": import_s, "steps_per_epoch": steps_per_epoch,
        "steps_run": COUNTS["train_steps"],
        "epochs_run": COUNTS["train_steps"] / steps_per_epoch, "val_checks": COUNTS["val_checks"], "n_params": n_params, "peak_rss_mib": peak_rss_mib(),
        "load_start": load_start, "load_end": os.getloadavg()[0], "torch_version": torch.__version__,
        "nf_version": __import__("neuralforecast").__version__, "n_threads": torch.get_num_threads(),
    }


TASKS = {"accuracy": accuracy}


def main() -> int:
    with open(sys.argv[1]) as fh:
        spec = json.load(fh)
    emit(TASKS[spec["task"]](spec))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
