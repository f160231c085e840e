"""Transformer fusion with optimal transport: align models neuron by neuron, then average their weights.

Singh & Jaggi, "Model Fusion via Optimal Transport" (NeurIPS 2020), extended to
Transformers by Imfeld et al., "Transformer Fusion with Optimal Transport" (ICLR
2024). Independently trained networks compute the same function up to a
permutation (or a soft mixing) of their hidden units, so averaging them weight by
weight only works after aligning them. Here every further model (B) is aligned
to the first (A), the anchor, layer by layer:

1. the *residual stream*: one transport for every parameter that reads or
   writes it, carried through the residual connections, the LayerNorms (their
   weight and bias move with it; their statistics are permutation invariant) and
   the gates. Gateformer's variate stream is aligned (the cost: each dimension's
   weights in the fixed input/output spaces, or its activations); a stream that
   fixed positional encodings or raw time steps anchor (Gateformer's temporal
   encoder, PV-Client's window tokens) keeps the identity;
2. per block, the FFN neurons (cost: their fc1 row, bias and fc2 column, or
   their activations);
3. per attention, the heads, with two transports *inside* each head: the query
   and key dimensions together (``q·k`` is invariant to one shared permutation)
   and the value dimensions with the output projection's columns. The cost of a
   head pair is the optimal cost of aligning their dimensions.

The transport is exact and hard (``soft=False``: ``scipy.optimize.linear_sum_assignment``,
a permutation, or a selection of A's count from a wider B) or soft (Sinkhorn with
entropic regularisation ``reg``, uniform marginals). A layer's outputs move with
the row-normalised transport, the next layer's inputs with the column-normalised
one, so a permutation maps B to an exactly equivalent network. The aligned
models are averaged (``weights``), and the result optionally fine-tuned briefly
through the package's Lightning module. When B is wider than A (more heads,
neurons), the fused model has A's widths: heterogeneous fusion is compression.

Supported: the neurons of every ``FeedForward`` and the heads of every full
attention found at the same path in both models (Gateformer, PV-Client, GTrXL,
ATLAS; the anchor may be a pruned one, whose removed sub-layers stay removed),
with equal model and head widths; the residual stream is aligned for Gateformer
and kept for the others; all other parameters are averaged as they are.
"""
from __future__ import annotations

import copy
import re

import numpy as np
import torch
from torch import Tensor, nn

from tsformers.backbone.feedforward import FeedForward
from tsformers.compress._parts import head_dim
from tsformers.compress.core import TaskData, derive, finetune, forecast
from tsformers.compress.units import attention_units

__all__ = ["align", "ot_fusion", "sinkhorn", "transport"]


# -- optimal transport ----------------------------------------------------------------------------------

def sinkhorn(cost: Tensor, reg: float = 0.05, n_iter: int = 500) -> Tensor:
    """Entropic OT plan (m, n) between uniform marginals for ``cost`` (m, n); ``reg`` relative to the mean cost."""
    c = cost.double()
    c = c / c.mean().clamp_min(1e-12)
    m, n = c.shape
    log_a, log_b = torch.full((m,), -np.log(m), dtype=c.dtype), torch.full((n,), -np.log(n), dtype=c.dtype)
    f, g = torch.zeros(m, dtype=c.dtype), torch.zeros(n, dtype=c.dtype)
    for _ in range(n_iter):
        f = reg * (log_a - torch.logsumexp((g[None, :] - c) / reg, dim=1))
        g = reg * (log_b - torch.logsumexp((f[:, None] - c) / reg, dim=0))
    return torch.exp((f[:, None] + g[None, :] - c) / reg)


def transport(cost: Tensor, soft: bool, reg: float) -> tuple[Tensor, float]:
    """The plan (m, n) aligning n B-units to m A-units, and its cost (per A unit)."""
    m, n = cost.shape
    if soft:
        plan = sinkhorn(cost, reg)
        plan = plan * m                                                         # rows sum to 1
        return plan.float(), float((plan * cost.double()).sum() / m)
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(cost.detach().double().numpy())
    plan = torch.zeros(m, n)
    plan[rows, cols] = 1.0
    return plan, float(cost[rows, cols].sum() / m)


