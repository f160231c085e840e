"""Each built-in estimator's network from its parameters and fitted schema, without scikit-learn.

An estimator's ``_build_network(n_vars)`` is one of the builders here, applied to
the estimator itself; :mod:`tsformers.estimators.saved` applies the same builder to
a saved model's parameters, so that ``tsformers forecast`` rebuilds the network
of a model directory with torch alone (scikit-learn's import costs more than a
second). A builder reads its settings as attributes of ``owner``: the
estimator's parameters, its fitted ``schema_`` and ``static_encoder_``.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

from torch import nn

from tsformers.backbone.registry import available
from tsformers.models.atlas import ATLAS_MEMORY, Atlas, memories
from tsformers.models.baselines import Linear, Naive, SeasonalNaive
from tsformers.models.gateformer import Gateformer
from tsformers.models.gtrxl import GTrXL
from tsformers.models.lmuformer import LMUFormer
from tsformers.models.pvclient import PVClient

__all__ = ["NETWORKS", "Network"]


def gateformer(owner, n_vars: int) -> nn.Module:
    if owner.d_model % owner.n_heads:
        raise ValueError(f"d_model={owner.d_model} must be a multiple of n_heads={owner.n_heads}.")
    return Gateformer(lookback=owner.lookback, horizon=owner.horizon, n_vars=n_vars, d_model=owner.d_model,
                      n_heads=owner.n_heads, d_ff=owner.d_ff, e_layers=owner.e_layers, patch_len=owner.patch_len,
                      stride=owner.stride, dropout=owner.dropout, attention_dropout=owner.attention_dropout,
                      temporal_mixer=owner.temporal_mixer,
                      variate_mixer=owner.variate_mixer, stack=owner.stack, ffn=owner.ffn, norm=owner.norm,
                      embedding=owner.embedding, n_static=owner.static_encoder_.n_channels,
                      temporal_stack=owner.temporal_stack, temporal_reducer=owner.temporal_reducer,
                      temporal_block=owner.temporal_block, temporal_fusion=owner.temporal_fusion)


def pvclient(owner, n_vars: int) -> nn.Module:
    if owner.lookback % owner.n_heads:
        raise ValueError(f"PV-Client's tokens are whole lookback windows (d_model = lookback), so "
                         f"n_heads={owner.n_heads} must divide lookback={owner.lookback}.")
    if not owner.clip and owner.capacity is not None:
        raise ValueError(f"capacity={owner.capacity} clips the forecasts, but clip=False turns clipping off: "
                         f"drop capacity, or set clip=True.")
    if owner.step_fusion is not None and not owner.step_pathway:
        raise ValueError(f"step_fusion={owner.step_fusion!r} fuses the per-step pathway's streams, and "
                         f"step_pathway=False turns the pathway off: set step_pathway=True or step_fusion=None.")
    schema = owner.schema_
    # the known-future channels come last: each future covariate, then a sine and a cosine per calendar feature
    n_known_future = len(schema.future_covariates) + 2 * len(schema.calendar) if owner.step_pathway else 0
    return PVClient(lookback=owner.lookback, horizon=owner.horizon, n_vars=n_vars, n_heads=owner.n_heads,
                    d_ff=owner.d_ff, e_layers=owner.e_layers, dropout=owner.dropout, w_trans=owner.w_trans,
                    w_lin=owner.w_lin, mixer=owner.mixer, stack=owner.stack, ffn=owner.ffn, norm=owner.norm,
                    block=owner.block, n_targets=len(schema.targets), n_known_future=n_known_future,
                    step_fusion=owner.step_fusion)


def lmuformer(owner, n_vars: int) -> nn.Module:
    return LMUFormer(lookback=owner.lookback, horizon=owner.horizon, n_vars=n_vars, d_model=owner.d_model,
                     memory_size=owner.memory_size, theta=owner.theta, n_layers=owner.n_layers,
                     embed_layers=owner.embed_layers, kernel_size=owner.kernel_size, mlp_ratio=owner.mlp_ratio,
                     dropout=owner.dropout, spiking=owner.spiking, tau=owner.tau, v_threshold=owner.v_threshold,
                     surrogate_alpha=owner.surrogate_alpha, channel_independent=owner.channel_independent,
                     normalize=owner.normalize, memory=owner.memory)


def gtrxl(owner, n_vars: int) -> nn.Module:
    if owner.d_model % owner.n_heads:
        raise ValueError(f"d_model={owner.d_model} must be a multiple of n_heads={owner.n_heads}.")
    if owner.normalize == "last_value" and not owner.last_value_anchor:
        raise ValueError("normalize='last_value' forecasts from the last observed value; "
                         "last_value_anchor=False needs normalize='none'.")
    if owner.kv_cache is None and (owner.kv_window is not None or owner.kv_global is not None):
        raise ValueError(f"kv_window={owner.kv_window} and kv_global={owner.kv_global} size the sparse KV cache: "
                         f"set kv_cache='sparse' to use it, or leave them at None.")
    return GTrXL(lookback=owner.lookback, horizon=owner.horizon, n_vars=n_vars, d_model=owner.d_model,
                 n_heads=owner.n_heads, d_ff=owner.d_ff, n_layers=owner.n_layers, segment_len=owner.segment_len,
                 mem_len=owner.mem_len, dropout=owner.dropout, block=owner.block, stack=owner.stack,
                 mixer=owner.mixer, gating=owner.gating, gate_bias=owner.gate_bias,
                 last_value_anchor=owner.last_value_anchor, normalize=owner.normalize, kv_cache=owner.kv_cache,
                 kv_window=owner.kv_window, kv_global=owner.kv_global)


def atlas(owner, n_vars: int) -> nn.Module:
    if owner.d_model % owner.n_heads:
        raise ValueError(f"d_model={owner.d_model} must be a multiple of n_heads={owner.n_heads}.")
    if owner.memory not in memories():
        raise ValueError(f"memory={owner.memory!r} cannot hold ATLAS's memory: its blocks stream token by token, "
                         f"so the memory must map tokens to tokens and carry a state; pick one of {memories()}.")
    if owner.frozen_memory and owner.memory != ATLAS_MEMORY:
        raise ValueError(f"frozen_memory=True stops the Omega memory's test-time writes; memory={owner.memory!r} "
                         f"has no memory weights to freeze: use memory={ATLAS_MEMORY!r} or frozen_memory=False.")
    if owner.optimizer not in available("memory_optimizer"):
        raise ValueError(f"unknown optimizer {owner.optimizer!r}; available: {available('memory_optimizer')}.")
    if owner.conv_kernel > owner.lookback + 1:
        raise ValueError(f"conv_kernel={owner.conv_kernel} must be at most lookback + 1 = {owner.lookback + 1}.")
    return Atlas(lookback=owner.lookback, horizon=owner.horizon, n_vars=n_vars,
                 channel_independent=owner.channel_independent, d_model=owner.d_model,
                 n_layers=owner.n_layers, n_heads=owner.n_heads, d_ff=owner.d_ff, layer=owner.layer,
                 memory=owner.memory, window=owner.window, n_persistent=owner.n_persistent,
                 conv_kernel=owner.conv_kernel, d_key=owner.d_key, memory_depth=owner.memory_depth,
                 memory_expansion=owner.memory_expansion, poly_degree=owner.poly_degree,
                 omega_window=owner.omega_window, chunk_size=owner.chunk_size, optimizer=owner.optimizer,
                 ns_steps=owner.ns_steps, max_lr=owner.max_lr, frozen_memory=owner.frozen_memory,
                 dropout=owner.dropout, linear_path=owner.linear_path, normalize=owner.normalize)


def naive(owner, n_vars: int) -> nn.Module:
    return Naive(horizon=owner.horizon)


def seasonal_naive(owner, n_vars: int) -> nn.Module:
    return SeasonalNaive(horizon=owner.horizon, lookback=owner.lookback, season_length=owner.season_length)


def linear(owner, n_vars: int) -> nn.Module:
    return Linear(horizon=owner.horizon, lookback=owner.lookback)


class Network(NamedTuple):
    """How an estimator's network is built and run: the builder, whether the network carries a recurrent state
    (forecasts from the whole history), whether it reads static attributes itself (else a static residual
    adds them: the estimator's ``_tags["static"]``)."""

    build: Callable[[object, int], nn.Module]
    streaming: bool = False
    reads_static: bool = False


#: The estimators (by class name) whose saved models :mod:`tsformers.estimators.saved` rebuilds without them.
NETWORKS = {
    "GateformerForecaster": Network(gateformer, reads_static=True),
    "PVClientForecaster": Network(pvclient),
    "LMUFormerForecaster": Network(lmuformer, streaming=True),
    "GTrXLForecaster": Network(gtrxl, streaming=True),
    "AtlasForecaster": Network(atlas, streaming=True),
    "NaiveForecaster": Network(naive),
    "SeasonalNaiveForecaster": Network(seasonal_naive),
    "LinearForecaster": Network(linear),
}
