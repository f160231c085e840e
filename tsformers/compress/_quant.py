"""Weight quantisation for compression: the parts live in :mod:`tsformers.runtime.quant`, where loading a model finds them."""
from tsformers.runtime.quant import QuantLinear, fake_quant, quantize

__all__ = ["QuantLinear", "fake_quant", "quantize"]
