"""Backbone benchmark in the spirit of CAB: every mixer in the same model, and how each scales.

1. **Accuracy** (``--part accuracy``): Gateformer with its paper's ETTh1 settings at horizon
   96 under the literature protocol (``_protocol.py``: 12/4/4-month splits, scaler on the
   training split, every stride-1 test window, MSE/MAE on scaled data), once per registered
   mixer in the temporal slot (``temporal_mixer=name``: ordered patch tokens, so every
   mixer fits) and once per registered stack (``stack=name``). Reported: MSE, MAE,
   parameters, seconds per training epoch, epochs run. To fit ~40 parts in a CPU session the
   recipe is the paper's at batch 32 with the learning rate scaled by 4 (linear scaling)
   and 3 epochs; every part gets the same recipe. Mixers with no non-causal
   self-attention form (e.g. Transformer-XL's) are listed as not applicable: Gateformer's
   encoders are bidirectional.
2. **Patterns** (``--part patterns``): for each mixer and each of CAB's four patterns
   (non-causal self, causal self, non-causal cross, causal cross), "ok" or "FAIL" from a
   correctness check (the output at t ignores inputs after t for the causal ones; cross
   with a different number of query and key tokens), or "unsupported" for a pattern the
   mixer does not declare (it is not run).
3. **Slots** (``--part slots``): every part each estimator's slots accept (``available(None,
   estimator)``), one at a time in that slot, the estimator's other settings as in the grid
   (``long_horizon.MODELS``: Gateformer's and Client's paper settings for ETTh1-96), the same recipe for every part of an estimator (batch 32 at the
   learning rate scaled as above, ``--max-epochs``), and the estimator's defaults once as the row each part is
   compared with. Gateformer's temporal mixers and stacks are the accuracy part's rows (the same
   recipe). The streaming estimators (``--estimators lmuformer gtrxl atlas``, the network alone) are walked
   with ``--train-batches`` (an epoch of at most that many batches): a whole ETTh1 epoch costs them minutes.
4. **Long context** (``--part long``): the slots that mix along time (Gateformer's
   ``temporal_mixer``, GTrXL's ``mixer``, LMUFormer's and ATLAS's ``memory``), every part they
   accept, and every part of the streaming estimators' other slots (GTrXL's ``stack`` and
   ``gating``, ATLAS's ``optimizer``), on a history longer than any 96-step window: a seeded series that repeats a smooth
   240-step shape under AR(1) noise, read through a lookback of 480 steps to forecast 48, so a good
   forecast needs the steps one period back (the seasonal naive at 240 steps is the reference).
   Small widths (d_model 32) and one recipe (``--long-epochs`` epochs of at most 60 batches of 32, lr
   1e-3, early stopping on the validation windows), the streaming
   networks alone (``linear_base=False``); GTrXL reads the window in five 96-step segments through
   its memory. The baselines are scored on the same windows.
5. **Adaptive depth** (``--part depth``): Gateformer with ``stack="adaptive_depth"`` (ECO-M2F) at
   four blocks per encoder (d_model 128, 8 heads, d_ff 256) on ETTh1-96: the depth its gates run on
   the training and the test windows, the test MSE gated and at full depth, and the time of one
   pass over every test window each way (the same process, in turn, the fastest of ``--repeats``).
6. **Scaling** (``--part scaling``): forward time (median of a few calls, eval mode, no
   gradients, batch 1, d_model 64, 4 heads) and peak resident memory added by the call,
   against the number of tokens from 256 to 16,384, for every mixer; the log-log slope of
   time over the largest sizes says which mixers are really sub-quadratic (slope ~1) and
   which are not (~2). A size is skipped once the previous one took longer than
   ``--time-budget`` seconds or more than ``--memory-budget`` MiB (the next would be
   about four times as much for a quadratic mixer). The "efficiency length" is the
   smallest measured N from which the mixer is faster than full attention, and the one
   from which it uses less memory.

    .venv/bin/python benchmarks/backbone.py --threads 1 --part scaling
    .venv/bin/python benchmarks/backbone.py --threads 1 --part accuracy --max-epochs 3 --batch-size 32
    .venv/bin/python benchmarks/backbone.py --threads 1 --part slots --max-epochs 3
    .venv/bin/python benchmarks/backbone.py --threads 1 --part slots --max-epochs 3 --train-batches 80 \
        --estimators gtrxl lmuformer atlas
    .venv/bin/python benchmarks/backbone.py --threads 1 --part long --long-epochs 3
    .venv/bin/python benchmarks/backbone.py --threads 1 --part depth

Rows are appended to ``benchmarks/results/backbone.csv``; ``--skip-done`` leaves out the
(part, name) pairs that file already holds, so an interrupted run can be resumed.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for _protocol and long_horizon when run as a script
from _protocol import append_rows, evaluate_windows, load_protocol_data, n_parameters  # noqa: E402
from long_horizon import MODELS, _EpochTimer, gateformer, git_rev  # noqa: E402

from tsformers import (AtlasForecaster, GateformerForecaster, GTrXLForecaster, LinearForecaster,  # noqa: E402
                       LMUFormerForecaster, NaiveForecaster, SeasonalNaiveForecaster)
from tsformers.backbone import available, build, build_class  # noqa: E402
from tsformers.backbone.registry import estimator_slots  # noqa: E402
from tsformers.backbone.mixers import CAUSAL_CROSS, CAUSAL_SELF, CROSS, SELF  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LOOKBACK, HORIZON, DATASET = 96, 96, "ETTh1"
SIZES = [256, 512, 1024, 2048, 4096, 8192, 16384]
PATTERNS = [SELF, CAUSAL_SELF, CROSS, CAUSAL_CROSS]
FIELDS = ["timestamp", "part", "kind", "name", *PATTERNS, "faster_from", "smaller_from", "dataset", "horizon", "mse", "mae", "n_params", "epochs_run",
          "max_epochs", "s_per_epoch", "fit_s", "eval_s", "tokens", "forward_ms", "peak_mib", "time_slope",
          "memory_slope", "skipped", "complexity", "paper", "torch_version", "n_threads", "load_avg", "estimator",
          "slot", "git_rev", "with", "mean_depth", "test_depth", "train_batches"]


def _stamp(row: dict) -> dict:
    return {"timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "torch_version": torch.__version__, "n_threads": torch.get_num_threads(),
            "load_avg": round(os.getloadavg()[0], 2), **row}


def append_csv(path: Path, rows: list[dict]) -> None:
    append_rows(path, rows, FIELDS)


def done(path: Path, part: str) -> set[tuple[str, str]]:
    if not path.exists():
        return set()
    with open(path) as fh:
        return {(r["kind"], r["name"]) for r in csv.DictReader(fh) if r["part"] == part}


def describe(kind: str, name: str) -> dict:
    cls = build_class(kind, name)
    return {"complexity": getattr(cls, "complexity", ""), "paper": getattr(cls, "paper", "")}


# -- 1. accuracy: every part in the same model ----------------------------------------------------


def run_accuracy(kind: str, name: str, data, max_epochs: int, seed: int, batch_size: int) -> dict:
    """Gateformer with the mixer ``name`` in its temporal slot, or the stack ``name``: a slots row (the same
    recipe), labelled for the catalog."""
    if kind == "mixer" and SELF not in build_class("mixer", name).patterns:
        return {"part": "accuracy", "kind": kind, "name": name, "skipped": "causal only", **describe(kind, name)}
    slot = {"mixer": "temporal_mixer", "stack": "stack"}[kind]
    return {**run_slot("gateformer", slot, name, data, max_epochs, seed, batch_size), "part": "accuracy"}


# -- 3. slots: every part each estimator accepts, in its slot --------------------------------------

#: the benchmark's estimators (``long_horizon.MODELS`` names) whose network is streaming: an ETTh1 epoch costs
#: them minutes here, so their slots are walked on ETTh1 with ``--train-batches`` (and in the long-context case)
STREAMING = ("lmuformer", "gtrxl", "atlas")
DEFAULT = "(default)"


#: Gateformer's slots that the accuracy part measures with the same recipe (its rows are the catalog's), left out
MEASURED_BY_ACCURACY = {("gateformer", "temporal_mixer"), ("gateformer", "stack")}
#: (model, slot, part) -> the other settings the part needs, for a part its slot lists only with them
NEEDS = {("gateformer", "temporal_block", "tnt"): {"embedding": "tnt_words"}}
#: slots whose parts the estimator's network realises itself rather than as an instance of the registry's class
#: (GTrXL's stacks: the registry's schemes inside its memory-carrying layers), so "not built" is not looked for
OWN_FORM = {("gtrxl", "stack")}


def slot_cases(model: str) -> list[tuple[str, str]]:
    """``(slot, part)`` for every part the slots of ``model`` (a ``long_horizon.MODELS`` name) accept with its
    benchmark settings (or with the settings of :data:`NEEDS`), besides each slot's own default, and
    ``(DEFAULT, DEFAULT)`` first: the reference row."""
    est = MODELS[model](DATASET, HORIZON)
    params = est.get_params()
    cases = [(DEFAULT, DEFAULT)]
    for slot, names in available(None, est).items():
        if (model, slot) in MEASURED_BY_ACCURACY:
            continue
        cases += [(slot, name) for name in names if name != params.get(slot)]
    cases += [(slot, name) for (m, slot, name) in NEEDS if m == model and (slot, name) not in cases]
    return cases


def part_kind(model: str, slot: str, name: str) -> str:
    """The registry kind of ``name`` among the kinds of ``slot`` (a slot may take several: stages and reducers)."""
    if slot == DEFAULT:
        return ""
    return _kind_of(name, estimator_slots(MODELS[model](DATASET, HORIZON))[slot].kinds)


def _kind_of(name: str, kinds) -> str:
    """The registry kind of ``name``: among the slot's ``kinds`` first, else any (LMUFormer's ``memory="lmu"``,
    its own name for the Legendre cell, is the registry's ``memory`` of that name)."""
    return next((kind for kind in kinds if name in available(kind)),
                next(kind for kind in available() if name in available(kind)))


