"""Shared building blocks: token mixers, residual blocks and gates, embeddings, a registry.

Importing this package registers every part, so ``build("mixer", "full", ...)`` works
and ``available()`` lists what there is.
"""

from .attention import FullAttention
from .blocks import FeedForward, PostNormBlock, PreNormBlock, SigmoidGate, TransformerEncoder
from .embeddings import InstanceNorm, PatchEmbedding, SinusoidalPositionalEncoding
from .gating import GRUGate, HighwayGate, InputGate, OutputGate, ResidualGate, SigmoidTanhGate
from .heads import StaticResidual
from .lmu import LegendreMemory, LMUCell
from .memory import DeepMemory, OmegaMemory, SegmentMemory, SlidingWindowAttention
from .registry import available, build, register
from .relative_attention import RelativeMultiHeadAttention
from .spiking import LIFNode

__all__ = [
    "DeepMemory",
    "FeedForward",
    "FullAttention",
    "GRUGate",
    "HighwayGate",
    "InputGate",
    "InstanceNorm",
    "LIFNode",
    "LMUCell",
    "LegendreMemory",
    "OmegaMemory",
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
    "SlidingWindowAttention",
    "StaticResidual",
    "TransformerEncoder",
    "available",
    "build",
    "register",
]
