"""One timed measurement of ``speed.py``, in a fresh interpreter of either library's environment.

``python _speed_worker.py SPEC.json`` prints one ``RESULT {...}`` line. The spec names the library
(``tsformers`` in the project's venv, ``neuralforecast`` in ``benchmarks/.venv-nf``), the model and its
size, and the task:

All times are CPU seconds of the process (``time.process_time``: user + system, all threads), which a
busy shared machine does not inflate the way it inflates wall time; wall times are recorded alongside.

* ``import``: seconds to import the library and the model class; resident memory afterwards.
* ``train``: two fits on the ETTh1 train rows (7 variables, lookback 96, horizon 96, batches of
  ``batch`` multivariate windows), ``steps_short`` and ``steps_long`` optimiser steps, no validation.
  The difference gives the time of one step (so windows per second) without the fixed cost of a fit,
  and the intercept ``fit_fixed_s`` is that fixed cost (building the trainer, preparing the data...).
  Untimed fits of 1 and 2 steps come first, so imports and first-call costs are in neither; torch's FLOP
  counter (``torch.utils.flop_counter``) runs over them, and their difference gives the arithmetic of one
  step (``mflop_per_window``: matmul, convolution and attention FLOPs, forward and backward, per window;
  ``gflop_per_s``: that over the step time), which says whether a model is slower per window because it does
  more arithmetic or because it does it less efficiently.
* ``predict``: a short fit on ``n_series`` synthetic univariate series, then ``predict()`` of the next
  96 steps for all of them: the first call and the median of ``repeats`` more (public API, frame in,
  frame out).

Peak memory is the process's peak RSS (``getrusage``), so every measurement runs in its own process.

A ``train`` spec with ``"accelerator": "gpu"`` trains on the machine's first GPU (``"precision"``, e.g.
``"bf16-mixed"``, goes to both libraries' Trainers as it is); its step times are then wall seconds, read after
``torch.cuda.synchronize()`` (the process's CPU time does not count the GPU's work), and ``clock`` says which.
"""
from __future__ import annotations

import json
import os
import resource
import sys
import time

LOOKBACK = HORIZON = 96


def on_gpu(spec) -> bool:
    return spec.get("accelerator", "cpu") != "cpu"


def trainer_device(spec) -> dict:
    """The Trainer settings that put a fit where the spec says: the CPU, or one GPU at ``precision``."""
    device = {"accelerator": spec.get("accelerator", "cpu"), "devices": 1}
    return device | ({"precision": spec["precision"]} if spec.get("precision") else {})


def cpu() -> float:
    """CPU seconds of this process (all its threads, user + system).

    On a shared machine the wall time of a single-threaded process depends on how often the scheduler
    runs it; its CPU time does not, so step times and ratios come from this clock (wall times are
    recorded too).
    """
    return time.process_time()


def _rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _quiet():
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning.fabric", "lightning_fabric",
                 "neuralforecast"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _import(library: str):
    if library == "tsformers":
        from tsformers import GateformerForecaster

        return GateformerForecaster
    from neuralforecast import NeuralForecast  # noqa: F401
    from neuralforecast.models import PatchTST, iTransformer  # noqa: F401

    return NeuralForecast


# -- data ---------------------------------------------------------------------------------------------

def ett_train(spec):
    """The ETTh1 train rows as a wide frame (integer time) and as neuralforecast's long frame."""
    import numpy as np
    import pandas as pd

    frame = pd.read_csv(spec["csv"]).iloc[: spec["train_end"]]
    columns = [c for c in frame.columns if c != "date"]
    values = frame[columns].to_numpy(np.float64)
    values = (values - values.mean(0)) / values.std(0)
    wide = pd.DataFrame(values, columns=columns)
    wide.insert(0, "t", np.arange(len(wide)))
    n = len(wide)
    long = pd.DataFrame({"unique_id": np.repeat(np.asarray(columns, dtype=object), n),
                         "ds": np.tile(np.arange(n), len(columns)), "y": values.T.reshape(-1).astype(np.float32)})
    return wide, long


