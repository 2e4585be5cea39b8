"""CaptionTrainer: both phases, per-epoch reports and checkpoints hook, the best epoch's
weights restored, early stopping, and a captioner that learns to name solid colours."""

import numpy as np
import pytest
import torch

from embplat.errors import DataError, NotFoundError
from embplat.evaluation.bleu import corpus_bleu_scores, top5_accuracy
from embplat.models.encoders import IMAGENET_MEAN, IMAGENET_STD, get_backbone
from embplat.models.recipes.caption import (
    CaptionConfig,
    CaptionSet,
    CaptionTrainer,
    CaptionVocab,
    build_caption_model,
    greedy_decode,
)

COLOURS = {"red": (1, 0, 0), "green": (0, 1, 0), "blue": (0, 0, 1), "yellow": (1, 1, 0)}
NAMES = list(COLOURS)
MEAN, STD = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These models are tiny: a second intra-op thread costs more than it gives (and far
    more when another process holds a core)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def colour_set(n, captions, seed=0):
    """``n`` solid-colour 32 px images (colour = row % 4, slight noise), captioned by colour."""
    gen = torch.Generator().manual_seed(seed)
    solid = [torch.tensor(COLOURS[NAMES[r % 4]], dtype=torch.float32) for r in range(n)]
    pixels = torch.stack([c.view(3, 1, 1).expand(3, 32, 32) for c in solid])
    pixels = (pixels + 0.05 * torch.rand(pixels.shape, generator=gen)).clamp(0, 1)
    images = (pixels - MEAN) / STD
    return CaptionSet(
        load=lambda rows: images[list(rows)],
        captions=[[c.format(NAMES[r % 4]) for c in captions] for r in range(n)],
    )


def setup(captions, n_train=8, **kw):
    train, valid = colour_set(n_train, captions), colour_set(4, captions, seed=1)
    vocab = CaptionVocab.build([c for refs in train.captions for c in refs], min_count=1)
    base = dict(attention_dim=16, decoder_dim=32, embed_dim=16, dropout=0.0, batch_size=4)
    cfg = CaptionConfig(encoder="tiny_cnn", lr=1e-2, device="cpu", max_len=8, **{**base, **kw})
    torch.manual_seed(0)
    model = build_caption_model(cfg, get_backbone("tiny_cnn"), vocab, vectors=None)
    return train, valid, vocab, cfg, model


def scripted_bleu(values):
    calls = iter(values)

    def bleu(hypotheses, references):
        assert len(hypotheses) == len(references) == 4
        return {"bleu1": 0.9, "bleu2": 0.8, "bleu3": 0.7, "bleu4": next(calls)}

    return bleu


def state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_both_phases_run_report_each_epoch_and_keep_the_best_weights():
    train, valid, vocab, cfg, model = setup(["a {} image"], freeze_epochs=2, unfreeze_epochs=1)
    encoder0 = state(model.encoder)
    snapshots, at_fine_tune, done = [], [], []

    def load(rows, inner=train.load):
        if len(snapshots) == 2 and not at_fine_tune:  # the fine-tune phase's first batch
            at_fine_tune.append(state(model))
        return inner(rows)

    trainer = CaptionTrainer(
        model, vocab, cfg, device="cpu", bleu=scripted_bleu([0.5, 0.1, 0.3]), top5=top5_accuracy
    )
    with pytest.raises(NotFoundError):
        trainer.best()
    reports = trainer.fit(
        CaptionSet(load, train.captions),
        valid,
        on_epoch=lambda report, m: snapshots.append((report, state(m))),
        progress=done.append,
    )
    assert [(r.epoch, r.phase) for r in reports] == [(1, "frozen"), (2, "frozen"), (3, "fine-tune")]
    assert [r for r, _ in snapshots] == reports and not any(r.stopped_early for r in reports)
    assert sum(done) == 3 * 8  # every (image, caption) pair once per epoch
    assert all(0 <= r.top5 <= 1 and r.loss > 0 and r.images_per_s > 0 for r in reports)
    frozen_enc = {
        k[len("encoder.") :]: v for k, v in snapshots[1][1].items() if k.startswith("encoder.")
    }
    assert same(frozen_enc, encoder0)  # the frozen phase leaves the encoder alone
    tuned_enc = {
        k[len("encoder.") :]: v for k, v in snapshots[2][1].items() if k.startswith("encoder.")
    }
    assert not same(tuned_enc, encoder0)  # fine-tuning trains it
    assert trainer.best() is reports[0]
    assert same(at_fine_tune[0], snapshots[0][1])  # fine-tuning starts from the best frozen epoch
    assert same(state(model), snapshots[0][1])  # and the model ends at the best epoch
    assert all(p.requires_grad for p in model.parameters())


