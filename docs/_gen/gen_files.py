"""mkdocs-gen-files script: files of the site that are made when it is built.

- ``img/<estimator>.png``: a data-flow diagram of each estimator's network (matplotlib,
  drawn from the lists below; no training, well under a second each).
- ``notebooks/*.ipynb``: the executed notebooks of the repository's ``notebooks/``
  folder, which mkdocs-jupyter renders as pages.
"""
from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mkdocs_gen_files  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

# Colours by role: data, normalisation, mixing (attention / memory), gating and merging, output.
COLOURS = {"data": "#dbe9f6", "norm": "#eeeeee", "mix": "#fde3c8", "gate": "#d9f0d3", "out": "#e8dff5"}

# Each diagram is a list of rows from input to output; a row is one box or boxes side by side
# (parallel branches). A box is (text, role). Arrows join every box of a row to every box of the next.
DIAGRAMS = {
    "gateformer": [
        [("input window\n(lookback × variates)", "data")],
        [("instance norm", "norm")],
        [("global embedding\nLinear(lookback → d_model)", "mix"),
         ("patch temporal encoder\ntemporal_mixer × stack", "mix")],
        [("sigmoid gate\n→ one token per variate", "gate")],
        [("variate encoder\nvariate_mixer × stack", "mix")],
        [("sigmoid gate", "gate")],
        [("linear head → horizon", "out")],
        [("inverse norm → forecast", "out")],
    ],
    "pvclient": [
        [("PV power", "data"), ("weather: past, or known-future\n(led by horizon)", "data")],
        [("instance norm per variable\n(token = a variable's window)", "norm")],
        [("cross-variable attention\npost-LN encoder × e_layers", "mix"), ("linear trend module", "mix")],
        [("w_trans · attention + w_lin · trend", "gate")],
        [("inverse norm", "out")],
        [("clip at 0 and capacity → forecast", "out")],
    ],
    "lmuformer": [
        [("input window\n(one stream per variate)", "data")],
        [("causal conv embedding\n(4 layers, kernel 3)", "mix")],
        [("Legendre Memory Unit\nFFT-parallel in fit, recurrent in update", "mix")],
        [("convolutional FFN", "mix")],
        [("linear head on the last token → horizon", "out")],
    ],
    "gtrxl": [
        [("history in segments\n(segment_len steps)", "data")],
        [("token per step\nLinear(variables → d_model)", "norm")],
        [("LayerNorm → relative attention over the segment\nand the cached states of the last mem_len steps (no gradient)", "mix")],
        [("GRU gate (identity-map init)", "gate")],
        [("LayerNorm → FFN → GRU gate\n× n_layers", "mix")],
        [("linear head on the last step\n→ change from last value", "out")],
    ],
    "atlas": [
        [("token per step\n(causal conv, per variable)", "data")],
        [("polynomial feature map\nof keys and queries", "norm")],
        [("deep memory (MLP weights = state):\nOmega rule + Muon step per chunk", "mix"),
         ("sliding-window attention\n(layer = mag / mal)", "mix")],
        [("gate (mag) or one after the other (mal);\nlayer = deep: the memory alone", "gate")],
        [("linear head on the last token", "out"), ("linear path on the\nnormalised window", "out")],
        [("sum → forecast", "out")],
    ],
}


def diagram(rows, title: str) -> bytes:
    n = len(rows)
    row_h, box_h = 1.0, 0.62
    fig, ax = plt.subplots(figsize=(6.4, 0.78 * n + 0.5), dpi=110)
    ax.set_xlim(0, 10)
    ax.set_ylim(-0.2, n * row_h + 0.1)
    ax.axis("off")
    centres = []
    for i, row in enumerate(rows):
        y = (n - 1 - i) * row_h + 0.2
        width = 9.0 / len(row) - 0.2 * (len(row) > 1)
        xs = [0.5 + (9.0 / len(row)) * (j + 0.5) for j in range(len(row))]
        boxes = []
        for x, (text, role) in zip(xs, row):
            ax.add_patch(FancyBboxPatch((x - width / 2, y), width, box_h, boxstyle="round,pad=0.02,rounding_size=0.12",
                                        facecolor=COLOURS[role], edgecolor="#555555", linewidth=0.9))
            ax.text(x, y + box_h / 2, text, ha="center", va="center", fontsize=8.2 if len(row) == 1 else 7.6)
            boxes.append((x, y))
        centres.append(boxes)
    for upper, lower in zip(centres, centres[1:]):
        for x0, y0 in upper:
            for x1, y1 in lower:
                ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1 + box_h), arrowstyle="-|>", mutation_scale=10,
                                             color="#555555", linewidth=0.9, shrinkA=1, shrinkB=1))
    ax.set_title(title, fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


TITLES = {"gateformer": "Gateformer", "pvclient": "PV-Client", "lmuformer": "LMUFormer", "gtrxl": "GTrXL",
          "atlas": "ATLAS"}

for name, rows in DIAGRAMS.items():
    with mkdocs_gen_files.open(f"img/{name}.png", "wb") as f:
        f.write(diagram(rows, f"{TITLES[name]}: data flow"))

for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
    with mkdocs_gen_files.open(f"notebooks/{notebook.name}", "wb") as f:
        f.write(notebook.read_bytes())
