import math

import torch

from tsformers.losses import info_nce, margin_mse


def test_margin_mse_zero_for_shifted_teacher():
    t = torch.randn(5, 7, 3)
    assert margin_mse(t + 2.5, t).item() < 1e-12
    assert margin_mse(t + torch.randn(1, 7, 3), t).item() < 1e-10  # any constant over the batch
    assert margin_mse(torch.randn(5, 7, 3), t).item() > 0


def test_margin_mse_hand_computed():
    s, t = torch.tensor([1.0, 2.0, 4.0]), torch.tensor([0.0, 2.0, 3.0])
    # pairs (0,1): (-1) - (-2) = 1; (0,2): (-3) - (-3) = 0; (1,2): (-2) - (-1) = -1
    assert torch.isclose(margin_mse(s, t), torch.tensor(2 / 3))
    assert torch.isclose(margin_mse(s, t, pairs=torch.tensor([[0, 1]])), torch.tensor(1.0))


def test_info_nce_hand_computed():
    q = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    k = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    tau = 0.5
    c = 1 / math.sqrt(2)
    sims = [[1.0, c], [0.0, c]]                      # cosines of q_i with k_j
    expected = 0.0
    for i in range(2):
        logits = [s / tau for s in sims[i]]
        expected += -logits[i] + math.log(sum(math.exp(v) for v in logits))
    assert abs(info_nce(q, k, temperature=tau).item() - expected / 2) < 1e-6


def test_info_nce_uniform_and_negatives():
    q = torch.ones(4, 3)
    assert abs(info_nce(q, q).item() - math.log(4)) < 1e-6
    assert abs(info_nce(q, q, negatives=torch.ones(2, 3)).item() - math.log(6)) < 1e-6
