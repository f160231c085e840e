"""Structural pruning of trained networks: OPTIN (one-shot), AMP (adaptive MLP) and NViT (Hessian-aware, global).

Each removes attention heads, QK/V dimensions or FFN neurons physically
(:mod:`tsformers.compress.units`) and returns a new fitted estimator.
Applies to every estimator with full attention (heads: Gateformer, PV-Client)
and/or FeedForward / ConvFFN MLPs (neurons: Gateformer, PV-Client, GTrXL, ATLAS, LMUFormer).
"""
from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

from tsformers.compress.core import (TaskData, count_flops, count_parameters, derive, finetune, forecast, one_network,
                                     resolve_budget)
from tsformers.compress.units import attention_units, masked, mlp_units, prune_attention, prune_mlp, remove

__all__ = ["amp", "nvit", "nvit_saliency", "optin", "optin_scores"]


# -- OPTIN --------------------------------------------------------------------------------------------


def _trajectory(network: nn.Module, batch, paths: list[str]) -> dict[str, Tensor]:
    """The outputs of the modules at ``paths`` and the forecast, for one calibration batch."""
    feats, handles = {}, []
    for path in paths:
        def hook(module, args, out, path=path):
            feats[path] = (out[0] if isinstance(out, tuple) else out).detach()
        handles.append(network.get_submodule(path).register_forward_hook(hook))
    try:
        with torch.no_grad():
            feats["output"] = forecast(network, batch)
    finally:
        for h in handles:
            h.remove()
    return feats


def _distance(feats: dict, reference: dict) -> float:
    """The trajectory distillation loss: each layer's squared error, relative to that layer's energy, summed."""
    return float(sum(((feats[k] - r) ** 2).mean() / (r ** 2).mean().clamp_min(1e-12) for k, r in reference.items()))


def optin_scores(network: nn.Module, batch, structures=("heads", "neurons")) -> list[tuple[float, str, str, int]]:
    """``(score, kind, path, index)`` of every head and/or neuron, cheapest first.

    The score of a structure is the trajectory distillation loss of the network
    with that structure masked: the relative squared change of every later
    attention and MLP output and of the forecast, on the calibration windows.
    """
    network = network.eval()
    atts = attention_units(network) if "heads" in structures else []
    mlps = mlp_units(network) if "neurons" in structures else []
    units = {u.path: u.module for u in attention_units(network) + mlp_units(network)}
    reference = _trajectory(network, batch, list(units))
    scores = []
    for u in atts:
        for h in range(u.n_heads):
            mask = torch.ones(u.n_heads)
            mask[h] = 0
            with masked(heads={u.path: mask}, units=units):
                scores.append((_distance(_trajectory(network, batch, list(units)), reference), "head", u.path, h))
    for u in mlps:
        for j in range(u.hidden):
            mask = torch.ones(u.hidden)
            mask[j] = 0
            with masked(neurons={u.path: mask}, units=units):
                scores.append((_distance(_trajectory(network, batch, list(units)), reference), "neuron", u.path, j))
    return sorted(scores, key=lambda s: s[0])


