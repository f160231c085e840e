"""Long-horizon benchmark: the literature's protocol (Time-Series-Library), lookback 96.

For each dataset, horizon, model and seed: fit on the train + val rows (the
scaler on train only, early stopping on val), forecast every stride-1 test
window, and report MSE/MAE on the scaled data next to the last-value forecast
and the published numbers. One CSV row per run is appended to ``--out``.

    .venv/bin/python benchmarks/long_horizon.py --dataset ETTh1 --horizons 96 --seeds 0

See ``benchmarks/README.md``.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for _protocol when run as a script
from _protocol import (append_rows, cpu_name, evaluate_windows, load_protocol_data, mase_scale, n_parameters,  # noqa: E402
                       peak_rss_mib, recalibrated_intervals, scaled_values)

from tsformers import (AtlasForecaster, GateformerForecaster, GTrXLForecaster, LMUFormerForecaster,  # noqa: E402
                       PVClientForecaster)
from tsformers.backbone import SeedEnsemble, linear_bases_of  # noqa: E402
from tsformers.datasets import info  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LOOKBACK = 96

# --------------------------------------------------------------------------------------------
# Paper hyperparameters
# --------------------------------------------------------------------------------------------

# Gateformer (Lan & Oermann, ICML 2025), the official scripts (design/architectures.md §1.2):
# (e_layers, d_model, d_ff, learning_rate) per dataset and horizon, at lookback 96.
GATEFORMER_TABLE = {
    "ETTh1": {96: (1, 64, 64, 1e-4), 192: (2, 64, 64, 5e-4), 336: (2, 128, 128, 5e-4), 720: (2, 64, 64, 5e-4)},
    "ETTh2": {96: (2, 128, 128, 5e-4), 192: (1, 64, 64, 5e-4), 336: (2, 64, 64, 1e-4), 720: (1, 128, 128, 1e-4)},
    "ETTm1": {96: (1, 64, 64, 5e-4), 192: (1, 128, 128, 5e-4), 336: (1, 128, 128, 1e-4), 720: (1, 64, 64, 5e-4)},
    "ETTm2": {96: (1, 64, 64, 5e-4), 192: (1, 64, 64, 1e-4), 336: (2, 64, 64, 5e-4), 720: (2, 64, 64, 5e-4)},
    "weather": {96: (2, 512, 1024, 1e-4), 192: (2, 512, 1024, 1e-4), 336: (2, 256, 256, 5e-4),
                720: (2, 256, 512, 1e-4)},
    "electricity": {96: (2, 512, 512, 5e-4), 192: (4, 512, 1024, 5e-4), 336: (2, 512, 1024, 5e-4),
                    720: (2, 512, 1024, 5e-4)},
    "traffic": {96: (2, 512, 1024, 5e-4), 192: (2, 512, 1024, 5e-4), 336: (3, 512, 1024, 5e-4),
                720: (3, 512, 512, 5e-4)},
    "exchange": {96: (1, 64, 64, 1e-4), 192: (1, 64, 64, 1e-3), 336: (1, 64, 64, 1e-4), 720: (2, 128, 128, 1e-3)},
}
# Shared by every script: n_heads 4 for ETT and Exchange, 8 otherwise; batch 8; 10 epochs;
# patience 3; learning rate halved every epoch ("type1"); dropout 0.1, on the attention weights too
# (attention_dropout=None, also the estimator's default); patch_len = stride = 8; no seasonal cycle taken
# out (cycle=None; the estimator's default takes the daily one out, a tsformers extension); one network
# (ensemble_size=1; the estimator's default fits a seed ensemble of two, a tsformers extension).
GATEFORMER_COMMON = dict(batch_size=8, max_epochs=10, patience=3, lr_schedule="halving", dropout=0.1,
                         attention_dropout=None, patch_len=8, stride=8, cycle=None, ensemble_size=1)


def _table_entry(table: dict, model: str, dataset: str, horizon: int):
    try:
        return table[dataset][horizon]
    except KeyError:
        known = {d: sorted(h) for d, h in table.items()}
        raise SystemExit(f"{model}: no paper hyperparameters for {dataset} at horizon {horizon}; known: {known}")


# Data sets the paper's scripts do not cover, run with its ETTh1-96 setting (one setting, no search; the
# estimator's defaults until they took batches of 32): ILI (the literature's small-data case, lookback 36), where
# the paper has no table.
GATEFORMER_DEFAULTS_FOR = {"illness"}


def gateformer(dataset: str, horizon: int) -> GateformerForecaster:
    """Gateformer with its paper's settings for ``dataset`` and ``horizon``: the paper's network alone, without the
    linear base the estimator adds by default (its ETTh1-96 setting on ILI, which the paper does not cover:
    d_model 64, one layer, lr 5e-4, batch 8, patches of 8 steps)."""
    if dataset in GATEFORMER_DEFAULTS_FOR:
        return GateformerForecaster(horizon=horizon, lookback=LOOKBACK, linear_base=False, d_model=64, d_ff=64,
                                    e_layers=1, n_heads=4, learning_rate=5e-4, **GATEFORMER_COMMON)
    e_layers, d_model, d_ff, lr = _table_entry(GATEFORMER_TABLE, "gateformer", dataset, horizon)
    n_heads = 4 if dataset.startswith("ETT") or dataset == "exchange" else 8
    return GateformerForecaster(horizon=horizon, lookback=LOOKBACK, e_layers=e_layers, d_model=d_model, d_ff=d_ff,
                                n_heads=n_heads, learning_rate=lr, linear_base=False, **GATEFORMER_COMMON)


def gateformer_defaults(dataset: str, horizon: int) -> GateformerForecaster:
    """Gateformer with the estimator's defaults on every data set (d_model 64, one layer, 4 heads, patches of 16
    steps, the linear base; batches of 32 at lr 1e-3 halved every epoch, 10 epochs, patience 2): one setting for
    all, against the paper's per-cell settings (``gateformer``). On ETTm1 and ETTm2 at H = 96 the two networks
    differ only in their patches, 8 steps long in the paper (whose recipe trains them with batches of 8 at 5e-4,
    patience 3); rows of the defaults before patches of 16 record ``patch_len=8`` in their parameters, and the
    report labels them earlier defaults. Rows are labelled ``gateformer-defaults+base`` (see ``_label``);
    ``--set linear_base=false`` runs the defaults' network alone, as every ``gateformer-defaults`` row did before
    the base became the default."""
    return GateformerForecaster(horizon=horizon, lookback=LOOKBACK)


def lmuformer(dataset: str, horizon: int) -> LMUFormerForecaster:
    """LMUFormer with the estimator's defaults: the paper's model (d_model 64, one LMU block, four
    convolutional embedding layers, memory size = lookback) and its training recipe (batch 32, lr 1e-3
    halved every epoch, 10 epochs, patience 3), with the default causal normalisation (each step's
    change in, the forecast added onto the last value: ``normalize="last_value"``, a tsformers
    extension; rows before it read the values). The paper has no long-horizon table, so no
    per-dataset settings exist to follow."""
    return LMUFormerForecaster(horizon=horizon, lookback=LOOKBACK)


def gtrxl(dataset: str, horizon: int) -> GTrXLForecaster:
    """GTrXL at lookback 96 in one segment (memory 96), otherwise the estimator's defaults (d_model 128,
    8 heads, d_ff 256, 3 layers, GRU gate with bias 2, lr 1e-3 halved every epoch, batch 32), which embed
    each step's change and forecast from the last value (``normalize="last_value"``: these series drift
    in level between the training and the test period). Lookback 96 is the literature's, so that the
    row compares with the others (``benchmarks/gtrxl.py`` also runs its long-memory setting)."""
    return GTrXLForecaster(horizon=horizon, lookback=LOOKBACK, segment_len=LOOKBACK, mem_len=LOOKBACK)


def atlas(dataset: str, horizon: int) -> AtlasForecaster:
    """ATLAS with the estimator's defaults (MAG layer, window 32, polynomial degree 2, Muon inner
    optimiser, channel-independent, lr 1e-3 halved every epoch, batch 32, each step's change in and the
    forecast from the last value: ``normalize="last_value"``; rows before it read the values and
    normalised the output by the window's mean)."""
    return AtlasForecaster(horizon=horizon, lookback=LOOKBACK)


