"""Speed and memory side by side: our Gateformer against neuralforecast's iTransformer and PatchTST.

Every measurement runs in a fresh interpreter (``_speed_worker.py``): ours in the project's venv,
neuralforecast's in ``benchmarks/.venv-nf`` (created on first use: the CPU torch wheel, then
neuralforecast). All of them in one run, on one machine, one torch thread each
(``OMP_NUM_THREADS=1``), so the ratios compare like with like even on a shared machine; each row
records the 1-minute load average before and after.

* models of equal size: Gateformer with its ETTh1-96 paper settings (d_model 64, 1 layer, 133k
  parameters) and the neuralforecast models at the width whose parameter count is closest
  (iTransformer: 2 layers, d_ff = d_model, 8 heads; PatchTST: 1 layer, 2 heads, patch 16 / stride 8);
* training throughput: multivariate windows (7 variables, lookback 96, horizon 96) per second, from
  two fits of different lengths (so the fixed cost of a fit is not in it), batches of 32 windows
  (PatchTST is channel-independent: 32 x 7 univariate windows per step);
* predict latency: ``predict()`` (frame in, frame out) for 1 and 1,000 univariate series;
* peak RSS of each process; import time and RSS right after the import;
* the estimator's default network (patches of 16 steps instead of the paper's 8) against the iTransformer
  width of its parameter count (*defaults-train*);
* a tiny model (d_model 8), where the framework's own cost dominates: the fixed cost of a fit, the
  time of one step and the latency of one prediction;
* a large one (Gateformer at d_model 512 against the iTransformer width of the closest parameter count),
  where a step is arithmetic rather than op dispatch;
* per training step, torch's count of its matmul, convolution and attention FLOPs (forward and backward):
  MFLOP per window and the GFLOP/s achieved, so that a throughput gap reads as more arithmetic per window
  or as arithmetic done less efficiently;
* every train case measured ``--repeats`` times (3 by default), the libraries taking turns: a row is the
  repeat with the median step time, with the fastest and slowest step, and the ratio's range over the
  repeats run side by side (on a shared machine one measurement of a ratio can be off by a third).

    .venv/bin/python benchmarks/speed.py
    .venv/bin/python benchmarks/speed.py --baseline-tree /tmp/old-checkout --baseline-label before

``--baseline-tree`` adds the tsformers measurements with the package imported from another tree (an
older commit), for before/after comparisons in the same run. Rows go to ``benchmarks/results/speed.csv``.

``--accelerator gpu`` (and ``--precision``, e.g. ``bf16-mixed``) trains every *train* case of both libraries
on the machine's first GPU, timed by the wall clock (``_speed_worker.py``); import and predict stay on the CPU.
``benchmarks/gpu_check.py`` runs it so, into a CSV of its own.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _nfenv import NF_PYTHON, ensure_nf_venv, run_worker  # noqa: E402
from _protocol import append_rows, cpu_name  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORKER = HERE / "_speed_worker.py"

# ETTh1-96 paper (its attention weights dropped at dropout, 0.1)
GATEFORMER = {"d_model": 64, "d_ff": 64, "e_layers": 1, "n_heads": 4, "patch_len": 8, "stride": 8,
              "attention_dropout": None}
# the estimator's default network: the paper's but for its patches of 16 (7 patch tokens per window, not 13)
GATEFORMER_DEFAULTS = {**GATEFORMER, "patch_len": 16, "stride": 16}
# a width where a step is arithmetic rather than op dispatch (the ETTh2 and weather papers' d_model is 512)
GATEFORMER_LARGE = {"d_model": 512, "d_ff": 512, "e_layers": 1, "n_heads": 8}
TINY = {
    "gateformer": {"d_model": 8, "d_ff": 8, "e_layers": 1, "n_heads": 1},
    "itransformer": {"d_model": 8, "d_ff": 8, "e_layers": 1, "n_heads": 1},
}
FIELDS = ["timestamp", "case", "library", "model", "label", "n_params", "n_series", "batch", "steps", "step_ms",
          "windows_per_s", "fit_fixed_s", "fit_s", "predict_first_s", "predict_median_s", "import_s",
          "rss_after_import_mib", "peak_rss_mib", "ratio", "ratio_meaning", "load_start", "load_end", "n_threads",
          "git_rev", "hp", "mflop_per_window", "gflop_per_s", "accelerator", "precision", "clock", "cpu", "repeats",
          "step_ms_min", "step_ms_max", "ratio_low", "ratio_high"]


def git_rev(tree: Path) -> str:
    if os.environ.get("TSFORMERS_GIT_REV") and tree == REPO:
        return os.environ["TSFORMERS_GIT_REV"]
    if (tree / "REV").exists():  # a snapshot (git archive) records its commit there
        return (tree / "REV").read_text().strip()
    out = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip()


class Runner:
    def __init__(self, args):
        self.args = args
        self.csv = str(Path(args.data_dir) / "ETTh1.csv")
        self.log = args.log

    def ours(self, spec: dict, tree: Path) -> dict:
        env_path = os.environ.get("PYTHONPATH", "")
        os.environ["PYTHONPATH"] = f"{tree}{os.pathsep}{env_path}" if env_path else str(tree)
        try:
            return run_worker(sys.executable, WORKER, {**spec, "library": "tsformers"}, log=self.log)
        finally:
            os.environ["PYTHONPATH"] = env_path

    def theirs(self, spec: dict) -> dict:
        return run_worker(NF_PYTHON, WORKER, {**spec, "library": "neuralforecast"}, log=self.log)


def match_size(runner: Runner, model: str, target: int) -> tuple[dict, int]:
    """The neuralforecast width whose parameter count is closest to ``target``."""
    if model == "itransformer":
        candidates = [{"d_model": h, "d_ff": h, "e_layers": 2, "n_heads": 8} for h in range(8, 2049, 8)]
    else:
        candidates = [{"d_model": h, "d_ff": k * h, "e_layers": 1, "n_heads": 2}
                      for h in range(8, 257, 8) for k in (2, 4)]
    counts = runner.theirs({"task": "match", "model": model, "candidates": candidates})["counts"]
    best = min(range(len(counts)), key=lambda i: abs(counts[i] - target))
    return candidates[best], counts[best]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=os.environ.get("TSFORMERS_DATA") or str((REPO / ".." / "shared" / "datasets")
                                                                                  .resolve()))
    p.add_argument("--steps", nargs=2, type=int, default=[10, 60], metavar=("SHORT", "LONG"),
                   help="optimiser steps of the two timed fits (throughput from their difference)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--series", nargs="+", type=int, default=[1, 1000], help="series counts for predict latency")
    p.add_argument("--large-steps", nargs=2, type=int, default=[4, 14], metavar=("SHORT", "LONG"),
                   help="optimiser steps of the two timed fits at the large width (d_model 512)")
    p.add_argument("--skip", nargs="*", default=[],
                   choices=["import", "train", "defaults", "predict", "tiny", "large", "nf"], help="parts to leave out")
    p.add_argument("--baseline-tree", type=Path, default=None,
                   help="also measure tsformers imported from this tree (e.g. an older commit)")
    p.add_argument("--baseline-label", default="baseline")
    p.add_argument("--tree", type=Path, default=REPO, help="the tree tsformers is imported from (default: this one)")
    p.add_argument("--out", type=Path, default=HERE / "results" / "speed.csv")
    p.add_argument("--log", type=Path, default=None)
    p.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"],
                   help="where the train cases train (gpu: the first GPU, wall-clock step times)")
    p.add_argument("--precision", default=None, help="the Trainers' precision for the train cases, e.g. bf16-mixed")
    p.add_argument("--repeats", type=int, default=3,
                   help="times each train case is measured, the libraries taking turns (the median is reported)")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error(f"--repeats must be at least 1, got {args.repeats}")
    with_nf = "nf" not in args.skip
    if with_nf:
        ensure_nf_venv()
    runner = Runner(args)
    rows: list[dict] = []
    trees = [("tsformers", args.tree)] + ([(f"tsformers@{args.baseline_label}", args.baseline_tree)]
                                          if args.baseline_tree else [])
    base = {"csv": runner.csv, "train_end": 8640, "threads": 1}
    # where the train cases train; predict and import always measure the CPU
    device = {"accelerator": args.accelerator, "precision": args.precision}
    machine = cpu_name()

    def record(case, library, model, label, res, hp, **extra):
        row = {"timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"), "case": case,
               "library": library, "model": model, "label": label, **extra, **res, "hp": hp, "n_threads": 1,
               "cpu": machine,
               **({"accelerator": args.accelerator, "precision": args.precision or ""} if "train" in case else {}),
               "git_rev": git_rev(args.tree) if library == "tsformers" and label == "tsformers" else
               (git_rev(args.baseline_tree) if library == "tsformers" else "")}
        rows.append(row)
        print(f"  {case:<14} {label:<22} {model:<13} " + ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in res.items()
            if k not in ("load_start", "load_end")) + f"  (load {res['load_start']:.1f})", flush=True)
        return row

    def train_case(case: str, ours_hp: dict, theirs: dict, short: int, long: int) -> None:
        """Our network ``ours_hp`` from each tree and neuralforecast's models ``theirs`` (``{model: hp}``) trained
        ``--repeats`` times, taking turns, so that a slow spell of the shared machine falls on every entry alike.
        Each row is the entry's repeat with the median step time, with its fastest and slowest step; a row of theirs
        also has the range of our windows per second over theirs in the repeats measured side by side."""
        spec = {**base, **device, "task": "train", "batch": args.batch, "steps_short": short, "steps_long": long}

        def ours(tree: Path) -> dict:
            return runner.ours({**spec, "hp": ours_hp}, tree)

        def nf(model: str, hp: dict) -> dict:
            return runner.theirs({**spec, "model": model, "hp": hp})

        # (library, model, label, hp, measure): ours from each tree first, the current tree's the pairs' reference
        entries = [("tsformers", "gateformer", label, ours_hp, partial(ours, tree)) for label, tree in trees]
        entries += [("neuralforecast", model, "neuralforecast", hp, partial(nf, model, hp))
                    for model, hp in theirs.items()]
        runs = [[] for _ in entries]
        for _ in range(args.repeats):
            for done, (*_, measure) in zip(runs, entries):
                done.append(measure())
        for (library, model, label, hp, _), done in zip(entries, runs):
            median = sorted(done, key=lambda res: res["step_ms"])[(len(done) - 1) // 2]
            extra = {"repeats": len(done), "step_ms_min": min(r["step_ms"] for r in done),
                     "step_ms_max": max(r["step_ms"] for r in done)}
            if library != "tsformers":  # paired with our current tree's run of the same turn
                paired = [o["windows_per_s"] / t["windows_per_s"] for o, t in zip(runs[0], done)]
                extra.update(ratio_low=min(paired), ratio_high=max(paired))
            record(case, library, model, label, median, str(hp), batch=args.batch, steps=f"{short}/{long}", **extra)

    def train_against_matched_itransformer(case: str, hp: dict, short: int, long: int) -> None:
        """Our network ``hp`` trained from each tree, then the iTransformer width of the current tree's size."""
        theirs = {}
        if with_nf:
            target = runner.ours({"task": "count", "model": "gateformer", "hp": hp}, args.tree)["n_params"]
            theirs = {"itransformer": match_size(runner, "itransformer", target)[0]}
        train_case(case, hp, theirs, short, long)

    # sizes
    nf_models = {}
    if with_nf:
        target = runner.ours({"task": "count", "model": "gateformer", "hp": GATEFORMER}, args.tree)["n_params"]
        for model in ("itransformer", "patchtst"):
            nf_models[model] = match_size(runner, model, target)[0]
        print(f"equal size: gateformer {GATEFORMER} ({target} parameters); neuralforecast {nf_models}", flush=True)

    if "import" not in args.skip:
        for label, tree in trees:
            record("import", "tsformers", "gateformer", label, runner.ours({"task": "import"}, tree), "")
        if with_nf:
            record("import", "neuralforecast", "-", "neuralforecast", runner.theirs({"task": "import"}), "")

    steps_short, steps_long = args.steps
    if "train" not in args.skip:
        train_case("train", GATEFORMER, nf_models, steps_short, steps_long)
    if "defaults" not in args.skip:  # fewer parameters than the paper's network (a shorter patch embedding)
        train_against_matched_itransformer("defaults-train", GATEFORMER_DEFAULTS, steps_short, steps_long)
    if "predict" not in args.skip:
        for n in args.series:
            spec = {**base, "task": "predict", "n_series": n, "batch": args.batch, "fit_steps": 5, "repeats": 5}
            for label, tree in trees:
                record("predict", "tsformers", "gateformer", label, runner.ours({**spec, "hp": GATEFORMER}, tree),
                       str(GATEFORMER), n_series=n)
            for model, hp in nf_models.items():
                record("predict", "neuralforecast", model, "neuralforecast",
                       runner.theirs({**spec, "model": model, "hp": hp}), str(hp), n_series=n)
    if "tiny" not in args.skip:
        train_case("tiny-train", TINY["gateformer"], {"itransformer": TINY["itransformer"]} if with_nf else {},
                   steps_short, steps_long)
        spec = {**base, "task": "predict", "n_series": 1, "batch": args.batch, "fit_steps": 5, "repeats": 5}
        for label, tree in trees:
            record("tiny-predict", "tsformers", "gateformer", label,
                   runner.ours({**spec, "hp": TINY["gateformer"]}, tree), str(TINY["gateformer"]), n_series=1)
        if with_nf:
            record("tiny-predict", "neuralforecast", "itransformer", "neuralforecast",
                   runner.theirs({**spec, "model": "itransformer", "hp": TINY["itransformer"]}),
                   str(TINY["itransformer"]), n_series=1)

    if "large" not in args.skip:
        train_against_matched_itransformer("large-train", GATEFORMER_LARGE, *args.large_steps)

    add_ratios(rows)
    print_table(rows)
    write_csv(args.out, rows)
    print(f"\nappended {len(rows)} row(s) to {args.out}")
    return 0


