"""The caption recipe's config, vocabulary, model and loss: shapes, the loss against its
formula, embeddings from word vectors, and a decoder that learns on a tiny caption set."""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from embplat.errors import ConfigError
from embplat.models.encoders import Backbone, get_backbone
from embplat.models.recipes import get_recipe, make_config
from embplat.models.recipes.caption import (
    CaptionConfig,
    CaptionVocab,
    build_caption_model,
    caption_loss,
)
from embplat.models.recipes.caption.batches import (
    caption_pairs,
    pad_batch,
    pad_captions,
    sortish_batches,
)
from embplat.models.recipes.caption.model import INIT_RANGE
from embplat.models.wordvectors import VectorSource

CAPTIONS = ["A red circle, left of a blue square.", "a blue square above a red circle", "red"]


def small(**kw):
    base = dict(attention_dim=16, decoder_dim=24, embed_dim=12, dropout=0.0, device="cpu")
    return CaptionConfig(encoder="tiny_cnn", **{**base, **kw})


def test_config_is_torch_free_registered_and_validated():
    code = (
        "import sys, embplat.models.recipes.caption as c; c.CaptionConfig(); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    spec = get_recipe("caption")
    assert spec.data == "captioning" and spec.config is CaptionConfig
    with pytest.raises(ConfigError, match="captioned images, not classes"):
        spec.build(CaptionConfig(), [], home=None)
    cfg = make_config("caption", {"freeze_epochs": 3, "unfreeze_epochs": 2, "valid_beam": 3})
    assert cfg.epochs == 5 and make_config("caption", cfg.as_dict()) == cfg
    for bad, match in [
        ({"valid_beam": 11}, "valid_beam must be between 1 and 10"),
        ({"dropout": 1.0}, "dropout"),
        ({"max_len": 0}, "max_len must be at least 1"),
        ({"patience": 0}, "patience"),
        ({"alpha_c": -1}, "alpha_c"),
        ({"encoder_lr": 0}, "encoder_lr"),
        ({"freeze_epochs": 0, "unfreeze_epochs": 0}, "at least one epoch"),
    ]:
        with pytest.raises(ConfigError, match=match):
            CaptionConfig(**bad)


def test_vocabulary_counts_encodes_decodes_and_round_trips():
    vocab = CaptionVocab.build(CAPTIONS, min_count=2)
    assert vocab.words[:4] == ("<pad>", "<start>", "<end>", "<unk>")
    # counts: a 4, red 3, blue 2, square 2, circle 2; once-only words are left out
    assert vocab.words[4:] == ("a", "red", "blue", "circle", "square")
    ids = vocab.encode("A red triangle!", max_len=30)
    assert ids == [vocab.start, 4, 5, vocab.unk, vocab.end]
    assert vocab.encode("a red circle left of", max_len=2) == [1, 4, 5, 2]
    assert vocab.decode([1, 4, 5, 3, 2, 6, 0]) == "a red <unk>"
    assert vocab.decode([0, 4, 0]) == "a"
    assert CaptionVocab.from_dict(vocab.as_dict()) == vocab
    with pytest.raises(ConfigError, match="starts with"):
        CaptionVocab.from_dict({"words": ["a", "b"]})
    with pytest.raises(ConfigError, match="outside this vocabulary"):
        vocab.decode([99])


def test_decoder_output_shapes_mask_and_attention():
    torch.manual_seed(0)
    vocab = CaptionVocab.build(CAPTIONS, min_count=1)
    model = build_caption_model(small(), get_backbone("tiny_cnn"), vocab, vectors=None)
    with pytest.raises(ConfigError, match="encoded no image"):
        model.grid()
    pairs = caption_pairs([CAPTIONS], vocab, max_len=30)
    tokens, lengths = pad_batch(pairs.tokens)
    out = model(torch.randn(3, 3, 32, 32), tokens, lengths)
    t = tokens.shape[1]
    assert out.scores.shape == (3, t - 1, len(vocab)) and out.alphas.shape == (3, t - 1, 16)
    assert model.grid() == (4, 4)
    assert out.mask.sum(1).tolist() == (lengths - 1).tolist()
    torch.testing.assert_close(out.alphas.sum(2), torch.ones(3, t - 1))


def test_loss_is_masked_cross_entropy_plus_the_attention_penalty():
    torch.manual_seed(0)
    vocab = CaptionVocab.build(CAPTIONS, min_count=1)
    model = build_caption_model(small(), get_backbone("tiny_cnn"), vocab, vectors=None)
    tokens, lengths = pad_batch(caption_pairs([CAPTIONS], vocab, max_len=30).tokens)
    out = model(torch.randn(3, 3, 32, 32), tokens, lengths)
    ce, count, penalty = 0.0, 0, 0.0
    for b in range(3):
        steps = int(lengths[b]) - 1
        for t in range(steps):
            ce -= F.log_softmax(out.scores[b, t], 0)[tokens[b, t + 1]].item()
            count += 1
        attended = out.alphas[b, :steps].sum(0)  # (P,)
        penalty += ((1 - attended) ** 2).sum().item()
    expected = ce / count + 0.5 * penalty / (3 * 16)
    assert caption_loss(out, tokens, alpha_c=0.5).item() == pytest.approx(expected, rel=1e-5)
    assert caption_loss(out, tokens, alpha_c=0).item() == pytest.approx(ce / count, rel=1e-5)


class DictVectors:
    def __init__(self, table):
        self.table = {w: np.asarray(v, np.float32) for w, v in table.items()}
        self.dim = len(next(iter(table.values())))
        self.source = VectorSource(kind="array", path="x", origin="test-vectors")

    def vector(self, token):
        return self.table.get(token)


@pytest.mark.parametrize("dim", [5, 12, 30])
def test_embeddings_start_from_the_words_vectors_where_known(dim):
    rng = np.random.default_rng(0)
    vocab = CaptionVocab.build(CAPTIONS, min_count=1)
    vectors = DictVectors({w: rng.standard_normal(dim) for w in ("red", "blue", "square")})
    torch.manual_seed(3)
    plain = build_caption_model(small(), get_backbone("tiny_cnn"), vocab, vectors=None)
    torch.manual_seed(3)
    model = build_caption_model(small(), get_backbone("tiny_cnn"), vocab, vectors=vectors)
    assert model.embedding_init == {"vectors": "test-vectors", "known": 3}
    emb, base = model.decoder.embedding.weight.detach(), plain.decoder.embedding.weight.detach()
    known = [vocab.words.index(w) for w in ("red", "blue", "square")]
    others = [i for i in range(len(vocab)) if i not in known]
    torch.testing.assert_close(emb[others], base[others])  # unknown words stay random
    target = INIT_RANGE / math.sqrt(3) * math.sqrt(12)
    torch.testing.assert_close(emb[known].norm(dim=1), torch.full((3,), target))
    if dim <= 12:  # a norm-preserving map keeps the words' angles
        src = F.normalize(
            torch.tensor(np.stack([vectors.table[w] for w in ("red", "blue", "square")])), dim=1
        )
        got = F.normalize(emb[known], dim=1)
        torch.testing.assert_close(got @ got.T, src @ src.T, atol=1e-5, rtol=1e-5)
    if dim == 12:
        torch.testing.assert_close(F.normalize(emb[known], dim=1), src)


def test_a_backbone_without_a_spatial_map_is_refused():
    flat = Backbone(torch.nn.Flatten(), dim=3, weights="none")
    with pytest.raises(ConfigError, match="no spatial feature map"):
        build_caption_model(small(), flat, CaptionVocab.build(["a"], min_count=1), vectors=None)


def test_the_decoder_learns_a_tiny_caption_set():
    """A few Adam steps on 6 images with distinct captions lower the loss clearly."""
    torch.manual_seed(0)
    texts = [f"a {c} shape on the {s}" for c in ("red", "blue", "green") for s in ("left", "right")]
    vocab = CaptionVocab.build(texts, min_count=1)
    model = build_caption_model(small(), get_backbone("tiny_cnn"), vocab, vectors=None)
    features = torch.randn(6, 16, 64)  # one distinct (P, C) map per caption
    tokens, lengths = pad_batch(caption_pairs([[t] for t in texts], vocab, max_len=30).tokens)
    optim = torch.optim.Adam(model.decoder.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = caption_loss(model.decoder(features, tokens, lengths), tokens, alpha_c=1.0)
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.3 * np.mean(losses[:5])


def test_sortish_batches_cover_every_pair_once_with_similar_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 30, size=1000)
    batches = sortish_batches(lengths, 8, np.random.default_rng(5))
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(1000)) and len(batches) == 125
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in batches])
    assert spread < 3  # random batches of 8 would spread ~20 tokens
    again = sortish_batches(lengths, 8, np.random.default_rng(5))
    assert all((a == b).all() for a, b in zip(batches, again, strict=True))
    tokens, lens = pad_batch([[1, 4, 2], [1, 2]])
    assert tokens.tolist() == [[1, 4, 2], [1, 2, 0]] and lens.tolist() == [3, 2]
    vocab = CaptionVocab.build(CAPTIONS, min_count=2)
    tokens, lens = pad_captions(vocab, ["A red circle!", "blue"], max_len=2)
    assert tokens.tolist() == [[1, 4, 5, 2], [1, 6, 2, 0]] and lens.tolist() == [4, 3]