# Client's scripts (daxin007/Client, scripts/*.sh; design/architectures.md 2.2) at lookback 96:
# dataset -> horizon -> (learning rate, d_ff, w_lin). Common: 2 layers, 8 heads, dropout 0.1, batch 32,
# 10 epochs, patience 3, the rate halved every epoch (lradj type1). ETTm1's scripts use 1e-3 to 5e-3: 1e-3.
CLIENT_TABLE = {
    "ETTh1": {96: (1e-4, 32, 0.05), 192: (1e-4, 32, 0.5), 336: (1e-4, 32, 0.5), 720: (1e-4, 32, 0.5)},
    "ETTh2": {h: (1e-3, 32, 1.0) for h in (96, 192, 336, 720)},
    "ETTm1": {h: (1e-3, 64, 0.5) for h in (96, 192, 336, 720)},
    "ETTm2": {h: (1e-3, 32, 1.0) for h in (96, 192, 336, 720)},
    "weather": {h: (1e-3, 32, 1.0) for h in (96, 192, 336, 720)},
    "exchange": {h: (1e-4, 2048, 1.0) for h in (96, 192, 336, 720)},
}


def pvclient(dataset: str, horizon: int) -> PVClientForecaster:
    """PV-Client's network is Client's: Client's script settings for ``dataset`` and ``horizon`` with the
    clipping of PV power off (``clip=False``: these variables may be negative). One difference from Client
    remains: PV-Client also learns the Transformer branch's per-variate weight (Client fixes it at 1)."""
    lr, d_ff, w_lin = _table_entry(CLIENT_TABLE, "pvclient", dataset, horizon)
    return PVClientForecaster(horizon=horizon, lookback=LOOKBACK, n_heads=8, d_ff=d_ff, e_layers=2, dropout=0.1,
                              w_lin=w_lin, learning_rate=lr, batch_size=32, clip=False)


