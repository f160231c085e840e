"""The catalog's test idea for each compression method (backbone-catalog.md, section C)."""
import copy

import numpy as np
import pytest
import torch
from sklearn.base import clone

from tsformers import LMUFormerForecaster, compress
from tsformers.backbone.lmu import TokenBatchNorm
from tsformers.backbone.mixers.full import FullAttention
from tsformers.backbone.mixers.metaformer import MetaFormerBlock
from tsformers.backbone.mixers.slab import PRepBN
from tsformers.compress.core import TaskData, forecast, mse
from tsformers.compress.fold import fold_bn_network
from tsformers.compress.pruning import nvit_saliency
from tsformers.compress.structure import FactorizedLinear, HardTopKAttention
from tsformers.compress.units import attention_units, mlp_units, remove
from tsformers.datasets import make_demo
from tsformers.models.lmuformer import LMUFormer

# the fixtures df, fitted (a small Gateformer) and fitted_as(cls) are in conftest.py


# -- OPTIN -------------------------------------------------------------------------------------


def test_optin_meets_the_flop_budget_and_beats_random_head_removal(fitted):
    # a longer demo and a few more epochs than the other tests, so that the heads matter at all
    df = make_demo(n_series=3, n_steps=600, seed=0)
    # its own model: the shared one, trained longer on more data, so that heads differ in importance
    fitted = clone(fitted).set_params(max_epochs=4, learning_rate=3e-3).fit(df)
    small = compress.optin(fitted, df, flop_budget=0.85, structures=("heads",), max_windows=64)
    record = small.compression_[-1]
    assert compress.count_flops(small) <= record["budget_flops"] <= 0.85 * compress.count_flops(fitted)
    removed = [tuple(r) for r in record["removed_structures"]]
    assert 1 <= len(removed) < 8 and all(kind == "head" for kind, _, _ in removed)
    val = TaskData.from_frame(fitted, df).windows("val", None)
    chosen = mse(small.network_, val)
    heads = [("head", u.path, h) for u in attention_units(fitted.network_) for h in range(u.n_heads)]
    rng = np.random.default_rng(0)
    random = [mse(remove(fitted.network_, [heads[i] for i in rng.choice(len(heads), len(removed), replace=False)])[0],
                  val) for _ in range(8)]
    assert chosen <= np.mean(random)


def test_optin_refuses_an_unreachable_budget(fitted, df):
    with pytest.raises(ValueError, match="out of reach"):
        compress.optin(fitted, df, flop_budget=0.01, structures=("heads",), max_windows=16)


# -- AMP ----------------------------------------------------------------------------------------


def test_amp_shrinks_hidden_sizes_within_tolerance_and_drops_a_zero_neuron_first(fitted, df):
    f = copy.deepcopy(fitted)
    unit = mlp_units(f.network_)[0]
    dead = unit.hidden - 1   # among equal scores the last index goes first
    with torch.no_grad():
        unit.module.fc1.weight[dead] = 0
        unit.module.fc1.bias[dead] = 0
        unit.module.fc2.weight[:, dead] = 0
    tol = 0.02
    small = compress.amp(f, df, tol=tol, max_windows=32, n_probes=2)
    record = small.compression_[-1]
    assert all(record["hidden_after"][p] <= record["hidden_before"][p] for p in record["hidden_before"])
    assert sum(record["hidden_after"].values()) < sum(record["hidden_before"].values())
    assert [u.hidden for u in mlp_units(small.network_)] == list(record["hidden_after"].values())
    batch = TaskData.from_frame(f, df).windows("train", 32)
    with torch.no_grad():
        deviation = float(((forecast(small.network_, batch) - forecast(f.network_, batch)) ** 2).mean())
    assert deviation <= tol and deviation == pytest.approx(record["deviation"], rel=1e-4, abs=1e-9)
    assert record["hidden_after"][unit.path] < unit.hidden and dead not in record["kept"][unit.path]


# -- NViT ---------------------------------------------------------------------------------------


