"""Local mode end to end on real Fashion-MNIST images and the real EfficientNet-Lite0 weights."""

import os
import shutil

import pytest
import torch
from sqlalchemy import func, select

from embplat.catalog import repo
from embplat.catalog.models import Embedding, Image
from embplat.errors import ConfigError, DataError, IndexEmptyError, NotFoundError
from embplat.ingest.fashion_mnist import build_fashion_mnist
from embplat.jobs.runner import InProcessRunner
from embplat.pipelines import embed
from embplat.pipelines.classify import classify
from embplat.pipelines.ingest import enrol_class, ingest_tree
from embplat.pipelines.jobs import resume_job
from embplat.pipelines.query import search_by_image
from embplat.retrieval import point_id

pytestmark = pytest.mark.slow


def _files(root):
    return sorted(p for p in root.rglob("*.jpg"))


def _consistent(ctx):
    """Catalog embeddings and index points agree, and nothing is duplicated."""
    space = ctx.spaces.space()
    with ctx.sessions() as s:
        recorded = s.scalar(
            select(func.count())
            .select_from(Embedding)
            .where(Embedding.collection_id == space.collection_id)
        )
        images = s.scalar(select(func.count()).select_from(Image))
    assert space.index.count(None) == recorded
    return recorded, images


def test_ingest_is_complete_split_and_idempotent(context_factory, tree_copy):
    ctx = context_factory("nmslib")
    first = ingest_tree(ctx, tree_copy)
    n = len(_files(tree_copy))
    assert (first.layout, first.scanned, first.added, first.embedded) == ("awa2", n, n, n)
    assert first.skipped == []
    with ctx.sessions() as s:
        counts = {c.name: (c.role, split) for c, split in repo.class_counts(session=s)}
    assert counts["sandal"][0] == "unseen" and set(counts["sandal"][1]) == {"test"}
    assert counts["coat"][0] == "seen" and "test" not in counts["coat"][1]
    assert sum(v[1].get("valid", 0) for v in counts.values()) > 0  # hash split gives valid images
    again = ingest_tree(ctx, tree_copy)
    assert (again.added, again.already, again.embedded) == (0, n, 0)
    assert _consistent(ctx) == (n, n)


@pytest.mark.reliability
def test_bad_files_are_skipped_and_reported(context_factory, tree_copy, bad_images):
    coat = tree_copy / "coat"
    broken = ["truncated_jpeg", "zero_byte", "text_as_jpg", "bomb_png"]
    odd = [
        "cmyk_jpeg",
        "gray16_png",
        "palette_transparent_png",
        "rgba_png",
        "gray_png",
        "exif_rotated_jpeg",
    ]
    for name in broken + odd:
        shutil.copy(bad_images[name], coat / bad_images[name].name)
    unicode_file = coat / bad_images["unicode_name"].name
    shutil.copy(bad_images["unicode_name"], unicode_file)
    shutil.copy(bad_images["unicode_name"], coat / "dup_b.jpg")  # same bytes, other name
    ctx = context_factory("exact", **{"ingest.max_pixels": 10_000_000})
    result = ingest_tree(ctx, tree_copy)
    skipped = dict(result.skipped)
    assert {str(coat / bad_images[n].name) for n in broken} <= set(skipped)
    assert skipped[str(unicode_file)] == "duplicate content of " + str(coat / "dup_b.jpg")
    assert all(str(coat / bad_images[n].name) not in skipped for n in odd)
    files = sum(1 for p in tree_copy.rglob("*") if p.is_file())
    assert result.embedded == result.added == files - len(skipped)
    assert _consistent(ctx)[0] == result.added


def test_classify_search_and_enrol_a_new_class(
    context_factory, tmp_path, tree_copy, fmnist_queries
):
    fmnist_root = tree_copy
    shutil.rmtree(tree_copy / "bag")  # bag arrives later, enrolled without retraining
    ctx = context_factory("nmslib")
    with pytest.raises(IndexEmptyError, match="platform ingest"):
        classify(ctx, [next(iter(_files(fmnist_queries)))])
    result = ingest_tree(ctx, tree_copy)
    assert any("bag" in w and "classes.txt" in w for w in result.warnings), result.warnings
    seen = [p for p in _files(fmnist_queries) if p.parent.name not in {"sandal", "shirt", "bag"}]
    preds = classify(ctx, seen, k=5)
    accuracy = sum(p.label == q.parent.name for p, q in zip(preds, seen, strict=False)) / len(seen)
    assert accuracy >= 0.6, accuracy  # 7 classes; chance is ~0.14
    p = preds[0]
    assert len(p.neighbours) == 5 and p.neighbours[0].score >= p.neighbours[-1].score
    assert 0 < p.confidence <= 1 and p.tallies[p.label] == max(p.tallies.values())
    assert all(n.label not in {"sandal", "shirt"} for q in preds for n in q.neighbours)

    hits, notes = search_by_image(ctx, fmnist_root / "coat" / "coat_00001.jpg", k=3)
    assert hits[0].path.endswith("coat_00001.jpg") and hits[0].score == pytest.approx(1, abs=1e-3)
    assert notes == []

    many = classify(ctx, seen[:1], k=10_000)[0]
    assert many.k == ctx.spaces.space().index.count({"kind": "image", "split": "train"})
    assert "larger than" in many.notes[0]

    bag_query = fmnist_queries / "bag" / "bag_00001.jpg"
    assert classify(ctx, [bag_query], k=5)[0].label != "bag"  # not enrolled yet
    bags = build_fashion_mnist(tmp_path / "bags", per_class=15, classes=["bag"], offset=100)
    enrolled = enrol_class(ctx, "bag", bags / "bag")
    assert enrolled.embedded == 15
    assert classify(ctx, [bag_query], k=5)[0].label == "bag"