def test_early_stopping_ends_each_phase_when_bleu4_cannot_improve():
    # three-word captions have no 4-gram: BLEU-4 is 0 every epoch
    train, valid, vocab, cfg, model = setup(
        ["a {} image"], freeze_epochs=4, unfreeze_epochs=3, patience=1
    )
    trainer = CaptionTrainer(
        model, vocab, cfg, device="cpu", bleu=corpus_bleu_scores, top5=top5_accuracy
    )
    reports = trainer.fit(train, valid, on_epoch=lambda r, m: None)
    assert [(r.phase, r.stopped_early) for r in reports] == [
        ("frozen", False),
        ("frozen", True),
        ("fine-tune", True),
    ]
    assert all(r.bleu["bleu4"] == 0.0 for r in reports)
    assert trainer.best().epoch == 1  # ties go to the earlier epoch


def test_empty_splits_and_captionless_images_are_refused():
    train, valid, vocab, cfg, model = setup(["a {} image"])
    trainer = CaptionTrainer(
        model, vocab, cfg, device="cpu", bleu=corpus_bleu_scores, top5=top5_accuracy
    )
    with pytest.raises(DataError, match="train and valid images"):
        trainer.fit(train, CaptionSet(valid.load, []), on_epoch=lambda r, m: None)
    with pytest.raises(DataError, match="image row 1 has no caption"):
        CaptionSet(valid.load, [["a"], []])


def test_the_captioner_learns_to_name_solid_colours():
    """Frozen random tiny_cnn features, 320 steps: greedy captions of held-out images are
    exactly their references (BLEU-4 = 1); an untrained decoder is far from that."""
    captions = ["a plain {} picture here", "the whole image is {}"]
    train, valid, vocab, cfg, model = setup(captions, 16, freeze_epochs=40, patience=40)
    with torch.no_grad():
        features = model.encoder(valid.load(range(4)))
    before = greedy_decode(model.decoder, features, max_len=8, end=2, start=1)
    texts = [vocab.decode(h.tokens) for h in before]
    assert corpus_bleu_scores(texts, valid.captions)["bleu4"] < 0.2
    trainer = CaptionTrainer(
        model, vocab, cfg, device="cpu", bleu=corpus_bleu_scores, top5=top5_accuracy
    )
    trainer.fit(train, valid, on_epoch=lambda r, m: None)
    model.eval()
    with torch.no_grad():
        features = model.encoder(valid.load(range(4)))
    after = greedy_decode(model.decoder, features, max_len=8, end=2, start=1)
    texts = [vocab.decode(h.tokens) for h in after]
    assert corpus_bleu_scores(texts, valid.captions)["bleu4"] == pytest.approx(1.0)
    assert all(NAMES[i] in text.split() for i, text in enumerate(texts))
    assert trainer.best().bleu["bleu4"] == pytest.approx(1.0) and trainer.best().top5 > 0.9
    assert np.mean([r.loss for r in trainer.reports[-3:]]) < 0.5 * trainer.reports[0].loss


def test_fine_tuning_trains_the_encoder_but_keeps_its_batch_norm_statistics():
    train, valid = colour_set(8, ["a {} image"]), colour_set(4, ["a {} image"], seed=1)
    vocab = CaptionVocab.build([c for refs in train.captions for c in refs], min_count=1)
    cfg = CaptionConfig(
        encoder="resnet18", weights="random", lr=1e-2, device="cpu", max_len=8, attention_dim=8,
        decoder_dim=16, embed_dim=8, dropout=0.0, batch_size=4, freeze_epochs=0, unfreeze_epochs=1,
    )  # fmt: skip
    model = build_caption_model(cfg, get_backbone("resnet18", "random"), vocab, vectors=None)
    bn = model.encoder.trunk[1]  # resnet18's first BatchNorm2d
    stats, conv = bn.running_mean.clone(), model.encoder.trunk[0].weight.detach().clone()
    trainer = CaptionTrainer(
        model, vocab, cfg, device="cpu", bleu=corpus_bleu_scores, top5=top5_accuracy
    )
    trainer.fit(train, valid, on_epoch=lambda report, net: None)
    assert torch.equal(bn.running_mean, stats)  # few images a batch: the pretrained stats stay
    assert not torch.equal(model.encoder.trunk[0].weight, conv)  # the encoder did train