def _cost(a: Tensor, b: Tensor) -> Tensor:
    """Squared Euclidean distances between the rows of ``a`` (m, f) and ``b`` (n, f)."""
    return torch.cdist(a.double(), b.double()) ** 2


def _move(t: Tensor, axis: int, matrix: Tensor) -> Tensor:
    """``matrix`` (m, n) applied along ``axis`` of ``t`` (size n there -> m)."""
    return torch.movedim(torch.tensordot(matrix.to(t.dtype), torch.movedim(t, axis, 0), dims=1), 0, axis)


def _rows_norm(plan: Tensor) -> Tensor:
    return plan / plan.sum(1, keepdim=True).clamp_min(1e-12)


def _cols_norm(plan: Tensor) -> Tensor:
    return plan / plan.sum(0, keepdim=True).clamp_min(1e-12)


# -- what moves with what ---------------------------------------------------------------------------------

_GATEFORMER_OUT = [r"global_embed\.0", r"temporal_head\.0", r"static_context", r"(time|variate)_gate\.proj_[ab]",
                   r"variate_encoder\.layers\.\d+\.mixer\.to_out", r"variate_encoder\.layers\.\d+\.ffn\.fc2"]
_GATEFORMER_IN = [r"(time|variate)_gate\.proj_[ab]", r"head", r"variate_encoder\.layers\.\d+\.mixer\.to_[qkv]",
                  r"variate_encoder\.layers\.\d+\.ffn\.fc1"]
_GATEFORMER_NORM = [r"variate_encoder\.layers\.\d+\.norm[12]", r"variate_encoder\.norm"]


def _stream(network: nn.Module) -> dict | None:
    """The aligned residual stream of ``network``: ``{"out": [...], "in": [...], "norm": [...], "anchor": [...]}``
    module paths (writers, readers, LayerNorms, cost anchors), or None (identity)."""
    from tsformers.models.gateformer import Gateformer

    for prefix, m in network.named_modules():
        if isinstance(m, Gateformer):
            pre = f"{prefix}." if prefix else ""
            names = [n for n, _ in m.named_modules() if n]

            def match(patterns, names=names, pre=pre):
                return [pre + n for n in names if any(re.fullmatch(p, n) for p in patterns)]

            return {"out": match(_GATEFORMER_OUT), "in": match(_GATEFORMER_IN), "norm": match(_GATEFORMER_NORM),
                    "anchor_rows": [pre + "global_embed.0", pre + "temporal_head.0"], "anchor_cols": [pre + "head"],
                    "activation": [pre + "time_gate", pre + "variate_gate"]}
    return None


def _params(module: nn.Module) -> list[Tensor]:
    return [p for p in (getattr(module, "weight", None), getattr(module, "bias", None)) if isinstance(p, Tensor)]


def _apply_out(module: nn.Module, plan: Tensor) -> None:
    """Outputs of ``module`` (Linear rows, LayerNorm channels) move with the row-normalised plan."""
    rows = _rows_norm(plan)
    for name in ("weight", "bias"):
        p = getattr(module, name, None)
        if isinstance(p, nn.Parameter):
            setattr(module, name, nn.Parameter(_move(p.data, 0, rows)))
    if isinstance(module, nn.Linear):
        module.out_features = module.weight.shape[0]
    if isinstance(module, nn.LayerNorm):
        module.normalized_shape = (module.weight.shape[0],)


def _apply_in(module: nn.Linear, plan: Tensor) -> None:
    """Inputs of a Linear (weight columns) move with the column-normalised plan."""
    module.weight = nn.Parameter(_move(module.weight.data, 1, _cols_norm(plan)))
    module.in_features = module.weight.shape[1]


# -- alignment ------------------------------------------------------------------------------------------

@torch.no_grad()
def _activations(network: nn.Module, paths: list[str], batch, what: str = "output") -> dict[str, Tensor]:
    """Per path, the module's outputs on ``batch`` as (channels, samples)."""
    got, handles = {}, []
    for path in paths:
        def hook(m, i, o, path=path):
            got[path] = o.reshape(-1, o.shape[-1]).T
        handles.append(network.get_submodule(path).register_forward_hook(hook))
    try:
        forecast(network.eval(), batch)
    finally:
        for h in handles:
            h.remove()
    return got


