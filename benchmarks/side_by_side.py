"""Accuracy side by side: our estimators and neuralforecast's iTransformer and PatchTST, one protocol, one run.

Each dataset is cut once (``_protocol.load_protocol_data``: the literature's splits, lookback 96). Our
estimators are fitted and tested in this process exactly as in ``long_horizon.py``; each neuralforecast
model runs in its own interpreter (``benchmarks/.venv-nf``, created on first use) through
``_nf_worker.py``, on the same rows, scaled with the same train-split statistics, validated on the same
val windows and tested on every stride-1 test window (``NeuralForecast.cross_validation`` with
``refit=False``). MSE/MAE are on the scaled data for everyone. ``fit_test_s`` is the wall time of the fit
plus every test window (for neuralforecast the one ``cross_validation`` call), not counting imports or
reading the CSV; ``fit_test_cpu_s`` the CPU seconds of the same (one thread each, so on a shared machine
the fairer comparison). Each row carries the 1-minute load average before and after.

    .venv/bin/python benchmarks/side_by_side.py --dataset ETTh1 --horizons 96
    .venv/bin/python benchmarks/side_by_side.py --dataset ETTh1 ETTm1 --nf-models itransformer

Rows are appended to ``benchmarks/results/side_by_side.csv``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _nfenv import NF_PYTHON, WORKER, ensure_nf_venv, run_digest, run_worker  # noqa: E402
from _protocol import append_rows, cpu_name, load_protocol_data  # noqa: E402
from long_horizon import LOOKBACK, MODELS, REFERENCE, default_data_dir, git_rev, parse_setting, run_one  # noqa: E402

from tsformers.data.scaling import PanelScaler  # noqa: E402
from tsformers.datasets import info  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# neuralforecast models with the hyperparameters of their reference scripts at lookback 96.
# iTransformer: thuml/iTransformer scripts/multivariate_forecasting/ETT/iTransformer_<data>.sh
# (e_layers, d_model, d_ff); run.py defaults: batch 32, lr 1e-4, 10 epochs, patience 3, n_heads 8,
# dropout 0.1, learning rate halved every epoch, MSE loss.
# ETTh2, ETTm2 and Exchange: e_layers 2, d_model 128, d_ff 128 at every horizon (the Exchange script trains
# H = 336 for one epoch only, a quirk not followed here: every cell gets the same 10 epochs and patience 3).
_SMALL = {h: (2, 128, 128) for h in (96, 192, 336, 720)}
ITRANSFORMER_TABLE = {
    "ETTh1": {96: (2, 256, 256), 192: (2, 256, 256), 336: (2, 512, 512), 720: (2, 512, 512)},
    "ETTh2": dict(_SMALL),
    "ETTm1": dict(_SMALL),
    "ETTm2": dict(_SMALL),
    "exchange": dict(_SMALL),
    # scripts/multivariate_forecasting/Weather/iTransformer.sh
    "weather": {h: (3, 512, 512) for h in (96, 192, 336, 720)},
}
# PatchTST at lookback 96 as the iTransformer paper ran it: thuml/Time-Series-Library
# scripts/long_term_forecast/ETT_script/PatchTST_<data>.sh, Exchange_script/PatchTST.sh and
# Weather_script/PatchTST.sh (e_layers, n_heads, batch); TSLib defaults: d_model 512, d_ff 2048, dropout 0.1,
# patch 16 / stride 8, n_heads 8, batch 32, lr 1e-4, 10 epochs, patience 3, type1 halving. The weather script
# trains 3 epochs (PATCHTST_EPOCHS); the Exchange script's one epoch at H = 336 is not followed (as for iTransformer).
PATCHTST_TABLE = {
    "ETTh1": {96: (1, 2, 32), 192: (1, 8, 32), 336: (1, 8, 32), 720: (1, 16, 32)},
    "ETTh2": {h: (3, 4, 32) for h in (96, 192, 336, 720)},
    "ETTm1": {96: (1, 2, 32), 192: (3, 2, 128), 336: (1, 4, 128), 720: (3, 4, 128)},
    "ETTm2": {96: (3, 16, 32), 192: (3, 2, 128), 336: (1, 4, 32), 720: (3, 4, 128)},
    "exchange": {h: (2, 8, 32) for h in (96, 192, 336, 720)},
    "weather": {96: (2, 4, 32), 192: (2, 16, 32), 336: (2, 4, 128), 720: (2, 4, 128)},
}
PATCHTST_EPOCHS = {"weather": 3}
# PatchTST at its authors' sizes (yuqinie98/PatchTST, PatchTST_supervised/scripts/PatchTST/<data>.sh:
# e_layers 3, patch 16 / stride 8, batch 128, lr 1e-4, head dropout 0; (n_heads, d_model, d_ff, dropout = fc
# dropout)), a model 16 to 60 times cheaper per window than TSLib's, so it is affordable on every data set here.
# Those scripts train at lookback 336 for up to 100 epochs (patience 20 for ETTm and weather) with the "type3"
# schedule (lr kept 4 epochs, then times 0.9 per epoch; ETTm: one-cycle); here at lookback 96, the type3 schedule
# everywhere, at most PATCHTST_AUTHORS_EPOCHS epochs with our protocol's patience of 3. No Exchange script.
_AUTHORS_SMALL, _AUTHORS_LARGE = (4, 16, 128, 0.3), (16, 128, 256, 0.2)
PATCHTST_AUTHORS_TABLE = {"ETTh1": _AUTHORS_SMALL, "ETTh2": _AUTHORS_SMALL, "ETTm1": _AUTHORS_LARGE,
                          "ETTm2": _AUTHORS_LARGE, "weather": _AUTHORS_LARGE}
PATCHTST_AUTHORS_EPOCHS = 10  # our protocol's epochs, as for iTransformer
NF_MODELS = ("itransformer", "patchtst", "patchtst-authors")


def nf_hparams(model: str, dataset: str, horizon: int) -> dict:
    common = dict(learning_rate=1e-4, max_epochs=10, patience=3, dropout=0.1)
    try:
        if model == "itransformer":
            e_layers, d_model, d_ff = ITRANSFORMER_TABLE[dataset][horizon]
            return dict(e_layers=e_layers, d_model=d_model, d_ff=d_ff, n_heads=8, batch_size=32, **common)
        if model == "patchtst":
            e_layers, n_heads, batch = PATCHTST_TABLE[dataset][horizon]
            common["max_epochs"] = PATCHTST_EPOCHS.get(dataset, common["max_epochs"])
            return dict(e_layers=e_layers, d_model=512, d_ff=2048, n_heads=n_heads, batch_size=batch, patch_len=16,
                        stride=8, **common)
        if model == "patchtst-authors":
            n_heads, d_model, d_ff, dropout = PATCHTST_AUTHORS_TABLE[dataset]
            common.update(dropout=dropout, max_epochs=PATCHTST_AUTHORS_EPOCHS)
            return dict(e_layers=3, d_model=d_model, d_ff=d_ff, n_heads=n_heads, batch_size=128, patch_len=16,
                        stride=8, schedule="type3", **common)
    except KeyError:
        raise SystemExit(f"neuralforecast {model}: no reference-script hyperparameters for {dataset} at {horizon}")
    raise SystemExit(f"unknown neuralforecast model {model!r}")


FIELDS = ["timestamp", "dataset", "horizon", "library", "model", "seed", "mse", "mae", "n_windows", "epochs_run",
          "fit_test_s", "fit_test_cpu_s", "n_params", "peak_rss_mib", "load_start", "load_end", "n_threads", "torch_version",
          "lib_version", "git_rev", "params", "val_loss", "cpu", "run_digest"]


def train_stats(data) -> tuple[list, list, list]:
    """Columns, mean and standard deviation (ddof 0, as our scaler) of the train rows."""
    time_col = info(data.name)["time_col"]
    columns = [c for c in data.fit_frame.columns if c != time_col]
    train = data.fit_frame[columns].to_numpy(np.float64)[: data.bounds["train"][1]]
    mean, scale = np.nanmean(train, axis=0), np.nanstd(train, axis=0)
    ours = PanelScaler.fit(train[None])  # what our estimators fit on the same rows
    assert np.allclose(ours.mean[0], mean) and np.allclose(ours.scale[0], scale), "scaler mismatch"
    return columns, mean.tolist(), scale.tolist()


def ours(model: str, data, horizon: int, seed: int, max_epochs: int | None, stats,
         settings: dict | None = None) -> dict:
    """Our ``model`` fitted and tested by ``long_horizon.run_one``, ``settings`` replacing some of its parameters
    (the row's model is labelled as there: ``+base`` where a Gateformer corrects a linear base)."""
    # the fit and the test windows only, as neuralforecast's cross_validation call is timed: no recalibrated
    # intervals (the grid's), no validation-window score after the fit (rows before rev 71051cc counted both)
    row = run_one(model, data, horizon, seed, max_epochs, settings, recalibrate=False)
    cpu_s = row["fit_cpu_s"] + row["eval_cpu_s"]
    return {"timestamp": row["timestamp"], "dataset": data.name, "horizon": horizon, "library": "tsformers",
            "model": row["model"], "seed": seed, "mse": row["mse"], "mae": row["mae"], "n_windows": row["n_windows"],
            "epochs_run": row["epochs_run"], "fit_test_s": row["fit_s"] + row["eval_s"], "fit_test_cpu_s": cpu_s,
            "n_params": row["n_params"],
            "peak_rss_mib": row["peak_rss_mib"], "load_start": row["load_start"], "load_end": row["load_end"],
            "n_threads": row["n_threads"], "torch_version": row["torch_version"],
            "lib_version": _version("tsformers"), "git_rev": row["git_rev"], "params": row["params"],
            "naive_mse": row["naive_mse"], "naive_mae": row["naive_mae"], "val_loss": row["val_loss"], "cpu": row["cpu"]}


def nf(model: str, data, horizon: int, seed: int, max_epochs: int | None, stats, csv_path: str, log) -> dict:
    columns, mean, scale = stats
    hp = nf_hparams(model, data.name, horizon)
    if max_epochs is not None:
        hp["max_epochs"] = max_epochs
    spec = dict(task="accuracy", csv=csv_path, columns=columns, test_end=data.bounds["test"][1],
                train_end=data.bounds["train"][1], val_steps=data.val_steps,
                test_steps=data.bounds["test"][1] - data.bounds["test"][0], lookback=LOOKBACK, horizon=horizon,
                mean=mean, scale=scale, model=model, hp=hp, seed=seed, threads=torch.get_num_threads())
    res = run_worker(NF_PYTHON, WORKER, spec, log=log)
    return {"timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"), "dataset": data.name,
            "horizon": horizon, "library": "neuralforecast", "model": model, "seed": seed, "mse": res["mse"],
            "mae": res["mae"], "n_windows": res["n_windows"], "epochs_run": res["epochs_run"],
            "fit_test_s": res["fit_test_s"], "fit_test_cpu_s": res.get("fit_test_cpu_s"), "n_params": res["n_params"], "peak_rss_mib": res["peak_rss_mib"],
            "load_start": res["load_start"], "load_end": res["load_end"], "n_threads": res["n_threads"],
            "torch_version": res["torch_version"], "lib_version": res["nf_version"], "git_rev": git_rev(),
            "params": json.dumps(hp, sort_keys=True), "cpu": cpu_name(),
            # the worker's code and every input it got: a row stands for any revision where these are the same
            "run_digest": run_digest(spec)}