def synthetic_panel(n_series: int, n_time: int):
    """``n_series`` univariate series (daily-ish sine waves with noise), long format."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    t = np.arange(n_time)
    phase = rng.uniform(0, 2 * np.pi, (n_series, 1))
    y = np.sin(2 * np.pi * t / 24 + phase) + 0.1 * rng.standard_normal((n_series, n_time))
    return pd.DataFrame({"unique_id": np.repeat([f"s{i:04d}" for i in range(n_series)], n_time),
                         "ds": np.tile(t, n_series), "y": y.reshape(-1).astype(np.float32)})


# -- models -------------------------------------------------------------------------------------------

def ours(spec, steps: int, batch: int, **frame):
    from tsformers import GateformerForecaster

    hp = spec["hp"]
    # the attention weights' own dropout where the spec names it and the tree's estimator takes it (an older
    # tree, from before the parameter, dropped them at dropout, as the paper's attention_dropout=None does)
    takes = "attention_dropout" in hp and "attention_dropout" in GateformerForecaster().get_params()
    extra = {"attention_dropout": hp["attention_dropout"]} if takes else {}
    # one network: a step of the seed ensemble the estimator fits by default (ensemble_size=2) is its members' steps
    if "ensemble_size" in GateformerForecaster().get_params():
        extra["ensemble_size"] = 1
    return GateformerForecaster(linear_base=False, **frame, **extra, horizon=HORIZON, lookback=LOOKBACK, d_model=hp["d_model"], d_ff=hp["d_ff"],
                                e_layers=hp["e_layers"], n_heads=hp["n_heads"], batch_size=batch, max_epochs=1,
                                # the paper's patches unless the spec names others (the default is 16 since 80b1c43)
                                patch_len=hp.get("patch_len", 8), stride=hp.get("stride", 8),
                                val_size=0, learning_rate=1e-4, random_state=0, verbose=False,
                                trainer_kwargs={"limit_train_batches": steps, **trainer_device(spec)})


def theirs(spec, steps: int, batch: int, n_series: int, n_vars: int):
    from neuralforecast.losses.pytorch import MSE
    from neuralforecast.models import PatchTST, iTransformer

    hp = spec["hp"]
    common = dict(h=HORIZON, input_size=LOOKBACK, loss=MSE(), scaler_type="identity", random_seed=0,
                  learning_rate=1e-4, max_steps=steps, val_check_steps=10**9, **trainer_device(spec),
                  logger=False, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    if spec["model"] == "itransformer":
        return iTransformer(n_series=n_series, hidden_size=hp["d_model"], d_ff=hp["d_ff"], e_layers=hp["e_layers"],
                            n_heads=hp["n_heads"], dropout=0.1, windows_batch_size=batch,
                            inference_windows_batch_size=1024, **common)
    # channel-independent: `batch` multivariate windows are batch * n_vars univariate ones
    return PatchTST(hidden_size=hp["d_model"], linear_hidden_size=hp["d_ff"], encoder_layers=hp["e_layers"],
                    n_heads=hp["n_heads"], dropout=0.1, fc_dropout=0.1, head_dropout=0.0, patch_len=16, stride=8,
                    batch_size=min(n_vars, 1024), windows_batch_size=batch * n_vars,
                    inference_windows_batch_size=1024, **common)


def n_params_of(spec) -> int:
    """Parameters of the model at the spec's size, for 7 variables."""
    import numpy as np

    if spec["library"] == "tsformers":
        est = ours(spec, 1, 8, time_col="t")
        net = est.set_params(max_epochs=0).fit(synthetic_wide(7)).network_
    else:
        net = theirs(spec, 1, 8, 7, 7)
    return int(sum(np.prod(p.shape) for p in net.parameters()))


def synthetic_wide(n_vars: int):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.standard_normal((300, n_vars)), columns=[f"v{i}" for i in range(n_vars)])
    frame.insert(0, "t", np.arange(300))
    return frame


# -- tasks --------------------------------------------------------------------------------------------

def task_import(spec):
    t0, w0 = cpu(), time.perf_counter()
    import torch  # noqa: F401

    torch_s = cpu() - t0
    _import(spec["library"])
    return {"import_s": cpu() - t0, "import_wall_s": time.perf_counter() - w0, "torch_import_s": torch_s,
            "rss_after_import_mib": _rss_mib()}


def task_count(spec):
    import torch

    torch.set_num_threads(1)
    _quiet()
    _import(spec["library"])
    return {"n_params": n_params_of(spec)}


def task_match(spec):
    """Parameter counts of several sizes of one model (``spec["candidates"]``: a list of ``hp`` dicts)."""
    import torch

    torch.set_num_threads(1)
    _quiet()
    _import(spec["library"])
    return {"counts": [n_params_of({**spec, "hp": hp}) for hp in spec["candidates"]]}