@torch.no_grad()
def align(a: nn.Module, b: nn.Module, *, soft: bool = False, reg: float = 0.05, cost: str = "weight",
          batch=None) -> tuple[nn.Module, dict]:
    """A copy of ``b`` aligned to ``a`` (widths of ``a``), and the alignment costs.

    ``cost="activation"`` measures the residual stream and FFN neurons by their
    activations on ``batch`` (a :class:`~tsformers.compress.core.Batch`); heads are
    always matched by weights.
    """
    if cost not in ("weight", "activation"):
        raise ValueError(f"cost must be 'weight' or 'activation', got {cost!r}")
    if cost == "activation" and batch is None:
        raise ValueError("cost='activation' needs calibration data (a frame).")
    b = copy.deepcopy(b)
    report = {}
    stream_a, stream_b = _stream(a), _stream(b)
    if (stream_a is None) != (stream_b is None):
        raise ValueError("the models are of different kinds; fuse models of one estimator class.")
    acts_b = acts_a = None
    if stream_a is not None:
        if cost == "weight":
            feats = []
            for net, st in ((a, stream_a), (b, stream_b)):
                parts = [torch.cat([p.reshape(p.shape[0], -1) for p in _params(net.get_submodule(n))], 1)
                         for n in st["anchor_rows"]]
                parts += [net.get_submodule(n).weight.T for n in st["anchor_cols"]]
                feats.append(torch.cat(parts, 1))
        else:
            acts_a, acts_b = (_activations(net, st["activation"], batch) for net, st in ((a, stream_a), (b, stream_b)))
            feats = [torch.cat(list(acts.values()), 1) for acts in (acts_a, acts_b)]
        plan, report["stream"] = transport(_cost(*feats), soft, reg)
        for n in stream_b["out"] + stream_b["norm"]:
            module = b.get_submodule(n)
            if _params(module):
                _apply_out(module, plan)
        for n in stream_b["in"]:
            _apply_in(b.get_submodule(n), plan)

    # every FeedForward and full attention present at the same path in both (a pruned-away one stays the anchor's)
    atts_a = {u.path: u.module for u in attention_units(a)}
    atts_b = {u.path: u.module for u in attention_units(b)}
    ffns_a = {p: m for p, m in a.named_modules() if type(m) is FeedForward}
    ffns_b = {p: m for p, m in b.named_modules() if type(m) is FeedForward}
    if cost == "activation":
        acts_a = _activations(a, [f"{p}.act" for p in ffns_a if p in ffns_b], batch)
        acts_b = _activations(b, [f"{p}.act" for p in ffns_b if p in ffns_a], batch)
    for path, fb in ffns_b.items():
        fa = ffns_a.get(path)
        if fa is None:
            continue
        if cost == "weight":
            feat = [torch.cat([f.fc1.weight, f.fc1.bias[:, None], f.fc2.weight.T], 1) for f in (fa, fb)]
        else:
            feat = [acts_a[f"{path}.act"], acts_b[f"{path}.act"]]
        plan, report[path] = transport(_cost(*feat), soft, reg)
        _apply_out(fb.fc1, plan)
        _apply_in(fb.fc2, plan)
    for path, mb in atts_b.items():
        ma = atts_a.get(path)
        if ma is None:
            continue
        # heads, and the dimensions inside each head
        dh = head_dim(ma)
        if head_dim(mb) != dh:
            raise ValueError(f"{path}: head widths differ ({dh} and {head_dim(mb)}); fusion needs equal ones.")
        ha, hb = ma.n_heads, mb.n_heads

        def qk(m, h):
            s = slice(h * dh, (h + 1) * dh)
            return torch.cat([m.to_q.weight[s], m.to_q.bias[s, None], m.to_k.weight[s], m.to_k.bias[s, None]], 1)

        def vo(m, h):
            s = slice(h * dh, (h + 1) * dh)
            return torch.cat([m.to_v.weight[s], m.to_v.bias[s, None], m.to_out.weight[:, s].T], 1)

        inner = {}
        head_cost = torch.zeros(ha, hb, dtype=torch.float64)
        for i in range(ha):
            for j in range(hb):
                p_qk, c_qk = transport(_cost(qk(ma, i), qk(mb, j)), soft, reg)
                p_v, c_v = transport(_cost(vo(ma, i), vo(mb, j)), soft, reg)
                inner[i, j] = (p_qk, p_v)
                head_cost[i, j] = c_qk + c_v
        heads, report[f"{path}.heads"] = transport(head_cost, soft, reg)
        plan_qk = torch.zeros(ha * dh, hb * dh)
        plan_v = torch.zeros(ha * dh, hb * dh)
        for i in range(ha):
            for j in range(hb):
                if heads[i, j] > 0:
                    plan_qk[i * dh:(i + 1) * dh, j * dh:(j + 1) * dh] = heads[i, j] * inner[i, j][0]
                    plan_v[i * dh:(i + 1) * dh, j * dh:(j + 1) * dh] = heads[i, j] * inner[i, j][1]
        _apply_out(mb.to_q, plan_qk)
        _apply_out(mb.to_k, plan_qk)
        _apply_out(mb.to_v, plan_v)
        _apply_in(mb.to_out, plan_v)
        mb.n_heads = ha
    return b, report