def optin(estimator, df, flop_budget: float = 0.5, structures=("heads", "neurons"), max_windows: int = 128,
          static_df=None):
    """OPTIN one-shot pruning: remove the heads and neurons whose masking disturbs the trajectory least.

    Every head (full attention) and FFN neuron is scored on calibration windows
    of ``df`` by the distillation loss of the later layers' features when it is
    masked (:func:`optin_scores`); the cheapest are removed, in that order, until
    the forecast's FLOPs (:func:`~tsformers.compress.count_flops`, one window) fit
    ``flop_budget``. No retraining. Token pruning is not done (forecasting
    windows have few tokens and every one feeds the head).

    Parameters
    ----------
    estimator : fitted forecaster
    df : DataFrame
        Calibration data with the fit data's columns.
    flop_budget : float, default=0.5
        A fraction (0, 1] of the original FLOPs, or an absolute FLOP count (> 1).
    structures : tuple of {"heads", "neurons"}
    max_windows : int, default=128
        Calibration windows (evenly spread over the training part of ``df``).

    Returns
    -------
    A new fitted estimator of the same class (``compression_[-1]`` records what was removed).

    References
    ----------
    Khaki & Plataniotis, "The Need for Speed: Pruning Transformers with One Recipe" (OPTIN), ICLR 2024.
    """
    data = TaskData.from_frame(estimator, df, static_df)
    batch = data.windows("train", max_windows)
    original = copy.deepcopy(one_network(estimator)).eval()
    budget = resolve_budget(flop_budget, count_flops(estimator))
    ranked = optin_scores(original, batch, structures)
    if not ranked:
        raise ValueError(f"{type(estimator).__name__}'s network has no prunable {' or '.join(structures)} "
                         f"(full attention heads, FeedForward/ConvFFN neurons).")
    removals = [(kind, path, index) for _, kind, path, index in ranked]
    x, static = _probe(estimator)

    def pruned(k):
        return remove(original, removals[:k])

    lo, hi = 0, len(removals)
    if count_flops(pruned(hi)[0], x, static) > budget:
        raise ValueError(f"flop_budget={flop_budget} ({budget} FLOPs) is out of reach: removing every "
                         f"{'/'.join(structures)} leaves {count_flops(pruned(hi)[0], x, static)} FLOPs.")
    while lo < hi:  # the fewest removals that meet the budget
        mid = (lo + hi) // 2
        if count_flops(pruned(mid)[0], x, static) <= budget:
            hi = mid
        else:
            lo = mid + 1
    network, edits = pruned(lo)
    kinds = [r[0] for r in removals[:lo]]
    record = {"method": "optin", "flop_budget": flop_budget, "budget_flops": budget,
              "removed": {"heads": kinds.count("head"), "neurons": kinds.count("neuron")},
              "removed_structures": [list(r) for r in removals[:lo]]}
    return derive(estimator, network, edits, record, data)


def _probe(estimator) -> tuple[Tensor, Tensor | None]:
    x = torch.zeros(1, estimator.lookback, estimator.n_features_in_)
    n_static = estimator.static_encoder_.n_channels
    return x, (torch.zeros(1, n_static) if n_static else None)


# -- AMP ------------------------------------------------------------------------------------------------


def _taylor_importance(network: nn.Module, units, batch, n_probes: int, seed: int) -> dict[str, Tensor]:
    """Per MLP neuron: Σ (a · ∂(r·y)/∂a)² over tokens and random sign probes r (a: the neuron's output).

    The first-order change of the forecast when the neuron is removed is J·w·a; its
    squared norm, the second-order increase of the MSE to the original forecast
    (whose first order is 0), is estimated with Rademacher probes r.
    """
    acts, handles = {}, []
    scores = {u.path: torch.zeros(u.hidden) for u in units}

    def pre(path):
        def hook(module, args):
            a = args[0]
            if a.requires_grad:  # (a network may also run a layer without gradients, e.g. to build a memory)
                a.retain_grad()
                acts.setdefault(path, []).append(a)
        return hook

    for u in units:
        handles.append(u.module.fc2.register_forward_pre_hook(pre(u.path)))
    generator = torch.Generator().manual_seed(seed)
    network.eval()
    try:
        with torch.enable_grad():
            for part in batch.split(64):
                for _ in range(n_probes):
                    network.zero_grad(set_to_none=True)
                    acts.clear()
                    pred = forecast(network, part)
                    probe = torch.randint(0, 2, pred.shape, generator=generator).to(pred.dtype) * 2 - 1
                    (pred * probe).sum().backward()
                    for path, calls in acts.items():
                        for a in calls:
                            if a.grad is not None:
                                scores[path] += ((a * a.grad) ** 2).reshape(-1, a.shape[-1]).sum(0).detach()
    finally:
        for h in handles:
            h.remove()
        network.zero_grad(set_to_none=True)
    return scores


