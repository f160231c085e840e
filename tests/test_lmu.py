"""The LMU memory (discretisation, parallel = recurrent, Legendre read-out, causality) and LIF neurons."""

import math

import numpy as np
import pytest
import torch

from tsformers.backbone import build
from tsformers.backbone.lmu import (
    LMUCell,
    LegendreMemory,
    legendre_delay_system,
    shifted_legendre,
    zoh_discretise,
)
from tsformers.backbone.spiking import LIFNode, SpikeRateCounter, spike


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# -- (A, B) and their discretisation ---------------------------------------------------------

def _expm_taylor(M: np.ndarray) -> np.ndarray:
    """exp(M) by scaling and squaring with a Taylor series, in float64 numpy (independent of torch and scipy)."""
    s = max(0, int(np.ceil(np.log2(max(np.abs(M).sum(axis=1).max(), 1e-300)))) + 1)
    X = M / 2**s
    term, total = np.eye(len(M)), np.eye(len(M))
    for k in range(1, 30):
        term = term @ X / k
        total = total + term
    for _ in range(s):
        total = total @ total
    return total


def test_continuous_system_matches_the_legendre_formulas():
    A, B = legendre_delay_system(5, 2.0)
    for i in range(5):
        assert B[i] == (2 * i + 1) * (-1) ** i / 2.0
        for j in range(5):
            expected = (2 * i + 1) * (-1 if i < j else (-1) ** (i - j + 1)) / 2.0
            assert A[i, j] == expected, (i, j)