# A model is one entry: name -> function (canonical dataset name, horizon) -> unfitted estimator
# with its paper's hyperparameters. The runner sets random_state, val_size and max_epochs.
MODELS = {
    "gateformer": gateformer,
    "gateformer-defaults": gateformer_defaults,
    "lmuformer": lmuformer,
    "gtrxl": gtrxl,
    "atlas": atlas,
    "pvclient": pvclient,
}

# --------------------------------------------------------------------------------------------
# Published numbers (lookback 96, scaled data), printed next to ours; not recomputed here.
# --------------------------------------------------------------------------------------------

from _published import reference  # noqa: E402

REFERENCE = reference()  # {(dataset, horizon): [(model, mse, mae, source), ...]}, see _published.py
# Gateformer's own paper numbers were not recovered (its results table is an image and the
# text available here ends before the tables): nothing is listed for it rather than a guess.
REFERENCE_NOTE = "Gateformer's own published numbers: not recovered (not listed)."

# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------

FIELDS = ["timestamp", "dataset", "horizon", "model", "seed", "lookback", "mse", "mae", "naive_mse", "naive_mae",
          "n_windows", "epochs_run", "best_epoch", "max_epochs", "fit_s", "eval_s", "total_s", "epoch_s_mean",
          "peak_rss_mib", "n_params", "torch_version", "n_threads", "omp_wait_policy", "load_start", "load_end",
          "git_rev", "params", "mase", "coverage_80", "width_80", "coverage_95", "width_95", "crps", "accelerator",
          "recal_coverage_80", "recal_width_80", "recal_coverage_95", "recal_width_95", "recal_crps", "recal_every",
          "recal_s", "val_loss", "fit_cpu_s", "eval_cpu_s", "cpu"]


class _EpochTimer:
    """A Lightning callback (built lazily, Lightning is imported by fit only) that times and prints each epoch."""

    @staticmethod
    def make(prefix: str):
        from lightning.pytorch.callbacks import Callback

        class EpochTimer(Callback):
            def __init__(self):
                self.seconds: list[float] = []

            def on_train_epoch_start(self, trainer, module):
                self._t0 = time.perf_counter()

            def on_train_epoch_end(self, trainer, module):
                dt = time.perf_counter() - self._t0
                self.seconds.append(dt)
                m = {k: float(v) for k, v in trainer.callback_metrics.items()}
                val = f"{m['val_loss']:.4f}" if "val_loss" in m else "-"
                print(f"  {prefix} epoch {trainer.current_epoch + 1}: train_loss {m.get('train_loss', float('nan')):.4f}"
                      f"  val_loss {val}  {dt:.1f}s", flush=True)

        return EpochTimer()