def test_positions_add_each_locations_coordinates_and_start_as_no_offset():
    vocab = CaptionVocab.build(["a red square"], min_count=1)
    model = build_caption_model(small(), get_backbone("tiny_cnn"), vocab, vectors=None)
    decoder = model.decoder
    features = torch.randn(2, 9, decoder.encoder_dim)  # a 3 x 3 map
    assert torch.equal(decoder.locate(features), features)  # zero at first
    with torch.no_grad():
        decoder.position.weight.zero_()
        decoder.position.weight[0, 0] = 1.0  # channel 0 gets x
        decoder.position.weight[1, 1] = 1.0  # channel 1 gets y
    moved = decoder.locate(torch.zeros(1, 9, decoder.encoder_dim))[0]
    assert moved[:, 0].tolist() == [-1, 0, 1] * 3  # x along each row (row-major)
    assert moved[:, 1].tolist() == [-1] * 3 + [0] * 3 + [1] * 3
    assert torch.equal(moved[:, 2:], torch.zeros(9, decoder.encoder_dim - 2))
    with pytest.raises(ConfigError, match="square"):
        decoder.locate(torch.zeros(1, 6, decoder.encoder_dim))
    plain = build_caption_model(
        small(positions=False), get_backbone("tiny_cnn"), vocab, vectors=None
    )
    assert plain.decoder.position is None and "position" not in str(plain.state_dict().keys())