@pytest.mark.parametrize("order, theta", [(1, 5.0), (4, 10.0), (32, 96.0), (128, 96.0), (256, 128.0)])
def test_zoh_matches_scipy_cont2discrete(order, theta):
    signal = pytest.importorskip("scipy.signal")
    A, B = legendre_delay_system(order, theta)
    A_bar, B_bar = zoh_discretise(A, B)
    A_ref, B_ref, *_ = signal.cont2discrete((A.numpy(), B.numpy()[:, None], np.eye(order), np.zeros((order, 1))),
                                            dt=1.0, method="zoh")
    np.testing.assert_allclose(A_bar.numpy(), A_ref, rtol=0, atol=1e-6)
    np.testing.assert_allclose(B_bar.numpy(), B_ref[:, 0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("order, theta", [(4, 10.0), (32, 96.0), (64, 48.0)])
def test_zoh_matches_the_augmented_matrix_exponential(order, theta):
    """exp([[A, B], [0, 0]]) = [[Ā, B̄], [0, I]] (Van Loan), computed without torch or scipy."""
    A, B = legendre_delay_system(order, theta)
    M = np.zeros((order + 1, order + 1))
    M[:order, :order], M[:order, order] = A.numpy(), B.numpy()
    E = _expm_taylor(M)
    memory = LegendreMemory(order=order, theta=theta)
    np.testing.assert_allclose(memory.A_bar.numpy(), E[:order, :order], rtol=0, atol=1e-6)
    np.testing.assert_allclose(memory.B_bar.numpy(), E[:order, order], rtol=0, atol=1e-6)


def test_shifted_legendre_matches_numpy():
    r = torch.linspace(0, 1, 11, dtype=torch.float64)
    P = shifted_legendre(7, r)
    for i in range(7):
        np.testing.assert_allclose(P[:, i].numpy(), np.polynomial.legendre.Legendre.basis(i)(2 * r.numpy() - 1),
                                   atol=1e-12)


# -- the two forms ----------------------------------------------------------------------------

@pytest.mark.parametrize("length", [1, 37, 96, 300])
def test_parallel_and_recurrent_forms_agree(length):
    memory = LegendreMemory(order=32, theta=64)
    u = torch.randn(3, length, 2)
    m_rec, last_rec = memory.recurrent(u)
    m_par, last_par = memory.parallel(u)
    assert m_par.shape == (3, length, 2, 32)
    torch.testing.assert_close(m_par, m_rec, rtol=0, atol=1e-5)
    torch.testing.assert_close(last_par, last_rec, rtol=0, atol=1e-5)


def test_parallel_form_continues_from_a_state():
    memory = LegendreMemory(order=32, theta=64)
    u, m0 = torch.randn(2, 150, 1), torch.randn(2, 1, 32)
    torch.testing.assert_close(memory.parallel(u, m0)[0], memory.recurrent(u, m0)[0], rtol=0, atol=1e-5)


def test_chunks_and_steps_give_the_whole_sequence_memory():
    memory = LegendreMemory(order=16, theta=40, chunk=64)          # 200 tokens run as 4 FFT chunks
    u = torch.randn(2, 200, 3)
    whole, _ = memory.parallel(u)
    chunked, _ = memory(u)
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-5)
    m = memory.init_state(2, 3)
    for t in range(200):
        m = memory.step(u[:, t], m)
    torch.testing.assert_close(m, whole[:, -1], rtol=0, atol=1e-5)


def test_impulse_response_is_powers_of_A_times_B():
    memory = LegendreMemory(order=6, theta=12)
    H = memory.impulse_response(25)
    for t in (0, 1, 7, 24):
        torch.testing.assert_close(H[:, t], torch.linalg.matrix_power(memory.A_bar, t) @ memory.B_bar)


# -- what the memory remembers: the delayed input --------------------------------------------

def test_delayed_impulse_decodes_to_a_unit_pulse_delayed_by_theta():
    """Read at delay theta, the memory of an impulse at t0 is the Padé delay's response: area 1 (the delay's
    gain, exact under zero-order hold), mass centred at t0 + theta - 1/2 (the held input's centre), peak there."""
    theta, t0, n = 50, 30, 600
    memory = LegendreMemory(order=32, theta=theta).double()
    u = torch.zeros(1, n, 1, dtype=torch.float64)
    u[0, t0] = 1.0
    m, _ = memory.recurrent(u)
    y = m[0, :, 0] @ memory.decoder(torch.tensor([float(theta)]))[0]           # (n,)
    t = torch.arange(n, dtype=torch.float64)
    assert abs(float(y.sum()) - 1.0) < 1e-9
    assert abs(float((t * y).sum()) - (t0 + theta - 0.5)) < 0.1
    assert int(y.argmax()) in (t0 + theta - 1, t0 + theta)
    assert float(y[: t0].abs().max()) == 0.0                                  # nothing before the impulse


@pytest.mark.parametrize("delay", [10.0, 25.0, 50.0])
def test_smooth_input_decodes_back_delayed(delay):
    """u(t - delay) ≈ Σ_i P̃_i(delay/theta) m_i(t): a bump comes back at the delay (the held input between
    two steps reads as the mean of its neighbours)."""
    theta, n = 50, 300
    memory = LegendreMemory(order=32, theta=theta).double()
    t = torch.arange(n, dtype=torch.float64)
    bump = torch.exp(-0.5 * ((t - 80) / 6) ** 2)
    m, _ = memory.recurrent(bump[None, :, None])
    y = m[0, :, 0] @ memory.decoder(torch.tensor([delay]))[0]
    k = int(delay)
    expected = 0.5 * (bump[: n - k] + bump[1: n - k + 1])                     # y[t] vs u at t - k and t - k + 1
    assert float((y[k:] - expected).abs().max()) < 0.01
    assert abs(int(y.argmax()) - (80 + k)) <= 1


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_memory_is_causal(dtype, tol):
    """Changing inputs after t leaves the memory up to t unchanged (the FFT's zero-padding; round-off only)."""
    memory = LegendreMemory(order=16, theta=30).to(dtype)
    u = torch.randn(2, 80, 1, dtype=dtype)
    u2 = u.clone()
    u2[:, 50:] += 10 * torch.randn(2, 30, 1, dtype=dtype)
    m, m2 = memory(u)[0], memory(u2)[0]
    assert float((m[:, :50] - m2[:, :50]).abs().max()) < tol
    assert float((m[:, 50:] - m2[:, 50:]).abs().max()) > 1e-2


def test_registered_under_memory():
    assert isinstance(build("memory", "lmu", order=8, theta=16.0), LegendreMemory)
    assert isinstance(build("memory", "lmu_cell", d_model=8, memory_size=8, theta=16.0), LMUCell)


@pytest.mark.parametrize("spiking", [False, True])
def test_lmu_cell_streams_exactly(spiking):
    cell = LMUCell(8, memory_size=12, theta=20.0, spiking=spiking).eval()
    x = torch.randn(3, 40, 8) * 2
    with torch.no_grad():
        h, state = cell(x)
        h1, s1 = cell(x[:, :17], cell.init_state(3))
        h2, s2 = cell(x[:, 17:], s1)
    assert h.shape == (3, 40, 8)
    torch.testing.assert_close(torch.cat([h1, h2], dim=1), h, rtol=0, atol=1e-5)
    for k in state:
        torch.testing.assert_close(s2[k], state[k], rtol=0, atol=1e-5)


# -- LIF neurons ---------------------------------------------------------------------------------

def test_lif_dynamics_by_hand():
    """tau=2, threshold 1: v <- v + (x - v)/2; fire at v >= 1, then v = 0."""
    lif = LIFNode(tau=2.0, v_threshold=1.0)
    x = torch.tensor([[[1.0], [1.0], [1.0], [2.0], [0.0], [4.0]]])
    spikes, v = lif(x)
    v_ref, expected = 0.0, []
    for x_t in x[0, :, 0].tolist():
        h = v_ref + (x_t - v_ref) / 2
        s = float(h >= 1.0)
        v_ref = h * (1 - s)
        expected.append(s)
    assert spikes[0, :, 0].tolist() == expected == [0.0, 0.0, 0.0, 1.0, 0.0, 1.0]
    assert math.isclose(float(v[0, 0]), v_ref)


def test_lif_surrogate_gradient_is_the_sigmoid_derivative():
    x = torch.linspace(-1, 1, 9, requires_grad=True)
    s = spike(x, alpha=4.0)
    assert set(s.tolist()) <= {0.0, 1.0} and s[4] == 1.0                  # Θ(0) = 1
    s.sum().backward()
    sig = torch.sigmoid(4.0 * x.detach())
    torch.testing.assert_close(x.grad, 4.0 * sig * (1 - sig))


@pytest.mark.parametrize("detach_reset", [True, False])
def test_lif_backward_matches_autograd_through_the_steps(detach_reset):
    """The hand-written backward equals autograd through the step-by-step recurrence with spike()."""
    tau, v_th, v_reset, alpha = 2.0, 1.0, -0.2, 4.0
    x = (torch.randn(3, 25, 4, dtype=torch.float64) * 1.5).requires_grad_()
    v0 = (torch.rand(3, 4, dtype=torch.float64) * 0.5).requires_grad_()
    weights, w_v = torch.randn(3, 25, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)

    v, ref = v0, []
    for x_t in x.unbind(dim=1):
        h = v + (x_t - (v - v_reset)) / tau
        s = spike(h - v_th, alpha)
        s_r = s.detach() if detach_reset else s
        v = h * (1 - s_r) + v_reset * s_r
        ref.append(s)
    ref = torch.stack(ref, dim=1)
    gx_ref, gv_ref = torch.autograd.grad((ref * weights).sum() + (v * w_v).sum(), (x, v0))

    lif = LIFNode(tau=tau, v_threshold=v_th, v_reset=v_reset, surrogate_alpha=alpha, detach_reset=detach_reset)
    spikes, v_last = lif(x, v0)
    assert torch.equal(spikes, ref.detach()) and 0 < float(spikes.detach().mean()) < 1
    torch.testing.assert_close(v_last, v.detach())
    gx, gv = torch.autograd.grad((spikes * weights).sum() + (v_last * w_v).sum(), (x, v0))
    torch.testing.assert_close(gx, gx_ref)
    torch.testing.assert_close(gv, gv_ref)


def test_lif_hard_reset_and_streaming():
    lif = LIFNode(tau=2.0, v_threshold=1.0)
    x = torch.randn(4, 30, 5) * 2
    spikes, v = lif(x)
    s1, v1 = lif(x[:, :11])
    s2, v2 = lif(x[:, 11:], v1)
    assert torch.equal(torch.cat([s1, s2], dim=1), spikes) and torch.equal(v2, v)
    fired = spikes[:, -1] == 1
    assert fired.any() and torch.all(v[fired] == 0.0)                     # reset to v_reset after a spike
    assert torch.all(v[~fired] < 1.0)


def test_spike_rate_counter_counts_binary_spikes():
    cell = LMUCell(6, memory_size=6, theta=10.0, spiking=True).eval()
    x = torch.randn(2, 20, 6) * 3
    with SpikeRateCounter(cell) as counter:
        cell(x)
    for name in ("in_lif", "u_lif", "m_lif", "h_lif"):
        assert name in counter.per_layer
    spikes, _ = cell.in_lif(cell.in_norm(x))                             # recount the first layer by hand
    assert counter.counts["in_lif"] == [int(spikes.count_nonzero()), spikes.numel()]
    fired, total = (sum(c[i] for c in counter.counts.values()) for i in (0, 1))
    assert counter.binary and 0 < counter.rate == fired / total < 1


def test_trains_after_a_first_call_under_inference_mode():
    memory = LegendreMemory(order=8, theta=16)
    with torch.inference_mode():
        memory(torch.randn(2, 40, 1))
    u = torch.randn(2, 40, 1, requires_grad=True)
    memory(u)[0].sum().backward()
    assert u.grad is not None and torch.isfinite(u.grad).all()
