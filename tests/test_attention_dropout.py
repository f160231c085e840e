"""Gateformer's ``attention_dropout``: the named mixers' own dropout, apart from the blocks' ``dropout``."""
import pytest
import torch
import torch.nn.functional as F
from sklearn.utils._param_validation import InvalidParameterError

from tsformers import GateformerForecaster
from tsformers.backbone import FullAttention, build
from tsformers.backbone.mixers.fcaformer import ForwardCrossAttention
from tsformers.backbone.stacks.dual_stream import DualStreamBlock
from tsformers.datasets import make_demo
from tsformers.estimators.persistence import saved_params
from tsformers.models.gateformer import Gateformer, temporal_stacks


def _net(**kwargs):
    return Gateformer(lookback=48, horizon=12, n_vars=3, d_model=16, n_heads=2, d_ff=16, patch_len=8, stride=8,
                      dropout=0.1, **kwargs)


def _named_mixers(module, cls):
    return {name: m for name, m in module.named_modules() if type(m) is cls}


# the stacks' own mixers that are not the named one, and keep ``dropout``: FIT's latent read and write
_OWN_ATTENTION = {"fit": ("read.", "write.")}


@pytest.mark.parametrize("temporal_stack", [s for s in temporal_stacks("full") if s != "dual_stream"])
def test_every_mixer_named_by_temporal_and_variate_mixer_takes_it_in_every_stack(temporal_stack):
    net = _net(attention_dropout=0.0, temporal_stack=temporal_stack)
    temporal = _named_mixers(net.temporal_encoder, FullAttention)
    own = _OWN_ATTENTION.get(temporal_stack, ())
    named = {n: m for n, m in temporal.items() if not n.startswith(own)}
    assert named and all(m.dropout == 0.0 for m in named.values()), {n: m.dropout for n, m in named.items()}
    assert all(m.dropout == 0.1 for n, m in temporal.items() if n.startswith(own))
    variate = _named_mixers(net.variate_encoder, FullAttention)
    assert variate and all(m.dropout == 0.0 for m in variate.values())
    # the blocks' dropout is untouched
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.1 for m in net.temporal_encoder.modules())


def test_none_is_the_papers_dropout_everywhere_and_the_same_network():
    torch.manual_seed(0)
    paper = _net()
    torch.manual_seed(0)
    explicit = _net(attention_dropout=None)
    assert all(m.dropout == 0.1 for m in _named_mixers(paper, FullAttention).values())
    assert paper.state_dict().keys() == explicit.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(paper.state_dict().values(), explicit.state_dict().values()))


def test_fca_stage_and_dual_stream_take_it_for_their_attention():
    fca = _net(attention_dropout=0.0, temporal_mixer="fca")
    mixers = _named_mixers(fca.temporal_encoder, ForwardCrossAttention)
    assert mixers and all(m.dropout == 0.0 for m in mixers.values())
    dual = _net(attention_dropout=0.05, stack="dual_stream")
    blocks = [m for m in dual.modules() if isinstance(m, DualStreamBlock)]
    assert len(blocks) == 2 and all(b.p == 0.05 for b in blocks)  # the temporal and the variate encoder's
    assert all(b.p == 0.1 for b in _net(stack="dual_stream").modules() if isinstance(b, DualStreamBlock))
    with pytest.raises(ValueError, match="no mixer options but its dropout"):
        build("stack", "dual_stream", d_model=16, n_heads=2, d_ff=16, n_layers=1, mixer_kwargs={"window": 3})


def test_without_it_the_attention_in_training_is_torchs_fused_attention_and_draws_no_mask():
    torch.manual_seed(0)
    attention = FullAttention(16, n_heads=2, dropout=0.0).train()
    x = torch.randn(64, 7, 16)                                    # 64·2·7·7 scores: over the threshold of attend
    torch.manual_seed(1)
    first = attention(x)
    torch.manual_seed(2)
    assert torch.equal(attention(x), first)                       # no mask: the seed does not matter
    q, k, v = (proj(x).unflatten(-1, (2, 8)).transpose(1, 2) for proj in
               (attention.to_q, attention.to_k, attention.to_v))
    fused = attention.to_out(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(-2))
    torch.testing.assert_close(first, fused, rtol=0, atol=0)
    dropped = FullAttention(16, n_heads=2, dropout=0.1).train()
    dropped.load_state_dict(attention.state_dict())
    torch.manual_seed(1)
    a = dropped(x)
    torch.manual_seed(2)
    assert not torch.equal(dropped(x), a)


def test_the_estimator_defaults_to_the_papers_dropout_and_passes_it_to_its_network():
    df = make_demo(n_steps=300)
    paper = GateformerForecaster(horizon=12, lookback=48, max_epochs=1, linear_base=False).fit(df)
    assert paper.attention_dropout is None
    assert all(m.dropout == 0.1 for m in _named_mixers(paper.network_, FullAttention).values())
    fitted = GateformerForecaster(horizon=12, lookback=48, max_epochs=1, attention_dropout=0.0,
                                  linear_base=False).fit(df)
    assert all(m.dropout == 0.0 for m in _named_mixers(fitted.network_, FullAttention).values())
    with pytest.raises(InvalidParameterError, match="attention_dropout"):
        GateformerForecaster(attention_dropout=1.5).fit(df)


def test_models_saved_before_it_load_with_the_papers_dropout():
    takes = GateformerForecaster().get_params()
    assert saved_params("GateformerForecaster", {"horizon": 12}, takes)["attention_dropout"] is None
    assert saved_params("GateformerForecaster", {"attention_dropout": 0.0}, takes)["attention_dropout"] == 0.0
    assert "attention_dropout" not in saved_params("LMUFormerForecaster", {"horizon": 12}, {"horizon": 12})


def test_a_wide_stacks_narrower_attention_takes_it_and_stays_the_same_network():
    """With fewer heads·head width than d_model the wide stack builds full attention with projections to
    and from the narrower width; the attention weights' dropout is no other mixer option, so it stays so."""
    from tsformers.backbone.stacks.wide import build_attention

    plain = build_attention(64, 2, 16, dropout=0.1)                    # 2·16 = 32 < 64
    kept = build_attention(64, 2, 16, dropout=0.1, mixer_kwargs={"dropout": 0.0})
    assert type(plain) is type(kept) is FullAttention and (plain.dropout, kept.dropout) == (0.1, 0.0)
    assert {k: v.shape for k, v in plain.state_dict().items()} == {k: v.shape for k, v in kept.state_dict().items()}
