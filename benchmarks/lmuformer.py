"""LMUFormer benchmark: size, FLOPs, ETTh1-96 accuracy, and what streaming saves.

1. **Size and FLOPs**: parameters, and FLOPs per forecast of one window (matmuls and
   convolutions counted by ``torch.utils.flop_counter``, FFTs added as 2.5·n·log2 n per
   real transform; elementwise work such as BatchNorm, activations and LIF updates is not
   counted), and for LMUFormer the FLOPs of one streaming step (``advance`` by one row and
   ``forecast``).
2. **Accuracy** on ETTh1 at horizon 96 under the literature protocol (``_protocol.py``:
   12/4/4-month splits, scaler on train, every stride-1 test window, MSE/MAE on scaled
   data) for LMUFormer, its spiking variant and Gateformer. For the LMUFormers also "with
   states": the forecast at each test window's end from the state after the *whole*
   history (one streaming pass over all rows), and, for the spiking one, the fraction of
   non-zero spikes on the test windows.
3. **Streaming cost**: the per-step cost of ``update(one row)`` + ``predict()`` against
   ``predict(full history)`` (which re-runs the recurrence over every row), for histories
   of 1k, 10k and 100k steps, at the estimator and at the network level, and the largest
   difference between the two forecasts.

    .venv/bin/python benchmarks/lmuformer.py --threads 1

Rows are appended to ``benchmarks/results/lmuformer.csv`` (``kind`` = accuracy or streaming).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for _protocol and long_horizon when run as a script
from _protocol import append_rows, evaluate_windows, load_protocol_data, n_parameters, scaled_values  # noqa: E402
from long_horizon import _EpochTimer, gateformer  # noqa: E402  (Gateformer with its paper's ETTh1 settings)

from tsformers.backbone.spiking import SpikeRateCounter  # noqa: E402
from tsformers.datasets import load_dataset  # noqa: E402
from tsformers.estimators.lmuformer import LMUFormerForecaster  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LOOKBACK, HORIZON, DATASET = 96, 96, "ETTh1"


def lmuformer(dataset: str, horizon: int) -> LMUFormerForecaster:
    """LMUFormer with the estimator's defaults (the paper's, adapted to forecasting: see its docstring)."""
    return LMUFormerForecaster(horizon=horizon, lookback=LOOKBACK)


def lmuformer_spiking(dataset: str, horizon: int) -> LMUFormerForecaster:
    return LMUFormerForecaster(horizon=horizon, lookback=LOOKBACK, spiking=True)


MODELS = {"lmuformer": lmuformer, "lmuformer_spiking": lmuformer_spiking, "gateformer": gateformer}

FIELDS = ["timestamp", "kind", "dataset", "horizon", "model", "seed", "mse", "mae", "mse_with_states",
          "mae_with_states", "naive_mse", "naive_mae", "n_windows", "spike_rate", "epochs_run", "best_epoch",
          "max_epochs", "fit_s", "eval_s", "n_params", "flops_per_forecast", "flops_per_stream_step",
          "history_steps", "update_predict_ms", "full_predict_ms", "advance_step_ms", "advance_full_ms",
          "max_abs_diff", "torch_version", "n_threads", "params"]


# -- FLOPs -------------------------------------------------------------------------------------------

def _fft_flops(n: int, numel: int) -> int:
    return int(2.5 * n * math.log2(max(n, 2)) * (numel // max(n, 1)))


def _r2c(x_shape, dim, *args, out_shape=None, **kwargs) -> int:
    n = math.prod(x_shape[d] for d in dim)
    return _fft_flops(n, math.prod(x_shape))


def _c2r(x_shape, dim, *args, out_shape=None, **kwargs) -> int:
    n = math.prod(out_shape[d] for d in dim)
    return _fft_flops(n, math.prod(out_shape))


FFT_FLOPS = {torch.ops.aten._fft_r2c: _r2c, torch.ops.aten._fft_c2r: _c2r}


def count_flops(fn) -> int:
    with FlopCounterMode(display=False, custom_mapping=FFT_FLOPS) as counter:
        fn()
    return counter.get_total_flops()


def network_flops(network, n_vars: int) -> tuple[int, int | None]:
    """FLOPs of one window forecast, and (streaming networks) of one advance-by-one-row plus forecast."""
    network.eval()
    x = torch.randn(1, LOOKBACK, n_vars)
    with torch.no_grad():
        per_forecast = count_flops(lambda: network(x))
        if not hasattr(network, "advance"):
            return per_forecast, None
        state = network.advance(network.init_state(1), x)
        per_step = count_flops(lambda: network.forecast(network.advance(state, x[:, -1:])))
    return per_forecast, per_step


# -- accuracy ------------------------------------------------------------------------------------------

def evaluate_with_states(est, full_frame: pd.DataFrame, test_start: int, n_windows: int) -> dict:
    """MSE/MAE of the forecasts from the state after all rows up to each test window's end (one pass)."""
    values = torch.from_numpy(scaled_values(est, full_frame).astype(np.float32))      # (T, N)
    n_targets = len(est.schema_.targets)
    ends = torch.arange(n_windows) + test_start - 1                                     # last input row per window
    network = est.network_.eval()
    with torch.no_grad():
        every, _ = network.forecast_every_step(values[None, : int(ends[-1]) + 1])       # (1, T, H, N)
    pred = every[0, ends, :, :n_targets].double()                                       # (W, H, n_targets)
    truth = values.double().unfold(0, HORIZON, 1)[ends + 1, :n_targets].mT              # (W, H, n_targets)
    err = pred - truth
    return {"mse_with_states": float((err ** 2).mean()), "mae_with_states": float(err.abs().mean())}


