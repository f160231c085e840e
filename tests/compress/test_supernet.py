"""compress.supernet: elastic subnets are slices of the supernet, sandwich training, quantised layers."""
import random

import pytest
import torch
from torch import nn

from tsformers import GateformerForecaster
from tsformers.compress._parts import find_blocks
from tsformers.runtime.quant import QuantLinear
from tsformers.compress.supernet import Supernet, supernet
from tsformers.datasets import make_demo


@pytest.fixture(scope="module")
def fitted():
    df = make_demo(n_series=1, n_steps=200, seed=1)
    est = GateformerForecaster(horizon=4, lookback=16, d_model=16, n_heads=4, d_ff=16, e_layers=2,
                               max_epochs=0, random_state=0, dropout=0.0, batch_size=32, linear_base=False,
                               ensemble_size=1).fit(df)
    return est, df


def _x(est, b=3):
    return torch.randn(b, est.lookback, est.n_features_in_, generator=torch.Generator().manual_seed(0))


def test_rewired_supernet_is_the_network(fitted):
    est, _ = fitted
    net = Supernet(est.network_).eval()
    x = _x(est)
    with torch.no_grad():
        assert torch.allclose(net(x), est.network_(x), atol=1e-5)


def test_subnet_weights_are_slices(fitted):
    est, _ = fitted
    net = Supernet(est.network_, bits=(32,)).eval()
    genome = net.sample(random.Random(3))
    genome["depth"] = {e: 2 for e in genome["depth"]}
    genome["blocks"][0].update(heads=2, d_ff=8)
    sub = net.extract(genome)
    for ref, sref, gene in zip(net.refs, find_blocks(sub), genome["blocks"]):
        rows = gene["heads"] * 4
        a, sa = ref.block.mixer, sref.block.mixer
        assert sa.n_heads == gene["heads"] and sa.to_q.weight.shape == (rows, 16)
        for name in ("to_q", "to_k", "to_v"):
            assert torch.equal(getattr(sa, name).weight, getattr(a, name).weight[:rows])
            assert torch.equal(getattr(sa, name).bias, getattr(a, name).bias[:rows])
        assert torch.equal(sa.to_out.weight, a.to_out.weight[:, :rows])
        assert torch.equal(sref.block.ffn.fc1.weight, ref.block.ffn.fc1.weight[: gene["d_ff"]])
        assert torch.equal(sref.block.ffn.fc2.weight, ref.block.ffn.fc2.weight[:, : gene["d_ff"]])
    assert sum(p.numel() for p in sub.parameters()) < sum(p.numel() for p in est.network_.parameters())
    x = _x(est)
    with torch.no_grad():
        assert torch.allclose(net.set(genome)(x), sub(x), atol=1e-5)  # the elastic forward is the subnet's


def test_depth_is_elastic(fitted):
    est, _ = fitted
    net = Supernet(est.network_).eval()
    genome = net.max_genome()
    genome["depth"] = {e: 1 for e in genome["depth"]}
    sub = net.extract(genome)
    for e in genome["depth"]:  # the second layer is gone (an Identity), the first kept
        layers = sub.get_submodule(e).layers
        assert isinstance(layers[1], nn.Identity) and not isinstance(layers[0], nn.Identity)
    x = _x(est)
    with torch.no_grad():
        assert torch.allclose(net.set(genome)(x), sub(x), atol=1e-5)
    assert net.size_bits(genome) == 32 * sum(p.numel() for p in sub.parameters())


def test_quantisation_touches_only_listed_layers(fitted):
    est, _ = fitted
    net = Supernet(est.network_).eval()
    genome = net.max_genome()
    genome["blocks"][1]["bits"] = 8
    genome["blocks"][2]["bits"] = 4
    sub = net.extract(genome)
    for j, (ref, sref) in enumerate(zip(net.refs, find_blocks(sub))):
        layers = [sref.block.mixer.to_q, sref.block.mixer.to_k, sref.block.mixer.to_v, sref.block.mixer.to_out,
                  sref.block.ffn.fc1, sref.block.ffn.fc2]
        if j in (1, 2):
            assert all(isinstance(m, QuantLinear) and m.bits == (8 if j == 1 else 4) for m in layers)
            assert not torch.equal(layers[0].weight, ref.block.mixer.to_q.weight)
            assert torch.allclose(layers[0].weight, ref.block.mixer.to_q.weight, atol=0.2)
        else:
            assert all(type(m) is nn.Linear for m in layers)
            assert torch.equal(layers[0].weight, ref.block.mixer.to_q.weight)
    block_params = {n for r in find_blocks(sub) for n, _ in r.block.named_parameters(prefix=r.name)}
    ref_state = net.network.state_dict()
    for name, value in sub.state_dict().items():  # nothing outside the blocks changes
        if not any(name.startswith(r.name + ".") for r in find_blocks(sub)) and name not in block_params:
            assert torch.equal(value, ref_state[name]), name
    x = _x(est)
    with torch.no_grad():  # fake-quant in the supernet = the stored integers of the subnet
        assert torch.allclose(net.set(genome)(x), sub(x), atol=1e-5)
    bits = sum(m.qweight.numel() * 8 for m in sub.modules() if isinstance(m, QuantLinear))
    assert bits < sum(m.in_features * m.out_features * 32 for m in sub.modules() if isinstance(m, QuantLinear)) / 3


def test_sandwich_training_through_lightning(fitted):
    est, df = fitted
    net = supernet(est, df, epochs=1)
    assert net.training_log_ and "train_loss" in net.training_log_[0]
    before = est.network_.variate_encoder.layers[0].ffn.fc2.bias
    after = net.network.variate_encoder.layers[0].ffn.fc2.bias
    assert not torch.equal(before, after)                       # trained; the source estimator untouched
    small = net.extract_estimator(net.min_genome())
    assert small.predict().shape == est.predict().shape
    assert est.network_.variate_encoder.layers[0].mixer.n_heads == 4
    assert net.evaluate(net.min_genome(), net.val_batch) > 0
    assert small.compression_[-1]["parameters_after"] < small.compression_[-1]["parameters_before"]


@pytest.mark.parametrize("bits", [32, 8, 4])
def test_extracted_estimator_round_trips(fitted, tmp_path, bits):
    est, _ = fitted
    net = Supernet(est.network_)
    net.estimator = est
    genome = net.max_genome()
    genome["depth"] = {e: 1 for e in genome["depth"]}
    genome["blocks"][0].update(heads=2, d_ff=8, bits=bits)
    small = net.extract_estimator(genome)
    small.save(tmp_path / "m")
    back = type(est).load(tmp_path / "m")
    assert back.predict().equals(small.predict())
