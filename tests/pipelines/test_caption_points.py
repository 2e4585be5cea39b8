"""Caption points follow their image: removed (by id, or because the file is gone) from the
sentence index and from a matching model's collection, moved with the file, and found and
deleted by ``platform doctor`` when catalog rows were deleted behind the platform's back."""

import shutil

import numpy as np
import pytest
from sqlalchemy import delete

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.catalog.models import Caption, Embedding, Image
from embplat.errors import NotFoundError
from embplat.ingest.captioned import FLICKR8K_IMAGES
from embplat.pipelines import crossmodal, sentences
from embplat.pipelines.doctor import run_doctor
from embplat.pipelines.ingest import ingest_tree
from embplat.pipelines.remove import remove_images
from embplat.pipelines.train import train_recipe
from embplat.retrieval import collection_name

pytestmark = [pytest.mark.slow, pytest.mark.reliability]

MATCHING = "m"
SENTENCES = sentences.index_name("minilm")


@pytest.fixture
def home(context_factory, scenes_root, matching_config, tmp_path):
    """Captioned scenes (a private copy) in a matching model's collection and the
    sentence index: (context, scenes folder)."""
    tree = tmp_path / "scenes"
    shutil.copytree(scenes_root, tree)
    ctx = context_factory("exact", encoder="tiny_cnn")
    ingest_tree(ctx, tree)
    train_recipe(ctx, "matching", {**matching_config, "name": MATCHING})
    assert sentences.index_captions(ctx) == 300  # 60 images, 5 captions each
    return ctx, tree


def _indexes(ctx):
    """The matching collection and the sentence index."""
    with ctx.sessions() as session:
        dim = repo.get_model(session=session, name=SENTENCES).dim
    matching = ctx.spaces.index(collection_name(MATCHING), 64)
    return matching, ctx.spaces.index(collection_name(SENTENCES), dim)


def _caption_ids(ctx, image_id):
    """(matching, sentence index) caption point ids of the image's captions."""
    with ctx.sessions() as session:
        keys = repo.caption_keys(session=session, image_ids=[image_id])
    assert len(keys) == 5
    matching = [crossmodal.caption_point_id(k.sha256, k.ordinal, MATCHING) for k in keys]
    return matching, [sentences.caption_point_id(k.caption_id, SENTENCES) for k in keys]


def _mentions(index, image_id):
    """Points of ``index`` whose payload names ``image_id``."""
    _, payloads = index.get(index.ids())
    return [p for p in payloads if p.get("image_id") == image_id]


def _target(ctx):
    """A train image and the text of its first caption."""
    with ctx.sessions() as session:
        image_id = repo.split_captions(session=session, splits=["train"])[7][1]
        caption = repo.get_captions(session=session, image_ids=[image_id])[image_id][0]
    return image_id, caption.text


def test_removing_an_image_removes_its_caption_points_everywhere(home):
    ctx, _ = home
    image_id, text = _target(ctx)
    matching, sentence = _indexes(ctx)
    match_ids, sentence_ids = _caption_ids(ctx, image_id)
    before = (matching.count({"kind": "caption"}), sentence.count({"kind": "caption"}))
    assert matching.get(match_ids)[0].shape == (5, 64)
    assert sentence.get(sentence_ids)[0].shape[0] == 5
    hits, _ = sentences.search_sentences(ctx, text, model=SENTENCES, k=3)
    assert hits[0].image_id == image_id

    assert remove_images(ctx, [image_id]) == 1

    assert (matching.count({"kind": "caption"}), sentence.count({"kind": "caption"})) == (
        before[0] - 5,
        before[1] - 5,
    )
    for index, ids in ((matching, match_ids), (sentence, sentence_ids)):
        assert _mentions(index, image_id) == []
        for pid in ids:
            with pytest.raises(NotFoundError):
                index.get([pid])
    query = sentences.text_encoder("minilm", ctx).encode_texts([text])
    raw = sentence.search(np.asarray(query, np.float32), 20, {"kind": "caption"})[0]
    assert image_id not in {h.payload["image_id"] for h in raw}
    hits, _ = sentences.search_sentences(ctx, text, model=SENTENCES, k=5)
    assert image_id not in {h.image_id for h in hits}
    with ctx.sessions() as session:
        assert repo.caption_keys(session=session, image_ids=[image_id]) == []
    assert run_doctor(ctx).findings == []


def test_a_file_gone_from_the_folder_takes_its_caption_points_along(home):
    ctx, tree = home
    image_id, _ = _target(ctx)
    matching, sentence = _indexes(ctx)
    with ctx.sessions() as session:
        (path,) = [i.path for i in repo.get_images(session=session, ids=[image_id])]
    (tree / FLICKR8K_IMAGES[0] / path.rsplit("/", 1)[-1]).unlink()

    result = ingest_tree(ctx, tree)

    assert result.removed == 1
    assert _mentions(matching, image_id) == [] and _mentions(sentence, image_id) == []
    assert run_doctor(ctx).findings == []


def test_a_moved_tree_moves_its_caption_points(home):
    ctx, tree = home
    matching, sentence = _indexes(ctx)
    moved = tree.with_name("moved")
    shutil.move(tree, moved)

    result = ingest_tree(ctx, moved)

    assert result.moved == 60
    for index in (matching, sentence):
        _, payloads = index.get(index.ids())
        captions = [p["path"] for p in payloads if p["kind"] == "caption"]
        assert len(captions) == 300
        assert all(path.startswith(str(moved) + "/") for path in captions)


def test_doctor_finds_and_deletes_caption_points_left_by_deleted_rows(home):
    ctx, _ = home
    gone_image, _ = _target(ctx)
    matching, sentence = _indexes(ctx)
    with ctx.sessions() as session:
        rows = repo.split_captions(session=session, splits=["valid"])
    gone_caption = rows[0][0]  # one caption of another image
    with transaction(ctx.sessions) as session:
        session.execute(delete(Caption).where(Caption.id == gone_caption))
        session.execute(delete(Embedding).where(Embedding.image_id == gone_image))
        session.execute(delete(Image).where(Image.id == gone_image))  # its captions cascade

    found = run_doctor(ctx)

    checks = {(f.check, f.where): f.count for f in found.findings}
    assert checks[("orphan_caption_points", sentence.name)] == 6
    assert checks[("orphan_caption_points", matching.name)] == 6
    assert not found.healthy
    fixed = run_doctor(ctx, repair=True)
    assert fixed.healthy, fixed.as_dict()
    assert run_doctor(ctx).findings == []
    assert _mentions(matching, gone_image) == [] and _mentions(sentence, gone_image) == []
    for index in (matching, sentence):
        _, payloads = index.get(index.ids())
        assert gone_caption not in {p.get("caption_id") for p in payloads}
        assert index.count({"kind": "caption"}) == 300 - 6
