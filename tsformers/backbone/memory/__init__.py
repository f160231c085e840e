"""Memories: modules whose state is written at test time or carried across segments.

``deep`` (an MLP whose weights are the memory), ``omega`` (the Omega rule over a window of
tokens), ``optim`` (Muon and momentum inner updates), ``features`` (polynomial key maps),
``layers`` (the ATLAS block variants), ``window`` (sliding-window attention) and ``segment``
(Transformer-XL's segment memory). Importing the package registers them all.
"""
from .deep import DeepMemory, associative_loss, memory_grad, memory_read
from .features import PolynomialFeatures, polynomial_dim
from .layers import AtlasDeepBlock, AtlasGatedBlock, AtlasLayeredBlock
from .omega import OmegaMemory, omega_counts
from .optim import MomentumUpdate, MuonUpdate, newton_schulz
from .segment import SegmentMemory
from .window import SlidingWindowAttention

__all__ = ["AtlasDeepBlock", "AtlasGatedBlock", "AtlasLayeredBlock", "DeepMemory", "MomentumUpdate", "MuonUpdate",
           "OmegaMemory", "PolynomialFeatures", "SegmentMemory", "SlidingWindowAttention", "associative_loss",
           "memory_grad", "memory_read", "newton_schulz", "omega_counts", "polynomial_dim"]
