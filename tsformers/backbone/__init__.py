"""Shared building blocks: token mixers, residual blocks and gates, embeddings, a registry.

Importing this package registers every part, so ``build("mixer", "full", ...)`` works
and ``available()`` lists what there is.
"""

from .attention import FullAttention
from .blocks import FeedForward, PostNormBlock, PreNormBlock, SigmoidGate, TransformerEncoder
from .embeddings import InstanceNorm, PatchEmbedding, SinusoidalPositionalEncoding
from .registry import available, build, register

__all__ = [
    "FeedForward",
    "FullAttention",
    "InstanceNorm",
    "PatchEmbedding",
    "PostNormBlock",
    "PreNormBlock",
    "SigmoidGate",
    "SinusoidalPositionalEncoding",
    "TransformerEncoder",
    "available",
    "build",
    "register",
]
