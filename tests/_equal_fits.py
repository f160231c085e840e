"""Two fits of one estimator compared weight by weight: data-parallel (``test_ddp``, ``test_spark_training``).

Every weight is compared to ``atol=5e-5`` (DDP averages the processes' gradients in another order than one
process sums the batch, and three epochs of Adam steps carry those float32 rounding differences: 1.3e-5 seen),
except the weights whose gradient vanishes by a symmetry of attention, up to rounding. Adam divides each gradient
by its own running size, so there rounding noise becomes steps of up to the learning rate's size, and both fits
end with arbitrary values that the forecast does not depend on:

- Gateformer's key biases (``to_k.bias``): ``q . (k + b)`` shifts all scores of a query alike; softmax
  cancels the shift, so the gradient is 0 and the values are noise.
- Gateformer's variate attention over a single variate (a long frame of univariate series): one key, whose
  softmax weight is 1 whatever its score, so the query and key projections get no gradient at all.
- GTrXL's relative-position projection (``to_r.weight``): its columns that read the slowest sinusoids
  (nearly constant over the distances of a segment) shift a query's scores almost alike; compared to 1e-4.

:func:`assert_forecast_ignores` checks the first two claims on the fit itself, so a rule cannot hide a weight
that matters.
"""
from __future__ import annotations

import fnmatch

import pandas as pd
import torch

ATOL = 5e-5
FLAT = {"*.to_k.bias": None, "*.to_r.weight": 1e-4}  # None: not compared; a number: its atol
ONE_VARIATE_FLAT = {"variate_encoder.*.mixer.to_q.*": None, "variate_encoder.*.mixer.to_k.*": None}


def _tolerance(name: str, flat: dict) -> float | None:
    return next((tol for pattern, tol in flat.items() if fnmatch.fnmatch(name, pattern)), ATOL)


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module, flat: dict = FLAT):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name, value in sa.items():
        atol = _tolerance(name, flat)
        if atol is not None:
            torch.testing.assert_close(sb[name], value, rtol=0, atol=atol, msg=lambda m: f"{name}: {m}")


def assert_forecast_ignores(estimator, flat: dict):
    """Every weight ``flat`` leaves out moves the forecast by at most 1e-5 when perturbed by 0.1-sized noise."""
    before = estimator.predict()
    skipped = [(n, p) for n, p in estimator.network_.named_parameters() if _tolerance(n, flat) is None]
    assert skipped, "the rules match no weight of this network"
    generator = torch.Generator().manual_seed(0)
    for name, parameter in skipped:
        saved = parameter.detach().clone()
        with torch.no_grad():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
        try:
            pd.testing.assert_frame_equal(estimator.predict(), before, check_exact=False, rtol=0, atol=1e-5,
                                          obj=f"the forecast after perturbing {name}")
        finally:
            with torch.no_grad():
                parameter.copy_(saved)


def assert_same_forecasts(a: pd.DataFrame, b: pd.DataFrame):
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-5, atol=1e-5)