def run_slot(model: str, slot: str, name: str, data, max_epochs: int, seed: int, batch_size: int,
             train_batches: int | None = None) -> dict:
    """One fit of ``model`` with ``name`` in ``slot`` (the defaults for ``DEFAULT``), scored on every test window.

    ``train_batches`` caps each training epoch at that many batches (Lightning's ``limit_train_batches``), for
    the estimators whose full ETTh1 epoch costs minutes; every row records it."""
    kind = part_kind(model, slot, name)
    where = {"part": "slots", "estimator": model, "slot": slot, "kind": kind, "name": name, "git_rev": git_rev(),
             **(describe(kind, name) if kind else {})}
    timer = _EpochTimer.make(f"[{model} {slot}={name}]")
    est = MODELS[model](DATASET, HORIZON)
    settings = {} if slot == DEFAULT else {**NEEDS.get((model, slot, name), {}), slot: name}
    where["with"] = json.dumps(NEEDS[model, slot, name]) if (model, slot, name) in NEEDS else ""
    if "linear_base" in est.get_params():
        settings["linear_base"] = False  # the network alone: the part's effect, not the ridge map's
    # one recipe for every part of an estimator: batch ``batch_size`` at the learning rate scaled linearly
    trainer_kwargs = {"callbacks": [timer], **({"limit_train_batches": train_batches} if train_batches else {})}
    where["train_batches"] = train_batches or ""
    est.set_params(**settings, max_epochs=max_epochs, random_state=seed, val_size=int(data.val_steps),
                   batch_size=batch_size, learning_rate=est.learning_rate * batch_size / est.batch_size,
                   trainer_kwargs=trainer_kwargs)
    fit_s = fit_timed(est, data.fit_frame)
    if isinstance(fit_s, str):
        return {**where, "skipped": fit_s}
    missing = not_built(model, slot, kind, name, est.network_)
    if missing:  # PV-Client's per-step fusion, built only with known-future inputs: the row would repeat the defaults
        return {**where, "skipped": missing}
    return {**where, "dataset": DATASET, "horizon": HORIZON, **scored(est, data.test_frame),
            "epochs_run": len(est.training_log_), "max_epochs": max_epochs,
            "s_per_epoch": statistics.median(timer.seconds) if timer.seconds else float("nan"), "fit_s": fit_s}


