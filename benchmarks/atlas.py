"""ATLAS benchmark: long-range recall, a regime shift after fit, and ETTh1 at horizon 96.

Three models on each task:

* ``atlas``         AtlasForecaster with its defaults: the memories keep learning on new data;
* ``atlas_frozen``  the same network trained and run with ``frozen_memory=True`` (the memories
                    stay at their trained initial weights: a static MLP read by the queries);
* ``gateformer``    GateformerForecaster (a windowed model: it sees the last ``lookback`` steps).

Tasks (``--tasks``):

``recall``   A value shown once must be recalled much later. One channel of small noise, except:
             a store marker (+3) followed by the value V (|V| in [0.5, 1.5], random sign), and
             later a recall marker (-3) followed by ``horizon`` steps of V. Training gaps
             (store -> recall) are 4..80 steps, inside the lookback;
             after fit, test episodes use gaps of 48, 500 and 2000 steps. The models stream
             through the test series (``update``) and forecast at every recall cue; the score
             is the MSE of the signal over the horizon, relative to E[V^2] (forecasting 0, i.e.
             no recall, scores 1, per gap).
``regime``   A series whose dynamics change after fit: trained on period 24 (a sine plus AR(1)
             noise); after fit the period becomes 37, with a sawtooth shape and 1.5x amplitude.
             Rolling-origin forecasts every 4 steps through 2,000 post-shift steps, with the
             models streaming through them (``update``); MSE on the scaled data over the first
             500 steps after the shift and over the rest, next to the last-value forecast.
``etth1``    The long-horizon protocol of ``benchmarks/long_horizon.py`` (lookback 96, H = 96,
             MSE/MAE on scaled data over every test window). ``mse``/``mae``: each window forecast
             from a fresh state (``network(x)``, the literature's protocol); ``stream_mse``/
             ``stream_mae`` (ATLAS only): the memories stream through the whole history and keep
             learning on the test rows, each window forecast from the state at its end (what
             ``update`` + ``predict()`` give, row by row).

    .venv/bin/python benchmarks/atlas.py                         # everything, 1 thread
    .venv/bin/python benchmarks/atlas.py --tasks recall --quick  # a smoke test in a minute

Results are printed and appended to ``benchmarks/results/atlas.csv``.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for _protocol / long_horizon when run as a script
from _protocol import evaluate_windows, load_protocol_data, n_parameters, scaled_values  # noqa: E402

from tsformers.estimators.atlas import AtlasForecaster  # noqa: E402
from tsformers.estimators.gateformer import GateformerForecaster  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MODELS = ("atlas", "atlas_frozen", "gateformer")


def make_model(name: str, *, horizon: int, lookback: int, quick: bool, **common):
    """An unfitted estimator. Gateformer takes its paper's ETTh1 H=96 settings except the training recipe."""
    if name.startswith("atlas"):
        size = dict(d_model=16, n_heads=2, d_ff=32, n_layers=1, d_key=4) if quick else {}
        return AtlasForecaster(horizon=horizon, lookback=lookback, frozen_memory=name == "atlas_frozen",
                               **size, **common)
    size = dict(d_model=16, n_heads=2, d_ff=32) if quick else {}
    return GateformerForecaster(linear_base=False, ensemble_size=1, horizon=horizon, lookback=lookback,
                                **{"patch_len": 8, "stride": 8, "attention_dropout": None, "cycle": None, **size,
                                   **common})


# ----------------------------------------------------------------------------------------------
# recall
# ----------------------------------------------------------------------------------------------

def make_recall(gaps: list[int], rng: np.random.Generator, horizon: int, start: int = 0, lead: int = 120):
    """A one-channel recall series: returns (frame, [(recall_index, V)]); index = row of the recall marker.

    Small noise, except per episode: a store marker (+3) followed by the value V, and ``gap``
    steps after the marker a recall marker (-3) followed by ``horizon`` steps of V.
    """
    episodes = []
    n = lead + sum(g + horizon + 31 for g in gaps)
    signal = 0.05 * rng.standard_normal(n)
    t = lead
    for gap in gaps:
        value = rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.5)
        signal[t], signal[t + 1] = 3.0, value
        r = t + gap
        signal[r] = -3.0
        signal[r + 1: r + 1 + horizon] = value
        episodes.append((r, value))
        t = r + horizon + 1 + int(rng.integers(10, 30))
    dates = pd.date_range("2020-01-01", periods=start + t, freq="h")[start:]
    return pd.DataFrame({"date": dates, "signal": signal[:t]}), episodes


