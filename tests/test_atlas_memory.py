"""ATLAS memory parts: feature map, Newton-Schulz, the memory's gradient, the Omega rule, blocks, window attention."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import grad

from tsformers.backbone.memory.deep import DeepMemory, associative_loss, memory_grad, memory_read
from tsformers.backbone.memory.features import PolynomialFeatures, polynomial_dim
from tsformers.backbone.memory.layers import AtlasDeepBlock, AtlasGatedBlock, AtlasLayeredBlock
from tsformers.backbone.memory.omega import OmegaMemory, omega_counts
from tsformers.backbone.memory.optim import MomentumUpdate, MuonUpdate, newton_schulz
from tsformers.backbone.memory.window import SlidingWindowAttention
from tsformers.backbone.registry import available, build

BLOCKS = [AtlasDeepBlock, AtlasGatedBlock, AtlasLayeredBlock]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def small_memory(**kw):
    kw = {"n_heads": 2, "d_key": 4, "depth": 2, "expansion": 2, "window": 3, "chunk_size": 4} | kw
    return OmegaMemory(8, **kw)


# ---------------------------------------------------------------- polynomial features


@pytest.mark.parametrize("d, degree", [(3, 1), (4, 2), (5, 3)])
def test_polynomial_kernel_is_the_truncated_exponential_at_init(d, degree):
    phi = PolynomialFeatures(d, degree=degree)
    q, k = torch.randn(6, d), torch.randn(6, d)
    assert phi(q).shape == (6, polynomial_dim(d, degree)) == (6, math.comb(d + degree, degree))
    dot = (q * k).sum(-1)
    expected = sum(dot**i / math.factorial(i) for i in range(degree + 1))
    torch.testing.assert_close((phi(q) * phi(k)).sum(-1), expected, rtol=1e-5, atol=1e-5)


def test_polynomial_features_hold_every_monomial_once():
    phi = PolynomialFeatures(2, degree=2, learnable=False)
    x = torch.tensor([2.0, 3.0])
    # [1 | x1, x2 | x1^2, sqrt(2) x1 x2, x2^2] with per-degree scales 1 | 1 | 1/sqrt(2!)
    expected = torch.tensor([1.0, 2.0, 3.0, 4 / math.sqrt(2), math.sqrt(2) * 6 / math.sqrt(2), 9 / math.sqrt(2)])
    torch.testing.assert_close(phi(x), expected)


# ---------------------------------------------------------------- Newton-Schulz


@pytest.mark.parametrize("shape", [(32, 45), (45, 32), (16, 16), (5, 3, 20)])
@pytest.mark.parametrize("decades, steps", [(2, 5), (3, 8)])
def test_newton_schulz_gives_near_orthogonal_matrices(shape, decades, steps):
    # condition number 10^decades: 5 steps (the paper's) suffice up to about 100, 8 steps up to thousands
    *batch, m, n = shape
    u = torch.linalg.qr(torch.randn(*batch, m, min(m, n)))[0]
    v = torch.linalg.qr(torch.randn(*batch, n, min(m, n)))[0]
    g = 3.0 * u @ torch.diag(torch.logspace(-decades, 0, min(m, n))) @ v.mT
    x = newton_schulz(g, steps=steps)
    s = torch.linalg.svdvals(x)
    assert s.min() > 0.6 and s.max() < 1.25, (torch.linalg.cond(g).max(), s.min(), s.max())
    # and it keeps the singular vectors: U^T X V is diagonal (X = U f(S) V^T, an odd polynomial f)
    u, _, vh = torch.linalg.svd(g, full_matrices=False)
    core = u.mT @ x @ vh.mT                                                    # (..., k, k)
    off_diagonal = core - torch.diag_embed(torch.diagonal(core, dim1=-2, dim2=-1))
    assert off_diagonal.abs().max() < 1e-3


def test_newton_schulz_is_scale_invariant_and_zero_safe():
    g = torch.randn(3, 8, 12)
    torch.testing.assert_close(newton_schulz(7.0 * g), newton_schulz(g), rtol=1e-4, atol=1e-5)
    z = torch.zeros(2, 4, 6, requires_grad=True)
    out = newton_schulz(z)
    assert (out == 0).all()
    out.sum().backward()
    assert torch.isfinite(z.grad).all()


def test_memory_optimisers_step():
    w, s, g = [torch.randn(3, 4, 5)], [torch.randn(3, 4, 5)], [torch.randn(3, 4, 5)]
    eta, theta, alpha = torch.rand(3), torch.rand(3), torch.rand(3)
    for update, orth in ((MomentumUpdate(), lambda m: m), (MuonUpdate(ns_steps=5), newton_schulz)):
        (w1,), (s1,) = update(w, s, g, eta=eta, theta=theta, alpha=alpha)
        s_ref = theta[:, None, None] * s[0] + g[0]
        torch.testing.assert_close(s1, s_ref)
        torch.testing.assert_close(w1, alpha[:, None, None] * w[0] - eta[:, None, None] * orth(s_ref))


# ---------------------------------------------------------------- the deep memory


@pytest.mark.parametrize("depth, activation", [(1, "gelu"), (2, "gelu"), (3, "silu")])
def test_closed_form_gradient_matches_autograd(depth, activation):
    memory = DeepMemory(6, 3, depth=depth, d_hidden=5, n_heads=2, activation=activation)
    weights = [w + 0.1 * torch.randn_like(w) for w in memory.initial(rows=3)]   # (6, d_i, d_i+1)
    u, v, omega = torch.randn(6, 7, 6), torch.randn(6, 7, 3), torch.rand(6, 7)
    ours = memory_grad(weights, u, v, omega, activation=activation)

    def loss(ws, u_r, v_r, o_r):  # one row
        return associative_loss([w[None] for w in ws], u_r[None], v_r[None], o_r[None], activation=activation)[0]

    for r in range(6):
        ref = grad(loss)([w[r] for w in weights], u[r], v[r], omega[r])
        for a, b in zip(ours, ref):
            torch.testing.assert_close(a[r], b, rtol=1e-4, atol=1e-5)


def test_each_row_has_its_own_memory():
    memory = DeepMemory(4, 2, depth=2, n_heads=1)
    weights = memory.initial(rows=2)
    u, v = torch.randn(2, 3, 4), torch.randn(2, 3, 2)
    omega = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])   # row 1 writes nothing
    grads = memory.grad(weights, u, v, omega)
    assert all(g[0].abs().sum() > 0 and (g[1] == 0).all() for g in grads)


@pytest.mark.parametrize("optimizer", ["momentum", "muon"])
def test_writing_a_pair_makes_its_key_recall_its_value(optimizer):
    memory = DeepMemory(polynomial_dim(4, 2), 4, depth=2, d_hidden=8)
    phi = PolynomialFeatures(4, degree=2)
    update = build("memory_optimizer", optimizer, ns_steps=5)
    k = F.normalize(torch.randn(1, 1, 4), dim=-1)
    u, v = phi(k).detach(), torch.randn(1, 1, 4)
    weights = memory.initial(rows=1)
    weights = [w.detach() for w in weights]
    momenta = [torch.zeros_like(w) for w in weights]
    before = (memory.read(weights, u) - v).norm()
    one = torch.ones(1)
    lr = 0.05  # Muon's steps have a fixed size (every singular value ~1): it settles within about lr
    errors = []
    for _ in range(30):
        grads = memory.grad(weights, u, v, torch.ones(1, 1))
        weights, momenta = update(weights, momenta, grads, eta=lr * one, theta=0.5 * one, alpha=one)
        errors.append(float((memory.read(weights, u) - v).norm()))
    assert errors[0] < before, "the first write already moves the read towards v"
    assert errors[-1] < 0.1 * before, f"{before:.3f} -> {errors[-1]:.3f}"


# ---------------------------------------------------------------- the Omega rule


@torch.no_grad()
def _gates(layer, x):
    """The chunk-level gates of the tokens x (R, n, D): (eta, theta, alpha), each (R*H,)."""
    logits = layer.to_gates(x).mean(dim=1).view(x.shape[0], 3, layer.n_heads)    # (R, 3, H): "(g h)"
    g = torch.sigmoid(logits).permute(0, 2, 1).reshape(-1, 3)                   # (R*H, 3)
    return layer.max_lr * g[:, 0], g[:, 1], g[:, 2]


@torch.no_grad()
def _projections(layer, x):
    """Per head rows (R*H, T, .): phi(k), v, phi(q), gamma, computed by hand from the layer's weights."""
    r, t, _ = x.shape
    h = layer.n_heads

    def heads(y):
        return y.view(r, t, h, -1).transpose(1, 2).reshape(r * h, t, -1)

    k = layer.features(F.normalize(heads(x @ layer.to_k.weight.T), dim=-1))
    q = layer.features(F.normalize(heads(x @ layer.to_q.weight.T), dim=-1))
    v = heads(x @ layer.to_v.weight.T)
    gamma = heads(torch.sigmoid(layer.to_gamma(x)))[..., 0]
    return k, v, q, gamma


