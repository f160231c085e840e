"""Compression of trained forecasters: every function takes a fitted estimator and returns a new, smaller one.

>>> from tsformers import compress
>>> small = compress.optin(f, df, flop_budget=0.5)        # doctest: +SKIP
>>> small.save("model_dir"); GateformerForecaster.load("model_dir").predict()   # doctest: +SKIP

The result is an estimator of the same class whose network is physically
smaller (fewer heads, neurons, dimensions or sub-layers; factorised or int8
weights). It predicts, scores, saves, loads and logs to MLflow like any other:
its structural edits are recorded (``network_edits_``) and replayed by ``load``,
and ``compression_`` lists what was done, with parameter and FLOP counts.
Calibration and fine-tuning data come as a frame with the fit data's columns,
read with the estimator's own schema and scaling; fine-tuning runs through the
same Lightning module as training. Behind a linear base (``linear_base=True``) only the
network is compressed, never the map; where the fit kept the map alone
(``network_used_`` False) the network does not reach the forecast, so compressing
it changes nothing, and a warning says so when the compressed estimator is made.

Methods (and where they apply):

========================  ==============================================  =========================================
function                  what it removes                                  estimators
========================  ==============================================  =========================================
``optin``                 heads and FFN neurons, one shot, FLOP budget     heads: Gateformer, PV-Client (full
                                                                           attention); neurons: all five
``amp``                   FFN neurons per layer under a deviation tol      all five (FeedForward, LMUFormer ConvFFN)
``nvit``                  heads, QK dims, V dims, neurons; fine-tuned      as optin
``axformer``              blocks, attentions, FFNs, heads; hard top-k      blocks/attention/heads: Gateformer,
                          attention                                        PV-Client; FFNs: all five
``dsformer``              Linear weights → dense·sparse factors            all five
``fold_bn``               eval-mode batch norms                            LMUFormer; PRepBN (SLAB) in MetaFormer
                                                                           blocks
``magnitude``             weights (global L1) or FFN neurons (L2)          all five
``quantize_dynamic``      float Linear weights → int8                      all five
``distill``               a smaller student of the same class              all five
``supernet``              a weight-sharing supernet (elastic depth,        Gateformer, PV-Client (standard stacks
                          heads, FFN width, bit-width), sandwich training  of full-attention blocks)
``simq_nas``              NSGA-II over (val MSE, CPU latency, size) on     as supernet
                          the supernet; the chosen subnet
``ot_fusion``             two models aligned by optimal transport and      Gateformer, PV-Client, GTrXL, ATLAS
                          averaged (heterogeneous: a smaller first one)
``scalekd``               distillation to a small student: projector,      Gateformer (others with ``layers=``)
                          feature + frequency views, teacher perception
========================  ==============================================  =========================================

Tools: :func:`count_flops` (FLOPs of one forecast, attention included),
:func:`count_parameters`, :func:`model_size_bytes`, :class:`TaskData`,
:func:`derive`, :func:`finetune`.
"""
from tsformers.compress.axformer import axformer
from tsformers.compress.baselines import distill, magnitude, quantize_dynamic
from tsformers.compress.core import TaskData, count_flops, count_parameters, derive, finetune, model_size_bytes
from tsformers.compress.dsformer import dsformer
from tsformers.compress.fold import fold_bn
from tsformers.compress.ot_fusion import ot_fusion
from tsformers.compress.pruning import amp, nvit, optin
from tsformers.compress.scalekd import scalekd
from tsformers.compress.simq_nas import nsga2, simq_nas
from tsformers.compress.supernet import Supernet, supernet

__all__ = ["Supernet", "TaskData", "amp", "axformer", "count_flops", "count_parameters", "derive", "distill",
           "dsformer", "finetune", "fold_bn", "magnitude", "model_size_bytes", "nsga2", "nvit", "optin",
           "ot_fusion", "quantize_dynamic", "scalekd", "simq_nas", "supernet"]
