"""ScaleKD: distil a large teacher into a small student through feature alignment in two views.

Fan et al., "ScaleKD: Strong Vision Transformers Could Be Excellent Teachers"
(NeurIPS 2024), transferred to forecasting. Three parts, each a loss term next to
the task loss:

1. **Cross-attention projector** (CAP): learnable teacher-shaped queries
   attend over the (linearly lifted) student tokens, mapping the student's
   features ``(B', P_s, D_s)`` into the teacher's feature space ``(B', P_t, D_t)``;
   it closes the gap in width, token count and computing paradigm.
2. **Dual-view feature mimicking**: the projected features match the teacher's
   directly (``spatial``) and in frequency space (``frequency``): an rFFT over the
   time tokens with the DC component removed, so the alternating (non-mean)
   patterns, which the direct view under-weights, are mimicked on their own. The
   frequency view ignores a constant added to every token.
3. **Teacher parameter perception**: the projected student features run
   through the teacher's frozen later layers (for Gateformer: the temporal head,
   the time gate with the teacher's global embedding, the variate encoder and
   gate, the head) and their forecast matches the teacher's forecast: the student
   learns features the teacher's own parameters can read.

Training runs through the package's Lightning module and Lightning's Trainer
(:func:`tsformers.compress.core.finetune` with a ScaleKD objective); the
projector trains with the student and is dropped afterwards. The student is a
smaller model of the teacher's class (``student_params``), saved and loaded as an
ordinary estimator with those parameters.

Supported: Gateformer (features: the temporal encoder's patch tokens, the time
axis of the frequency view; perception through the rest of the teacher). Other
estimators distil through their ``layers`` (module paths whose outputs are
``(batch, tokens, width)``), without the perception term.
Cost: one teacher forward and the projector's attention O(P_t·P_s·D_t) per step.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from tsformers.compress.core import TaskData, derive, finetune

__all__ = ["CrossAttentionProjector", "ScaleKDObjective", "frequency_loss", "scalekd", "spatial_loss"]

DEFAULT_WEIGHTS = {"task": 1.0, "output": 0.0, "spatial": 1.0, "frequency": 1.0, "perception": 1.0}


def spatial_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """Direct view: MSE between projected student and teacher features ``(B, P, D)``."""
    return F.mse_loss(student, teacher)


def frequency_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """Frequency view: MSE between the rFFTs over the token axis (dim 1), DC component removed.

    Adding the same vector to every token of either input changes only the DC
    component, so the loss is unchanged.
    """
    fs = torch.fft.rfft(student, dim=1, norm="ortho")[:, 1:]
    ft = torch.fft.rfft(teacher, dim=1, norm="ortho")[:, 1:]
    return (torch.view_as_real(fs) - torch.view_as_real(ft)).pow(2).mean()


class CrossAttentionProjector(nn.Module):
    """Map student tokens ``(B, P_s, D_s)`` to the teacher's ``(B, P_t, D_t)`` with cross-attention.

    ``P_t`` learnable queries (with positions) attend over the student tokens lifted
    by a Linear(D_s -> D_t) (with positions); an output Linear follows. Cost O(P_t·P_s·D_t).
    """

    def __init__(self, d_student: int, d_teacher: int, n_student: int, n_teacher: int, n_heads: int = 4):
        super().__init__()
        heads = max(h for h in range(1, n_heads + 1) if d_teacher % h == 0)
        self.lift = nn.Linear(d_student, d_teacher)
        self.key_pos = nn.Parameter(torch.zeros(1, n_student, d_teacher))
        self.queries = nn.Parameter(torch.randn(1, n_teacher, d_teacher) * 0.02)
        self.attention = nn.MultiheadAttention(d_teacher, heads, batch_first=True)
        self.out = nn.Linear(d_teacher, d_teacher)

    def forward(self, s: Tensor) -> Tensor:
        kv = self.lift(s) + self.key_pos
        q = self.queries.expand(s.shape[0], -1, -1) + kv.mean(1, keepdim=True)
        return self.out(self.attention(q, kv, kv, need_weights=False)[0])


def _gateformer(network: nn.Module):
    from tsformers.models.gateformer import Gateformer

    return next((m for m in network.modules() if isinstance(m, Gateformer)), None)


def gateformer_tail(model, x: Tensor, tokens: Tensor, static: Tensor | None = None) -> Tensor:
    """Gateformer's forward from its temporal-encoder output ``tokens`` ``(B*N, P, D)`` on: ``(B, H, N)``."""
    batch = x.shape[0]
    xn, stats = model.norm(x)
    xn = rearrange(xn, "b l n -> b n l")
    g = model.global_embed(xn)
    t = model.temporal_head(rearrange(tokens, "(b n) p d -> b n (d p)", b=batch))
    v = model.time_gate(g, t)
    if model.static_context is not None:
        v = v + model.static_context(static)[:, None, :]
    z = model.variate_gate(v, model.variate_encoder(v))
    return model.norm.inverse(rearrange(model.head(z), "b n h -> b h n"), stats)


class _Student(nn.Module):
    """The student network with the projectors alongside, so Lightning's optimiser trains both."""

    def __init__(self, student: nn.Module, projectors: nn.ModuleDict):
        super().__init__()
        self.student, self.projectors = student, projectors

    def forward(self, *args, **kwargs):
        return self.student(*args, **kwargs)


def _capture(network: nn.Module, layers, store: dict) -> list:
    return [network.get_submodule(p).register_forward_hook(lambda m, i, o, p=p: store.__setitem__(p, o))
            for p in layers]