@pytest.mark.reliability
def test_query_errors_name_the_problem(context_factory, fmnist_root, tmp_path):
    ctx = context_factory("exact")
    ingest_tree(ctx, fmnist_root)
    with pytest.raises(DataError, match=r"nope\.jpg does not exist"):
        classify(ctx, [tmp_path / "nope.jpg"])
    with pytest.raises(DataError, match="--k must be at least 1"):
        classify(ctx, [fmnist_root / "coat" / "coat_00001.jpg"], k=0)
    with pytest.raises(DataError, match="does not exist"):
        enrol_class(ctx, "x", tmp_path / "missing")


@pytest.mark.reliability
def test_crash_mid_embedding_leaves_catalog_and_index_consistent(
    context_factory, fmnist_root, monkeypatch
):
    ctx = context_factory("nmslib", **{"ingest.batch_size": 32})
    index = ctx.spaces.space().index
    real_upsert, calls = index.upsert, {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("power cut")
        return real_upsert(*args, **kwargs)

    monkeypatch.setattr(index, "upsert", flaky)
    with pytest.raises(RuntimeError, match="power cut"):
        ingest_tree(ctx, fmnist_root)
    recorded, images = _consistent(ctx)
    assert 0 < recorded < images
    monkeypatch.setattr(index, "upsert", real_upsert)
    result = ingest_tree(ctx, fmnist_root)
    assert result.added == 0 and result.embedded == images - recorded
    assert _consistent(ctx) == (images, images)
    with ctx.sessions() as s:
        states = [j.state for j in repo.list_jobs(session=s)]
    assert states == ["succeeded", "failed"]


@pytest.mark.reliability
def test_resume_finishes_a_crashed_job_and_refuses_jobs_without_batches(
    context_factory, fmnist_root, monkeypatch, workers
):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    ctx = context_factory("exact", encoder="tiny_cnn", **{"ingest.batch_size": 16})
    real, calls = embed.run_embed_batch, {"n": 0}

    def crash_on_third(ctx, job_id, seq, progress=None):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("power cut")
        return real(ctx, job_id, seq, progress=progress)

    monkeypatch.setattr(embed, "run_embed_batch", crash_on_third)
    with pytest.raises(RuntimeError, match="power cut"):
        ingest_tree(ctx, fmnist_root)
    monkeypatch.setattr(embed, "run_embed_batch", real)
    with ctx.sessions() as s:
        [job] = repo.list_jobs(session=s)
    assert job.state == "failed" and _consistent(ctx) == (32, 120)

    workers.attach(ctx)  # server mode: back to the workers
    queued = resume_job(ctx, job.id)
    assert (queued["queued"], queued["state"]) == (6, "running")
    assert workers.sent == [(job.id, [2, 3, 4, 5, 6, 7])]
    ctx.runner = InProcessRunner(ctx.sessions)  # say those messages were lost: resume here

    out = resume_job(ctx, job.id)  # the same job, not a new one

    assert (out["resumed"], out["queued"], out["state"]) == (6, 0, "succeeded")  # 8 - 2 done
    assert _consistent(ctx) == (120, 120)
    with ctx.sessions() as s:
        [again] = repo.list_jobs(session=s)
    assert (again.id, again.done, again.failed) == (job.id, 120, 0)
    assert resume_job(ctx, job.id)["resumed"] == 0  # nothing left: a no-op
    with ctx.sessions() as s:
        other = repo.create_job(session=s, kind="train", params={}).id
        s.commit()
    with pytest.raises(ConfigError, match="no batches"):
        resume_job(ctx, other)
    with pytest.raises(NotFoundError):
        resume_job(ctx, 999)
    torch.set_num_threads(threads)


# --- re-ingest of files whose content changed (tiny CNN, exact index: fast) ------------------


@pytest.fixture
def tiny_ctx(context_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model: threads only add contention on a busy machine
    yield context_factory("exact", encoder="tiny_cnn")
    torch.set_num_threads(threads)


def _rows(ctx, path):
    """(image id, sha256) of the catalog rows recorded under ``path``, oldest first."""
    with ctx.sessions() as s:
        rows = repo.known_files(session=s, paths=[str(path)]).get(str(path), [])
    return [(r.image_id, r.sha256) for r in rows]


def _gone(ctx, image_id, sha256):
    """The image has no catalog row, no embedding row and no point in the active index."""
    with ctx.sessions() as s:
        assert repo.get_images(session=s, ids=[image_id]) == []
        n = s.scalar(
            select(func.count()).select_from(Embedding).where(Embedding.image_id == image_id)
        )
    assert n == 0
    with pytest.raises(NotFoundError):
        ctx.spaces.space().index.get([point_id(sha256, ctx.spaces.space().key)])
    return True


def test_same_size_rewrite_replaces_the_image_in_catalog_and_index(
    tiny_ctx, bmp_tree, imagefactory
):
    ctx = tiny_ctx
    n = ingest_tree(ctx, bmp_tree).added
    target = bmp_tree / "cats" / "cats_0.bmp"
    [(old_id, old_sha)] = _rows(ctx, target)
    st = target.stat()
    target.write_bytes(imagefactory.photo_bmp("astronaut", 6))  # other pixels, same dimensions
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert target.stat().st_size == st.st_size

    again = ingest_tree(ctx, bmp_tree)
    assert (again.added, again.replaced, again.already, again.embedded) == (1, 1, n - 1, 1)
    assert again.as_dict()["replaced"] == 1
    [(new_id, new_sha)] = _rows(ctx, target)
    assert new_sha != old_sha and _gone(ctx, old_id, old_sha)
    assert _consistent(ctx) == (n, n)
    index = ctx.spaces.space().index
    assert index.count({"path": str(target)}) == 1
    _, [payload] = index.get([point_id(new_sha, ctx.spaces.space().key)])
    assert (payload["image_id"], payload["sha256"]) == (new_id, new_sha)
    hits, _ = search_by_image(ctx, target, k=1)
    assert (hits[0].path, hits[0].image_id) == (str(target), new_id)
    assert hits[0].score == pytest.approx(1, abs=1e-3)


def test_enrolling_a_folder_again_replaces_a_rewritten_file(tiny_ctx, tmp_path, imagefactory):
    ctx = tiny_ctx
    folder = tmp_path / "bags"
    folder.mkdir()
    for i in range(3):
        (folder / f"bag_{i}.bmp").write_bytes(imagefactory.photo_bmp("coffee", 8 * i))
    assert enrol_class(ctx, "bag", folder).embedded == 3
    target = folder / "bag_1.bmp"
    [(old_id, old_sha)] = _rows(ctx, target)
    target.write_bytes(imagefactory.photo_bmp("astronaut", 6, side=32))  # a larger file

    again = enrol_class(ctx, "bag", folder)
    assert (again.added, again.replaced, again.already, again.embedded) == (1, 1, 2, 1)
    [(new_id, new_sha)] = _rows(ctx, target)
    assert new_id != old_id and _gone(ctx, old_id, old_sha)
    _, [payload] = ctx.spaces.space().index.get([point_id(new_sha, ctx.spaces.space().key)])
    assert (payload["image_id"], payload["split"], payload["class"]) == (new_id, "train", "bag")
    assert _consistent(ctx) == (3, 3)


@pytest.mark.reliability
def test_crash_between_index_and_catalog_delete_is_finished_by_the_next_run(
    tiny_ctx, context_factory, bmp_tree, imagefactory, monkeypatch
):
    ctx = tiny_ctx
    n = ingest_tree(ctx, bmp_tree).added
    target = bmp_tree / "coffee" / "coffee_2.bmp"
    [(old_id, old_sha)] = _rows(ctx, target)
    target.write_bytes(imagefactory.photo_bmp("astronaut", 6, side=32))
    real_delete, calls = repo.delete_images, []

    def crash_once(**kwargs):
        calls.append(list(kwargs["ids"]))
        if len(calls) == 1:
            raise RuntimeError("power cut")
        return real_delete(**kwargs)

    monkeypatch.setattr(repo, "delete_images", crash_once)
    with pytest.raises(RuntimeError, match="power cut"):
        ingest_tree(ctx, bmp_tree)
    rows = _rows(ctx, target)
    assert len(rows) == 2 and rows[0] == (old_id, old_sha)  # old row kept, new one cataloged
    assert ctx.spaces.space().index.count() == n - 1  # the old point left the index first

    again = ingest_tree(ctx, bmp_tree)
    assert calls == [[old_id], [old_id]]
    assert (again.added, again.replaced, again.already, again.embedded) == (0, 1, n, 1)
    assert _rows(ctx, target) == rows[1:] and _gone(ctx, old_id, old_sha)
    assert _consistent(ctx) == (n, n)
    ctx.close()
    assert _consistent(context_factory("exact", encoder="tiny_cnn")) == (n, n)  # on disk too