def task_train(spec):
    import torch

    torch.set_num_threads(spec.get("threads", 1))
    _quiet()
    _import(spec["library"])
    wide, long = ett_train(spec)
    batch = spec["batch"]
    n_vars = wide.shape[1] - 1
    times, walls, flops, n_params = {}, {}, {}, None

    def fit(steps: int) -> None:
        nonlocal n_params
        if spec["library"] == "tsformers":
            est = ours(spec, steps, batch, time_col="t")
            est.fit(wide)
            n_params = sum(p.numel() for p in est.network_.parameters())
        else:
            from neuralforecast import NeuralForecast

            model = theirs(spec, steps, batch, n_vars, n_vars)
            n_params = sum(p.numel() for p in model.parameters())
            NeuralForecast(models=[model], freq=1).fit(long, val_size=0)

    # untimed fits of 1 and 2 steps under torch's FLOP counter (matmuls, convolutions and attention, forward
    # and backward): their difference is the arithmetic of one training step. They also make the first fit of
    # the process, which imports and initialises most of the training stack (seconds) and would otherwise land
    # in the short timed fit and bias the step time down
    from torch.utils.flop_counter import FlopCounterMode

    for steps in (1, 2):
        with FlopCounterMode(display=False) as counter:
            fit(steps)
        flops[steps] = counter.get_total_flops()
    gpu = on_gpu(spec)
    for steps in (spec["steps_short"], spec["steps_long"]):
        t0, w0 = cpu(), time.perf_counter()
        fit(steps)
        if gpu:  # the fit's last kernels done before the clock is read
            torch.cuda.synchronize()
        times[steps], walls[steps] = cpu() - t0, time.perf_counter() - w0
    if gpu:  # a GPU's steps are its wall time: the process's CPU time leaves out the device's work
        times = walls
    s1, s2 = spec["steps_short"], spec["steps_long"]
    step_s = (times[s2] - times[s1]) / (s2 - s1)
    step_flops = flops[2] - flops[1]
    return {"n_params": n_params, "fit_short_s": times[s1], "fit_long_s": times[s2], "step_ms": 1e3 * step_s,
            "windows_per_s": batch / step_s, "fit_fixed_s": times[s1] - s1 * step_s,
            "mflop_per_window": step_flops / batch / 1e6, "gflop_per_s": step_flops / step_s / 1e9,
            "fit_long_wall_s": walls[s2], "peak_rss_mib": _peak_rss_mib(), "clock": "wall" if gpu else "cpu"}


def task_predict(spec):
    import numpy as np
    import torch

    torch.set_num_threads(spec.get("threads", 1))
    _quiet()
    _import(spec["library"])
    n_series = spec["n_series"]
    panel = synthetic_panel(n_series, LOOKBACK + HORIZON + 104)
    steps, batch = spec.get("fit_steps", 5), spec.get("batch", 32)
    if spec["library"] == "tsformers":
        est = ours(spec, steps, batch)
        t0 = cpu()
        est.fit(panel)
        fit_s = cpu() - t0
        call = lambda: est.predict(panel)  # noqa: E731
        n_params = sum(p.numel() for p in est.network_.parameters())
    else:
        from neuralforecast import NeuralForecast

        model = theirs(spec, steps, batch, n_series, 1)
        n_params = sum(p.numel() for p in model.parameters())
        nf = NeuralForecast(models=[model], freq=1)
        t0 = cpu()
        nf.fit(panel, val_size=0)
        fit_s = cpu() - t0
        call = lambda: nf.predict(df=panel)  # noqa: E731
    t0 = cpu()
    out = call()
    first_s = cpu() - t0
    assert len(out) == n_series * HORIZON, (len(out), n_series)
    repeat, walls = [], []
    for _ in range(spec.get("repeats", 5)):
        t0, w0 = cpu(), time.perf_counter()
        call()
        repeat.append(cpu() - t0)
        walls.append(time.perf_counter() - w0)
    return {"n_params": n_params, "fit_s": fit_s, "predict_first_s": first_s,
            "predict_median_s": float(np.median(repeat)), "predict_min_s": float(np.min(repeat)),
            "predict_wall_median_s": float(np.median(walls)), "peak_rss_mib": _peak_rss_mib()}


TASKS = {"import": task_import, "count": task_count, "match": task_match, "train": task_train, "predict": task_predict}


def main() -> int:
    with open(sys.argv[1]) as fh:
        spec = json.load(fh)
    load_start = os.getloadavg()[0]
    result = TASKS[spec["task"]](spec)
    result.update(load_start=load_start, load_end=os.getloadavg()[0])
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
