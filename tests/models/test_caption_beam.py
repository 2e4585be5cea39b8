"""Beam search: width 1 is greedy decoding, width k gives k hypotheses ranked by the
length-normalised score, log-probabilities agree with teacher forcing, limits hold; and a
saved captioner decodes exactly as before saving."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from embplat.errors import ConfigError
from embplat.models.checkpoints import save_checkpoint
from embplat.models.encoders import get_backbone
from embplat.models.recipes.caption import (
    CaptionConfig,
    CaptionVocab,
    beam_search,
    build_caption_model,
    caption_batch,
    checkpoint_meta,
    greedy_decode,
    is_caption,
    load_caption_model,
)
from embplat.models.recipes.caption.batches import pad_batch

SENTENCE = "a red blue green circle square triangle left right of above below the"


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "coverage"])
def setup(request):
    """A small captioner; with coverage, its coverage weights are set (they start at zero),
    so every test also checks that teacher forcing, greedy and beam search feed the
    attention the same coverage."""
    torch.manual_seed(0)
    vocab = CaptionVocab.build([SENTENCE], min_count=1)
    cfg = CaptionConfig(
        encoder="tiny_cnn", attention_dim=16, decoder_dim=32, embed_dim=8, dropout=0.3,
        device="cpu", coverage=request.param,
    )  # fmt: skip
    model = build_caption_model(cfg, get_backbone("tiny_cnn"), vocab, vectors=None)
    with torch.no_grad():  # a peaked output layer, so captions vary in length
        model.decoder.fc.weight.mul_(30)
        model.decoder.fc.bias[vocab.end] = 1.0
        if request.param:
            assert not model.decoder.attention.coverage.weight.any()  # starts as no change
            model.decoder.attention.coverage.weight.normal_(0, 3.0)
    features = torch.randn(6, 16, 64, generator=torch.Generator().manual_seed(1))
    return model, vocab, cfg, features


def decode(model, vocab, features, **kw):
    args = dict(max_len=8, end=vocab.end, start=vocab.start)
    return beam_search(model.decoder, features, **{**args, **kw})


def test_width_one_is_greedy_decoding(setup):
    model, vocab, _, features = setup
    greedy = greedy_decode(model.decoder, features, max_len=8, end=vocab.end, start=vocab.start)
    beamed = decode(model, vocab, features, beam=1)
    assert [len(h) for h in beamed] == [1] * 6
    assert {g.ended for g in greedy} == {True, False}  # both endings are exercised
    for g, (b,) in zip(greedy, beamed, strict=True):
        assert b.tokens == g.tokens and b.logprob == g.logprob and b.ended == g.ended
        np.testing.assert_array_equal(b.alphas, g.alphas)
    assert model.decoder.training  # the caller's mode is restored


def teacher_forced_logprob(model, vocab, features, hyp):
    """Sum of log p(token) under teacher forcing, <end> included when the caption ended."""
    ids = [vocab.start, *hyp.tokens] + ([vocab.end] if hyp.ended else [])
    tokens, lengths = pad_batch([ids])
    model.decoder.eval()
    with torch.no_grad():
        out = model.decoder(features.unsqueeze(0), tokens, lengths)
    model.decoder.train()
    logp = F.log_softmax(out.scores[0], dim=1)
    return float(logp[torch.arange(len(ids) - 1), tokens[0, 1:]].sum()), out.alphas[0].numpy()


@pytest.mark.parametrize("beam", [2, 3, 5])
def test_width_k_gives_k_ranked_hypotheses_whose_scores_follow_the_formula(setup, beam):
    model, vocab, _, features = setup
    for i, hyps in enumerate(decode(model, vocab, features, beam=beam, length_norm=0.7)):
        assert len(hyps) == beam
        assert len({tuple(h.tokens) for h in hyps}) == beam
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)
        for h in hyps:
            steps = len(h.tokens) + h.ended
            assert h.alphas.shape == (steps, 16) and h.alphas.dtype == np.float32
            assert h.score == pytest.approx(h.logprob / steps**0.7, rel=1e-6)
            assert len(h.tokens) <= 8 and (h.ended or len(h.tokens) == 8)
            assert not {vocab.pad, vocab.start, vocab.end} & set(h.tokens)
            logprob, alphas = teacher_forced_logprob(model, vocab, features[i], h)
            assert h.logprob == pytest.approx(logprob, abs=1e-4)
            np.testing.assert_allclose(h.alphas, alphas, atol=1e-5)


def test_without_length_normalisation_the_score_is_the_logprob(setup):
    model, vocab, _, features = setup
    for hyps in decode(model, vocab, features, beam=4, length_norm=0.0):
        assert [h.score for h in hyps] == [h.logprob for h in hyps]
        logprobs = [h.logprob for h in hyps]
        assert logprobs == sorted(logprobs, reverse=True)


def test_limits(setup):
    model, vocab, _, features = setup
    for width in (0, 11):
        with pytest.raises(ConfigError, match="between 1 and 10"):
            decode(model, vocab, features, beam=width)
    with pytest.raises(ConfigError, match="max_len"):
        decode(model, vocab, features, beam=2, max_len=0)
    for hyps in decode(model, vocab, features, beam=3, max_len=2):
        assert all(len(h.tokens) <= 2 for h in hyps)
    # one step, 5 tokens, <pad> and <start> never generated: 3 continuations exist
    tiny = CaptionVocab.build(["red"], min_count=1)
    torch.manual_seed(0)
    cfg = CaptionConfig(attention_dim=4, decoder_dim=4, embed_dim=4, device="cpu")
    small = build_caption_model(cfg, get_backbone("tiny_cnn"), tiny, vectors=None)
    hyps = beam_search(small.decoder, features[:1], beam=5, max_len=1, end=2, start=1)[0]
    assert len(hyps) == 3 and {tuple(h.tokens) for h in hyps} == {(), (3,), (4,)}


def test_a_saved_captioner_decodes_exactly_as_before(setup, tmp_path):
    model, vocab, cfg, _ = setup
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    before = caption_batch(model, vocab, images, beam=3, max_len=8)
    encoder = {"name": "tiny_cnn", "weights": "random", "image_size": 32, "key": "tiny_cnn"}
    meta = checkpoint_meta(
        model, vocab, cfg, name="caption-1", encoder=encoder, epoch=2, metrics={"bleu4": 0.1}
    )
    path = tmp_path / "epoch_2.pt"
    save_checkpoint(path, model, meta)
    torch.manual_seed(123)  # loading must not depend on (or change) the global RNG
    state = torch.random.get_rng_state()
    loaded, vocab2, saved = load_caption_model(path, device="cpu")
    assert torch.equal(torch.random.get_rng_state(), state)
    assert vocab2 == vocab and saved["recipe"] == "caption" and saved["epoch"] == 2
    assert saved["caption"]["grid"] == [4, 4] and CaptionConfig.from_dict(saved["config"]) == cfg
    after = caption_batch(loaded, vocab2, images, beam=3, max_len=8)
    assert loaded.grid() == (4, 4)
    for one, two in zip(before, after, strict=True):
        assert [t for t, _ in one] == [t for t, _ in two]
        for (text, h1), (_, h2) in zip(one, two, strict=True):
            assert text == vocab.decode(h1.tokens) and h1.tokens == h2.tokens
            assert h1.logprob == h2.logprob
            np.testing.assert_array_equal(h1.alphas, h2.alphas)


def test_a_checkpoint_of_another_recipe_is_refused(tmp_path):
    path = tmp_path / "other.pt"
    save_checkpoint(path, torch.nn.Linear(2, 2), {"model": "m", "recipe": "classifier"})
    assert not is_caption({"recipe": "classifier"})
    with pytest.raises(ConfigError, match="not a caption model"):
        load_caption_model(path, device="cpu")