def _version(name: str) -> str:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # noqa: BLE001
        return ""


def append_csv(path: Path, row: dict) -> None:
    append_rows(path, [{k: v for k, v in row.items() if k in FIELDS}], FIELDS)


def print_table(rows: list[dict]) -> None:
    head = (f"{'dataset':<8} {'H':>4} {'library':<15} {'model':<13} {'MSE':>7} {'MAE':>7} {'epochs':>6} "
            f"{'fit+test s':>10} {'x ours':>7} {'params':>9} {'RSS MiB':>8} {'load':>9}")
    print("\n" + head + "\n" + "-" * len(head))
    for (dataset, horizon) in dict.fromkeys((r["dataset"], r["horizon"]) for r in rows):
        group = [r for r in rows if (r["dataset"], r["horizon"]) == (dataset, horizon)]
        base = next((r["fit_test_s"] for r in group if r["library"] == "tsformers"), None)
        for r in group:
            ratio = f"{r['fit_test_s'] / base:.2f}" if base else "-"
            print(f"{dataset:<8} {horizon:>4} {r['library']:<15} {r['model']:<13} {r['mse']:>7.4f} {r['mae']:>7.4f} "
                  f"{r['epochs_run']:>6.1f} {r['fit_test_s']:>10.0f} {ratio:>7} {r['n_params']:>9} "
                  f"{r['peak_rss_mib']:>8.0f} {r['load_start']:>4.1f}/{r['load_end']:<4.1f}")
        for name, mse, mae, source in REFERENCE.get((dataset, horizon), []):
            print(f"{dataset:<8} {horizon:>4} {'published':<15} {name:<13} {mse:>7.3f} {mae:>7.3f}   {source}")
    print("\nMSE/MAE on the scaled data (train-split statistics), every stride-1 test window, lookback 96. "
          "'x ours': fit+test time relative to our first estimator on the same dataset and horizon, same run. "
          "load: 1-minute load average before/after (2 cores; the machine is shared).")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", "--datasets", nargs="+", default=["ETTh1"])
    p.add_argument("--horizons", nargs="+", type=int, default=[96])
    p.add_argument("--models", nargs="*", default=["gateformer"], choices=sorted(MODELS),
                   help="our estimators (entries of long_horizon.MODELS)")
    p.add_argument("--nf-models", nargs="*", default=["itransformer", "patchtst"], choices=NF_MODELS,
                   help="patchtst: Time-Series-Library's sizes; patchtst-authors: the PatchTST authors' scripts' sizes")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--data-dir", default=default_data_dir())
    p.add_argument("--max-epochs", type=int, default=None, help="override every model's epochs (quick checks)")
    p.add_argument("--set", type=parse_setting, action="append", default=[], metavar="NAME=VALUE",
                   help="a parameter of our estimators, as long_horizon.py's --set (e.g. linear_base=true)")
    p.add_argument("--threads", type=int, default=1, help="torch threads for both libraries")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "side_by_side.csv")
    p.add_argument("--log", type=Path, default=None, help="where the neuralforecast workers' output goes")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.nf_models:
        ensure_nf_venv()
    rows = []
    for name in args.dataset:
        dataset = info(name)["name"]
        data = load_protocol_data(dataset, args.data_dir, LOOKBACK)
        stats = train_stats(data)
        csv_path = str(Path(args.data_dir) / info(dataset)["file"])
        for horizon in args.horizons:
            for seed in args.seeds:
                for model in args.models:
                    row = ours(model, data, horizon, seed, args.max_epochs, stats, dict(args.set))
                    rows.append(row)
                    append_csv(args.out, row)
                    print(f"{dataset} H={horizon} tsformers {row['model']}: MSE {row['mse']:.4f} MAE {row['mae']:.4f} "
                          f"fit+test {row['fit_test_s']:.0f}s", flush=True)
                for model in args.nf_models:
                    t0 = time.perf_counter()
                    row = nf(model, data, horizon, seed, args.max_epochs, stats, csv_path, args.log)
                    rows.append(row)
                    append_csv(args.out, row)
                    print(f"{dataset} H={horizon} neuralforecast {model}: MSE {row['mse']:.4f} MAE {row['mae']:.4f} "
                          f"fit+test {row['fit_test_s']:.0f}s ({time.perf_counter() - t0:.0f}s with start-up), "
                          f"{row['epochs_run']:.1f} epochs, {row['n_params']} parameters", flush=True)
    print_table(rows)
    print(f"\nappended {len(rows)} row(s) to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