def task_recall(args) -> list[dict]:
    rng = np.random.default_rng(0)
    horizon, lookback = 8, 96
    n_train_episodes = 60 if args.quick else 150
    train, _ = make_recall(list(rng.integers(4, 81, n_train_episodes)), rng, horizon)
    test_gaps = [48, 500, 2000] * (2 if args.quick else 8)
    rng.shuffle(test_gaps)
    test, episodes = make_recall(test_gaps, rng, horizon, start=len(train), lead=lookback + 10)
    whole = pd.concat([train, test], ignore_index=True)
    offset = len(train)
    rows = []
    for name in args.models:
        est = make_model(name, horizon=horizon, lookback=lookback, quick=args.quick, **args.common)
        t0 = time.perf_counter()
        est.fit(train)
        fit_s = time.perf_counter() - t0
        errors = {g: [] for g in sorted(set(test_gaps))}
        t0 = time.perf_counter()
        done = offset  # rows of `whole` folded into the model so far
        for (r, value), gap in zip(episodes, test_gaps):
            r_abs = offset + r
            if isinstance(est, AtlasForecaster):
                est.update(whole.iloc[done: r_abs + 1])
                done = r_abs + 1
                pred = est.predict()
            else:
                pred = est.predict(whole.iloc[r_abs + 1 - lookback: r_abs + 1])
            errors[gap].append(np.mean((pred["signal"].to_numpy(float) - value) ** 2))
        row = {"task": "recall", "model": name, "fit_s": fit_s, "eval_s": time.perf_counter() - t0,
               "epochs": len(est.training_log_), "n_params": n_parameters(est.network_)}
        v2 = {g: np.mean([v**2 for (_, v), gap in zip(episodes, test_gaps) if gap == g]) for g in errors}
        row |= {f"rel_mse_gap{g}": float(np.mean(e) / v2[g]) for g, e in errors.items()}  # 1 = no recall
        rows.append(row)
        print(_fmt(row), flush=True)
    return rows


# ----------------------------------------------------------------------------------------------
# regime shift
# ----------------------------------------------------------------------------------------------

def make_regime(n_before: int, n_after: int, rng: np.random.Generator) -> pd.DataFrame:
    n = n_before + n_after
    noise = np.zeros(n)
    for t in range(1, n):
        noise[t] = 0.8 * noise[t - 1] + 0.1 * rng.standard_normal()
    t = np.arange(n)
    before = np.sin(2 * np.pi * t / 24)
    after = 1.5 * (2 * ((t / 37) % 1.0) - 1)                       # sawtooth, period 37
    y = np.where(t < n_before, before, after) + noise
    return pd.DataFrame({"date": pd.date_range("2021-01-01", periods=n, freq="h"), "y": y})


def task_regime(args) -> list[dict]:
    rng = np.random.default_rng(1)
    horizon, lookback, every = 24, 96, 4
    n_before, n_after = (2000, 600) if args.quick else (6000, 2000)
    df = make_regime(n_before, n_after, rng)
    early = 500 if not args.quick else 200
    rows = []
    for name in args.models:
        est = make_model(name, horizon=horizon, lookback=lookback, quick=args.quick, **args.common)
        t0 = time.perf_counter()
        est.fit(df.iloc[:n_before])
        fit_s = time.perf_counter() - t0
        scale = float(est.scaler_.scale.reshape(-1)[0])
        sq = {"early": [], "late": []}
        naive_sq = {"early": [], "late": []}
        t0 = time.perf_counter()
        done = n_before
        for origin in range(n_before, n_before + n_after - horizon, every):  # forecast from rows < origin
            if isinstance(est, AtlasForecaster):
                if origin > done:
                    est.update(df.iloc[done:origin])
                    done = origin
                pred = est.predict()["y"].to_numpy(float)
            else:
                pred = est.predict(df.iloc[origin - lookback: origin])["y"].to_numpy(float)
            truth = df["y"].to_numpy()[origin: origin + horizon]
            part = "early" if origin - n_before < early else "late"
            sq[part].append(np.mean(((pred - truth) / scale) ** 2))
            naive_sq[part].append(np.mean(((df["y"].to_numpy()[origin - 1] - truth) / scale) ** 2))
        row = {"task": "regime", "model": name, "fit_s": fit_s, "eval_s": time.perf_counter() - t0,
               "epochs": len(est.training_log_), "n_params": n_parameters(est.network_),
               f"mse_first{early}": float(np.mean(sq["early"])), "mse_after": float(np.mean(sq["late"])),
               f"naive_mse_first{early}": float(np.mean(naive_sq["early"])),
               "naive_mse_after": float(np.mean(naive_sq["late"]))}
        rows.append(row)
        print(_fmt(row), flush=True)
    return rows


# ----------------------------------------------------------------------------------------------
# ETTh1, horizon 96
# ----------------------------------------------------------------------------------------------

