"""tsformers.runtime: packed = padded-and-masked, the sparse KV cache keeps its budget, streams = parallel forms."""
import pytest
import torch

from tsformers.backbone import FullAttention, LegendreMemory, LMUCell, SlidingWindowAttention, TransformerEncoder
from tsformers.backbone.registry import available, build_class
from tsformers.runtime import PackedEncoder, SparseKVAttention, SparseKVCache, Stream, pack, packed_attention, unpack
from tsformers.runtime.packed import masked_forward

D = 16


def test_every_registered_part_is_defined_in_the_backbone():
    """The backbone imports all of its modules, so a part defined there is listed whatever was imported;
    a module above it (runtime, estimators) registering a part would make ``available()`` depend on
    which modules a process happened to import."""
    import tsformers.runtime  # noqa: F401  (its tools run networks; they fill no slot and are not parts)

    for kind, names in available().items():
        for name in names:
            # or torch's own module that the backbone registers as it is (norm "layernorm": nn.LayerNorm, so
            # that networks built with the default keep their modules and weights)
            module = build_class(kind, name).__module__
            assert module.startswith(("tsformers.backbone.", "torch.nn.modules.")), (kind, name, module)
    assert "runtime" not in available()


_AVAILABLE_AFTER = """
import importlib, json, sys, types
if {backbone_alone}:   # import the backbone without tsformers/__init__.py (which imports the estimators)
    spec = importlib.util.find_spec("tsformers")
    package = types.ModuleType("tsformers")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["tsformers"] = package
for module in {modules}:
    importlib.import_module(module)
from tsformers.backbone import available
print(json.dumps(available()))
"""


def test_available_is_the_same_in_a_fresh_interpreter_whatever_was_imported():
    import json
    import subprocess
    import sys

    def available_after(modules, backbone_alone=False):
        code = _AVAILABLE_AFTER.format(modules=modules, backbone_alone=backbone_alone)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        return json.loads(done.stdout)

    everything = available_after(["tsformers", "tsformers.runtime", "tsformers.compress", "tsformers.models"])
    assert available_after(["tsformers.backbone"], backbone_alone=True) == everything
    assert available_after(["tsformers.backbone"]) == everything


# -- packed ------------------------------------------------------------------------------------

def test_pack_and_unpack_round_trip():
    parts = [torch.randn(n, D) for n in (3, 7, 1)]
    packed = pack(parts)
    assert packed.cu_seqlens.tolist() == [0, 3, 10, 11] and packed.tokens.shape == (11, D)
    padded, mask = unpack(packed)
    assert padded.shape == (3, 7, D) and mask.sum(1).tolist() == [3, 7, 1]
    for part, row, valid in zip(parts, padded, mask):
        torch.testing.assert_close(row[valid], part)
    torch.testing.assert_close(pack(padded, mask.sum(1)).tokens, packed.tokens)


