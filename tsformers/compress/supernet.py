"""A weight-sharing supernet over a fitted network's encoders: elastic depth, heads, FFN width and bit-width.

Once-for-all / BigNAS-style (Cai et al., ICLR 2020; Yu et al., ECCV 2020), as
SimQ-NAS uses it: every subnet of the space reads *slices* of the same weights
(the first ``k`` layers of an encoder, the first ``h`` heads of an attention
layer, the first ``m`` neurons of an FFN), optionally fake-quantised to 8 or 4
bits per layer. Before training, each layer's heads and neurons are sorted by a
magnitude importance (a function-preserving permutation, "network rewiring" of
DynaBERT), so the slices keep the most important ones.

Training follows the *sandwich rule*: every step trains the largest subnet on
the targets and the smallest and ``n_random`` random subnets on the largest
one's (detached) forecast, in-place distillation. It runs through the project's
:class:`~tsformers.training.ForecastingModule` (its loss, optimiser, schedule,
early stopping) under Lightning's ``Trainer``, with :class:`Sandwich` as its
training objective.

The space covers every :class:`~tsformers.backbone.blocks.TransformerEncoder`
of plain full-attention/FFN blocks in the network: both encoders of Gateformer,
PV-Client's encoder, any estimator built with ``stack="standard"``, ``mixer="full"``.
Cost: a step costs ``2 + n_random`` forward/backward passes of at most the full network.

Example
-------
>>> net = supernet(forecaster, df, epochs=2)                   # doctest: +SKIP
>>> small = net.extract_estimator(net.min_genome())            # a physically smaller fitted forecaster
"""
from __future__ import annotations

import copy
import random
import time

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from tsformers.backbone.blocks import TransformerEncoder
from tsformers.backbone.dropout import attend
from tsformers.backbone.feedforward import FeedForward
from tsformers.backbone.mixers.full import FullAttention
from tsformers.compress._parts import find_blocks, find_encoders, head_dim, keep_ffn, keep_heads
from tsformers.runtime.quant import QuantLinear, fake_quant
from tsformers.compress.core import TaskData, derive, finetune, mse, one_network
from tsformers.compress.structure import install
from tsformers.compress.units import attention_units, mlp_units, prune_attention, prune_mlp

__all__ = ["ElasticFFN", "ElasticFullAttention", "Sandwich", "Supernet", "supernet"]

BITS = (32, 8, 4)
WIDTHS = (0.25, 0.5, 0.75, 1.0)


# -- elastic layers: the same modules (same parameters, same state-dict keys), sliced forward ---------------

class ElasticFullAttention(FullAttention):
    """``FullAttention`` that runs its first ``active_heads`` heads with weights fake-quantised to ``bits``."""

    active_heads: int | None = None
    bits: int = 32

    def forward(self, x: Tensor, kv: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        h = self.active_heads or self.n_heads
        rows = h * head_dim(self)
        kv = x if kv is None else kv
        q, k, v = (rearrange(F.linear(t, fake_quant(p.weight[:rows], self.bits), p.bias[:rows]),
                             "b n (h d) -> b h n d", h=h)
                   for p, t in ((self.to_q, x), (self.to_k, kv), (self.to_v, kv)))
        is_causal = self.causal and mask is None
        if self.causal and mask is not None:
            mask = mask & torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=x.device).tril()
        out = attend(q, k, v, mask=mask, is_causal=is_causal, dropout_p=self.dropout if self.training else 0.0)
        out = rearrange(out, "b h n d -> b n (h d)")
        return F.linear(out, fake_quant(self.to_out.weight[:, :rows], self.bits), self.to_out.bias)


class ElasticFFN(FeedForward):
    """``FeedForward`` that runs its first ``active_width`` hidden neurons with weights fake-quantised to ``bits``."""

    active_width: int | None = None
    bits: int = 32

    def forward(self, x: Tensor) -> Tensor:
        m = self.active_width or self.fc1.out_features
        hidden = F.linear(x, fake_quant(self.fc1.weight[:m], self.bits), self.fc1.bias[:m])
        return F.linear(self.dropout(self.act(hidden)), fake_quant(self.fc2.weight[:, :m], self.bits), self.fc2.bias)