def spike_rate(est, test_frame: pd.DataFrame, n: int = 256) -> float:
    values = torch.from_numpy(scaled_values(est, test_frame).astype(np.float32))
    windows = values.unfold(0, LOOKBACK, 1)[:n].mT.contiguous()                         # (n, L, N)
    network = est.network_.eval()
    with torch.no_grad(), SpikeRateCounter(network) as counter:
        network(windows)
    assert counter.binary, "a LIF layer emitted a value other than 0 or 1"
    return counter.rate


def run_accuracy(model: str, data, full_frame: pd.DataFrame, seed: int, max_epochs: int | None) -> tuple:
    est = MODELS[model](data.name, HORIZON)
    overrides = dict(random_state=seed, val_size=int(data.val_steps),
                     trainer_kwargs={"callbacks": [_EpochTimer.make(f"[{model} seed={seed}]")]})
    if max_epochs is not None:
        overrides["max_epochs"] = max_epochs
    est.set_params(**overrides)
    t0 = time.perf_counter()
    est.fit(data.fit_frame)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    scores = evaluate_windows(est, data.test_frame)
    eval_s = time.perf_counter() - t0
    n_vars = len(est.schema_.variables)
    per_forecast, per_step = network_flops(est.network_, n_vars)
    row = {"kind": "accuracy", "dataset": data.name, "horizon": HORIZON, "model": model, "seed": seed, **scores,
           "epochs_run": len(est.training_log_), "max_epochs": est.max_epochs, "fit_s": fit_s, "eval_s": eval_s,
           "n_params": n_parameters(est.network_), "flops_per_forecast": per_forecast,
           "flops_per_stream_step": per_step,
           "params": json.dumps({k: v for k, v in est.get_params().items() if k != "trainer_kwargs"},
                                sort_keys=True)}
    val = [r.get("val_loss", np.inf) for r in est.training_log_]
    row["best_epoch"] = int(np.argmin(val)) + 1 if val else 0
    if isinstance(est, LMUFormerForecaster):
        row.update(evaluate_with_states(est, full_frame, data.bounds["test"][0], scores["n_windows"]))
        if est.spiking:
            row["spike_rate"] = spike_rate(est, data.test_frame)
    return est, row


# -- streaming cost ---------------------------------------------------------------------------------