def not_built(model: str, slot: str, kind: str, name: str, network: torch.nn.Module) -> str | None:
    """Why a fitted ``network`` lacks the part ``name`` chosen in ``slot``, or None when it holds it (or when the
    network realises the slot's parts itself: :data:`OWN_FORM`)."""
    part_class = build_class(kind, name) if kind else None
    if (not isinstance(part_class, type) or not issubclass(part_class, torch.nn.Module) or (model, slot) in OWN_FORM
            or any(isinstance(module, part_class) for module in network.modules())):
        return None
    return (f"not built: the fitted network holds no {part_class.__name__} (the setting builds it only with inputs "
            f"{DATASET} lacks)")


def fit_timed(est, frame) -> float | str:
    """The seconds ``est.fit(frame)`` took, or why it failed: a part that cannot run with the settings is a
    result too, reported in its row."""
    t0 = time.perf_counter()
    try:
        est.fit(frame)
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"[:200]
    return time.perf_counter() - t0


def scored(est, test_frame) -> dict:
    """MSE and MAE of a fitted ``est`` over every test window, its parameters and the seconds the scoring took."""
    t0 = time.perf_counter()
    scores = evaluate_windows(est, test_frame)
    return {"mse": scores["mse"], "mae": scores["mae"], "n_params": n_parameters(est.network_),
            "eval_s": time.perf_counter() - t0}


