"""Shared building blocks: token mixers, residual blocks and gates, embeddings, a registry.

Importing this package registers every part, so ``build("mixer", "full", ...)`` works
and ``available()`` lists what there is. A slot of an estimator takes the parts of the
kind of the same name (``available("ffn")``, ``available("norm")``, ...), narrowed where
the tokens require it: ``order_free`` (variate tokens, an unordered set), ``streaming``
(recurrent slots, a causal ``step``) and ``with_block_slot`` (stacks whose blocks have
the ``ffn`` and ``norm`` slots).
"""

from .blocks import BLOCK_SLOTS, PostNormBlock, PreNormBlock, SigmoidGate, TransformerEncoder
from .embeddings import InstanceNorm, PatchEmbedding, SinusoidalPositionalEncoding
from .feedforward import FeedForward
from .gating import GRUGate, HighwayGate, InputGate, OutputGate, ResidualGate, SigmoidTanhGate
from .heads import (KnownFutureHead, LinearBase, QuantileHead, SeedEnsemble, StaticResidual, StreamingLinearBase,
                    linear_base_of, linear_bases_of)
from .lmu import LegendreMemory, LMUCell
from .mixers import FullAttention, RelativeMultiHeadAttention
from .memory import DeepMemory, OmegaMemory, SegmentMemory, SlidingWindowAttention
from .registry import Slot, available, build, build_class, order_free, register, streaming, with_block_slot
from .spiking import LIFNode
from . import stacks  # noqa: E402,F401  (registers every stacking scheme)

__all__ = [
    "BLOCK_SLOTS",
    "DeepMemory",
    "FeedForward",
    "FullAttention",
    "GRUGate",
    "HighwayGate",
    "InputGate",
    "InstanceNorm",
    "KnownFutureHead",
    "LIFNode",
    "LMUCell",
    "LegendreMemory",
    "LinearBase",
    "OmegaMemory",
    "OutputGate",
    "PatchEmbedding",
    "PostNormBlock",
    "PreNormBlock",
    "QuantileHead",
    "RelativeMultiHeadAttention",
    "ResidualGate",
    "SeedEnsemble",
    "SegmentMemory",
    "SigmoidGate",
    "SigmoidTanhGate",
    "SinusoidalPositionalEncoding",
    "SlidingWindowAttention",
    "Slot",
    "StaticResidual",
    "StreamingLinearBase",
    "TransformerEncoder",
    "available",
    "build",
    "build_class",
    "linear_base_of",
    "linear_bases_of",
    "order_free",
    "register",
    "streaming",
    "with_block_slot",
]