def amp(estimator, df, tol: float = 0.01, max_windows: int = 128, n_probes: int = 4, static_df=None):
    """Adaptive MLP pruning (AMP): per MLP, the fewest neurons that keep the forecast within ``tol``.

    Neurons are ranked by Taylor importance with respect to the MSE to the
    original (scaled) forecast on calibration windows of ``df`` (label-free);
    then, MLP by MLP in forward order, a binary search finds the smallest number
    of top-ranked neurons to keep such that the deviation of the whole network
    from the original forecast stays within ``tol * (i + 1) / n_mlps`` (so the
    last MLP ends within ``tol``). Each MLP thus gets its own ratio, and its
    Linear layers shrink physically. At least one neuron stays in each MLP.

    Parameters
    ----------
    tol : float, default=0.01
        The largest allowed MSE between the pruned and the original forecast (scaled data).

    Returns
    -------
    A new fitted estimator; ``compression_[-1]`` holds the hidden sizes before and after,
    the kept neurons per MLP and the deviation reached.

    References
    ----------
    Lu et al., "Adaptive MLP Pruning for Large Vision Transformers" (AMP), repo visresearch/AMP.
    """
    data = TaskData.from_frame(estimator, df, static_df)
    batch = data.windows("train", max_windows)
    network = copy.deepcopy(one_network(estimator)).eval()
    units = mlp_units(network)
    if not units:
        raise ValueError(f"{type(estimator).__name__}'s network has no FeedForward/ConvFFN MLP to prune.")
    with torch.no_grad():
        reference = forecast(network, batch)
    importance = _taylor_importance(network, units, batch, n_probes, estimator.random_state)
    modules = {u.path: u.module for u in units}
    order = {u.path: torch.argsort(importance[u.path], descending=True, stable=True) for u in units}
    masks: dict[str, Tensor] = {}

    def deviation(extra: dict) -> float:
        with torch.no_grad(), masked(neurons={**masks, **extra}, units=modules):
            return float(((forecast(network, batch) - reference) ** 2).mean())

    def keep_mask(u, k):
        mask = torch.zeros(u.hidden)
        mask[order[u.path][:k]] = 1
        return mask

    for i, u in enumerate(units):
        allowed = tol * (i + 1) / len(units)
        lo, hi = 1, u.hidden
        while lo < hi:
            mid = (lo + hi) // 2
            if deviation({u.path: keep_mask(u, mid)}) <= allowed:
                hi = mid
            else:
                lo = mid + 1
        masks[u.path] = keep_mask(u, lo)
    edits: list = []
    before = {u.path: u.hidden for u in units}
    kept = {u.path: sorted(order[u.path][: int(masks[u.path].sum())].tolist()) for u in units}
    for u in units:
        if len(kept[u.path]) < u.hidden:
            prune_mlp(network, u, kept[u.path], edits)
    with torch.no_grad():
        reached = float(((forecast(network, batch) - reference) ** 2).mean())
    record = {"method": "amp", "tol": tol, "deviation": reached, "hidden_before": before,
              "hidden_after": {p: len(k) for p, k in kept.items()}, "kept": kept}
    return derive(estimator, network, edits, record, data)


# -- NViT -------------------------------------------------------------------------------------------------