def done_slots(path: Path, part: str = "slots") -> set[tuple[str, str, str]]:
    if not path.exists():
        return set()
    with open(path) as fh:
        return {(r["estimator"], r["slot"], r["name"]) for r in csv.DictReader(fh)
                if r["part"] == part and r.get("estimator")}


# -- 4. long context: the parts that mix along time, on a history beyond any 96-step window ---------

LONG_PERIOD, LONG_LOOKBACK, LONG_HORIZON, LONG_STEPS, LONG_TEST = 240, 480, 48, 6000, 1200
#: batches per training epoch: a GTrXL epoch over all ~4,000 windows of 480 steps costs three minutes here
LONG_BATCHES = 60
#: the slot of each estimator whose parts mix along time, and the estimator at the long-context case's size
LONG_CASES = {
    "gateformer": ("temporal_mixer", lambda: GateformerForecaster(
        lookback=LONG_LOOKBACK, horizon=LONG_HORIZON, d_model=32, n_heads=4, d_ff=64, patch_len=16, stride=16,
        linear_base=False, ensemble_size=1)),
    "gtrxl": ("mixer", lambda: GTrXLForecaster(
        lookback=LONG_LOOKBACK, horizon=LONG_HORIZON, d_model=32, n_heads=4, d_ff=64, n_layers=2, segment_len=96,
        mem_len=96, linear_base=False)),
    "lmuformer": ("memory", lambda: LMUFormerForecaster(
        lookback=LONG_LOOKBACK, horizon=LONG_HORIZON, d_model=32, memory_size=64, linear_base=False)),
    "atlas": ("memory", lambda: AtlasForecaster(lookback=LONG_LOOKBACK, horizon=LONG_HORIZON, d_model=32,
                                                linear_base=False)),
}