def test_nvit_zero_weight_groups_score_zero(fitted, df):
    network = copy.deepcopy(fitted.network_)
    att, mlp = attention_units(network)[0], mlp_units(network)[0]
    d = att.d_qk
    with torch.no_grad():
        for lin in (att.module.to_q, att.module.to_k, att.module.to_v):
            lin.weight[:d] = 0
            lin.bias[:d] = 0
        att.module.to_out.weight[:, :d] = 0
        mlp.module.fc1.weight[3] = 0
        mlp.module.fc1.bias[3] = 0
        mlp.module.fc2.weight[:, 3] = 0
    scores = {(g["kind"], g["path"], g["index"]): g for g in nvit_saliency(network, TaskData.from_frame(
        fitted, df).windows("train", 32))}
    assert scores[("head", att.path, 0)]["saliency"] == 0
    assert scores[("neuron", mlp.path, 3)]["saliency"] == 0
    assert scores[("head", att.path, 1)]["saliency"] > 0
    assert {kind for kind, _, _ in scores} == {"head", "qk", "v", "neuron"}


def test_nvit_one_step_removes_several_structure_types(fitted, df):
    small = compress.nvit(fitted, df, ratio=0.6, steps=1, finetune_epochs=0, max_windows=32)
    removed = small.compression_[-1]["steps"][0]["removed"]
    assert sum(1 for n in removed.values() if n > 0) >= 2, removed
    assert compress.count_parameters(small) < compress.count_parameters(fitted)


def test_pruned_qk_dims_keep_the_softmax_scale():
    torch.manual_seed(0)
    network = torch.nn.Sequential(FullAttention(16, n_heads=2)).eval()
    x = torch.randn(2, 5, 16)
    unit = attention_units(network)[0]
    with torch.no_grad():   # make dims 6, 7 of each head irrelevant to the scores
        unit.module.to_q.weight[[6, 7, 14, 15]] = 0
        unit.module.to_q.bias[[6, 7, 14, 15]] = 0
    before = network(x)
    from tsformers.compress.units import prune_attention

    prune_attention(network, unit, [0, 1], [], qk_keep=[list(range(6))] * 2)
    torch.testing.assert_close(network(x), before, atol=1e-5, rtol=1e-5)


# -- AxFormer -----------------------------------------------------------------------------------


@pytest.mark.parametrize("causal", [False, True])
def test_hard_attention_rows_have_exactly_k_nonzeros(causal):
    torch.manual_seed(0)
    k = 3
    hard = HardTopKAttention(FullAttention(16, n_heads=4, causal=causal), k=k).eval()
    weights = hard.attention_weights(torch.randn(2, 10, 16))
    expected = torch.clamp(torch.arange(1, 11), max=k) if causal else torch.full((10,), k)
    assert torch.equal((weights != 0).sum(-1), expected.expand(2, 4, 10))
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 10))
    assert hard(torch.randn(2, 10, 16)).shape == (2, 10, 16)


def test_axformer_accepts_only_removals_that_do_not_raise_val_mse(fitted, df):
    small = compress.axformer(fitted, df, k=2, max_windows=64)
    record = small.compression_[-1]
    assert record["trace"], "no candidate was tried"
    current = record["val_mse_before"]
    for step in record["trace"]:
        assert step["before"] == current
        if step["accepted"]:
            assert step["after"] <= step["before"]
            current = step["after"]
    assert record["val_mse_after"] == current <= record["val_mse_before"]
    val = TaskData.from_frame(fitted, df).windows("val", 64)
    assert mse(small.network_, val) == pytest.approx(current, rel=1e-5)


def test_axformer_forced_hard_attention_layers(fitted, df):
    path = attention_units(fitted.network_)[0].path
    small = compress.axformer(fitted, df, k=2, layers=[path], kinds=(), max_windows=16)
    assert isinstance(small.network_.get_submodule(path), HardTopKAttention)