def _group_terms(network: nn.Module):
    """Per prunable group, the (parameter, index) slices whose g·θ it sums, and its parameter count."""
    groups = []  # (kind, path, index, [(param, slicer)], cost)
    for u in attention_units(network):
        att, h, dq, dv = u.module, u.n_heads, u.d_qk, u.d_v
        d_in, d_out = att.to_q.in_features, att.to_out.out_features

        def rows(lin, idx):
            return [(lin.weight, (idx, slice(None)))] + ([(lin.bias, (idx,))] if lin.bias is not None else [])

        for head in range(h):
            q = list(range(head * dq, (head + 1) * dq))
            v = list(range(head * dv, (head + 1) * dv))
            terms = rows(att.to_q, q) + rows(att.to_k, q) + rows(att.to_v, v) + [(att.to_out.weight, (slice(None), v))]
            groups.append(("head", u.path, head, terms, 2 * dq * (d_in + 1) + dv * (d_in + 1) + dv * d_out))
        for j in range(dq):  # QK dimension j of every head (re-ranked per head when applied)
            q = [head * dq + j for head in range(h)]
            groups.append(("qk", u.path, j, rows(att.to_q, q) + rows(att.to_k, q), 2 * h * (d_in + 1)))
        for j in range(dv):
            v = [head * dv + j for head in range(h)]
            groups.append(("v", u.path, j, rows(att.to_v, v) + [(att.to_out.weight, (slice(None), v))],
                           h * (d_in + 1) + h * d_out))
    for u in mlp_units(network):
        fc1, fc2 = u.module.fc1, u.module.fc2
        for j in range(u.hidden):
            terms = [(fc1.weight, (j, slice(None))), (fc2.weight, (slice(None), j))]
            terms += [(fc1.bias, (j,))] if fc1.bias is not None else []
            groups.append(("neuron", u.path, j, terms, fc1.in_features + 1 + fc2.out_features))
    return groups


def nvit_saliency(network: nn.Module, batch) -> list[dict]:
    """Every group's Hessian-aware saliency ½·Σ_batches (Σ_{θ∈group} g·θ)² (task MSE), raw and per parameter.

    Groups: heads, QK dimensions, V dimensions (each across the heads of one
    attention) and MLP neurons. The per-head, per-dimension saliencies (``per_head``)
    rank the dimensions inside each head when QK/V groups are removed.
    """
    groups = _group_terms(network)
    raw = torch.zeros(len(groups))
    per_head: dict[tuple[str, str], Tensor] = {}
    network.eval()
    for part in batch.split(64):
        network.zero_grad(set_to_none=True)
        with torch.enable_grad():
            pred = forecast(network, part)
            observed = ~torch.isnan(part.y)
            ((pred - part.y)[observed] ** 2).mean().backward()
        for i, (kind, path, index, terms, _) in enumerate(groups):
            raw[i] += 0.5 * float(sum((p.grad[s] * p.detach()[s]).sum() for p, s in terms if p.grad is not None)) ** 2
        for u in attention_units(network):  # per head and dimension, for the ranking inside heads
            att, h = u.module, u.n_heads
            for kind, lins in (("qk", (att.to_q, att.to_k)), ("v", (att.to_v,))):
                gt = sum((lin.weight.grad * lin.weight).sum(1) + (lin.bias.grad * lin.bias if lin.bias is not None
                                                                  else 0) for lin in lins)
                if kind == "v":
                    gt = gt + (att.to_out.weight.grad * att.to_out.weight).sum(0)
                per_head[(kind, u.path)] = per_head.get((kind, u.path), 0) + 0.5 * gt.detach().reshape(h, -1) ** 2
    network.zero_grad(set_to_none=True)
    return [{"kind": g[0], "path": g[1], "index": g[2], "saliency": float(raw[i]), "cost": g[4],
             "score": float(raw[i]) / g[4], "per_head": per_head.get((g[0], g[1]))} for i, g in enumerate(groups)]