@pytest.mark.parametrize("optimizer", ["momentum", "muon"])
def test_c1_online_update_by_hand(optimizer):
    """chunk 1, window 1: M_1 = alpha M_0 - eta O(gamma grad ||M_0(phi(k)) - v||^2), then with momentum."""
    layer = small_memory(window=1, chunk_size=1, optimizer=optimizer)
    x = torch.randn(2, 2, 8)
    orth = newton_schulz if optimizer == "muon" else (lambda m: m)
    k, v, _, gamma = _projections(layer, x)
    w = [w.detach() for w in layer.memory.initial(rows=2)]
    s = [torch.zeros_like(m) for m in w]
    for t in range(2):
        def loss(ws):
            return (gamma[:, t] * (memory_read(ws, k[:, t:t + 1])[:, 0] - v[:, t]).square().sum(-1)).sum()

        w = [m.detach().requires_grad_() for m in w]
        g = torch.autograd.grad(loss(w), w)
        eta, theta, alpha = _gates(layer, x[:, t:t + 1])
        s = [theta[:, None, None] * s_i + g_i for s_i, g_i in zip(s, g)]
        w = [alpha[:, None, None] * w_i.detach() - eta[:, None, None] * orth(s_i) for w_i, s_i in zip(w, s)]
        state = layer.step(x[:, : t + 1], layer.init_state(2))[1]
        for i in range(2):
            torch.testing.assert_close(state[f"w{i}"].reshape(w[i].shape), w[i], rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(state[f"s{i}"].reshape(s[i].shape), s[i], rtol=1e-4, atol=1e-5)


def _reference_omega(layer, x):
    """The chunked Omega rule written token by token: outputs (R, T, D) and the final weights."""
    k, v, q, gamma = _projections(layer, x)
    b, c, n = layer.chunk_size, layer.window, x.shape[1]
    orth = newton_schulz if isinstance(layer.optimizer, MuonUpdate) else (lambda m: m)
    w = [m.detach() for m in layer.memory.initial(rows=x.shape[0])]
    s = [torch.zeros_like(m) for m in w]
    reads = []
    for start in range(0, n, b):
        stop = min(start + b, n)
        reads += [memory_read(w, q[:, t:t + 1]) for t in range(start, stop)]  # every token reads M_{j-1}
        if stop - start < b:
            break
        total = [torch.zeros_like(m) for m in w]
        for t in range(start, stop):                                          # each token's Omega window
            for i in range(max(0, t - c + 1), t + 1):
                ws = [m.clone().requires_grad_() for m in w]
                loss = (gamma[:, i] * (memory_read(ws, k[:, i:i + 1])[:, 0] - v[:, i]).square().sum(-1)).sum()
                total = [a + gi / b for a, gi in zip(total, torch.autograd.grad(loss, ws))]
        eta, theta, alpha = _gates(layer, x[:, start:stop])
        s = [theta[:, None, None] * s_i + g_i for s_i, g_i in zip(s, total)]
        w = [alpha[:, None, None] * w_i - eta[:, None, None] * orth(s_i) for w_i, s_i in zip(w, s)]
    y = torch.cat(reads, dim=1)                                               # (R*H, T, d_v)
    r, h = x.shape[0], layer.n_heads
    y = y.view(r, h, n, -1).transpose(1, 2).reshape(r, n, -1)
    return layer.to_out(y), w


@pytest.mark.parametrize("optimizer", ["momentum", "muon"])
@pytest.mark.parametrize("window, chunk_size", [(1, 1), (3, 1), (1, 4), (3, 4), (6, 2)])
def test_chunked_layer_matches_the_token_by_token_reference(window, chunk_size, optimizer):
    layer = small_memory(window=window, chunk_size=chunk_size, optimizer=optimizer)
    x = torch.randn(2, 11, 8)
    with torch.no_grad():
        y, state = layer.step(x, layer.init_state(2))
    y_ref, w_ref = _reference_omega(layer, x)
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-5)
    for i, w in enumerate(w_ref):
        torch.testing.assert_close(state[f"w{i}"].reshape(w.shape), w, rtol=1e-4, atol=1e-5)


