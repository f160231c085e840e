"""TNT block (backbone-catalog.md, section A): words stay inside their patch, and feed their sentence token."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tsformers.backbone import build

D, DI, W, N = 16, 8, 4, 5


def _block(**kwargs):
    torch.manual_seed(0)
    return build("block", "tnt", d_model=D, d_inner=DI, words_per_patch=W, n_heads=4, n_heads_inner=2,
                 **kwargs).eval()


def _patch_dependency(fn, tokens, words):
    """(N_out, N) booleans: output patch p depends on the words of input patch p'."""
    jac = torch.autograd.functional.jacobian(lambda w: fn(tokens, w), words)   # out shape + words shape
    keep = (1, jac.dim() - words.dim() + 1)                                     # out patch, input patch
    return jac.abs().sum(dim=tuple(i for i in range(jac.dim()) if i not in keep)) > 0


def test_with_outer_attention_off_words_and_tokens_never_see_another_patch():
    block = _block(outer_attention=False)
    tokens, words = torch.randn(1, N, D), torch.randn(1, N, W, DI)
    word_dep = _patch_dependency(lambda t, w: block(t, w)[1], tokens, words)   # (N, N)
    token_dep = _patch_dependency(lambda t, w: block(t, w)[0], tokens, words)
    assert torch.equal(word_dep, torch.eye(N, dtype=torch.bool))
    assert torch.equal(token_dep, torch.eye(N, dtype=torch.bool))


def test_with_outer_attention_on_tokens_mix_patches_but_words_still_do_not():
    block = _block()
    tokens, words = torch.randn(1, N, D), torch.randn(1, N, W, DI)
    assert _patch_dependency(lambda t, w: block(t, w)[0], tokens, words).all()
    assert torch.equal(_patch_dependency(lambda t, w: block(t, w)[1], tokens, words),
                       torch.eye(N, dtype=torch.bool))


def test_changing_one_word_changes_its_sentence_token_only():
    block = _block(outer_attention=False)
    tokens, words = torch.randn(2, N, D), torch.randn(2, N, W, DI)
    changed = words.clone()
    changed[:, 2, 1] += torch.randn(DI)
    with torch.no_grad():
        (a, _), (b, _) = block(tokens, words), block(tokens, changed)
    assert not torch.allclose(a[:, 2], b[:, 2])
    others = [0, 1, 3, 4]
    torch.testing.assert_close(a[:, others], b[:, others], rtol=0, atol=0)


def test_class_token_shapes_and_causal_outer_mixer():
    block = _block(causal=True)
    tokens, words = torch.randn(2, 1 + N, D), torch.randn(2, N, W, DI)
    t, w = block(tokens, words)
    assert t.shape == tokens.shape and w.shape == words.shape
    with pytest.raises(AssertionError, match="words must be"):
        block(tokens, torch.randn(2, N, W + 1, DI))
    # causal outer mixer: patch token p depends on the words of patches 0..p only
    dep = _patch_dependency(lambda t, w: block(t, w)[0], torch.randn(1, N, D), torch.randn(1, N, W, DI))
    assert torch.equal(dep, torch.ones(N, N, dtype=torch.bool).tril())


def test_word_embedding_and_a_tiny_forecaster_learn_a_seasonal_series():
    torch.manual_seed(0)
    lookback, horizon, patch = 32, 8, 8
    words_of = build("embedding", "tnt_words", d_inner=DI, patch_len=patch, words_per_patch=W)
    assert words_of(torch.randn(3, lookback)).shape == (3, lookback // patch, W, DI)
    block = _block().train()
    token_embed = nn.Linear(patch, D)
    head = nn.Linear(lookback // patch * D, horizon)
    params = [*words_of.parameters(), *block.parameters(), *token_embed.parameters(), *head.parameters()]
    optimiser = torch.optim.Adam(params, lr=3e-3)
    t = torch.arange(1500, dtype=torch.float32)
    windows = (torch.sin(2 * math.pi * t / 12) + 0.5 * torch.sin(2 * math.pi * t / 5)).unfold(0, lookback + horizon, 1)
    losses = []
    for step in range(100):
        batch = windows[torch.randint(0, len(windows), (32,), generator=torch.Generator().manual_seed(step))]
        x = batch[:, :lookback]
        tokens, _ = block(token_embed(x.unfold(-1, patch, patch)), words_of(x))
        loss = nn.functional.mse_loss(head(tokens.flatten(1)), batch[:, lookback:])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) < 0.3 * sum(losses[:10]), (losses[:3], losses[-3:])