@pytest.mark.parametrize("block", ["prenorm", "postnorm"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("mode", ["grouped", "block_diagonal"])
def test_packed_encoder_equals_padded_and_masked(block, causal, mode):
    torch.manual_seed(0)
    encoder = TransformerEncoder(d_model=D, n_heads=2, d_ff=32, n_layers=2, dropout=0.0, block=block,
                                 causal=causal, final_norm=True).eval()
    lengths = torch.tensor([5, 12, 12, 3, 9])
    parts = [torch.randn(int(n), D) for n in lengths]
    packed = pack(parts)
    with torch.no_grad():
        out, mask = unpack(PackedEncoder(encoder, mode=mode)(packed))
        reference = masked_forward(encoder, unpack(packed)[0], mask)
        alone = [encoder(p[None])[0] for p in parts]                      # each series on its own
    assert (out[~mask] == 0).all(), "no values where there is no token"
    torch.testing.assert_close(out[mask], reference[mask], atol=1e-5, rtol=1e-5)
    for i, part in enumerate(alone):
        torch.testing.assert_close(out[i, :lengths[i]], part, atol=1e-5, rtol=1e-5)


def test_packed_attention_runs_any_mixer_per_sequence():
    torch.manual_seed(0)
    mixer = SlidingWindowAttention(D, n_heads=2, window=4).eval()  # no mask needed in the grouped mode
    parts = [torch.randn(n, D) for n in (6, 2, 6)]
    with torch.no_grad():
        out = packed_attention(mixer, pack(parts)).sequences()
        for got, part in zip(out, parts):
            torch.testing.assert_close(got, mixer(part[None])[0], atol=1e-6, rtol=1e-6)


# -- sparse KV cache ---------------------------------------------------------------------------------

def _causal_mixer():
    torch.manual_seed(0)
    return FullAttention(D, n_heads=2, causal=True).eval()


@pytest.mark.parametrize("window, k_global", [(24, 0), (10, 14), (1, 30)])
def test_sparse_kv_equals_full_causal_attention_when_the_budget_covers_the_sequence(window, k_global):
    mixer, x = _causal_mixer(), torch.randn(3, 24, D)
    stream = SparseKVAttention(mixer, window=window, k_global=k_global)
    with torch.no_grad():
        y1, _ = stream.step(x, stream.init_state(3))                             # all at once
        state, pieces = stream.init_state(3), []
        for piece in x.split(5, dim=1):                                            # and in pieces
            y, state = stream.step(piece, state)
            pieces.append(y)
        torch.testing.assert_close(y1, mixer(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(torch.cat(pieces, dim=1), mixer(x), atol=1e-5, rtol=1e-5)


def test_sparse_kv_never_exceeds_its_budget_and_keeps_the_window_and_the_heavy_hitters():
    mixer, x = _causal_mixer(), torch.randn(2, 40, D)
    stream = SparseKVAttention(mixer, window=6, k_global=3)
    state = stream.init_state(2)
    with torch.no_grad():
        for t in range(40):
            y, state = stream.step(x[:, t:t + 1], state)
            size = state["k"].shape[2]
            assert size == min(t + 1, 9) <= stream.cache.budget
            assert state["v"].shape[2] == state["score"].shape[1] == state["pos"].shape[1] == size
            recent = set(range(max(0, t - 5), t + 1))
            for row in state["pos"].tolist():
                assert recent <= set(row), "the last `window` tokens are always kept"
        assert torch.isfinite(y).all()
        # not full attention any more: the cache dropped tokens
        assert not torch.allclose(y, mixer(x)[:, -1:], atol=1e-5)


def test_the_evicted_token_is_the_lowest_scored_outside_the_window():
    cache = SparseKVCache(window=2, k_global=1)
    k = torch.zeros(1, 1, 4, 2)
    state = {"k": k, "v": k.clone(), "score": torch.tensor([[0.9, 0.1, 0.5, 0.7]]),
             "pos": torch.tensor([[0, 1, 2, 3]]), "seen": torch.tensor([4])}
    kept = cache.evict(state)
    assert kept["pos"].tolist() == [[0, 2, 3]], "token 1 had the lowest score outside the window {2, 3}"


# -- streams -----------------------------------------------------------------------------------------

def test_legendre_memory_stream_equals_its_parallel_form():
    memory = LegendreMemory(order=8, theta=20.0)
    u = torch.randn(2, 50, 3)
    parallel, last = memory(u)                                                   # FFT (T > 8)
    stepped, state = Stream(memory).run(u)
    torch.testing.assert_close(stepped, parallel, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(state, last, atol=1e-5, rtol=1e-4)


def test_lmu_cell_stream_equals_the_parallel_cell_with_a_constant_state():
    torch.manual_seed(0)
    cell = LMUCell(D, memory_size=8, theta=16.0).eval()
    x = torch.randn(2, 30, D)
    with torch.no_grad():
        parallel, _ = cell(x)
        stream = Stream(cell)
        state = stream.init_state(2)
        shapes = {k: v.shape for k, v in state.items()}
        outs = []
        for x_t in x.unbind(1):
            y, state = stream.update(x_t, state)
            outs.append(y)
            assert {k: v.shape for k, v in state.items()} == shapes, "O(1) state: same size at every step"
    torch.testing.assert_close(torch.stack(outs, 1), parallel, atol=1e-5, rtol=1e-4)


def test_sliding_window_attention_stream_equals_causal_forward():
    torch.manual_seed(0)
    mixer = SlidingWindowAttention(D, n_heads=2, causal=True, window=5, n_persistent=2).eval()
    x = torch.randn(2, 20, D)
    with torch.no_grad():
        stepped, state = Stream(mixer).run(x)
        torch.testing.assert_close(stepped, mixer(x), atol=1e-5, rtol=1e-5)
    assert state["cache"].shape == (2, 4, D)


@pytest.mark.parametrize("name", ["sla", "mamba"])
def test_token_step_mixers_stream_equal_their_causal_forward(name):
    torch.manual_seed(0)
    mixer = build_class("mixer", name)(D, n_heads=2, causal=True).eval()
    x = torch.randn(2, 12, D)
    with torch.no_grad():
        stepped, _ = Stream(mixer).run(x)
        torch.testing.assert_close(stepped, mixer(x), atol=1e-4, rtol=1e-4)


def test_a_mixer_without_a_recurrent_form_is_refused():
    with pytest.raises(TypeError, match="no recurrent form"):
        Stream(FullAttention(D, n_heads=2))
    with pytest.raises(ValueError, match="causal=False"):
        Stream(SlidingWindowAttention(D, n_heads=2, causal=False))


def test_packed_attention_sees_only_the_valid_tokens():
    """The work scales with ΣN_i: the mixer is never given a padding token."""
    encoder = TransformerEncoder(d_model=D, n_heads=2, d_ff=32, n_layers=1, dropout=0.0).eval()
    seen = []
    encoder.layers[0].mixer.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[:2].numel()))
    lengths = [4, 30, 30, 2]
    with torch.no_grad():
        PackedEncoder(encoder)(pack([torch.randn(n, D) for n in lengths]))
    assert sum(seen) == sum(lengths) and len(seen) == 3, "one call per distinct length"