def test_omega_counts():
    # c = 3, b = 4: tokens -2, -1 (previous chunk) and 0..3: windows [t-2, t] for t = 0..3
    assert omega_counts(3, 4).tolist() == [1, 2, 3, 3, 2, 1]
    assert omega_counts(1, 4).tolist() == [1, 1, 1, 1]
    assert omega_counts(4, 1).tolist() == [1, 1, 1, 1]


def test_memory_layer_recalls_a_stored_token():
    """Queries = keys: after a token is written, reading it returns something much closer to its value."""
    layer = small_memory(window=1, chunk_size=1, optimizer="momentum", max_lr=0.1)
    with torch.no_grad():
        layer.to_q.weight.copy_(layer.to_k.weight)
        layer.to_gamma.weight.zero_()
        layer.to_gates.weight.zero_()
        layer.to_gates.bias.view(3, -1)[0].fill_(5.0)    # eta ~ max_lr
        layer.to_gates.bias.view(3, -1)[1].fill_(-9.0)   # theta ~ 0
        layer.to_gates.bias.view(3, -1)[2].fill_(9.0)    # alpha ~ 1
        layer.to_gamma.bias.fill_(5.0)
    a = torch.randn(1, 1, 8)
    k, v, _, _ = _projections(layer, a)
    with torch.no_grad():
        state = layer.init_state(1)
        weights = lambda st: [st[f"w{i}"].flatten(0, 1) for i in range(2)]  # noqa: E731
        before = (memory_read(weights(state), k) - v).norm()
        _, state = layer.step(a, state)
        once = (memory_read(weights(state), k) - v).norm()
        for _ in range(19):
            _, state = layer.step(a, state)
        after = (memory_read(weights(state), k) - v).norm()
    assert once < before and after < 0.2 * before, f"{before:.3f} -> {once:.3f} -> {after:.3f}"