# -- DSFormer -----------------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", [dict(nnz_per_col=2), dict(nnz_per_col=None, n_m=(2, 4))])
def test_dsformer_sparsity_pattern_and_parameter_count_are_exact(fitted, df, pattern):
    rank = 4
    small = compress.dsformer(fitted, df, rank=rank, epochs=0, **pattern)
    layers = [m for m in small.network_.modules() if isinstance(m, FactorizedLinear)]
    assert len(layers) == len(small.compression_[-1]["layers"]) > 0
    for m in layers:
        support = torch.zeros(rank * m.in_features, dtype=torch.bool)
        support[m.positions] = True
        support = support.view(rank, m.in_features)
        assert len(m.positions.unique()) == len(m.positions)
        if pattern.get("nnz_per_col"):
            assert torch.equal(support.sum(0), torch.full((m.in_features,), 2))
        else:
            assert torch.equal(support.view(rank, -1, 4).sum(-1), torch.full((rank, m.in_features // 4), 2))
        assert m.dense.numel() + m.values.numel() == m.out_features * rank + int(support.sum())
        assert m.dense.shape == (m.out_features, rank)


def test_dsformer_trains_the_factors_on_the_task_loss(fitted, df):
    small = compress.dsformer(fitted, df, rank=4, nnz_per_col=2, epochs=1)
    assert np.isfinite(small.compression_[-1]["val_loss"])


# -- fold_bn ------------------------------------------------------------------------------------


def _randomise_norms(network):
    torch.manual_seed(1)
    for m in network.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            with torch.no_grad():
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_()
                m.bias.normal_()


@pytest.mark.parametrize("spiking", [False, True])
def test_fold_bn_leaves_lmuformer_outputs_unchanged(spiking):
    torch.manual_seed(0)
    network = LMUFormer(lookback=24, horizon=4, n_vars=2, d_model=8, embed_layers=2, spiking=spiking).eval()
    _randomise_norms(network)
    x = torch.randn(3, 24, 2)
    before = network(x)
    folded = fold_bn_network(network, [])
    assert len(folded) == (3 + 3 if spiking else 3)   # fc1/fc2/proj, and the spiking tokenizer's conv norms
    assert not any(isinstance(network.get_submodule(p), TokenBatchNorm) for p in folded)
    torch.testing.assert_close(network(x), before, atol=1e-5, rtol=1e-5)


def test_fold_bn_of_prepbn_after_its_decay():
    torch.manual_seed(0)
    block = MetaFormerBlock(8, n_heads=2, d_ff=16, mixer="full", norm="prepbn",
                            norm_kwargs={"warmup_steps": 0, "decay_steps": 0}).eval()
    for norm in (block.norm1, block.norm2):
        norm.set_step(1)
    _randomise_norms(block)
    x = torch.randn(2, 5, 8)
    before = block(x)
    folded = fold_bn_network(block, [])
    assert folded == ["norm1", "norm2"] and not any(isinstance(m, PRepBN) for m in block.modules())
    torch.testing.assert_close(block(x), before, atol=1e-5, rtol=1e-5)


def test_fold_bn_through_the_estimator(fitted, fitted_as):
    f = copy.deepcopy(fitted_as(LMUFormerForecaster))
    _randomise_norms(f.network_)
    small = compress.fold_bn(f)
    np.testing.assert_allclose(small.predict().select_dtypes("number").to_numpy(),
                               f.predict().select_dtypes("number").to_numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="no eval-mode batch norm"):
        compress.fold_bn(fitted)


# -- baselines ------------------------------------------------------------------------------------


def test_dynamic_int8_stays_close_and_distill_trains_a_smaller_student(fitted, df):
    q = compress.quantize_dynamic(fitted)
    a, b = (g.predict().select_dtypes("number").to_numpy() for g in (fitted, q))
    assert np.abs(a - b).max() <= 0.05 * np.abs(a).max()
    student = compress.distill(fitted, df, epochs=1, d_model=8, d_ff=16, n_heads=2)
    assert student.get_params()["d_model"] == 8 and fitted.get_params()["d_model"] == 16
    assert compress.count_parameters(student) < compress.count_parameters(fitted) / 2
