"""Inference speed: predict latency per engine, and packed against padded batches of ragged series.

Part 1, **predict latency** of a Gateformer at its ETTh1-96 paper size (d_model 64, 1 layer, 4
heads; lookback 96, horizon 96) on synthetic univariate series, for 1 and 1,000 series:

* ``predict``: the public API, frame in and frame out (validation, scaling, the output frame),
  with the torch network (``engine=torch``) or ONNX Runtime (``engine=onnx``, the model
  directory's ``model.onnx`` from ``export_onnx``);
* ``network``: the network alone on the scaled input tensor: torch eager, ``torch.compile``
  (inductor; its compile time is reported apart) and ONNX Runtime;
* neuralforecast's ``predict(df=...)`` on an iTransformer of about the same size (d_model 96, 2 layers:
  129k parameters against 133k), run in its own
  virtual environment (``benchmarks/.venv-nf``, the one ``speed.py`` creates, through its worker
  ``_speed_worker.py``). Without that environment the column is skipped, and the table says so.

Then a streaming model: LMUFormer's ``predict(df)`` over 200 steps of history, torch (the
Legendre memory by FFT over the whole history) against the ONNX stream graph (8 steps per call).

Part 2, **packed against padded**: a panel of series whose lengths run from 100 to 10,000 steps
(log-uniform), tokens = patches of 16 steps (6 to 625 tokens), a 2-layer pre-LN Transformer
encoder (d_model 64). Padded: one batch padded to the longest series with a key mask (in
chunks, so memory stays bounded). Packed (``tsformers.runtime.packed``): the token-wise layers on
the ΣN_i valid tokens, attention per series. Reported: series per second and the attention work
ΣN_i² against B·max N².

Everything runs with one thread (torch, ONNX Runtime, the neuralforecast process) so the
numbers compare like with like on a shared machine; each row records the load average.

    .venv/bin/python benchmarks/inference.py                 # repeats 5
    .venv/bin/python benchmarks/inference.py --repeats 2 --no-compile

Rows go to ``benchmarks/results/inference.csv`` (appended).
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
OUT = HERE / "results" / "inference.csv"
LOOKBACK = HORIZON = 96
GATEFORMER = {"d_model": 64, "d_ff": 64, "e_layers": 1, "n_heads": 4, "patch_len": 8, "stride": 8,
              "attention_dropout": None}  # ETTh1-96 paper
FIELDS = ["timestamp", "part", "case", "engine", "n_series", "median_ms", "min_ms", "first_ms", "extra",
          "note", "load_start", "load_end", "n_threads"]


def synthetic_panel(n_series: int, n_time: int):
    import pandas as pd

    rng = np.random.default_rng(0)
    t = np.arange(n_time)
    phase = rng.uniform(0, 2 * np.pi, (n_series, 1))
    y = np.sin(2 * np.pi * t / 24 + phase) + 0.1 * rng.standard_normal((n_series, n_time))
    return pd.DataFrame({"unique_id": np.repeat([f"s{i:04d}" for i in range(n_series)], n_time),
                         "ds": np.tile(t, n_series), "y": y.reshape(-1).astype(np.float32)})


def timed(call, repeats: int) -> tuple[float, float, float]:
    """(first, median, min) in milliseconds."""
    t0 = time.perf_counter()
    call()
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return first * 1e3, float(np.median(times)) * 1e3, float(np.min(times)) * 1e3


def row(part, case, engine, n_series, first=None, median=None, minimum=None, extra="", note=""):
    return {"part": part, "case": case, "engine": engine, "n_series": n_series,
            "first_ms": None if first is None else round(first, 3),
            "median_ms": None if median is None else round(median, 3),
            "min_ms": None if minimum is None else round(minimum, 3), "extra": extra, "note": note}


# -- part 1: predict latency ----------------------------------------------------------------------------

def latency(repeats: int, compile_: bool, nf: bool, workdir: Path) -> list[dict]:
    from tsformers import BaseForecaster, GateformerForecaster

    rows = []
    fit_panel = synthetic_panel(8, LOOKBACK + HORIZON + 104)
    est = GateformerForecaster(linear_base=False, ensemble_size=1, horizon=HORIZON, lookback=LOOKBACK, **GATEFORMER, max_epochs=1, val_size=0,
                               batch_size=32, random_state=0, trainer_kwargs={"limit_train_batches": 5})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(fit_panel)
    n_params = sum(p.numel() for p in est.network_.parameters())
    path = est.save(workdir / "gateformer")
    t0 = time.perf_counter()
    est.export_onnx(path)
    export_s = time.perf_counter() - t0
    rows.append(row("latency", "export_onnx", "onnx", 0, extra=f"export {export_s:.1f} s; {n_params} parameters"))
    onnx_est = BaseForecaster.load(path, engine="onnx")
    network = est.network_
    compiled, compile_note = None, ""
    if compile_:
        try:
            compiled = torch.compile(network, dynamic=False)
        except Exception as err:  # noqa: BLE001 - reported, not fatal
            compile_note = f"torch.compile unavailable: {type(err).__name__}: {err}"[:200]
    for n_series in (1, 1000):
        panel = synthetic_panel(n_series, LOOKBACK + 24)
        x = torch.randn(n_series, LOOKBACK, 1)
        with torch.no_grad():
            expected = network(x)
        rows.append(row("latency", "predict", "torch", n_series, *timed(lambda: est.predict(panel), repeats)))
        rows.append(row("latency", "predict", "onnx", n_series, *timed(lambda: onnx_est.predict(panel), repeats)))
        with torch.no_grad():
            rows.append(row("latency", "network", "torch eager", n_series, *timed(lambda: network(x), repeats)))
        if compiled is not None:
            try:
                with torch.no_grad():
                    t0 = time.perf_counter()
                    got = compiled(x)
                    compile_s = time.perf_counter() - t0
                    err = float((got - expected).abs().max())
                    first, med, mn = timed(lambda: compiled(x), repeats)
                rows.append(row("latency", "network", "torch.compile", n_series, compile_s * 1e3, med, mn,
                                extra=f"first call incl. compile; max |diff| {err:.1e}"))
            except Exception as error:  # noqa: BLE001
                compile_note = f"torch.compile failed: {type(error).__name__}: {error}"[:200]
                compiled = None
        xs = x.numpy()
        sess = onnx_est.network_
        err = float(np.abs(sess(x).numpy() - expected.numpy()).max())
        rows.append(row("latency", "network", "onnxruntime", n_series,
                        *timed(lambda: sess.session.run(None, {"x": xs}), repeats), extra=f"max |diff| {err:.1e}"))
        if nf:
            rows.append(neuralforecast_row(n_series, repeats))
    if compile_note:
        rows.append(row("latency", "network", "torch.compile", 0, note=compile_note))
    return rows


def stream_latency(repeats: int, workdir: Path, history: int = 200) -> list[dict]:
    """LMUFormer (streaming, d_model 64): predict(df) over a history of ``history`` steps, torch vs ONNX.

    Torch runs the Legendre memory over the whole history at once (FFT); the ONNX graph advances
    ``STREAM_BLOCK`` steps per call, so a history costs ceil(T / block) calls.
    """
    from tsformers import BaseForecaster, LMUFormerForecaster

    est = LMUFormerForecaster(horizon=HORIZON, lookback=LOOKBACK, max_epochs=1, val_size=0, batch_size=32,
                              random_state=0, trainer_kwargs={"limit_train_batches": 3})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(synthetic_panel(8, LOOKBACK + HORIZON + 104))
    path = est.save(workdir / "lmuformer")
    t0 = time.perf_counter()
    est.export_onnx(path)
    rows = [row("stream", "export_onnx", "onnx", 0, extra=f"LMUFormer export {time.perf_counter() - t0:.1f} s")]
    onnx_est = BaseForecaster.load(path, engine="onnx")
    for n_series in (1, 1000):
        panel = synthetic_panel(n_series, history)
        err = float(np.abs(est.predict(panel)["y"].to_numpy() - onnx_est.predict(panel)["y"].to_numpy()).max())
        rows.append(row("stream", f"predict T={history}", "torch", n_series,
                        *timed(lambda: est.predict(panel), repeats)))
        rows.append(row("stream", f"predict T={history}", "onnx", n_series,
                        *timed(lambda: onnx_est.predict(panel), repeats), extra=f"max |diff| {err:.1e}"))
    return rows


def neuralforecast_row(n_series: int, repeats: int) -> dict:
    try:
        from _nfenv import NF_PYTHON, run_worker
        worker = HERE / "_speed_worker.py"
        if not NF_PYTHON.exists() or not worker.exists():
            raise FileNotFoundError(f"{NF_PYTHON} or {worker} is missing (run benchmarks/speed.py once)")
        spec = {"task": "predict", "library": "neuralforecast", "model": "itransformer", "n_series": n_series,
                "hp": {"d_model": 96, "d_ff": 96, "e_layers": 2, "n_heads": 8}, "repeats": repeats, "threads": 1,
                "fit_steps": 5}
        got = run_worker(NF_PYTHON, worker, spec, timeout=1800)
        return row("latency", "predict", "neuralforecast iTransformer", n_series, got["predict_first_s"] * 1e3,
                   got["predict_median_s"] * 1e3, got["predict_min_s"] * 1e3,
                   extra=f"{got['n_params']} parameters")
    except Exception as err:  # noqa: BLE001 - the column is optional
        return row("latency", "predict", "neuralforecast iTransformer", n_series,
                   note=f"skipped: {type(err).__name__}: {err}"[:300])


# -- part 2: packed against padded ------------------------------------------------------------------------

def packing(repeats: int, n_series: int, chunk: int) -> list[dict]:
    from tsformers.backbone import PatchEmbedding, TransformerEncoder
    from tsformers.runtime.packed import PackedEncoder, masked_forward, pack

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    lengths = np.sort(np.exp(rng.uniform(np.log(100), np.log(10_000), n_series)).astype(int))
    lengths[0], lengths[-1] = 100, 10_000
    embed = PatchEmbedding(64, patch_len=16, stride=16, dropout=0.0).eval()
    encoder = TransformerEncoder(d_model=64, n_heads=4, d_ff=128, n_layers=2, dropout=0.0).eval()
    with torch.no_grad():
        tokens = [embed(torch.randn(1, 1, int(n)))[0, 0] for n in lengths]      # (N_i, 64) each
    n_tok = torch.tensor([t.shape[0] for t in tokens])
    packed = pack(tokens)
    runner = PackedEncoder(encoder)

    def padded():
        out = []
        for start in range(0, n_series, chunk):  # bounded memory: `chunk` series padded to the longest at a time
            sizes = n_tok[start:start + chunk]
            x = torch.zeros(len(sizes), int(n_tok.max()), 64)
            mask = torch.arange(x.shape[1])[None, :] < sizes[:, None]
            x[mask] = torch.cat(tokens[start:start + chunk])
            out.append(masked_forward(encoder, x, mask)[mask])
        return torch.cat(out)

    with torch.no_grad():
        err = float((runner(packed).tokens - padded()).abs().max())
        t_pad = timed(padded, repeats)
        t_pack = timed(lambda: runner(packed), repeats)
    work_pad = n_series * int(n_tok.max()) ** 2
    work_pack = int((n_tok ** 2).sum())
    shared = f"{n_series} series, {int(lengths.min())}-{int(lengths.max())} steps, {int(n_tok.sum())} tokens"
    return [row("packing", "encoder", "padded+mask", n_series, *t_pad,
                extra=f"{n_series / t_pad[1] * 1e3:.1f} series/s; attention work B*maxN^2 = {work_pad:.3g}",
                note=shared),
            row("packing", "encoder", "packed", n_series, *t_pack,
                extra=f"{n_series / t_pack[1] * 1e3:.1f} series/s; attention work sum N^2 = {work_pack:.3g}; "
                      f"max |diff| {err:.1e}", note=shared)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-compile", action="store_true", help="leave out torch.compile")
    parser.add_argument("--no-neuralforecast", action="store_true", help="leave out the neuralforecast column")
    parser.add_argument("--pack-series", type=int, default=64, help="series in the ragged panel")
    parser.add_argument("--pad-chunk", type=int, default=16, help="series per padded batch")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        rows = latency(args.repeats, not args.no_compile, not args.no_neuralforecast, Path(tmp))
        rows += stream_latency(args.repeats, Path(tmp))
    rows += packing(args.repeats, args.pack_series, args.pad_chunk)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    load_end = os.getloadavg()[0]
    for r in rows:
        r.update(timestamp=stamp, load_start=round(load_start, 2), load_end=round(load_end, 2),
                 n_threads=torch.get_num_threads())
    print(f"{'part':8} {'case':12} {'engine':28} {'series':>6} {'median ms':>10} {'min ms':>9} {'first ms':>9}  notes")
    for r in rows:
        fmt = lambda v: "" if v is None else f"{v:.2f}"  # noqa: E731
        print(f"{r['part']:8} {r['case']:12} {r['engine']:28} {r['n_series']:>6} {fmt(r['median_ms']):>10} "
              f"{fmt(r['min_ms']):>9} {fmt(r['first_ms']):>9}  {r['extra']} {r['note']}".rstrip())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    new = not out.exists()
    with open(out, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        writer.writerows(rows)
    print(f"appended {len(rows)} rows to {out} (load average {load_start:.1f} -> {load_end:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
