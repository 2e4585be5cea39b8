"""The matching model: config, towers, the three losses (against their papers' formulas),
and short trainings on synthetic pairs (class prototypes + noise, templated captions)."""

import numpy as np
import pytest
import torch

from embplat.errors import ConfigError, DataError
from embplat.evaluation.crossmodal import crossmodal_metrics
from embplat.models.recipes.matching import (
    MatchingConfig,
    PairSet,
    PairTrainer,
    build_matching_loss,
    build_matching_model,
    fit_pairs,
    order_violation,
    pair_scores,
)

CLASSES = ["dog", "cat", "car", "boat", "tree", "house", "bird", "horse", "train", "plane"]
TEMPLATES = [
    "a photo of a {}",
    "there is a {} here",
    "a {} in the picture",
    "this shows one {}",
    "an image with a {}",
]


def pairs(rng, prototypes, per_class):
    """``per_class`` images per class, five captions naming the class per image."""
    feats, texts, owners = [], [], []
    for c, name in enumerate(CLASSES):
        for _ in range(per_class):
            owners += [len(feats)] * len(TEMPLATES)
            feats.append(prototypes[c] + 0.5 * rng.standard_normal(prototypes.shape[1]))
            texts += [t.format(name) for t in TEMPLATES]
    return PairSet(np.asarray(feats, np.float32), texts, np.asarray(owners))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    prototypes = rng.standard_normal((len(CLASSES), 32))
    return pairs(rng, prototypes, 8), pairs(rng, prototypes, 4)


def small(**kw):
    return MatchingConfig(embed_dim=64, text_hidden=64, batch_size=32, lr=2e-3, device="cpu", **kw)


@pytest.mark.parametrize("text_encoder", ["glove", "gru"])
@pytest.mark.parametrize("loss", ["order", "vse", "infonce"])
def test_each_loss_trains_to_well_above_chance(data, text_encoder, loss, tmp_path):
    train, valid = data
    fit = fit_pairs(
        small(text_encoder=text_encoder, loss=loss),
        train,
        valid,
        steps=60,
        evaluate=crossmodal_metrics,
        home=tmp_path,
    )
    assert np.mean(fit.losses[-5:]) < 0.7 * np.mean(fit.losses[:5])
    # chance: R@5 = 5/40 images; a caption names a class, so the 4 images of its class tie
    # at best (text→image R@1 ≤ 0.25), while R@5 can reach 1
    assert fit.baseline["t2i_r5"] < 0.25
    assert fit.metrics["t2i_r5"] > 0.7 and fit.metrics["i2t_r5"] > 0.9
    assert fit.metrics["t2i_mean_rank"] < 5 < 10 < fit.baseline["t2i_mean_rank"]


def test_minilm_towers_train_too(data, tmp_path):
    train, valid = data
    fit = fit_pairs(
        small(text_encoder="minilm", loss="infonce"),
        train,
        valid,
        steps=20,
        evaluate=crossmodal_metrics,
        home=tmp_path,
    )
    assert fit.model.text.encoder.dim == 384 and not fit.model.text.trainable
    assert fit.losses[-1] < fit.losses[0]
    assert fit.metrics["t2i_r5"] > 0.8


def test_order_embeddings_live_in_the_positive_orthant(data, tmp_path):
    train, _ = data
    model = build_matching_model(
        small(text_encoder="gru"), image_dim=32, train_texts=train.texts, home=tmp_path
    )
    images = model.embed_images(torch.as_tensor(train.features[:4]))
    texts = model.embed_texts(model.text.prepare(train.texts[:6]))
    for x in (images, texts):
        assert (x >= 0).all() and torch.allclose(x.norm(dim=1), torch.ones(len(x)))
    assert torch.allclose(model.scores(images, texts), -order_violation(texts, images).T)


def test_order_violation_is_zero_when_the_image_lies_above_its_caption():
    caption = torch.tensor([[0.2, 0.1]])
    images = torch.tensor([[0.5, 0.3], [0.1, 0.3]])
    assert order_violation(caption, images).tolist() == [[0.0, pytest.approx(0.01)]]
    assert pair_scores("order", images, caption).flatten().tolist() == [0.0, pytest.approx(-0.01)]
    assert torch.allclose(pair_scores("vse", images, caption), images @ caption.T)
    assert pair_scores("order", images[:0], caption).shape == (0, 1)


def random_batch(n=6, dim=8, seed=0, positive=False):
    g = torch.Generator().manual_seed(seed)
    images, texts = torch.randn(n, dim, generator=g), torch.randn(n, dim, generator=g)
    images, texts = (torch.nn.functional.normalize(x, dim=1) for x in (images, texts))
    if positive:
        images, texts = images.abs(), texts.abs()
    return images, texts, torch.arange(n)