class ScaleKDObjective:
    """``objective(module, inputs, pred, y)`` for ``ForecastingModule``: task + ScaleKD terms (``weights``)."""

    def __init__(self, teacher: nn.Module, wrapper: _Student, layers: dict, weights: dict):
        self.teacher, self.wrapper, self.layers, self.weights = teacher, wrapper, layers, weights
        self.student_feats: dict = {}
        self.handles = _capture(wrapper.student, list(layers.values()), self.student_feats)
        self.gateformer = _gateformer(teacher)
        self.last: dict = {}

    def close(self) -> None:
        for h in self.handles:
            h.remove()

    def __call__(self, module, inputs, pred, y):
        w = self.weights
        x = inputs[0]
        static = inputs[1] if len(inputs) > 1 else None
        teacher_feats: dict = {}
        handles = _capture(self.teacher, list(self.layers), teacher_feats)
        try:
            with torch.no_grad():
                t_pred = self.teacher(x) if static is None else self.teacher(x, static=static)
        finally:
            for h in handles:
                h.remove()
        terms = {"task": module.masked_loss(pred, y)}
        if w.get("output"):
            n = pred.shape[-1] if pred.ndim == 3 else None
            terms["output"] = F.mse_loss(pred, t_pred[..., :n] if n else t_pred)
        spatial = frequency = perception = 0.0
        for t_path, s_path in self.layers.items():
            projected = self.wrapper.projectors[_key(t_path)](self.student_feats[s_path])
            target = teacher_feats[t_path].detach()
            spatial = spatial + spatial_loss(projected, target)
            frequency = frequency + frequency_loss(projected, target)
            if w.get("perception") and self.gateformer is not None and t_path.endswith("temporal_encoder"):
                with torch.no_grad():
                    reference = gateformer_tail(self.gateformer, x, target, static)
                perception = perception + F.mse_loss(gateformer_tail(self.gateformer, x, projected, static),
                                                     reference)
        terms.update(spatial=spatial, frequency=frequency, perception=perception)
        self.last = {k: float(v.detach()) if isinstance(v, Tensor) else float(v) for k, v in terms.items()}
        return sum(w.get(k, 0.0) * v for k, v in terms.items() if w.get(k, 0.0))


def _key(path: str) -> str:
    return path.replace(".", "__")


@torch.no_grad()
def _shapes(network: nn.Module, paths, x: Tensor, static) -> dict:
    got: dict = {}
    handles = _capture(network, paths, got)
    try:
        network.eval()
        network(x) if static is None else network(x, static=static)
    finally:
        for h in handles:
            h.remove()
    return {p: tuple(v.shape) for p, v in got.items()}


def scalekd(teacher, df, *, layers=None, weights: dict | None = None, epochs: int | None = None,
            learning_rate: float | None = None, n_heads: int = 4, static_df=None, **student_params):
    """Distil a fitted ``teacher`` into a smaller student of its class with ScaleKD.

    Parameters
    ----------
    teacher : fitted BaseForecaster
        The large model; frozen.
    df : DataFrame
        Training data with the fit columns (its last ``val_size`` part for early stopping).
    layers : dict or list of str, optional
        Teacher feature paths mapped to student paths (a list: the same paths in
        both); each output is ``(batch, tokens, width)``. Default for Gateformer:
        the temporal encoder (patch tokens over time).
    weights : dict, optional
        Weights of ``task`` (the student's loss on the targets), ``output`` (MSE to
        the teacher's forecast), ``spatial``, ``frequency`` and ``perception``;
        default ``{"task": 1, "output": 0, "spatial": 1, "frequency": 1, "perception": 1}``.
    epochs : int, optional
        Default: the teacher's ``max_epochs``.
    learning_rate : float, optional
        Default: the teacher's.
    n_heads : int, default=4
        Heads of the cross-attention projector (fewer if the teacher width needs).
    **student_params
        The student's smaller parameters, e.g. ``d_model=16, d_ff=32``.

    Returns
    -------
    BaseForecaster
        The student (teacher's class with ``student_params``), fitted; ``compression_``
        records the final loss terms.
    """
    if not student_params:
        raise ValueError("name the student's smaller parameters, e.g. scalekd(f, df, d_model=16, d_ff=32).")
    weights = {**DEFAULT_WEIGHTS, **(weights or {})}
    if layers is None:
        if _gateformer(teacher.network_) is None:
            raise ValueError(f"name the feature layers of {type(teacher).__name__} to distil (layers=[...]).")
        prefix = next(n for n, m in teacher.network_.named_modules() if m is _gateformer(teacher.network_))
        layers = [f"{prefix}.temporal_encoder" if prefix else "temporal_encoder"]
    layers = dict(layers) if isinstance(layers, dict) else {p: p for p in layers}
    data = TaskData.from_frame(teacher, df, static_df)
    network = teacher.new_network(**student_params)
    probe = data.windows("train", max_windows=2)
    t_shapes = _shapes(teacher.network_, list(layers), probe.x, probe.static)
    s_shapes = _shapes(network, list(layers.values()), probe.x, probe.static)
    projectors = nn.ModuleDict({
        _key(t): CrossAttentionProjector(s_shapes[s][-1], t_shapes[t][-1], s_shapes[s][1], t_shapes[t][1], n_heads)
        for t, s in layers.items()})
    wrapper = _Student(network, projectors).train()
    frozen = copy.deepcopy(teacher.network_).eval().requires_grad_(False)
    objective = ScaleKDObjective(frozen, wrapper, layers, weights)
    try:
        log = finetune(teacher, wrapper, data, epochs=teacher.max_epochs if epochs is None else epochs,
                       learning_rate=learning_rate, objective=objective)
    finally:
        objective.close()
    record = {"method": "scalekd", "student": student_params, "layers": layers, "weights": weights,
              "last_terms": objective.last, "val_loss": log[-1].get("val_loss") if log else None}
    return derive(teacher, network, [], record, data, params=student_params)
