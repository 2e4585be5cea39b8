"""Sentence search and captions of an image with a trained matching model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from embplat.catalog import repo
from embplat.errors import ConfigError, DataError
from embplat.pipelines.crossmodal import (
    captions_of_image,
    is_caption_model,
    load_model,
    search_by_sentence,
)
from embplat.pipelines.evaluate_matching import exact_scores, split_points


def _train_scores(ctx):
    """(I, C) scores of the train split by the model itself, with its points."""
    points, _ = split_points(ctx, "m", "train")
    return points, exact_scores(points, "infonce")


def test_a_learnt_training_caption_finds_its_image_first(matching_trained):
    ctx = matching_trained
    points, scores = _train_scores(ctx)
    ranks = (scores >= scores[points.image_of_text, np.arange(scores.shape[1])]).sum(axis=0)
    assert (ranks == 1).mean() > 3 / 48  # chance: 1 in 48
    with ctx.sessions() as session:
        texts = dict((c[0], c[3]) for c in repo.split_captions(session=session, splits=["train"]))
    margin = np.sort(scores, axis=0)
    gaps = margin[-1] - margin[-2]
    learnt = next(c for c in np.argsort(-gaps) if ranks[c] == 1)
    image_id = points.image_ids[points.image_of_text[learnt]]
    hits = search_by_sentence(ctx, texts[points.caption_ids[learnt]], model="m", k=5)
    assert hits[0].image_id == image_id and len(hits) == 5
    assert hits[0].score >= hits[1].score
    only_test = search_by_sentence(ctx, "a red circle", model="m", k=60, flt={"split": "test"})
    assert len(only_test) == 6


def test_the_sentence_is_embedded_by_the_models_text_tower(matching_trained):
    model = load_model(matching_trained, "m")
    with torch.no_grad():
        a = model.embed_texts(model.text.prepare(["a red circle left of a blue square"]))
    assert a.shape == (1, 64) and float(a.norm()) == pytest.approx(1.0, abs=1e-5)


def test_captions_of_an_image_come_first_for_a_learnt_image(matching_trained):
    ctx = matching_trained
    points, scores = _train_scores(ctx)
    best = scores.argmax(axis=1)  # each image's best caption
    right = points.image_of_text[best] == np.arange(len(points.image_ids))
    assert right.mean() > 3 / 48
    gaps = np.sort(scores, axis=1)[:, -1] - np.sort(scores, axis=1)[:, -2]
    row = next(r for r in np.argsort(-gaps) if right[r])
    with ctx.sessions() as session:
        image = repo.get_images(session=session, ids=[points.image_ids[row]])[0]
    hits = captions_of_image(ctx, Path(image.path), model="m", k=3)
    assert hits[0].image_id == image.id and hits[0].path == image.path
    assert len(hits) == 3 and all(h.text for h in hits)
    # caption points carry their image's class, so a class filter applies to them too
    same = captions_of_image(ctx, Path(image.path), model="m", k=3, flt={"class": image.label.name})
    assert [h.image_id for h in same] == [h.image_id for h in hits]
    assert captions_of_image(ctx, Path(image.path), model="m", k=3, flt={"class": "zzz"}) == []


def test_bad_queries(matching_trained, tmp_path):
    ctx = matching_trained
    assert is_caption_model(ctx, "m") and not is_caption_model(ctx, None)
    with pytest.raises(DataError, match="--text is empty"):
        search_by_sentence(ctx, "  ", model="m")
    with pytest.raises(DataError, match="--k must be at least 1"):
        search_by_sentence(ctx, "a red circle", model="m", k=0)
    with pytest.raises(DataError, match="none of its words has a vector"):
        search_by_sentence(ctx, "ぁぃぅ", model="m")  # glove knows none of these words
    with pytest.raises(DataError, match=r"missing\.png"):
        captions_of_image(ctx, tmp_path / "missing.png", model="m")
    with pytest.raises(ConfigError, match="not an image–caption"):
        load_model(ctx, ctx.spaces.space().key)  # the active encoder