def test_order_loss_is_the_reference_contrastive_hinge():
    """Vendrov et al.'s loss: every caption against every other image and vice versa."""
    images, texts, ids = random_batch(positive=True)
    margin = 0.05
    errors = order_violation(texts, images)  # (C, I)
    positive = errors.diagonal()
    off = ~torch.eye(len(ids), dtype=torch.bool)
    per_caption = (margin - errors + positive[:, None]).clamp(min=0)[off].mean()
    per_image = (margin - errors + positive[None, :]).clamp(min=0)[off].mean()
    loss = build_matching_loss("order", margin=margin)(images, texts, ids)
    assert loss.item() == pytest.approx(((per_caption + per_image) / 2).item(), rel=1e-5)


def vse_by_hand(sims, ids, margin):
    """VSE++ per direction: hardest positive against hardest negative, by label masks."""
    same = ids[:, None] == ids[None, :]
    hinge = margin - sims.masked_fill(~same, 9).min(dim=1).values
    return (hinge + sims.masked_fill(same, -9).max(dim=1).values).clamp(min=0).mean()


@pytest.mark.parametrize("duplicate", [False, True], ids=["distinct", "two-captions-one-image"])
def test_vse_loss_uses_the_hardest_negative(duplicate):
    images, texts, ids = random_batch(seed=1)
    if duplicate:  # pairs 0 and 1 show one image: caption 1 is no negative of image 0
        images[1], ids = images[0], torch.tensor([0, 0, 2, 3, 4, 5])
    sims = images @ texts.T
    expected = (vse_by_hand(sims, ids, 0.2) + vse_by_hand(sims.T, ids, 0.2)) / 2
    loss = build_matching_loss("vse", margin=0.2)(images, texts, ids)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_infonce_is_symmetric_cross_entropy_with_a_learnt_temperature():
    images, texts, ids = random_batch(seed=2)
    loss_fn = build_matching_loss("infonce", margin=0.0, temperature=0.1)
    logits = images @ texts.T / 0.1
    ce = torch.nn.functional.cross_entropy
    expected = (ce(logits, ids) + ce(logits.T, ids)) / 2
    loss = loss_fn(images, texts, ids)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)
    (temperature,) = list(loss_fn.parameters())
    loss.backward()
    assert temperature.grad is not None and temperature.grad != 0


def test_a_model_rebuilds_from_its_spec(data, tmp_path):
    train, valid = data
    cfg = small(text_encoder="gru", loss="vse")
    model = build_matching_model(cfg, image_dim=32, train_texts=train.texts, home=tmp_path)
    trainer = PairTrainer(model, build_matching_loss("vse", margin=0.2), train, cfg=cfg)
    trainer.train(3)
    spec = model.spec
    again = build_matching_model(
        MatchingConfig.from_dict(spec["config"]),
        image_dim=spec["image_dim"],
        vocabulary=spec["vocabulary"],
        home=tmp_path,
    )
    again.load_state_dict(model.state_dict())
    assert np.allclose(
        PairTrainer(again, build_matching_loss("vse", margin=0.2), train, cfg=cfg).scores(valid),
        trainer.scores(valid),
        atol=1e-5,
    )
    assert any(k.startswith("text.encoder.gru") for k in model.state_dict())


def test_glove_tower_trains_only_its_projection(tmp_path):
    model = build_matching_model(small(text_encoder="glove"), image_dim=32, home=tmp_path)
    assert {k.split(".")[1] for k in model.state_dict() if k.startswith("text.")} == {"proj"}
    assert model.text.prepare(["a dog"]).shape == (1, 50)


def test_config_refuses_bad_values():
    assert MatchingConfig().epochs == 15 and MatchingConfig(loss="vse").loss_margin == 0.2
    assert MatchingConfig(margin=0.1).loss_margin == 0.1
    assert MatchingConfig.from_dict(MatchingConfig(loss="infonce").as_dict()).loss == "infonce"
    with pytest.raises(ConfigError, match=r"unknown matching loss 'triplet'.*order, vse, infonce"):
        MatchingConfig(loss="triplet")
    with pytest.raises(ConfigError, match="unknown text encoder 'bert'"):
        MatchingConfig(text_encoder="bert")
    with pytest.raises(ConfigError, match="batches of 2 or more"):
        MatchingConfig(batch_size=1)


def test_pairs_must_name_existing_images():
    with pytest.raises(DataError, match=r"outside 0\.\.1"):
        PairSet(np.zeros((2, 4), np.float32), ["a", "b"], np.array([0, 2]))
    with pytest.raises(DataError, match="one image per caption"):
        PairSet(np.zeros((2, 4), np.float32), ["a"], np.array([0, 1]))


def test_an_empty_caption_is_an_error_naming_it(tmp_path):
    bad = PairSet(np.zeros((2, 4), np.float32), ["a dog", "  "], np.array([0, 1]))
    with pytest.raises(DataError, match="text 1 '  ' has no words"):
        fit_pairs(
            small(text_encoder="gru"), bad, bad, steps=1, evaluate=crossmodal_metrics, home=tmp_path
        )