@functools.cache
def git_rev() -> str:
    """The commit the code under test comes from (``$TSFORMERS_GIT_REV`` for a snapshot outside the checkout).

    Read once per process, when the code is imported (``main`` calls it first): a commit made while a long run
    goes on changes the checkout, not the code this process runs."""
    if os.environ.get("TSFORMERS_GIT_REV"):
        return os.environ["TSFORMERS_GIT_REV"]
    try:
        import subprocess

        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
    except Exception:  # noqa: BLE001
        return ""


def accelerator_name(accelerator: str) -> str:
    """What trained: ``cpu``, or ``gpu: <the device's name>`` (the CSV's ``accelerator`` column)."""
    if accelerator == "cpu":
        return "cpu"
    if not torch.cuda.is_available():
        raise SystemExit(f"--accelerator {accelerator}: torch {torch.__version__} sees no GPU here; use --accelerator cpu")
    return f"gpu: {torch.cuda.get_device_name(0)}"


def run_one(model: str, data, horizon: int, seed: int, max_epochs: int | None, settings: dict | None = None,
            accelerator: str = "cpu", validation_only: bool = False, recalibrate: bool = True) -> dict:
    """Fit one estimator on the protocol's training and validation rows and score it on every test window.

    ``validation_only``: a search run, which never reads the test split; the row records the best
    validation loss alone (``val_loss``, which every row records: the best epoch's, or with a linear base the
    validation MSE of the forecast the fit kept, a share of the network's correction on the map), for choosing
    settings before a test run. ``recalibrate=False`` skips the intervals recalibrated as the test rows arrive
    (the ``recal_*`` columns), which only the grid reports. ``fit_cpu_s`` and ``eval_cpu_s`` are the CPU seconds
    of the spans ``fit_s`` and ``eval_s`` time: the fit, and the test windows.
    """
    load_start = os.getloadavg()[0]
    t_start = time.perf_counter()
    est = MODELS[model](data.name, horizon)
    timer = _EpochTimer.make(f"[{data.name} H={horizon} {model} seed={seed}]")
    # training only: the fitted network comes back to the CPU, where the test windows are scored
    overrides = dict(settings or {}, random_state=seed, val_size=int(data.val_steps), verbose=False,
                     trainer_kwargs={"callbacks": [timer], "accelerator": accelerator, "devices": 1})
    if max_epochs is not None:
        overrides["max_epochs"] = max_epochs
    est.set_params(**overrides)
    params = {k: v for k, v in est.get_params().items() if k != "trainer_kwargs"}

    t0, c0 = time.perf_counter(), time.process_time()
    est.fit(data.fit_frame)
    fit_s, fit_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    scores = {}
    if not validation_only:
        train_rows = data.fit_frame.iloc[:len(data.fit_frame) - data.val_steps]
        scores = evaluate_windows(est, data.test_frame, scale=mase_scale(scaled_values(est, train_rows)))
    eval_s, eval_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    total_s = time.perf_counter() - t_start
    t0 = time.perf_counter()  # timed apart: the tables' "fit + test" seconds stay those of fit and the test windows
    if est.conformal_ is not None and recalibrate and not validation_only:  # recalibrated as the test rows arrive
        scores |= recalibrated_intervals(est, data.recalibration_stream(est.lookback), int(data.val_steps))
        scores["recal_s"] = time.perf_counter() - t0

    log = est.training_log_
    val_losses = [row.get("val_loss", np.inf) for row in log]
    network_used = _network_used(est)
    # with a linear base the forecast keeps a share of the network's correction: its validation loss is that
    # forecast's (the map's where the share is 0), not the best epoch's with all of the correction
    # (and a seed ensemble's is its members' mean forecast's, not any member's best epoch)
    kept_all = not linear_bases_of(est.network_) and not isinstance(est.network_, SeedEnsemble)
    val_loss = (float(np.min(val_losses)) if kept_all else validation_mse(est, data)) if log else float("nan")
    first = [loss for row, loss in zip(log, val_losses) if row.get("member", 0) == 0]  # an ensemble's first member
    return {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dataset": data.name, "horizon": horizon, "model": _label(model, est), "seed": seed, "lookback": est.lookback,
        **scores,
        # 0: no epoch beat the starting point on validation, which the fit kept (a linear base's map alone)
        # epochs_run: of all members (what the fit cost); best_epoch: the first member's
        "epochs_run": len(log), "best_epoch": int(np.argmin(first)) + 1 if log and network_used else 0,
        "val_loss": val_loss,
        "max_epochs": est.max_epochs,
        "fit_s": fit_s, "eval_s": eval_s, "total_s": total_s, "fit_cpu_s": fit_cpu_s, "eval_cpu_s": eval_cpu_s,
        "epoch_s_mean": float(np.mean(timer.seconds)) if timer.seconds else float("nan"),
        "peak_rss_mib": peak_rss_mib(), "n_params": n_parameters(est.network_),
        "torch_version": torch.__version__, "n_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
        # 1-minute load average before and after the run: the machine is shared, so times are comparable only
        # between rows with similar load (or as ratios measured in the same run).
        "load_start": load_start, "load_end": os.getloadavg()[0], "git_rev": git_rev(),
        "params": json.dumps(params, sort_keys=True), "accelerator": accelerator_name(accelerator),
        "cpu": cpu_name(),
    }


