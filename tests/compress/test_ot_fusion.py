"""compress.ot_fusion: fusing a model with a neuron-permuted copy of itself reproduces it."""
import copy

import pytest
import torch

from tsformers import GateformerForecaster, PVClientForecaster
from tsformers.compress._parts import find_blocks, head_dim
from tsformers.compress.ot_fusion import _apply_in, _apply_out, _stream, align, ot_fusion, sinkhorn
from tsformers.datasets import make_demo


def _perm_matrix(perm):
    m = torch.zeros(len(perm), len(perm))
    m[torch.arange(len(perm)), torch.as_tensor(perm)] = 1.0
    return m


@torch.no_grad()
def permuted(network, seed=0):
    """A copy with the variate stream, every FFN's neurons, heads and in-head dimensions permuted."""
    g = torch.Generator().manual_seed(seed)
    net = copy.deepcopy(network)
    st = _stream(net)
    if st is not None:
        d = net.get_submodule(st["anchor_rows"][0]).out_features
        plan = _perm_matrix(torch.randperm(d, generator=g))
        for n in st["out"] + st["norm"]:
            if hasattr(net.get_submodule(n), "weight"):
                _apply_out(net.get_submodule(n), plan)
        for n in st["in"]:
            _apply_in(net.get_submodule(n), plan)
    for ref in find_blocks(net):
        ffn, att = ref.block.ffn, ref.block.mixer
        plan = _perm_matrix(torch.randperm(ffn.fc1.out_features, generator=g))
        _apply_out(ffn.fc1, plan)
        _apply_in(ffn.fc2, plan)
        h, dh = att.n_heads, head_dim(att)
        heads = torch.randperm(h, generator=g)
        qk = torch.cat([heads[i] * dh + torch.randperm(dh, generator=g) for i in range(h)])
        v = torch.cat([heads[i] * dh + torch.randperm(dh, generator=g) for i in range(h)])
        for layer in (att.to_q, att.to_k):
            _apply_out(layer, _perm_matrix(qk))
        _apply_out(att.to_v, _perm_matrix(v))
        _apply_in(att.to_out, _perm_matrix(v))
    return net


@pytest.fixture(scope="module")
def data():
    return make_demo(n_series=1, n_steps=160, seed=2)


def _fit(cls, df, **kw):
    base = dict(horizon=4, lookback=16, max_epochs=1, random_state=0, batch_size=64, dropout=0.0)
    if "linear_base" in cls().get_params():   # the network alone: fusion acts on it (see conftest.TINY)
        base["linear_base"] = False
    if "ensemble_size" in cls().get_params():   # one network, which compression edits
        base["ensemble_size"] = 1
    return cls(**{**base, **kw}).fit(df)


def _x(est):
    return torch.randn(5, est.lookback, est.n_features_in_, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("cls,kw", [(GateformerForecaster, dict(d_model=16, n_heads=4, d_ff=24, e_layers=2)),
                                    (PVClientForecaster, dict(n_heads=4, d_ff=24, e_layers=2))])
def test_fusing_with_a_permuted_copy_reproduces_the_model(data, cls, kw):
    est = _fit(cls, data, **kw)
    x = _x(est)
    twin = copy.deepcopy(est)
    twin.network_ = permuted(est.network_).eval()
    with torch.no_grad():
        ref = est.network_(x)
        assert torch.allclose(twin.network_(x), ref, atol=1e-5)               # the same function
        assert not torch.allclose(twin.network_.state_dict()[next(iter(find_blocks(twin.network_))).name
                                                             + ".ffn.fc1.weight"],
                                  est.network_.state_dict()[next(iter(find_blocks(est.network_))).name
                                                            + ".ffn.fc1.weight"])
        naive = copy.deepcopy(est.network_)
        naive.load_state_dict({k: (v + twin.network_.state_dict()[k]) / 2 if v.is_floating_point() else v
                               for k, v in est.network_.state_dict().items()})
        assert not torch.allclose(naive(x), ref, atol=1e-3)                    # plain averaging breaks it
    fused = ot_fusion([est, twin], soft=False)
    with torch.no_grad():
        assert torch.allclose(fused.network_(x), ref, atol=1e-5)
    assert fused.predict().equals(est.predict())


def test_activation_cost_and_soft_transport(data):
    est = _fit(GateformerForecaster, data, d_model=16, n_heads=2, d_ff=16)
    twin = copy.deepcopy(est)
    twin.network_ = permuted(est.network_, seed=4).eval()
    x = _x(est)
    fused = ot_fusion([est, twin], data, soft=False, cost="activation")
    with torch.no_grad():
        assert torch.allclose(fused.network_(x), est.network_(x), atol=1e-5)
    plan = sinkhorn(torch.rand(5, 7), reg=0.05)
    assert torch.allclose(plan.sum(1), torch.full((5,), 1 / 5, dtype=plan.dtype), atol=1e-6)
    soft = ot_fusion([est, twin], soft=True, reg=0.01)
    assert soft.predict().shape == est.predict().shape


def test_heterogeneous_fusion_has_the_anchor_widths(data, tmp_path):
    from tsformers.compress.units import attention_units, mlp_units, remove

    wide = _fit(GateformerForecaster, data, d_model=16, n_heads=4, d_ff=32)
    other = _fit(GateformerForecaster, data, d_model=16, n_heads=4, d_ff=32, random_state=1)
    removals = [("head", u.path, 3) for u in attention_units(wide.network_)]
    removals += [("neuron", u.path, i) for u in mlp_units(wide.network_) for i in range(16)]
    from tsformers.compress.core import derive
    net, edits = remove(wide.network_, removals)
    small = derive(wide, net, edits, {"method": "test"})
    fused = ot_fusion([small, other], data, soft=True, finetune_epochs=1)
    blocks = find_blocks(fused.network_)
    assert all(b.block.mixer.n_heads == 3 and b.block.ffn.fc1.out_features == 16 for b in blocks)
    aligned, report = align(small.network_, other.network_, soft=False)
    assert set(report) >= {"stream"}
    fused.save(tmp_path / "m")
    assert GateformerForecaster.load(tmp_path / "m").predict().equals(fused.predict())
