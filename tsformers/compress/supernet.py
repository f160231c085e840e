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
one's (detached) forecast, in-place distillation. It runs as a subclass of the
project's :class:`~tsformers.training.ForecastingModule` (its loss, optimiser
and schedule) under Lightning's ``Trainer``; only ``training_step`` differs.

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

from tsformers.backbone.blocks import FeedForward, TransformerEncoder
from tsformers.backbone.mixers.full import FullAttention
from tsformers.compress._lightning import frame_windows, module_kwargs, train_module, window_batches, with_network
from tsformers.compress._parts import find_blocks, find_encoders, head_dim, keep_ffn, keep_heads, keep_layers
from tsformers.compress._quant import QuantLinear, fake_quant
from tsformers.training.module import ForecastingModule

__all__ = ["ElasticFFN", "ElasticFullAttention", "SandwichModule", "Supernet", "supernet"]

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
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal,
                                             dropout_p=self.dropout if self.training else 0.0)
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
    :class:`~tsformers.compress._quant.QuantLinear`).

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
    def extract(self, genome: dict) -> nn.Module:
        """The subnet of ``genome`` as a plain, physically smaller network (weights copied from the slices)."""
        net = copy.deepcopy(self.network)
        for module in net.modules():
            _swap(module, _PLAIN)
            for attr in ("active_heads", "active_width", "active_depth", "bits"):
                module.__dict__.pop(attr, None)
        encoders = find_encoders(net)
        refs = find_blocks(net)
        for ref, gene in zip(refs, genome["blocks"]):
            keep_heads(ref.block.mixer, range(gene["heads"]))
            keep_ffn(ref.block.ffn, range(gene["d_ff"]))
        for ref, gene, on in zip(refs, genome["blocks"], self.active(genome)):
            if on and gene["bits"] < 32:
                quantize_block(ref.block, gene["bits"])
        for name, depth in genome["depth"].items():
            keep_layers(encoders[name], depth)
        return net.eval()

    def extract_estimator(self, genome: dict):
        """A copy of the source estimator (see :func:`supernet`) with the subnet of ``genome`` as its network."""
        if getattr(self, "estimator", None) is None:
            raise ValueError("this supernet was not built from an estimator; use extract(genome) for the network.")
        return with_network(self.estimator, self.extract(genome))

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

    @torch.no_grad()
    def evaluate(self, genome: dict, batches: list, n_targets: int) -> float:
        """MSE of the subnet on ``batches`` of ``(x, y)`` / ``(x, static, y)`` windows (scaled data)."""
        was = self.training
        self.eval()
        self.set(genome)
        err, count = 0.0, 0
        for *inputs, y in batches:
            pred = self(inputs[0]) if len(inputs) == 1 else self(inputs[0], static=inputs[1])
            pred = pred[..., :n_targets] if pred.ndim == 3 else pred.median(dim=-1).values
            ok = ~torch.isnan(y)
            err += float(((pred - y)[ok] ** 2).sum())
            count += int(ok.sum())
        self.set(self.max_genome()).train(was)
        return err / max(count, 1)


def quantize_block(block: nn.Module, bits: int) -> None:
    """Replace the six Linear layers of a plain block (q, k, v, out, fc1, fc2) by ``bits``-bit ``QuantLinear``."""
    for parent, names in ((block.mixer, ("to_q", "to_k", "to_v", "to_out")), (block.ffn, ("fc1", "fc2"))):
        for name in names:
            setattr(parent, name, QuantLinear.from_linear(getattr(parent, name), bits))


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

class SandwichModule(ForecastingModule):
    """``ForecastingModule`` over a :class:`Supernet` whose training step follows the sandwich rule.

    Each step: the largest subnet on the targets (the task loss), then the
    smallest and ``n_random`` random subnets on the largest one's detached
    forecast (in-place distillation, ``distill=True``) or on the targets. The
    sampled subnets are drawn from ``seed`` and the step, so training is
    reproducible. Validation runs the largest subnet.
    """

    def __init__(self, network: Supernet, *, n_random: int = 2, distill: bool = True, seed: int = 0, **kwargs):
        super().__init__(network, **kwargs)
        self.n_random, self.seed = n_random, seed
        self.distill = distill and not kwargs.get("quantiles")  # quantile heads: every subnet on the targets

    def training_step(self, batch, batch_idx):
        *inputs, y = batch
        net: Supernet = self.network
        rng = random.Random(self.seed * 7919 + self.global_step)
        net.set(net.max_genome())
        pred = self(*inputs)
        loss = self.masked_loss(pred, y)
        teacher = pred.detach()
        for genome in [net.min_genome(), *(net.sample(rng) for _ in range(self.n_random))]:
            net.set(genome)
            out = self(*inputs)
            loss = loss + (self.loss_fn(out, teacher) if self.distill else self.masked_loss(out, y))
        net.set(net.max_genome())
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(y))
        return loss


def supernet(estimator, df, *, epochs: int = 2, n_random: int = 2, distill: bool = True, rewire: bool = True,
             widths=WIDTHS, bits=BITS, learning_rate: float | None = None, batch_size: int | None = None,
             max_steps: int = -1) -> Supernet:
    """Build a weight-sharing supernet from a fitted estimator and train it with the sandwich rule on ``df``.

    Parameters
    ----------
    estimator : fitted BaseForecaster
        Its network needs an encoder of full-attention/FFN blocks (Gateformer,
        PV-Client, ...); its weights initialise the supernet (the largest subnet).
    df : DataFrame
        Training data with the fit columns (windows made as ``fit`` makes them,
        scaled with the fitted statistics).
    epochs : int, default=2
        Sandwich training epochs (0: no training, the rewired network as is).
    n_random : int, default=2
        Random subnets per step besides the largest and the smallest.
    distill : bool, default=True
        Train the smaller subnets on the largest one's forecast (in-place distillation).
    rewire, widths, bits :
        See :class:`Supernet`.
    learning_rate, batch_size : optional
        Default: the estimator's (rate divided by 2: the weights are already trained).
    max_steps : int, default=-1
        A cap on the optimiser steps (for tests).

    Returns
    -------
    Supernet
        With ``estimator`` (the source), ``training_log_`` and the data's
        validation windows ``val_batches`` (or a seeded sample of training windows).
    """
    net = Supernet(estimator.network_, rewire=rewire, widths=widths, bits=bits)
    train, val, static = frame_windows(estimator, df)
    net.training_log_ = []
    if epochs:
        net.train()
        module = SandwichModule(net, n_random=n_random, distill=distill, seed=estimator.random_state,
                                **module_kwargs(estimator, max_epochs=epochs,
                                                learning_rate=learning_rate or estimator.learning_rate / 2))
        net.training_log_ = train_module(module, estimator, train, val, static=static, max_epochs=epochs,
                                         batch_size=batch_size, max_steps=max_steps)
    net.eval().set(net.max_genome())
    net.estimator = estimator
    net.val_batches = window_batches(estimator, val if val is not None else train, static, max_windows=2048)
    return net
