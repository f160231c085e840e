"""Shared building blocks: token mixers, residual blocks and gates, embeddings, a registry.

Importing this package registers every part, so ``build("mixer", "full", ...)`` works
and ``available()`` lists what there is.
"""

from .attention import FullAttention
from .blocks import FeedForward, PostNormBlock, PreNormBlock, SigmoidGate, TransformerEncoder
from .embeddings import InstanceNorm, PatchEmbedding, SinusoidalPositionalEncoding
from .gating import GRUGate, HighwayGate, InputGate, OutputGate, ResidualGate, SigmoidTanhGate
from .heads import StaticResidual
from .memory.segment import SegmentMemory
from .registry import available, build, register
from .relative_attention import RelativeMultiHeadAttention

__all__ = [
    "FeedForward",
    "FullAttention",
    "GRUGate",
    "HighwayGate",
    "InputGate",
    "InstanceNorm",
    "OutputGate",
    "PatchEmbedding",
    "PostNormBlock",
    "PreNormBlock",
    "RelativeMultiHeadAttention",
    "ResidualGate",
    "SegmentMemory",
    "SigmoidGate",
    "SigmoidTanhGate",
    "SinusoidalPositionalEncoding",
    "StaticResidual",
    "TransformerEncoder",
    "available",
    "build",
    "register",
]