def stream_windows(est: AtlasForecaster, test_frame: pd.DataFrame) -> dict:
    """MSE/MAE of forecasts from the streaming state at the end of every test window (scaled data).

    The state after fit covers the whole fit frame, whose last ``lookback`` rows are the test
    frame's context; each later window's state is the previous one advanced by one row, as
    ``update`` row by row does (here on the network directly, without the frame round trip).
    """
    lookback, horizon = est.lookback, est.horizon
    values = torch.from_numpy(scaled_values(est, test_frame).astype(np.float32))   # (T, N)
    n_targets = len(est.schema_.targets)
    net, state = est.network_, est.state_
    sq = ab = 0.0
    n_windows = values.shape[0] - lookback - horizon + 1
    with torch.no_grad():
        for w in range(n_windows):
            if w:
                state = net.advance(state, values[None, lookback + w - 1: lookback + w])
            err = net.forecast(state)[0, :, :n_targets] - values[lookback + w: lookback + w + horizon, :n_targets]
            sq += float((err ** 2).sum())
            ab += float(err.abs().sum())
    count = n_windows * horizon * n_targets
    return {"stream_mse": sq / count, "stream_mae": ab / count}


def task_etth1(args) -> list[dict]:
    data_dir = args.data_dir or os.environ.get("TSFORMERS_DATA") or REPO.parent / "shared" / "datasets"
    lookback, horizon = 96, 96
    data = load_protocol_data("ETTh1", data_dir, lookback)
    if args.quick:
        data.fit_frame = data.fit_frame.iloc[-3000:].reset_index(drop=True)
        data.test_frame = data.test_frame.iloc[: lookback + horizon + 200]
        data.val_steps = 600
    rows = []
    for name in args.models:
        common = dict(args.common)
        if name == "gateformer" and not args.quick:
            # the paper's ETTh1 H=96 cell (benchmarks/long_horizon.py): e_layers 1, d_model 64, d_ff 64, lr 1e-4
            common |= dict(e_layers=1, d_model=64, d_ff=64, n_heads=4, learning_rate=1e-4, batch_size=8,
                           dropout=0.1, attention_dropout=None, patch_len=8, stride=8, cycle=None)
        est = make_model(name, horizon=horizon, lookback=lookback, quick=args.quick, **common)
        est.set_params(val_size=int(data.val_steps))
        t0 = time.perf_counter()
        est.fit(data.fit_frame)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        row = {"task": "etth1_h96", "model": name, "fit_s": fit_s, "epochs": len(est.training_log_),
               "n_params": n_parameters(est.network_), **evaluate_windows(est, data.test_frame)}
        if isinstance(est, AtlasForecaster):
            row |= stream_windows(est, data.test_frame)
        row["eval_s"] = time.perf_counter() - t0
        rows.append(row)
        print(_fmt(row), flush=True)
    return rows


# ----------------------------------------------------------------------------------------------

TASKS = {"recall": task_recall, "regime": task_regime, "etth1": task_etth1}


def _fmt(row: dict) -> str:
    return "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())


def append_csv(path: Path, rows: list[dict], meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    new = pd.DataFrame([{**meta, **r} for r in rows])
    if path.exists() and path.stat().st_size:
        new = pd.concat([pd.read_csv(path), new], ignore_index=True)
    tmp = path.with_name(f".{path.name}.tmp")  # a crash mid-write leaves the earlier rows whole
    new.to_csv(tmp, index=False, quoting=csv.QUOTE_MINIMAL)
    tmp.replace(path)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--max-epochs", type=int, default=None, help="override every model's max_epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads; 0 keeps torch's default")
    p.add_argument("--accelerator", default="cpu", help="Lightning accelerator for training (cpu, gpu, auto)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop each fit's training after this many minutes (Lightning's max_time); the best "
                        "epoch so far is kept")
    p.add_argument("--quick", action="store_true", help="tiny models and data: a smoke test")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "atlas.csv"))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    trainer_kwargs = {"accelerator": args.accelerator}
    if args.max_minutes:
        trainer_kwargs["max_time"] = {"minutes": args.max_minutes}
    args.common = dict(random_state=args.seed, trainer_kwargs=trainer_kwargs)
    if args.max_epochs is not None:
        args.common["max_epochs"] = args.max_epochs
    if args.quick:
        args.common.setdefault("max_epochs", 2)
    meta = {"timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"), "seed": args.seed,
            "quick": args.quick, "threads": torch.get_num_threads(), "accelerator": args.accelerator,
            "torch_version": torch.__version__,
            "max_epochs": args.common.get("max_epochs", "default"), "max_minutes": args.max_minutes}
    rows = []
    for task in args.tasks:
        print(f"== {task}", flush=True)
        rows += TASKS[task](args)
    append_csv(Path(args.out), rows, meta)
    print(f"\nappended {len(rows)} rows to {args.out}")
    print(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()