def _nvit_step(network: nn.Module, batch, target_params: int) -> tuple[nn.Module, list, dict]:
    """Remove the lowest-scoring groups until the estimated parameter count reaches ``target_params``."""
    groups = sorted(nvit_saliency(network, batch), key=lambda g: g["score"])
    atts = {u.path: u for u in attention_units(network)}
    mlps = {u.path: u for u in mlp_units(network)}
    excess = count_parameters(network) - target_params
    chosen: dict[tuple[str, str], list] = {}
    for g in groups:
        if excess <= 0:
            break
        taken = chosen.setdefault((g["kind"], g["path"]), [])
        if g["kind"] == "neuron" and len(taken) + 1 >= mlps[g["path"]].hidden:
            continue  # keep one neuron
        if g["kind"] in ("qk", "v"):
            unit = atts[g["path"]]
            if len(taken) + 1 >= (unit.d_qk if g["kind"] == "qk" else unit.d_v):
                continue  # keep one dimension per head
        taken.append(g)
        excess -= g["cost"]
    network = copy.deepcopy(network)
    edits: list = []
    removed = {"head": 0, "qk": 0, "v": 0, "neuron": 0}
    per_head = {(g["kind"], g["path"]): g["per_head"] for g in groups if g["per_head"] is not None}
    for path, unit in {u.path: u for u in attention_units(network)}.items():
        heads_gone = {g["index"] for g in chosen.get(("head", path), [])}
        keep_heads = [h for h in range(unit.n_heads) if h not in heads_gone]
        n_qk, n_v = len(chosen.get(("qk", path), [])), len(chosen.get(("v", path), []))
        if not heads_gone and not n_qk and not n_v:
            continue
        qk_keep = [sorted(torch.argsort(per_head[("qk", path)][h], descending=True)[: unit.d_qk - n_qk].tolist())
                   for h in keep_heads]
        v_keep = [sorted(torch.argsort(per_head[("v", path)][h], descending=True)[: unit.d_v - n_v].tolist())
                  for h in keep_heads]
        prune_attention(network, unit, keep_heads, edits, qk_keep=qk_keep, v_keep=v_keep)
        removed["head"] += len(heads_gone)
        removed["qk"] += n_qk if keep_heads else 0
        removed["v"] += n_v if keep_heads else 0
    for path, unit in {u.path: u for u in mlp_units(network)}.items():
        gone = {g["index"] for g in chosen.get(("neuron", path), [])}
        if gone:
            prune_mlp(network, unit, [j for j in range(unit.hidden) if j not in gone], edits)
            removed["neuron"] += len(gone)
    return network, edits, removed


def nvit(estimator, df, ratio: float = 0.5, steps: int = 2, finetune_epochs: int = 1, max_windows: int = 128,
         learning_rate: float | None = None, static_df=None):
    """NViT: Hessian-aware global structural pruning of heads, QK/V dimensions and MLP neurons, with fine-tuning.

    Every group (an attention head; one QK or V dimension across the heads of an
    attention; an MLP neuron) gets the saliency ½·(Σ g·θ)² of the task MSE on
    calibration windows (a Fisher approximation of the Hessian term, zero for a
    group of zero weights), divided by its parameter count, so all kinds rank on one
    global list. In each of ``steps`` steps the lowest-ranked groups are removed
    until the parameters reach ``ratio ** ((step + 1) / steps)`` of the original,
    then the network is fine-tuned for ``finetune_epochs`` epochs on ``df`` through the
    estimator's Lightning training, which lets later steps redistribute the widths
    across layers. Parameters are the cost measure here (the paper also uses a latency
    table); embedding dimensions are not pruned.

    Parameters
    ----------
    ratio : float, default=0.5
        Target fraction of the network's parameters.
    steps : int, default=2
    finetune_epochs : int, default=1

    Returns
    -------
    A new fitted estimator; ``compression_[-1]["steps"]`` holds the structures removed per step and kind.

    References
    ----------
    Yang et al., "Global Vision Transformer Pruning with Hessian-Aware Saliency" (NViT), CVPR 2023.
    """
    if not 0 < ratio <= 1:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    data = TaskData.from_frame(estimator, df, static_df)
    batch = data.windows("train", max_windows)
    network = copy.deepcopy(one_network(estimator))
    if not attention_units(network) and not mlp_units(network):
        raise ValueError(f"{type(estimator).__name__}'s network has no prunable attention or MLP.")
    start = count_parameters(network)
    edits, trace = [], []
    for step in range(steps):
        target = int(math.ceil(start * ratio ** ((step + 1) / steps)))
        network, step_edits, removed = _nvit_step(network, batch, target)
        edits += step_edits
        log = finetune(estimator, network, data, epochs=finetune_epochs, learning_rate=learning_rate)
        trace.append({"removed": removed, "parameters": count_parameters(network),
                      "val_loss": log[-1].get("val_loss") if log else None})
    record = {"method": "nvit", "ratio": ratio, "steps": trace}
    return derive(estimator, network, edits, record, data)
