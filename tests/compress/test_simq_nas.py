"""compress.simq_nas: NSGA-II against brute force, and the search on a tiny Gateformer."""
import itertools

import numpy as np
import pytest

from tsformers import GateformerForecaster
from tsformers.runtime.quant import QuantLinear
from tsformers.compress.simq_nas import crowding_distance, non_dominated_sort, nsga2, simq_nas
from tsformers.datasets import make_demo


def _objectives(codes):
    x = np.asarray(codes, dtype=float)
    return np.stack([x.sum(1), (3 - x[:, 0]) ** 2 + (x[:, 1] - 1) ** 2 + 3 * (3 - x[:, 2]),
                     np.abs(x[:, 0] - x[:, 2])], axis=1)


def test_nsga2_finds_the_brute_force_pareto_front():
    choices = [list(range(4))] * 3
    every = list(itertools.product(range(4), repeat=3))
    F = _objectives(every)
    truth = {every[i] for i in non_dominated_sort(F)[0]}
    found, objectives = nsga2(_objectives, choices, population=24, generations=25, seed=0)
    assert set(found) <= truth                                         # never a dominated genome
    for i, j in itertools.permutations(range(len(found)), 2):          # mutually non-dominated
        assert not (np.all(objectives[i] <= objectives[j]) and np.any(objectives[i] < objectives[j]))
    assert set(found) == truth


def test_non_dominated_sort_and_crowding():
    F = np.array([[1, 4], [2, 2], [4, 1], [3, 3], [5, 5]])
    assert non_dominated_sort(F) == [[0, 1, 2], [3], [4]]
    d = crowding_distance(F[[0, 1, 2]])
    assert np.isinf(d[0]) and np.isinf(d[2]) and np.isfinite(d[1])


@pytest.mark.filterwarnings("ignore")
def test_simq_nas_returns_pareto_and_a_smaller_estimator(tmp_path):
    df = make_demo(n_series=1, n_steps=200, seed=1)
    est = GateformerForecaster(horizon=4, lookback=16, d_model=16, n_heads=4, d_ff=16, e_layers=2,
                               max_epochs=0, random_state=0, batch_size=64, ensemble_size=1).fit(df)
    res = simq_nas(est, df, epochs=1, n_samples=8, population=8, generations=3, max_size=0.6)
    sizes = np.array([[p["predicted_val_mse"], p["predicted_latency_s"], p["size_ratio"]] for p in res.pareto])
    assert non_dominated_sort(sizes)[0] == list(range(len(res.pareto)))
    chosen = res.pareto[res.chosen]
    assert chosen["size_ratio"] <= 0.6
    small = res.estimator
    assert small.predict().shape == est.predict().shape
    n_quant = sum(isinstance(m, QuantLinear) for m in small.network_.modules())
    assert n_quant == 6 * sum(b["bits"] < 32 and on for b, on in zip(chosen["genome"]["blocks"],
                                                                     res.supernet.active(chosen["genome"])))
    small.save(tmp_path / "m")  # its QuantLinear layers are rebuilt by load (tsformers.runtime.edits)
    assert type(est).load(tmp_path / "m").predict().equals(small.predict())