def long_context_frame(seed: int = 0) -> pd.DataFrame:
    """Hourly ``y``: a smooth random shape of ``LONG_PERIOD`` steps, repeated, plus AR(1) noise (phi 0.8)."""
    rng = np.random.default_rng(seed)
    raw = np.convolve(rng.standard_normal(LONG_PERIOD + 23), np.ones(24) / 24, mode="valid")  # (LONG_PERIOD,)
    shape = (raw - raw.mean()) / raw.std()
    noise = np.zeros(LONG_STEPS)
    shocks = 0.3 * rng.standard_normal(LONG_STEPS)
    for t in range(1, LONG_STEPS):
        noise[t] = 0.8 * noise[t - 1] + shocks[t]
    y = np.tile(shape, LONG_STEPS // LONG_PERIOD + 1)[:LONG_STEPS] + noise
    return pd.DataFrame({"date": pd.date_range("2020-01-01", periods=LONG_STEPS, freq="h"), "y": y})


def long_context_split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The fit rows, and the test rows with the lookback before them (every stride-1 window is scored)."""
    cut = len(frame) - LONG_TEST
    return frame.iloc[:cut], frame.iloc[cut - LONG_LOOKBACK:]


def run_long(model: str, slot: str, name: str, fit_frame, test_frame, max_epochs: int, seed: int) -> dict:
    """One fit of the long-context case with ``name`` in ``model``'s ``slot`` (a baseline: ``model``, no slot)."""
    if model in LONG_CASES:
        est = LONG_CASES[model][1]().set_params(**{slot: name})
        kind = _kind_of(name, estimator_slots(est)[slot].kinds)
        where = {"slot": slot, "kind": kind, **describe(kind, name)}
        est.set_params(max_epochs=max_epochs, batch_size=32, learning_rate=1e-3, patience=2, random_state=seed,
                       trainer_kwargs={"limit_train_batches": LONG_BATCHES})
    else:  # the baselines on the same windows
        est = {"last_value": NaiveForecaster(), "seasonal_naive": SeasonalNaiveForecaster(season_length=LONG_PERIOD),
               "linear": LinearForecaster()}[model]
        est.set_params(lookback=LONG_LOOKBACK, horizon=LONG_HORIZON)
        where = {"slot": "", "kind": ""}
    row = {"part": "long", "estimator": model, "name": name, "dataset": f"long_context_{LONG_PERIOD}",
           "horizon": LONG_HORIZON, "git_rev": git_rev(), **where}
    fit_s = fit_timed(est, fit_frame)
    if isinstance(fit_s, str):
        return {**row, "skipped": fit_s}
    log = getattr(est, "training_log_", [])
    return {**row, **scored(est, test_frame), "epochs_run": len(log), "max_epochs": max_epochs if log else "",
            "fit_s": fit_s, "s_per_epoch": fit_s / len(log) if log else float("nan")}


def long_cases(models) -> list[tuple[str, str, str]]:
    """``(model, slot, part)``: the baselines, then every part each model's time-mixing slot accepts, then, for
    the streaming estimators (measured only here: an ETTh1 epoch costs them minutes), every other part their
    other slots accept besides each slot's default."""
    cases = [(b, "", b) for b in ("last_value", "seasonal_naive", "linear")]
    for model in models:
        time_slot, make = LONG_CASES[model]
        est = make()
        cases += [(model, time_slot, name) for name in available(time_slot, est)]
        if model in STREAMING:
            params = est.get_params()
            cases += [(model, slot, name) for slot, names in available(None, est).items() if slot != time_slot
                      for name in names if name != params.get(slot)]
    return cases


# -- 5. adaptive depth: the depth the gates choose, and the time it saves --------------------------

DEPTH_CASE = {"e_layers": 4, "d_model": 128, "n_heads": 8, "d_ff": 256}


def run_depth(data, max_epochs: int, seed: int, batch_size: int, repeats: int) -> list[dict]:
    """Gateformer with adaptive depth: the test windows gated and at full depth, scores and the time of a pass."""
    est = gateformer(DATASET, HORIZON)
    est.set_params(stack="adaptive_depth", **DEPTH_CASE, max_epochs=max_epochs, random_state=seed,
                   val_size=int(data.val_steps), batch_size=batch_size,
                   learning_rate=est.learning_rate * batch_size / est.batch_size)
    t0 = time.perf_counter()
    est.fit(data.fit_frame)
    fit_s = time.perf_counter() - t0
    network = est.network_
    ran = []                                                   # the depths each gated pass ran, per batch
    hooks = [stack.register_forward_hook(lambda module, args, out: ran.append(module.last_depths.float()))
             for stack in network.depth_stacks()]
    scores, seconds = {}, {"gated": [], "full": []}
    try:
        for _ in range(repeats):                               # in turn, so that both see the same machine load
            for label, depth in (("gated", None), ("full", DEPTH_CASE["e_layers"])):
                ran.clear()
                with network.at_depth(depth):
                    t0 = time.perf_counter()
                    scores[label] = evaluate_windows(est, data.test_frame)
                    seconds[label].append(time.perf_counter() - t0)
                if label == "gated":
                    test_depth = float(torch.cat(ran).mean())
    finally:
        for hook in hooks:
            hook.remove()
    common = {"part": "depth", "estimator": "gateformer", "slot": "stack", "kind": "stack", "name": "adaptive_depth",
              "dataset": DATASET, "horizon": HORIZON, "n_params": n_parameters(network), "fit_s": fit_s,
              "epochs_run": len(est.training_log_), "max_epochs": max_epochs, "git_rev": git_rev(),
              "mean_depth": est.mean_depth_, "with": json.dumps(DEPTH_CASE)}
    return [{**common, "with": json.dumps({**DEPTH_CASE, "run": label}), "mse": scores[label]["mse"],
             "mae": scores[label]["mae"], "eval_s": min(seconds[label]),
             "test_depth": test_depth if label == "gated" else float(DEPTH_CASE["e_layers"])}
            for label in ("gated", "full")]


# -- 2. patterns: CAB's four, checked where declared ----------------------------------------------


def check_pattern(mixer_cls: type, pattern: str, d_model: int = 32, seed: int = 0) -> str:
    """"ok", "FAIL: why", or "unsupported" (an undeclared pattern is never run)."""
    if pattern not in mixer_cls.patterns:
        return "unsupported"
    causal = pattern in (CAUSAL_SELF, CAUSAL_CROSS)
    torch.manual_seed(seed)
    try:
        mixer = mixer_cls(d_model, n_heads=4, dropout=0.0, causal=causal).eval()
        x = torch.randn(2, 24, d_model)
        kv = torch.randn(2, 24 if causal else 17, d_model) if pattern in (CROSS, CAUSAL_CROSS) else None
        with torch.no_grad():
            y = mixer(x, kv)
            if y.shape != x.shape or not torch.isfinite(y).all():
                return f"FAIL: output {tuple(y.shape)}, finite={bool(torch.isfinite(y).all())}"
            if causal:
                t = 10
                x2 = x.clone()
                x2[:, t + 1:] += 3 * torch.randn_like(x2[:, t + 1:])
                kv2 = None
                if kv is not None:
                    kv2 = kv.clone()
                    kv2[:, t + 1:] += 3 * torch.randn_like(kv2[:, t + 1:])
                if not torch.allclose(mixer(x2, kv2)[:, : t + 1], y[:, : t + 1], atol=1e-5, rtol=1e-4):
                    return "FAIL: the output at t depends on inputs after t"
    except Exception as exc:
        return f"FAIL: {type(exc).__name__}: {exc}"[:200]
    return "ok"


def run_patterns(name: str) -> dict:
    cls = build_class("mixer", name)
    return {"part": "patterns", "kind": "mixer", "name": name, **{p: check_pattern(cls, p) for p in PATTERNS},
            **describe("mixer", name)}


# -- 6. scaling: forward time and peak memory against the number of tokens ------------------------


def _rss_mib(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as fh:  # "5" resets VmHWM, the peak resident set (Linux)
        fh.write("5")


def scale_one(name: str, time_budget: float, memory_budget: float, repeats: int = 3) -> list[dict]:
    """Forward time and peak memory of one mixer at each size; run in its own process."""
    torch.manual_seed(0)
    causal = SELF not in build_class("mixer", name).patterns
    mixer = build("mixer", name, d_model=64, n_heads=4, causal=causal).eval()
    rows, skip = [], ""
    for n in SIZES:
        if skip:
            rows.append({"tokens": n, "skipped": skip})
            continue
        x = torch.randn(1, n, 64)
        with torch.no_grad():
            mixer(x[:, :64])  # warm-up of any lazily built buffers
            _reset_peak()
            base = _rss_mib("VmRSS")
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                mixer(x)
                times.append(time.perf_counter() - t0)
            peak = _rss_mib("VmHWM") - base
        ms = 1e3 * statistics.median(times)
        rows.append({"tokens": n, "forward_ms": ms, "peak_mib": max(peak, 0.0)})
        if ms / 1e3 > time_budget:
            skip = f"previous size took {ms / 1e3:.1f}s > {time_budget}s"
        elif peak > memory_budget:
            skip = f"previous size used {peak:.0f} MiB > {memory_budget:.0f} MiB"
    return rows


def slope(rows: list[dict], key: str) -> float:
    """The log-log slope of ``key`` against tokens over the (up to) three largest measured sizes."""
    pts = [(r["tokens"], r[key]) for r in rows if r.get(key, 0) and r[key] > 0][-3:]
    if len(pts) < 2:
        return float("nan")
    n, v = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    return float(np.polyfit(n, v, 1)[0])


def run_scaling(name: str, args) -> list[dict]:
    cmd = [sys.executable, __file__, "--scale-one", name, "--threads", str(args.threads),
           "--time-budget", str(args.time_budget), "--memory-budget", str(args.memory_budget)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        return [{"part": "scaling", "kind": "mixer", "name": name, "skipped": f"failed: {out.stderr[-200:]}",
                 **describe("mixer", name)}]
    rows = json.loads(out.stdout.strip().splitlines()[-1])
    t_slope, m_slope = slope(rows, "forward_ms"), slope(rows, "peak_mib")
    return [{"part": "scaling", "kind": "mixer", "name": name, **r, "time_slope": t_slope, "memory_slope": m_slope,
             **describe("mixer", name)} for r in rows]


def efficiency_lengths(rows: list[dict]) -> None:
    """Fill ``faster_from``/``smaller_from``: the smallest N from which a mixer beats full attention."""
    full = {r["tokens"]: r for r in rows if r["name"] == "full" and r.get("forward_ms")}
    by_name: dict[str, list[dict]] = {}
    for r in rows:
        by_name.setdefault(r["name"], []).append(r)
    for name, rs in by_name.items():
        measured = [r for r in rs if r.get("forward_ms") and r["tokens"] in full]
        for key, field in (("forward_ms", "faster_from"), ("peak_mib", "smaller_from")):
            wins = [r["tokens"] for r in measured if r[key] < full[r["tokens"]][key]]
            first = next((n for n in sorted(wins) if all(w in wins for w in [m["tokens"] for m in measured
                                                                              if m["tokens"] >= n])), "")
            for r in rs:
                r[field] = first


def print_patterns(rows: list[dict]) -> None:
    head = f"{'mixer':<18} " + " ".join(f"{p:>13}" for p in PATTERNS)
    print("\n" + head + "\n" + "-" * len(head))
    for r in rows:
        print(f"{r['name']:<18} " + " ".join(f"{r[p][:13]:>13}" for p in PATTERNS))


def print_accuracy(rows: list[dict]) -> None:
    head = f"{'kind':<6} {'name':<22} {'params':>8} {'MSE':>7} {'MAE':>7} {'s/epoch':>8} {'epochs':>6}  note"
    print("\n" + head + "\n" + "-" * len(head))
    for r in sorted(rows, key=lambda r: (r["kind"], r.get("mse", math.inf))):
        if r.get("skipped"):
            print(f"{r['kind']:<6} {r['name']:<22} {'':>8} {'':>7} {'':>7} {'':>8} {'':>6}  {r['skipped']}")
        else:
            print(f"{r['kind']:<6} {r['name']:<22} {r['n_params']:>8} {r['mse']:7.4f} {r['mae']:7.4f} "
                  f"{r['s_per_epoch']:8.1f} {r['epochs_run']:>6}")


def print_scaling(rows: list[dict]) -> None:
    by_name: dict[str, list[dict]] = {}
    for r in rows:
        by_name.setdefault(r["name"], []).append(r)
    head = (f"{'mixer':<18} " + " ".join(f"{n:>9}" for n in SIZES) + f" {'slope t':>7} {'slope m':>7}"
            f" {'faster':>7} {'smaller':>7}")
    print("\nforward ms (peak MiB) by tokens\n" + head + "\n" + "-" * len(head))
    for name, rs in sorted(by_name.items(), key=lambda kv: kv[1][0].get("time_slope", 9) or 9):
        cells = {r.get("tokens"): r for r in rs}
        line = " ".join(f"{cells[n]['forward_ms']:9.1f}" if n in cells and cells[n].get("forward_ms") else f"{'-':>9}"
                        for n in SIZES)
        print(f"{name:<18} {line} {rs[0].get('time_slope', float('nan')):7.2f} "
              f"{rs[0].get('memory_slope', float('nan')):7.2f} {rs[0].get('faster_from', ''):>7} "
              f"{rs[0].get('smaller_from', ''):>7}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", choices=["patterns", "accuracy", "slots", "long", "depth", "scaling", "all"], default="all")
    p.add_argument("--mixers", nargs="+", default=None, help="default: every registered mixer")
    p.add_argument("--stacks", nargs="+", default=None, help="default: every registered stack")
    p.add_argument("--estimators", nargs="+", choices=sorted(MODELS), default=None,
                   help="--part slots / long: the estimators whose slots to walk (slots: Gateformer and "
                        "PV-Client by default; name the streaming ones, with --train-batches)")
    p.add_argument("--train-batches", type=int, default=None,
                   help="--part slots: at most this many batches per training epoch (recorded in each row)")
    p.add_argument("--repeats", type=int, default=5, help="--part depth: timed passes each way")
    p.add_argument("--long-epochs", type=int, default=3, help="--part long: max epochs of every part")
    p.add_argument("--leave-out", nargs="+", default=[], metavar="SLOT=PART",
                   help="--part slots: parts recorded as not run, with --leave-out-reason")
    p.add_argument("--leave-out-reason", default="left out of this run")
    p.add_argument("--slot", default=None, help="--part slots: walk this slot only")
    p.add_argument("--max-epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--time-budget", type=float, default=10.0)
    p.add_argument("--memory-budget", type=float, default=1024.0)
    p.add_argument("--skip-done", action="store_true")
    p.add_argument("--scale-one", default=None, help=argparse.SUPPRESS)
    p.add_argument("--data-dir", default=os.environ.get("TSFORMERS_DATA")
                   or str((REPO / ".." / "shared" / "datasets").resolve()))
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "backbone.csv")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    if args.scale_one:
        print(json.dumps(scale_one(args.scale_one, args.time_budget, args.memory_budget)))
        return 0

    mixers = args.mixers or available("mixer")
    stacks = args.stacks or available("stack")
    if args.part in ("patterns", "all"):
        rows = [_stamp(run_patterns(name)) for name in mixers]
        append_csv(args.out, rows)
        print_patterns(rows)
    if args.part in ("scaling", "all"):
        skip = done(args.out, "scaling") if args.skip_done else set()
        rows = []
        for name in (["full"] if "full" not in mixers else []) + mixers:
            if ("mixer", name) in skip:
                continue
            rows += [_stamp(r) for r in run_scaling(name, args)]
            print(f"scaling {name}: done", flush=True)
        efficiency_lengths(rows)
        append_csv(args.out, rows)
        print_scaling(rows)
    if args.part in ("accuracy", "all"):
        data = load_protocol_data(DATASET, args.data_dir, LOOKBACK)
        skip = done(args.out, "accuracy") if args.skip_done else set()
        rows = []
        for kind, names in (("mixer", mixers), ("stack", stacks)):
            for name in names:
                if (kind, name) in skip:
                    continue
                row = _stamp(run_accuracy(kind, name, data, args.max_epochs, args.seed, args.batch_size))
                append_csv(args.out, [row])
                rows.append(row)
                print(f"{kind} {name}: " + (row.get("skipped") or f"MSE {row['mse']:.4f}"), flush=True)
        print_accuracy(rows)
    if args.part in ("slots", "all"):
        data = load_protocol_data(DATASET, args.data_dir, LOOKBACK)
        skip = done_slots(args.out) if args.skip_done else set()
        for model in args.estimators or [m for m in sorted(MODELS) if m not in STREAMING]:
            for slot, name in slot_cases(model):
                if (model, slot, name) in skip or (args.slot and slot not in (args.slot, DEFAULT)):
                    continue
                if f"{slot}={name}" in args.leave_out:  # too slow for this run: a row that says so
                    row = _stamp({"part": "slots", "estimator": model, "slot": slot, "name": name, "git_rev": git_rev(),
                                  "kind": part_kind(model, slot, name), "skipped": args.leave_out_reason})
                    append_csv(args.out, [row])
                    continue
                row = _stamp(run_slot(model, slot, name, data, args.max_epochs, args.seed, args.batch_size,
                                      args.train_batches))
                append_csv(args.out, [row])
                print(f"{model} {slot}={name}: " + (row.get("skipped") or f"MSE {row['mse']:.4f}"), flush=True)
    if args.part in ("long", "all"):
        fit_frame, test_frame = long_context_split(long_context_frame(args.seed))
        skip = done_slots(args.out, "long") if args.skip_done else set()
        models = [m for m in (args.estimators or LONG_CASES) if m in LONG_CASES]
        for model, slot, name in long_cases(models):
            if (model, slot, name) in skip:
                continue
            row = _stamp(run_long(model, slot, name, fit_frame, test_frame, args.long_epochs, args.seed))
            append_csv(args.out, [row])
            print(f"long {model} {slot}={name}: " + (row.get("skipped") or f"MSE {row['mse']:.4f}"), flush=True)
    if args.part in ("depth", "all"):
        data = load_protocol_data(DATASET, args.data_dir, LOOKBACK)
        rows = [_stamp(r) for r in run_depth(data, args.max_epochs, args.seed, args.batch_size, args.repeats)]
        append_csv(args.out, rows)
        for r in rows:
            print(f"depth {json.loads(r['with'])['run']}: MSE {r['mse']:.4f}, {r['test_depth']:.2f} blocks, "
                  f"{r['eval_s']:.2f} s", flush=True)
    print(f"\nappended to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
