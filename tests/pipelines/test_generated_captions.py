"""Generated captions: a ``caption`` job of batches that stores captions and indexes them,
survives a crash mid-job (``jobs resume`` finishes it) and writes nothing twice."""

import os
import shutil
from pathlib import Path

import pytest

from embplat.catalog import repo
from embplat.ingest.scenes import build_scenes
from embplat.pipelines import generated_captions
from embplat.pipelines.generated_captions import caption_images
from embplat.pipelines.ingest import ingest_tree
from embplat.pipelines.jobs import resume_job
from embplat.pipelines.sentences import index_name, search_sentences
from embplat.pipelines.train import train_recipe
from embplat.retrieval import collection_name

TINY = {
    "encoder": "tiny_cnn", "freeze_epochs": 1, "attention_dim": 16, "decoder_dim": 16,
    "embed_dim": 8, "vectors": "none", "batch_size": 64, "device": "cpu", "name": "cap",
}  # fmt: skip


@pytest.fixture
def captioned_home(context_factory, scenes_root, tmp_path):
    ctx = context_factory("exact", encoder="tiny_cnn")
    ingest_tree(ctx, scenes_root, embed=False)
    train_recipe(ctx, "caption", TINY)
    photos = tmp_path / "photos" / "misc"
    photos.mkdir(parents=True)
    other = build_scenes(tmp_path / "other", images=10, seed=5, size=64)
    for i in range(10):
        name = f"scene_{i:05d}.jpg"
        shutil.copy(other / "Flicker8k_Dataset" / name, photos / name)
    ingest_tree(ctx, photos.parent, embed=False)
    with ctx.sessions() as session:
        ids = [r.image_id for r in repo.images_with_prefix(session=session, prefix=str(photos))]
    assert len(ids) == 10
    return ctx, ids


def _points(ctx):
    index = ctx.spaces.index(collection_name(index_name("glove")), 50)
    return index.count({"kind": "caption"})


def test_a_crash_mid_job_is_resumed_and_nothing_is_written_twice(captioned_home, monkeypatch):
    ctx, ids = captioned_home
    monkeypatch.setattr(generated_captions, "BATCH_SIZE", 4)  # 3 batches
    real, calls = generated_captions.index_captions, []

    def crash_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("worker killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(generated_captions, "index_captions", crash_on_second)
    with pytest.raises(RuntimeError, match="worker killed"):
        caption_images(ctx, ids, model="cap", beam=2, text_encoder_name="glove")
    with ctx.sessions() as session:
        job = repo.list_jobs(session=session)[0]
        assert (job.kind, job.state) == ("caption", "failed")
        assert len(repo.captioned_image_ids(session=session, image_ids=ids)) == 8
    assert _points(ctx) == 4  # the crashed batch stored captions but not their points

    out = resume_job(ctx, job.id)
    assert (out["kind"], out["resumed"], out["state"]) == ("caption", 2, "succeeded")
    with ctx.sessions() as session:
        captions = repo.get_captions(session=session, image_ids=ids)
    assert sorted(captions) == sorted(ids)
    assert all(
        [(c.source, c.model) for c in found] == [("generated", "cap")]
        for found in captions.values()
    )
    assert _points(ctx) == 10

    again = caption_images(ctx, ids, model="cap", text_encoder_name="glove")
    assert again["captioned"] == 0  # only uncaptioned images by default
    redo = caption_images(ctx, ids, model="cap", text_encoder_name="glove", uncaptioned_only=False)
    assert redo["captioned"] == 10 and _points(ctx) == 10  # same rows, same point ids

    text = captions[ids[3]][0].text
    hits, used = search_sentences(ctx, text, model=index_name("glove"), k=10)
    assert used == "sentences-glove" and len({h.image_id for h in hits}) == len(hits)
    assert ids[3] in {h.image_id for h in hits if h.score == hits[0].score}


def test_a_model_that_does_not_caption_is_refused_before_any_job(captioned_home):
    from embplat.errors import ConfigError

    ctx, ids = captioned_home
    with pytest.raises(ConfigError, match="does not generate captions"):
        caption_images(ctx, ids, model=ctx.spaces.space().key)
    with pytest.raises(ConfigError, match="--beam"):
        caption_images(ctx, ids, model="cap", beam=11)
    with ctx.sessions() as session:
        assert [j.kind for j in repo.list_jobs(session=session)].count("caption") == 0


def test_a_captioner_is_built_once_per_context_and_again_after_retraining(captioned_home):
    from embplat.pipelines.captioning import load_captioner

    ctx, _ = captioned_home
    first = load_captioner(ctx, "cap")
    assert load_captioner(ctx, "cap") is first  # a job's batches reuse it
    with ctx.sessions() as session:
        checkpoint = (repo.get_model(session=session, name="cap").config or {})["checkpoint"]
    path = ctx.home / checkpoint
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # a new file there
    again = load_captioner(ctx, "cap")
    assert again is not first and again.name == "cap"


def test_the_python_api_and_the_http_service_caption_as_the_cli_does(captioned_home, tmp_path):
    from fastapi.testclient import TestClient

    from embplat.api import Platform
    from embplat.config import load_settings
    from embplat.pipelines.captioning import caption_files
    from embplat.serve.app import create_app

    ctx, ids = captioned_home
    with ctx.sessions() as session:
        path = repo.get_images(session=session, ids=ids[:1])[0].path
    [direct] = caption_files(ctx, [path], model="cap", beam=3, n=2)
    settings = load_settings(home=ctx.home, **{"embed.encoder": "tiny_cnn"})
    settings.catalog.url = None
    platform = Platform(settings=settings, context=ctx)
    got = platform.caption(path, model="cap", beam=3, n=2)
    assert (got.source, got.model, got.beam) == (path, "cap", 3)
    assert [(c.text, c.logprob) for c in got.captions] == [
        (c.text, c.logprob) for c in direct.captions
    ]
    from_bytes = platform.caption(Path(path).read_bytes(), model="cap", beam=3, n=2)
    assert from_bytes.best == got.best and from_bytes.source == "<image 0>"
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    answers = platform.caption_many([path, broken], model="cap", beam=3)
    assert answers[0].best == got.best and "error" in answers[1].to_dict()

    client = TestClient(create_app(platform))
    files = {"image": ("s.jpg", Path(path).read_bytes(), "image/jpeg")}
    served = client.post("/caption", params={"model": "cap", "beam": 3, "n": 2}, files=files)
    assert served.status_code == 200, served.text
    [answer] = served.json()["results"]
    assert [c["text"] for c in answer["captions"]] == [c.text for c in got.captions]
    assert client.post("/caption", params={"beam": 11}, files=files).status_code == 422
    bad = {"image": ("x.jpg", b"not a jpeg", "image/jpeg")}
    assert client.post("/caption", params={"model": "cap"}, files=bad).status_code == 422