class ElasticEncoder(TransformerEncoder):
    """``TransformerEncoder`` that runs its first ``active_depth`` layers."""

    active_depth: int | None = None

    def forward(self, x: Tensor) -> Tensor:
        for layer in list(self.layers)[: self.active_depth or len(self.layers)]:
            x = layer(x)
        return self.norm(x)


_ELASTIC = {FullAttention: ElasticFullAttention, FeedForward: ElasticFFN, TransformerEncoder: ElasticEncoder}
_PLAIN = {v: k for k, v in _ELASTIC.items()}


def _swap(module: nn.Module, table: dict) -> None:
    if type(module) in table:
        module.__class__ = table[type(module)]


# -- the supernet --------------------------------------------------------------------------------------------

class Supernet(nn.Module):
    """Weight-sharing supernet over the plain encoders of ``network`` (a deep copy; the original is untouched).

    A *genome* is a dict ``{"depth": {encoder: k}, "blocks": [{"heads": h, "d_ff": m, "bits": b}, ...]}``
    with one entry per block of every encoder, in module order (the blocks past
    an encoder's depth are inactive). ``set(genome)`` selects the subnet that
    ``forward`` runs; ``extract(genome)`` returns it as a physically smaller
    plain network whose weights are the slices (quantised layers as
    :class:`~tsformers.runtime.quant.QuantLinear`).

    Parameters
    ----------
    network : nn.Module
        A trained network with at least one encoder of plain full-attention/FFN blocks.
    rewire : bool, default=True
        Sort heads and FFN neurons by importance first (the output does not change).
    widths : tuple of float
        The FFN widths of the space, as fractions of each block's ``d_ff``.
    bits : tuple of int
        The weight bit-widths of the space (32 = fp32).
    """

    def __init__(self, network: nn.Module, *, rewire: bool = True, widths=WIDTHS, bits=BITS):
        super().__init__()
        self.network = copy.deepcopy(network)
        self.refs = find_blocks(self.network)
        if not self.refs:
            raise ValueError(f"{type(network).__name__} has no TransformerEncoder of full-attention/FFN blocks "
                             f"(stack='standard', mixer='full'); the supernet has nothing to make elastic.")
        self.encoders = list(find_encoders(self.network))
        self.bit_choices = tuple(sorted(set(bits), reverse=True))
        self.head_choices = [list(range(1, r.block.mixer.n_heads + 1)) for r in self.refs]
        self.width_choices = [sorted({max(1, round(f * r.block.ffn.fc1.out_features)) for f in widths})
                              for r in self.refs]
        if rewire:
            self.rewire()
        for module in self.network.modules():
            _swap(module, _ELASTIC)
        self.set(self.max_genome())

    # -- the space --------------------------------------------------------------------------------------
    def max_genome(self) -> dict:
        return {"depth": {e: self._n_layers(e) for e in self.encoders},
                "blocks": [{"heads": h[-1], "d_ff": w[-1], "bits": self.bit_choices[0]}
                           for h, w in zip(self.head_choices, self.width_choices)]}

    def min_genome(self) -> dict:
        return {"depth": {e: 1 for e in self.encoders},
                "blocks": [{"heads": h[0], "d_ff": w[0], "bits": self.bit_choices[-1]}
                           for h, w in zip(self.head_choices, self.width_choices)]}

    def sample(self, rng: random.Random) -> dict:
        return {"depth": {e: rng.randint(1, self._n_layers(e)) for e in self.encoders},
                "blocks": [{"heads": rng.choice(h), "d_ff": rng.choice(w), "bits": rng.choice(self.bit_choices)}
                           for h, w in zip(self.head_choices, self.width_choices)]}

    def gene_choices(self) -> list[list]:
        """The choices of each gene of the flat encoding (:meth:`encode`/:meth:`decode`)."""
        genes = [list(range(1, self._n_layers(e) + 1)) for e in self.encoders]
        for h, w in zip(self.head_choices, self.width_choices):
            genes += [h, w, list(self.bit_choices)]
        return genes

    def encode(self, genome: dict) -> tuple:
        """The genome as a tuple of choice indices, with the inactive blocks' genes set to 0 (canonical)."""
        choices = self.gene_choices()
        flat = [genome["depth"][e] for e in self.encoders]
        for b in genome["blocks"]:
            flat += [b["heads"], b["d_ff"], b["bits"]]
        codes = [c.index(v) for c, v in zip(choices, flat)]
        for j, ref in enumerate(self.refs):
            if ref.index >= genome["depth"][ref.encoder]:
                codes[len(self.encoders) + 3 * j: len(self.encoders) + 3 * j + 3] = [0, 0, 0]
        return tuple(codes)

    def decode(self, codes) -> dict:
        choices = self.gene_choices()
        values = [c[int(i)] for c, i in zip(choices, codes)]
        n = len(self.encoders)
        return {"depth": dict(zip(self.encoders, values[:n])),
                "blocks": [{"heads": values[n + 3 * j], "d_ff": values[n + 3 * j + 1], "bits": values[n + 3 * j + 2]}
                           for j in range(len(self.refs))]}

    def active(self, genome: dict) -> list[bool]:
        """Whether each block runs under ``genome``."""
        return [ref.index < genome["depth"][ref.encoder] for ref in self.refs]

    def _n_layers(self, encoder: str) -> int:
        return sum(ref.encoder == encoder for ref in self.refs)

    # -- running a subnet -------------------------------------------------------------------------------
    def set(self, genome: dict) -> "Supernet":
        """Select the subnet that ``forward`` runs."""
        modules = dict(self.network.named_modules())
        for name, depth in genome["depth"].items():
            modules[name].active_depth = depth
        for ref, gene in zip(self.refs, genome["blocks"]):
            ref.block.mixer.active_heads, ref.block.mixer.bits = gene["heads"], gene["bits"]
            ref.block.ffn.active_width, ref.block.ffn.bits = gene["d_ff"], gene["bits"]
        self.genome = genome
        return self

    def forward(self, *args, **kwargs):
        return self.network(*args, **kwargs)

    # -- rewiring and extraction ------------------------------------------------------------------------
    @torch.no_grad()
    def rewire(self) -> None:
        """Sort every block's heads and FFN neurons by magnitude importance, most important first (same function).

        Head importance: ``||W_v[h]|| * ||W_out[:, h]||`` (the value path's gain);
        neuron importance: ``||fc1[i]|| * ||fc2[:, i]||``.
        """
        for ref in self.refs:
            attn, ffn = ref.block.mixer, ref.block.ffn
            dh = head_dim(attn)
            v = attn.to_v.weight.reshape(attn.n_heads, dh, -1).flatten(1).norm(dim=1)
            o = attn.to_out.weight.reshape(attn.to_out.out_features, attn.n_heads, dh).transpose(0, 1).flatten(1)
            keep_heads(attn, torch.argsort(v * o.norm(dim=1), descending=True, stable=True).tolist())
            score = ffn.fc1.weight.norm(dim=1) * ffn.fc2.weight.norm(dim=0)
            keep_ffn(ffn, torch.argsort(score, descending=True, stable=True).tolist())

    @torch.no_grad()
    def extract(self, genome: dict, edits: list | None = None) -> nn.Module:
        """The subnet of ``genome`` as a plain, physically smaller network (weights copied from the slices).

        The surgery is recorded in ``edits`` (the ``tsformers.compress.structure``
        format that ``load`` replays): kept heads and neurons as new ``Linear``
        layers, layers past an encoder's depth as ``Identity``, quantised layers
        as ``QuantLinear``.
        """
        edits = [] if edits is None else edits
        net = self._plain_copy()
        atts = {u.path: u for u in attention_units(net)}
        mlps = {u.path: u for u in mlp_units(net)}
        for ref, gene, on in zip(find_blocks(net), genome["blocks"], self.active(genome)):
            if not on:
                install(net, ref.name, nn.Identity(), edits)       # past the encoder's depth
                continue
            if gene["heads"] < ref.block.mixer.n_heads:
                prune_attention(net, atts[f"{ref.name}.mixer"], range(gene["heads"]), edits)
            if gene["d_ff"] < ref.block.ffn.fc1.out_features:
                prune_mlp(net, mlps[f"{ref.name}.ffn"], range(gene["d_ff"]), edits)
            if gene["bits"] < 32:
                quantize_block(net, ref.name, gene["bits"], edits)
        return net.eval()

    def _plain_copy(self) -> nn.Module:
        net = copy.deepcopy(self.network)
        for module in net.modules():
            _swap(module, _PLAIN)
            for attr in ("active_heads", "active_width", "active_depth", "bits"):
                module.__dict__.pop(attr, None)
        return net

    def extract_estimator(self, genome: dict, record: dict | None = None):
        """A new fitted estimator (see :func:`supernet`'s source) whose network is the subnet of ``genome``.

        It saves and loads like any other (its edits are replayed at load); the
        source estimator is left as it was. The rewiring (a permutation of heads
        and neurons) is part of the subnet's weights, not an edit.
        """
        if getattr(self, "estimator", None) is None:
            raise ValueError("this supernet was not built from an estimator; use extract(genome) for the network.")
        edits: list = []
        network = self.extract(genome, edits)
        return derive(self.estimator, network, edits, {"method": "supernet", "genome": genome, **(record or {})})

    # -- measuring --------------------------------------------------------------------------------------
    def size_bits(self, genome: dict) -> int:
        """Bits of the subnet's parameters: weights of quantised layers at their bit-width, the rest fp32."""
        in_blocks = {id(p) for ref in self.refs for p in ref.block.parameters()}
        total = 32 * sum(p.numel() for p in self.network.parameters() if id(p) not in in_blocks)
        for ref, gene, on in zip(self.refs, genome["blocks"], self.active(genome)):
            if not on:
                continue
            attn, ffn = ref.block.mixer, ref.block.ffn
            d, d_out, rows, m = attn.to_q.in_features, attn.to_out.out_features, gene["heads"] * head_dim(attn), \
                gene["d_ff"]
            norms = sum(p.numel() for n, p in ref.block.named_parameters() if n.startswith("norm"))
            weights = 3 * d * rows + rows * d_out + d * m + m * ffn.fc2.out_features
            total += gene["bits"] * weights + 32 * (3 * rows + d_out + m + ffn.fc2.out_features + norms)
        return int(total)

    def evaluate(self, genome: dict, batch) -> float:
        """MSE (scaled data) of the subnet of ``genome`` on a :class:`~tsformers.compress.core.Batch` of windows."""
        was = self.genome
        try:
            return mse(self.set(genome), batch)
        finally:
            self.set(was)