def test_a_captioner_saved_before_positions_existed_still_loads(tmp_path):
    from embplat.models.checkpoints import save_checkpoint
    from embplat.models.recipes.caption import load_caption_model
    from embplat.models.recipes.caption.saved import checkpoint_meta

    vocab = CaptionVocab.build(["a red square"], min_count=1)
    cfg = small(positions=False)
    model = build_caption_model(cfg, get_backbone("tiny_cnn"), vocab, vectors=None)
    meta = checkpoint_meta(
        model, vocab, cfg, name="old", encoder={"name": "tiny_cnn", "image_size": 32},
        epoch=1, metrics={},
    )  # fmt: skip
    del meta["config"]["positions"]  # as written before the options existed
    del meta["config"]["hypercolumns"]
    save_checkpoint(tmp_path / "old.pt", model, meta)
    loaded, _, _ = load_caption_model(tmp_path / "old.pt", device="cpu")
    assert loaded.decoder.position is None
    assert loaded.encoder.dim == 64  # tiny_cnn's last map, no hypercolumns


def test_hypercolumns_feed_the_decoder_their_wider_features(tmp_path):
    from embplat.models.checkpoints import save_checkpoint
    from embplat.models.recipes.caption import load_caption_model
    from embplat.models.recipes.caption.saved import checkpoint_meta

    vocab = CaptionVocab.build(["a red square"], min_count=1)
    backbone = get_backbone("efficientnet_lite0")
    model = build_caption_model(small(hypercolumns=True), backbone, vocab, vectors=None)
    assert model.encoder.trunk is backbone.hypercolumns
    assert model.decoder.encoder_dim == backbone.hypercolumns_dim == 1280 + 40 + 112
    model.eval()
    with torch.no_grad():
        features = model.encoder(torch.zeros(1, 3, 64, 64))
    assert features.shape == (1, 4, 1432) and model.encoder.grid == (2, 2)
    plain = build_caption_model(small(), backbone, vocab, vectors=None)
    assert plain.decoder.encoder_dim == 1280
    with pytest.raises(ConfigError, match="hypercolumn"):
        build_caption_model(small(hypercolumns=True), get_backbone("tiny_cnn"), vocab, vectors=None)
    meta = checkpoint_meta(
        model, vocab, model_cfg := small(hypercolumns=True), name="h",
        encoder={"name": "efficientnet_lite0", "image_size": 64}, epoch=1, metrics={},
    )  # fmt: skip
    assert meta["config"]["hypercolumns"] is model_cfg.hypercolumns
    save_checkpoint(tmp_path / "h.pt", model, meta)
    loaded, _, _ = load_caption_model(tmp_path / "h.pt", device="cpu")
    with torch.no_grad():
        torch.testing.assert_close(loaded.encoder(torch.zeros(1, 3, 64, 64)), features)


def test_coverage_starts_as_no_change_and_then_steers_attention_from_seen_locations():
    vocab = CaptionVocab.build(["a red square left of a blue circle"], min_count=1)
    backbone = get_backbone("tiny_cnn")
    torch.manual_seed(0)
    plain = build_caption_model(small(), backbone, vocab, vectors=None)
    torch.manual_seed(0)
    covered = build_caption_model(small(coverage=True), backbone, vocab, vectors=None)
    assert plain.decoder.attention.coverage is None
    tokens, lengths = pad_batch(
        caption_pairs([["a red square left of a blue circle"]], vocab, max_len=30).tokens
    )
    features = torch.randn(1, 16, 64, generator=torch.Generator().manual_seed(3))
    plain.eval(), covered.eval()
    with torch.no_grad():
        a = plain.decoder(features, tokens, lengths)
        b = covered.decoder(features, tokens, lengths)
        torch.testing.assert_close(a.scores, b.scores)  # zero coverage weights: the same
        # energy lowered where attention has been: later steps leave the first step's peak
        attention = covered.decoder.attention
        attention.coverage.weight.copy_(-10.0 * attention.score.weight.T.sign())
        c = covered.decoder(features, tokens, lengths)
    first_peak = int(a.alphas[0, 0].argmax())
    assert c.alphas[0, 1:, first_peak].mean() < a.alphas[0, 1:, first_peak].mean()