def test_frozen_memory_never_changes():
    layer = small_memory(frozen=True)
    x = torch.randn(2, 13, 8)
    with torch.no_grad():
        y, state = layer.step(x, layer.init_state(2))
        for i, w in enumerate(layer.memory.init_weights):
            assert torch.equal(state[f"w{i}"], w.expand(2, *w.shape))
        _, _, q, _ = _projections(layer, x)
        y_ref = memory_read(layer.memory.initial(2), q)
    torch.testing.assert_close(y, layer.to_out(y_ref.view(2, 2, 13, -1).transpose(1, 2).reshape(2, 13, -1)))


def test_outer_weights_learn_through_the_inner_updates():
    layer = small_memory(chunk_size=2)
    x = torch.randn(2, 9, 8)
    layer(x)[:, -1].square().sum().backward()
    for name in ("to_gates.weight", "to_gamma.weight", "to_k.weight", "to_v.weight", "memory.init_weights.0",
                 "features.scales"):
        g = dict(layer.named_parameters())[name].grad
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, name


# ---------------------------------------------------------------- streaming and causality


def _split_steps(module, x, cuts):
    state, outs = module.init_state(x.shape[0]), []
    for a, b in zip([0, *cuts], [*cuts, x.shape[1]]):
        y, state = module.step(x[:, a:b], state)
        outs.append(y)
    return torch.cat(outs, dim=1), state


MODULES = [
    lambda: small_memory(optimizer="muon"),
    lambda: small_memory(optimizer="momentum", window=5, chunk_size=3),
    *[lambda cls=cls: cls(8, n_heads=2, d_ff=16, window=5, n_persistent=2,
                          memory_kwargs={"d_key": 4, "window": 3, "chunk_size": 4}) for cls in BLOCKS],
    lambda: SlidingWindowAttention(8, n_heads=2, causal=True, window=5, n_persistent=2),
]
MODULE_IDS = ["omega_muon", "omega_momentum", "atlas_deep", "atlas_mag", "atlas_mal", "sliding_window"]