def long_history(frame: pd.DataFrame, n_rows: int, time_col: str = "date") -> pd.DataFrame:
    """The dataset's rows repeated to ``n_rows``, with the hourly timestamps continued."""
    reps = -(-n_rows // len(frame))
    out = pd.concat([frame] * reps, ignore_index=True).iloc[:n_rows].copy()
    out[time_col] = pd.date_range(frame[time_col].iloc[0], periods=n_rows, freq="h")
    return out


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def run_streaming(trained: LMUFormerForecaster, frame: pd.DataFrame, sizes: list[int]) -> list[dict]:
    """update + predict() against predict(full history), estimator and network level, per history length.

    For each n, an estimator with the trained one's parameters and weights holds the streaming
    state after the first n - 1 rows (fitted with ``max_epochs=0`` for its schema and scaler, then
    given the trained weights and the state they give); then ``update`` by row n and ``predict()``
    is timed against ``predict`` on all n rows, and the two forecasts are compared.
    """
    rows = []
    longest = long_history(frame, max(sizes) + 40)
    variables = list(trained.schema_.variables)
    values = longest[variables].to_numpy(dtype=np.float64)
    for n in sizes:
        g = LMUFormerForecaster(**{**trained.get_params(), "max_epochs": 0}).fit(longest.iloc[: n - 1])
        g.network_.load_state_dict(trained.network_.state_dict())
        with torch.no_grad():
            x = torch.from_numpy(g.scaler_.transform(values[None, : n - 1]).astype(np.float32))
            g.state_ = g.network_.advance(g.network_.init_state(1), x)
        full = longest.iloc[:n]
        t0 = time.perf_counter()
        by_full = g.predict(full)
        full_ms = 1e3 * (time.perf_counter() - t0)
        g.update(longest.iloc[n - 1: n])
        by_update = g.predict()
        diff = float(np.abs(by_full[variables].to_numpy() - by_update[variables].to_numpy()).max())
        u = []
        hook = g.network_.blocks[0].lmu.W_u.register_forward_hook(lambda mod, inp, out: u.append(out))
        g.predict(longest.iloc[n - 200: n])
        hook.remove()
        assert float((u[0] > 0).float().mean()) > 0.1, "the memory's input is silent: the comparison would be void"
        step = iter(range(n, n + 40))

        def one_step():
            i = next(step)
            g.update(longest.iloc[i: i + 1])
            g.predict()

        update_ms = _median_ms(one_step, 30)

        network = g.network_
        x = torch.from_numpy(g.scaler_.transform(values[None, :n]).astype(np.float32))
        with torch.no_grad():
            t0 = time.perf_counter()
            network.forecast(network.advance(network.init_state(1), x))
            advance_full_ms = 1e3 * (time.perf_counter() - t0)
            state = network.advance(network.init_state(1), x[:, :-1])
            advance_step_ms = _median_ms(lambda: network.forecast(network.advance(state, x[:, -1:])), 50)
        rows.append({"kind": "streaming", "dataset": DATASET, "horizon": g.horizon, "model": "lmuformer",
                     "history_steps": n, "update_predict_ms": update_ms, "full_predict_ms": full_ms,
                     "advance_step_ms": advance_step_ms, "advance_full_ms": advance_full_ms, "max_abs_diff": diff,
                     "epochs_run": len(trained.training_log_),
                     "params": json.dumps({k: v for k, v in g.get_params().items() if k != "trainer_kwargs"},
                                          sort_keys=True)})
        print(f"history {n:>6}: update + predict() {update_ms:8.2f} ms | predict(full) {full_ms:9.1f} ms | network: "
              f"advance 1 + forecast {advance_step_ms:7.2f} ms, advance all + forecast {advance_full_ms:9.1f} ms | "
              f"max |update - full| {diff:.2e} (original units)", flush=True)
    return rows


# -- output ------------------------------------------------------------------------------------------

def append_csv(path: Path, rows: list[dict]) -> None:
    append_rows(path, rows, FIELDS)


def _stamp(row: dict) -> dict:
    return {"timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "torch_version": torch.__version__, "n_threads": torch.get_num_threads(), **row}


def print_accuracy(rows: list[dict]) -> None:
    head = (f"{'model':<18} {'params':>9} {'MFLOP/fcst':>10} {'MFLOP/step':>10} {'MSE':>7} {'MAE':>7} "
            f"{'MSE st.':>7} {'MAE st.':>7} {'spikes':>7} {'epochs':>7} {'fit s':>6}")
    print("\n" + head + "\n" + "-" * len(head))
    for r in rows:
        step = f"{r['flops_per_stream_step'] / 1e6:10.2f}" if r.get("flops_per_stream_step") else f"{'-':>10}"
        st = (f"{r['mse_with_states']:7.4f} {r['mae_with_states']:7.4f}" if "mse_with_states" in r
              else f"{'-':>7} {'-':>7}")
        spikes = f"{r['spike_rate']:7.3f}" if "spike_rate" in r else f"{'-':>7}"
        print(f"{r['model']:<18} {r['n_params']:>9} {r['flops_per_forecast'] / 1e6:10.2f} {step} {r['mse']:7.4f} "
              f"{r['mae']:7.4f} {st} {spikes} {r['epochs_run']:>4} ({r['best_epoch']}) {r['fit_s']:6.0f}")
    if rows:
        print(f"{'last value':<18} {'':>9} {'':>10} {'':>10} {rows[0]['naive_mse']:7.4f} {rows[0]['naive_mae']:7.4f}"
              f"   (the same {rows[0]['n_windows']} test windows)")
    print("MSE/MAE on standard-scaled data, every stride-1 test window of ETTh1, lookback 96, horizon 96. "
          "'st.': forecast from the streaming state after the whole history instead of the 96-step window. "
          "FLOPs: matmuls, convolutions and FFTs of one forecast (batch 1); 'step': one row of update + forecast.")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--models", nargs="*", default=list(MODELS), choices=sorted(MODELS),
                   help="models for the accuracy part (none: streaming cost only)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--max-epochs", type=int, default=None, help="override each model's number of epochs")
    p.add_argument("--history", nargs="+", type=int, default=[1_000, 10_000, 100_000],
                   help="history lengths for the streaming cost (0 skips it)")
    p.add_argument("--stream-epochs", type=int, default=1,
                   help="epochs of the LMUFormer whose weights the streaming part uses, when no accuracy run of "
                        "'lmuformer' precedes it")
    p.add_argument("--data-dir", default=os.environ.get("TSFORMERS_DATA")
                   or str((REPO / ".." / "shared" / "datasets").resolve()))
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "lmuformer.csv")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads; 0 keeps torch's default")
    args = p.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs", flush=True)

    data = load_protocol_data(DATASET, args.data_dir, LOOKBACK)
    full_frame = load_dataset(DATASET, data_dir=args.data_dir).iloc[: data.bounds["test"][1]]
    accuracy, trained = [], None
    for model in args.models:
        for seed in args.seeds:
            est, row = run_accuracy(model, data, full_frame, seed, args.max_epochs)
            row = _stamp(row)
            accuracy.append(row)
            append_csv(args.out, [row])
            extra = (f", with states {row['mse_with_states']:.4f}/{row['mae_with_states']:.4f}"
                     if "mse_with_states" in row else "")
            print(f"{model} seed={seed}: MSE {row['mse']:.4f} MAE {row['mae']:.4f}{extra}; "
                  f"{row['epochs_run']} epochs, fit {row['fit_s']:.0f}s", flush=True)
            if model == "lmuformer" and trained is None:
                trained = est
    if accuracy:
        print_accuracy(accuracy)

    sizes = [n for n in args.history if n > 0]
    if sizes:
        if trained is None:  # no accuracy run here: weights from a short fit (a step's cost does not depend on them)
            trained = lmuformer(DATASET, HORIZON).set_params(max_epochs=args.stream_epochs,
                                                             val_size=int(data.val_steps)).fit(data.fit_frame)
        print(f"\nstreaming: one new row, update + predict() vs predict(the whole history); weights after "
              f"{len(trained.training_log_)} epochs", flush=True)
        rows = [_stamp(r) for r in run_streaming(trained, full_frame, sizes)]
        append_csv(args.out, rows)
    print(f"\nappended to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
