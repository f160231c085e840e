"""AxFormer: accuracy-driven greedy removal of blocks, attentions, FFNs and heads, plus selective hard attention."""
from __future__ import annotations

import copy

from torch import nn

from tsformers.backbone.blocks import TransformerEncoder
from tsformers.compress.core import TaskData, derive, mse, one_network
from tsformers.compress.structure import HardTopKAttention, Zero, install, wrap
from tsformers.compress.units import attention_units, mlp_units, prune_attention

__all__ = ["axformer", "axformer_candidates"]

KINDS = ("blocks", "attention", "ffns", "heads")


def axformer_candidates(network: nn.Module, kinds=KINDS) -> list[tuple[str, str, int | None]]:
    """``(kind, path, index)`` removal candidates, coarse first: blocks of standard encoder stacks,
    whole attentions (mixer slots of blocks), FFNs, then single heads."""
    from tsformers.backbone.blocks import _MixerFFNBlock

    out = []
    if "blocks" in kinds:
        for path, m in network.named_modules():
            if type(m) is TransformerEncoder:
                out += [("block", f"{path}.layers.{i}", None) for i, layer in enumerate(m.layers)
                        if not isinstance(layer, nn.Identity)]
    if "attention" in kinds:
        out += [("attention", f"{path}.mixer", None) for path, m in network.named_modules()
                if isinstance(m, _MixerFFNBlock) and not isinstance(m.mixer, Zero)]
    if "ffns" in kinds:
        out += [("ffn", u.path, None) for u in mlp_units(network)]
    if "heads" in kinds:
        out += [("head", u.path, h) for u in attention_units(network) for h in range(u.n_heads)]
    return out


def _remove(network: nn.Module, kind: str, path: str, index, edits: list) -> None:
    from tsformers.models.lmuformer import ConvFFN

    if kind == "block":
        install(network, path, nn.Identity(), edits)
    elif kind == "attention":
        install(network, path, Zero(), edits)
    elif kind == "ffn":
        install(network, path, Zero(with_state=type(network.get_submodule(path)) is ConvFFN), edits)
    elif kind == "head":
        unit = next(u for u in attention_units(network) if u.path == path)
        prune_attention(network, unit, [h for h in range(unit.n_heads) if h != index], edits)


def _alive(network: nn.Module, path: str) -> bool:
    """Whether ``path`` still names a module (an enclosing block may have been removed)."""
    try:
        network.get_submodule(path)
        return True
    except AttributeError:
        return False


def axformer(estimator, df, k: int | None = None, layers=None, kinds=KINDS, tol: float = 0.0,
             max_windows: int = 256, static_df=None):
    """AxFormer: greedily remove what does not hurt validation accuracy, then make attention hard where it does not.

    (1) Accuracy-driven pruning: candidates (:func:`axformer_candidates`: whole
    blocks of standard encoder stacks, attention sub-layers, FFNs, single heads)
    are tried in that order; each removal is kept if the validation MSE (scaled,
    on the validation part of ``df``, or its training part when it has none) does
    not rise above the current value plus ``tol``. With ``tol=0`` every accepted
    removal leaves the MSE at most what it was before. Heads of a removed block are
    not tried. (2) Selective hard attention (``k`` given): in each full attention
    left (or those in ``layers``, paths as in ``attention_units``) only the top ``k``
    scores per query are kept; with ``layers=None`` a layer keeps it only if the
    validation MSE does not rise (beyond ``tol``), with explicit ``layers`` always.

    Returns
    -------
    A new fitted estimator; ``compression_[-1]["trace"]`` lists every candidate with the
    MSE before and after and whether it was accepted.

    References
    ----------
    Nagarajan et al., "AxFormer: Accuracy-driven Approximation of Transformers for Faster,
    Smaller and more Accurate NLP Models", IJCNN 2022.
    """
    data = TaskData.from_frame(estimator, df, static_df)
    val = data.windows("val", max_windows)
    network = copy.deepcopy(one_network(estimator)).eval()
    current = mse(network, val)
    start = current
    edits, trace = [], []
    for kind, path, index in axformer_candidates(network, kinds):
        if not _alive(network, path):
            continue
        if kind == "head":
            unit = next((u for u in attention_units(network) if u.path == path), None)
            if unit is None or unit.n_heads <= 1 or index >= unit.n_heads:
                continue
        trial, trial_edits = copy.deepcopy(network), []
        _remove(trial, kind, path, index, trial_edits)
        after = mse(trial, val)
        accepted = after <= current + tol
        trace.append({"kind": kind, "path": path, "index": index, "before": current, "after": after,
                      "accepted": accepted})
        if accepted:
            network, current = trial, after
            edits += trial_edits
    hard = []
    if k is not None:
        targets = [u.path for u in attention_units(network)] if layers is None else list(layers)
        for path in targets:
            if isinstance(network.get_submodule(path), HardTopKAttention):
                continue
            trial, trial_edits = copy.deepcopy(network), []
            wrap(trial, path, "HardTopKAttention", trial_edits, k=int(k))
            after = mse(trial, val)
            accepted = layers is not None or after <= current + tol
            trace.append({"kind": "hard_attention", "path": path, "index": int(k), "before": current, "after": after,
                          "accepted": accepted})
            if accepted:
                network, current = trial, after
                edits += trial_edits
                hard.append(path)
    record = {"method": "axformer", "k": k, "tol": tol, "val_mse_before": start, "val_mse_after": current,
              "hard_attention": hard, "trace": trace}
    return derive(estimator, network, edits, record, data)