@pytest.mark.parametrize("make", MODULES, ids=MODULE_IDS)
def test_stepping_in_pieces_equals_one_pass(make):
    module = make().eval()
    x = torch.randn(3, 23, 8)
    with torch.no_grad():
        y_all, s_all = module.step(x, module.init_state(3))
        for cuts in ([1, 2, 3, 4, 5, 9, 13, 17, 20, 22], [7, 8], [11]):
            y, s = _split_steps(module, x, cuts)
            torch.testing.assert_close(y, y_all, rtol=1e-5, atol=1e-5)
            for key in s_all:
                torch.testing.assert_close(s[key], s_all[key], rtol=1e-5, atol=1e-5, msg=key)
        torch.testing.assert_close(module(x), y_all)


@pytest.mark.parametrize("make", MODULES, ids=MODULE_IDS)
def test_causal(make):
    module = make().eval()
    x = torch.randn(2, 21, 8)
    with torch.no_grad():
        y = module(x)
        for t in (0, 3, 4, 7, 12, 19):   # inside and at the ends of chunks
            x2 = x.clone()
            x2[:, t + 1:] = torch.randn_like(x2[:, t + 1:])
            y2 = module(x2)
            torch.testing.assert_close(y2[:, : t + 1], y[:, : t + 1], rtol=0, atol=1e-6)
            assert (y2[:, t + 1:] - y[:, t + 1:]).abs().max() > 1e-4


def test_memory_reaches_beyond_the_attention_window():
    """The deep block has no attention: an early token still changes late outputs, through the memory only."""
    block = AtlasDeepBlock(8, n_heads=2, d_ff=16, memory_kwargs={"d_key": 4, "window": 2, "chunk_size": 2}).eval()
    frozen = AtlasDeepBlock(8, n_heads=2, d_ff=16,
                            memory_kwargs={"d_key": 4, "window": 2, "chunk_size": 2, "frozen": True}).eval()
    x = torch.randn(1, 40, 8)
    x2 = x.clone()
    x2[:, 0] = 3 * torch.randn(8)  # (a constant shift would vanish in the layer norm)
    with torch.no_grad():
        assert (block(x2)[:, -1] - block(x)[:, -1]).abs().max() > 1e-4
        torch.testing.assert_close(frozen(x2)[:, 1:], frozen(x)[:, 1:])


# ---------------------------------------------------------------- sliding-window attention


def _naive_window_attention(attn, x, causal):
    b, n, d = x.shape
    h = attn.n_heads
    kv_in = torch.cat([attn.persistent.expand(b, -1, -1), x], dim=1)
    k, v = attn.to_kv(kv_in).chunk(2, dim=-1)
    q = attn.to_q(x)
    p = attn.persistent.shape[0]
    out = torch.zeros(b, n, d)
    for i in range(n):
        for head in range(h):
            sl = slice(head * d // h, (head + 1) * d // h)
            keys = list(range(p)) + [p + j for j in range(n)
                                     if (0 <= i - j < attn.window if causal else abs(i - j) < attn.window)]
            bias = torch.tensor([0.0] * p + [float(attn.rel_bias[head, abs(i - (j - p))]) for j in keys[p:]])
            scores = q[:, i:i + 1, sl] @ k[:, keys, sl].mT / math.sqrt(d // h) + bias   # (B, 1, K)
            out[:, i, sl] = (scores.softmax(-1) @ v[:, keys, sl])[:, 0]
    return attn.to_out(out)


@pytest.mark.parametrize("causal", [True, False])
def test_sliding_window_attention_matches_a_naive_loop(causal):
    attn = SlidingWindowAttention(8, n_heads=2, causal=causal, window=3, n_persistent=2)
    with torch.no_grad():
        attn.rel_bias.normal_()
        x = torch.randn(2, 7, 8)
        torch.testing.assert_close(attn(x), _naive_window_attention(attn, x, causal), rtol=1e-4, atol=1e-5)


def test_registered_names():
    assert "omega" in available("memory")
    assert {"atlas_deep", "atlas_mag", "atlas_mal"} <= set(available("block"))
    assert {"muon", "momentum"} <= set(available("memory_optimizer"))
    assert "polynomial" in available("feature_map")
    assert "sliding_window" in available("mixer")
    block = build("block", "atlas_mag", d_model=8, n_heads=2, d_ff=16, memory_kwargs={"d_key": 4})
    assert block(torch.randn(2, 5, 8)).shape == (2, 5, 8)