def add_ratios(rows: list[dict]) -> None:
    """Each row against our (current-tree) row of the same case: how many times faster / lighter we are."""
    for row in rows:
        ours = next((r for r in rows if r["case"] == row["case"] and r["label"] == "tsformers"
                     and r.get("n_series") == row.get("n_series")), None)
        if ours is None or ours is row:
            continue
        if row["case"].endswith("train"):
            row["ratio"], row["ratio_meaning"] = ours["windows_per_s"] / row["windows_per_s"], \
                "our windows/s over theirs"
        elif row["case"].endswith("predict"):
            row["ratio"], row["ratio_meaning"] = row["predict_median_s"] / ours["predict_median_s"], \
                "their predict latency over ours"
        elif row["case"] == "import":
            row["ratio"], row["ratio_meaning"] = row["import_s"] / ours["import_s"], "their import time over ours"


def print_table(rows: list[dict]) -> None:
    head = (f"{'case':<13} {'library/label':<24} {'model':<13} {'params':>8} {'series':>6} {'step ms':>8} "
            f"{'win/s':>8} {'fit fixed s':>11} {'pred s':>8} {'import s':>8} {'peak RSS':>8} {'ratio':>6} {'load':>5}")
    print("\n" + head + "\n" + "-" * len(head))

    def f(v, spec):
        return format(v, spec) if isinstance(v, (int, float)) else "-"

    for r in rows:
        print(f"{r['case']:<13} {r['label']:<24} {r['model']:<13} {f(r.get('n_params'), '>8'):>8} "
              f"{f(r.get('n_series'), '>6'):>6} {f(r.get('step_ms'), '>8.1f'):>8} "
              f"{f(r.get('windows_per_s'), '>8.0f'):>8} {f(r.get('fit_fixed_s'), '>11.2f'):>11} "
              f"{f(r.get('predict_median_s'), '>8.3f'):>8} {f(r.get('import_s'), '>8.1f'):>8} "
              f"{f(r.get('peak_rss_mib', r.get('rss_after_import_mib')), '>8.0f'):>8} "
              f"{f(r.get('ratio'), '>6.2f'):>6} {r['load_start']:>5.1f}")
    print("\nratio: train rows = our windows/s over theirs; predict rows = their latency over ours; import = their "
          "import time over ours (>1: we are faster). One torch thread each; load = 1-minute load average (2 cores).")


def write_csv(path: Path, rows: list[dict]) -> None:
    append_rows(path, [{k: v for k, v in row.items() if k in FIELDS} for row in rows], FIELDS)

if __name__ == "__main__":
    raise SystemExit(main())