def _average(networks: list[nn.Module], weights: list[float]) -> nn.Module:
    fused = copy.deepcopy(networks[0])
    states = [n.state_dict() for n in networks]
    merged = {}
    for key, value in states[0].items():
        if value.is_floating_point() and all(key in s and s[key].shape == value.shape for s in states):
            merged[key] = sum(w * s[key] for w, s in zip(weights, states))
        else:
            merged[key] = value
    fused.load_state_dict(merged)
    return fused


def ot_fusion(models, df=None, *, soft: bool = True, reg: float = 0.05, cost: str = "weight", weights=None,
              finetune_epochs: int = 0, learning_rate: float | None = None, max_windows: int = 512):
    """Fuse fitted estimators of one class into one: align each to the first with OT, then average.

    Parameters
    ----------
    models : list of fitted BaseForecaster
        The first is the anchor: the fused network has its widths (a smaller,
        e.g. pruned, anchor and wider others give heterogeneous fusion); all share
        the data schema and the model and head widths.
    df : DataFrame, optional
        Calibration data (fit columns) for ``cost="activation"`` and fine-tuning.
    soft : bool, default=True
        Sinkhorn transport (entropic, ``reg``) instead of an exact assignment.
    reg : float, default=0.05
        Entropic regularisation, relative to the mean cost.
    cost : {"weight", "activation"}, default="weight"
        How the residual stream and FFN neurons are compared.
    weights : list of float, optional
        The averaging weights (default: equal).
    finetune_epochs : int, default=0
        Brief fine-tuning of the fused network on ``df`` through the package's
        Lightning module (the anchor's training settings).

    Returns
    -------
    BaseForecaster
        A new fitted estimator (the anchor's class, scaling and schema) with the
        fused network; ``compression_`` records the alignment costs.
    """
    models = list(models)
    if len(models) < 2:
        raise ValueError("ot_fusion needs at least two fitted models.")
    anchor = models[0]
    for m in models[1:]:
        if type(m) is not type(anchor) or m.schema_.variables != anchor.schema_.variables:
            raise ValueError("ot_fusion fuses fitted estimators of one class fitted on the same variables.")
    weights = [1.0 / len(models)] * len(models) if weights is None else [float(w) for w in weights]
    if len(weights) != len(models):
        raise ValueError(f"{len(models)} models but {len(weights)} weights.")
    data = TaskData.from_frame(anchor, df) if df is not None else None
    batch = data.windows("train", max_windows=max_windows) if data is not None else None
    aligned, reports = [anchor.network_], []
    for m in models[1:]:
        net, report = align(anchor.network_, m.network_, soft=soft, reg=reg, cost=cost, batch=batch)
        aligned.append(net)
        reports.append(report)
    fused = _average(aligned, weights)
    log = []
    if finetune_epochs:
        if data is None:
            raise ValueError("fine-tuning needs data: pass df.")
        fused.train()
        log = finetune(anchor, fused, data, epochs=finetune_epochs, learning_rate=learning_rate)
    record = {"method": "ot_fusion", "n_models": len(models), "soft": soft, "reg": reg, "cost": cost,
              "weights": weights, "finetune_epochs": finetune_epochs,
              "alignment_cost": [{k: float(v) for k, v in r.items()} for r in reports], "finetune_log": log}
    return derive(anchor, fused, [], record, data=data)