def quantize_block(network: nn.Module, path: str, bits: int, edits: list | None = None) -> None:
    """Replace the six Linear layers of the plain block at ``path`` (q, k, v, out, fc1, fc2) by ``QuantLinear``."""
    for name in ("mixer.to_q", "mixer.to_k", "mixer.to_v", "mixer.to_out", "ffn.fc1", "ffn.fc2"):
        layer = QuantLinear.from_linear(network.get_submodule(f"{path}.{name}"), bits)
        network.set_submodule(f"{path}.{name}", layer)
        if edits is not None:  # the record format of tsformers.compress.structure
            edits.append({"op": "replace", "path": f"{path}.{name}", "type": "QuantLinear", "kwargs": layer.spec()})


@torch.no_grad()
def cpu_latency(network: nn.Module, x: Tensor, reps: int = 5, static: Tensor | None = None) -> float:
    """Median seconds of ``network(x)`` on CPU over ``reps`` runs after one warm-up."""
    network.eval()
    call = (lambda: network(x)) if static is None else (lambda: network(x, static=static))
    call()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


# -- sandwich-rule training through the project's Lightning module --------------------------------------

class Sandwich:
    """The sandwich-rule training objective for :class:`~tsformers.training.ForecastingModule` (``objective=``).

    The module's own forward (the supernet set to its largest subnet) gives the
    task loss on the targets; the smallest and ``n_random`` random subnets are then
    run on the same batch and trained on the largest one's detached forecast
    (in-place distillation, ``distill=True``) or on the targets. The random
    subnets are drawn from ``seed`` and the global step, so training is
    reproducible; validation sees the largest subnet.
    """

    def __init__(self, net: Supernet, *, n_random: int = 2, distill: bool = True, seed: int = 0):
        self.net, self.n_random, self.distill, self.seed = net, n_random, distill, seed

    def __call__(self, module, inputs, pred, y):
        net = self.net
        rng = random.Random(self.seed * 7919 + int(module.global_step))
        loss = module.masked_loss(pred, y)
        teacher = pred.detach()
        distill = self.distill and pred.ndim == y.ndim   # a quantile head trains every subnet on the targets
        for genome in [net.min_genome(), *(net.sample(rng) for _ in range(self.n_random))]:
            net.set(genome)
            out = module(*inputs)
            loss = loss + (module.loss_fn(out, teacher) if distill else module.masked_loss(out, y))
        net.set(net.max_genome())
        return loss