def validation_mse(est, data) -> float:
    """MSE of the fitted forecast on the validation windows the fit early-stopped on (scaled data, every stride-1
    window): the validation loss of what the fit returned, for an MSE-trained estimator."""
    return float(evaluate_windows(est, data.fit_frame.iloc[-(data.val_steps + est.lookback):])["mse"])


def _network_used(est) -> bool:
    return not linear_bases_of(est.network_) or est.network_used_


def _label(model: str, est) -> str:
    """The model's name in the CSV: ``+base`` added to a Gateformer row whose network corrects a linear base. The
    paper's network has none, and Gateformer's default had none until the base became it, so the label names
    what ran whatever the default was when it ran: such rows never stand in for the paper settings' cells, nor
    the base's for the network alone."""
    return f"{model}+base" if isinstance(est, GateformerForecaster) and est.linear_base else model


def parse_setting(text: str) -> tuple[str, object]:
    """``name=value`` of ``--set``, the value read as JSON where it is JSON (``true``, ``3e-3``), else as text."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--set takes name=value (an estimator parameter), got {text!r}")
    if name == "trainer_kwargs":   # run_one sets the Trainer's own (timer, accelerator), and rows do not record it
        raise argparse.ArgumentTypeError("--set trainer_kwargs=...: the harness sets the Trainer itself and the rows "
                                         "do not record trainer_kwargs; set an estimator parameter instead")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def append_csv(path: Path, rows: list[dict]) -> None:
    append_rows(path, rows, FIELDS)


def _fmt(values, digits=3) -> str:
    values = np.asarray(values, dtype=float)
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def print_table(rows: list[dict]) -> None:
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["horizon"], r["model"]), []).append(r)
    head = (f"{'dataset':<9} {'H':>4} {'model':<13} {'seeds':>5} {'MSE':>15} {'MAE':>15} {'epochs':>9} "
            f"{'fit s':>13} {'eval s':>7} {'total s':>9} {'peak RSS MiB':>12} {'params':>9}")
    print("\n" + head + "\n" + "-" * len(head))
    shown = set()
    for (dataset, horizon, model), rs in groups.items():
        col = lambda k: [r[k] for r in rs]  # noqa: E731
        print(f"{dataset:<9} {horizon:>4} {model:<13} {len(rs):>5} {_fmt(col('mse')):>15} {_fmt(col('mae')):>15} "
              f"{_fmt(col('epochs_run'), 1):>9} {_fmt(col('fit_s'), 0):>13} {_fmt(col('eval_s'), 1):>7} "
              f"{_fmt(col('total_s'), 0):>9} {max(col('peak_rss_mib')):>12.0f} {rs[0]['n_params']:>9}")
        if (dataset, horizon) not in shown:
            shown.add((dataset, horizon))
            print(f"{dataset:<9} {horizon:>4} {'last value':<13} {'':>5} {rs[0]['naive_mse']:>15.3f} "
                  f"{rs[0]['naive_mae']:>15.3f}   (same test windows, n={rs[0]['n_windows']})")
            for name, ref_mse, ref_mae, source in REFERENCE.get((dataset, horizon), []):
                print(f"{dataset:<9} {horizon:>4} {name:<13} {'pub.':>5} {ref_mse:>15.3f} {ref_mae:>15.3f}   "
                      f"published: {source}")
    print(f"\nMSE/MAE on the standard-scaled data (scaler fitted on the train split), every stride-1 test window, "
          f"lookback {LOOKBACK}. Peak RSS is the process's peak so far (later runs include earlier ones). "
          f"{REFERENCE_NOTE}")


def default_data_dir() -> str:
    return os.environ.get("TSFORMERS_DATA") or str((REPO / ".." / "shared" / "datasets").resolve())


def main(argv=None) -> int:
    global LOOKBACK
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", "--datasets", nargs="+", default=["ETTh1"], help="registered dataset names")
    p.add_argument("--horizons", nargs="+", type=int, default=[96])
    p.add_argument("--models", nargs="+", default=["gateformer"], choices=sorted(MODELS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="the estimators' random_state")
    p.add_argument("--data-dir", default=default_data_dir(), help="folder with the CSVs ($TSFORMERS_DATA)")
    p.add_argument("--max-epochs", type=int, default=None, help="override the paper's number of epochs")
    p.add_argument("--set", type=parse_setting, action="append", default=[], metavar="NAME=VALUE",
                   help="an estimator parameter for every run (JSON values: --set linear_base=false); the CSV's "
                        "params column records it")
    p.add_argument("--out", type=Path, default=None,
                   help="CSV to append one row per run to (default: benchmarks/results/long_horizon.csv, or "
                        "search.csv with --validation-only)")
    p.add_argument("--validation-only", action="store_true",
                   help="a search run: fit, record the best validation loss, never read the test split")
    p.add_argument("--lookback", type=int, default=LOOKBACK,
                   help="the window every model reads; 96 is the literature's long-horizon setting, 36 its ILI one")
    p.add_argument("--accelerator", choices=["cpu", "gpu"], default="cpu",
                   help="where the networks train (Lightning's accelerator); the test windows are scored on the CPU")
    p.add_argument("--threads", type=int, default=1,
                   help="torch.set_num_threads; 0 keeps torch's default (one per core). One thread is the default "
                        "because these models are small and the machine may be shared: see the README")
    args = p.parse_args(argv)
    if args.out is None:
        args.out = REPO / "benchmarks" / "results" / ("search.csv" if args.validation_only else "long_horizon.csv")
    git_rev()  # the revision of the code this process imported, before any run
    accelerator_name(args.accelerator)  # no GPU: said before any run
    LOOKBACK = args.lookback  # read by the model functions above
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads (OMP_WAIT_POLICY="
          f"{os.environ.get('OMP_WAIT_POLICY')}), {os.cpu_count()} CPUs, data from {args.data_dir}", flush=True)
    rows = []
    for name in args.dataset:
        dataset = info(name)["name"]
        data = load_protocol_data(dataset, args.data_dir, LOOKBACK)
        print(f"{dataset}: {data.n_rows} rows, splits {data.bounds}; fit on rows [0, {data.bounds['val'][1]}) "
              f"with the last {data.val_steps} for validation; test {len(data.test_frame)} rows with context",
              flush=True)
        for horizon in args.horizons:
            for model in args.models:
                for seed in args.seeds:
                    row = run_one(model, data, horizon, seed, args.max_epochs, dict(args.set), args.accelerator,
                                  validation_only=args.validation_only)
                    rows.append(row)
                    append_csv(args.out, [row])
                    if args.validation_only:
                        print(f"{dataset} H={horizon} {model} seed={seed}: best validation loss {row['val_loss']:.4f} "
                              f"({row['epochs_run']} epochs, best {row['best_epoch']}), fit {row['fit_s']:.0f}s",
                              flush=True)
                        continue
                    print(f"{dataset} H={horizon} {model} seed={seed}: MSE {row['mse']:.4f} MAE {row['mae']:.4f} "
                          f"(last value {row['naive_mse']:.4f}/{row['naive_mae']:.4f}); {row['epochs_run']} epochs "
                          f"(best {row['best_epoch']}), fit {row['fit_s']:.0f}s, eval {row['eval_s']:.1f}s, "
                          f"total {row['total_s']:.0f}s, peak RSS {row['peak_rss_mib']:.0f} MiB, "
                          f"{row['n_params']} parameters", flush=True)
    if not args.validation_only:
        print_table(rows)
    print(f"\nappended {len(rows)} row(s) to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
