"""Gateformer's temporal stage from other papers' parts, through the estimator: fit, forecast, save and load.

``temporal_mixer="cswin"`` and ``temporal_fusion="crossvit_two_branch"`` are listed by the default
estimator's slots (the slot walk trains them); ``temporal_block="tnt"`` only with ``embedding="tnt_words"``,
so it trains here.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from tsformers import GateformerForecaster
from tsformers.backbone import available, build_class
from tsformers.datasets import make_demo

FRAME = make_demo(n_steps=80)
# patches of 8: CrossViT's two branches cut the 16-step window at patch_len and at 2·patch_len
SMALL = dict(horizon=4, lookback=16, patch_len=8, stride=8, d_model=8, n_heads=2, d_ff=16, max_epochs=1, batch_size=64)


@pytest.mark.parametrize("setting, part", [
    ({"temporal_mixer": "cswin"}, ("mixer", "cswin")),
    ({"embedding": "tnt_words", "temporal_block": "tnt"}, ("block", "tnt")),
    ({"temporal_fusion": "crossvit_two_branch"}, ("fusion", "crossvit_two_branch")),
], ids=["cswin", "tnt", "crossvit"])
def test_the_setting_fits_and_its_saved_model_forecasts_the_same(tmp_path, setting, part):
    slot = next(key for key in setting if key != "embedding")
    assert setting[slot] in available(slot, GateformerForecaster(**SMALL, **setting))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one epoch on 80 rows: warnings about so little training are beside the point
        model = GateformerForecaster(**SMALL, **setting).fit(FRAME)
    assert any(isinstance(m, build_class(*part)) for m in model.network_.modules())
    model.save(tmp_path / "m")
    loaded = GateformerForecaster.load(tmp_path / "m")
    assert {key: loaded.get_params()[key] for key in setting} == setting
    targets = list(model.schema_.targets)
    forecast, again = (m.predict()[targets].to_numpy(dtype=float) for m in (model, loaded))
    assert forecast.shape == (4, len(targets)) and np.isfinite(forecast).all()
    np.testing.assert_array_equal(forecast, again)