def supernet(estimator, df, *, epochs: int = 2, n_random: int = 2, distill: bool = True, rewire: bool = True,
             widths=WIDTHS, bits=BITS, learning_rate: float | None = None, max_windows: int = 2048) -> Supernet:
    """Build a weight-sharing supernet from a fitted estimator and train it with the sandwich rule on ``df``.

    Parameters
    ----------
    estimator : fitted BaseForecaster
        Its network needs an encoder of full-attention/FFN blocks (Gateformer,
        PV-Client, ...); its weights initialise the supernet (the largest subnet).
    df : DataFrame
        Training data with the fit columns (read as ``fit`` reads it, scaled with
        the fitted statistics, its last ``val_size`` part for validation).
    epochs : int, default=2
        Sandwich training epochs through :func:`tsformers.compress.core.finetune`
        (the package's ``ForecastingModule`` and Lightning's Trainer, early stopping
        on the largest subnet's validation loss); 0 keeps the rewired weights.
    n_random : int, default=2
        Random subnets per step besides the largest and the smallest.
    distill : bool, default=True
        Train the smaller subnets on the largest one's forecast (in-place distillation).
    rewire, widths, bits :
        See :class:`Supernet`.
    learning_rate : float, optional
        Default: half the estimator's (the weights are already trained).
    max_windows : int, default=2048
        Validation windows kept in ``val_batch`` for evaluating subnets.

    Returns
    -------
    Supernet
        In eval mode, set to its largest subnet, with ``estimator`` (the source),
        ``data`` (:class:`~tsformers.compress.core.TaskData` of ``df``),
        ``val_batch`` (its validation windows) and ``training_log_``.
    """
    net = Supernet(one_network(estimator), rewire=rewire, widths=widths, bits=bits)
    data = TaskData.from_frame(estimator, df)
    net.training_log_ = []
    if epochs:
        net.train()
        net.training_log_ = finetune(estimator, net, data, epochs=epochs,
                                     learning_rate=learning_rate or estimator.learning_rate / 2,
                                     objective=Sandwich(net, n_random=n_random, distill=distill,
                                                        seed=estimator.random_state))
    net.eval().set(net.max_genome())
    net.estimator, net.data = estimator, data
    net.val_batch = data.windows("val", max_windows=max_windows)
    return net
