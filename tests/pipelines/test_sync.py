"""The index follows the folder: deleted, garbled and moved files, on real Fashion-MNIST images
and the real EfficientNet-Lite0 (64 px), with a second collection standing in for a trained
model's index."""

import shutil

import pytest
from sqlalchemy import func, select

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.catalog.models import Embedding, Image
from embplat.errors import NotFoundError
from embplat.pipelines.classify import classify
from embplat.pipelines.ingest import ingest_tree
from embplat.pipelines.query import search_by_image
from embplat.pipelines.remove import remove_images
from embplat.retrieval import collection_name

pytestmark = [pytest.mark.slow, pytest.mark.reliability]
PER_CLASS = 3
EXTRA = "extra-model"


@pytest.fixture
def small_tree(tmp_path, fmnist_root):
    """A private AwA2 tree with 3 images per class (30 images, 24 seen)."""
    dst = tmp_path / "data" / "awa2"
    shutil.copytree(fmnist_root.parent, dst)
    for folder in (dst / "JPEGImages").iterdir():
        for extra in sorted(folder.iterdir())[PER_CLASS:]:
            extra.unlink()
    return dst / "JPEGImages"


@pytest.fixture
def ctx(context_factory):
    return context_factory("nmslib")


def _files(root):
    return sorted(root.rglob("*.jpg"))


def add_extra_collection(ctx):
    """A trained model's collection made by hand: the active index's points, copied."""
    space = ctx.spaces.space()
    with transaction(ctx.sessions) as s:
        model = repo.ensure_model(
            session=s,
            name=EXTRA,
            kind="metric",
            encoder="efficientnet_lite0",
            weights="test",
            dim=space.encoder.dim,
            image_size=64,
            config={},
        )
        coll = repo.ensure_collection(
            session=s,
            name=collection_name(EXTRA),
            model_id=model.id,
            backend=ctx.spaces.backend,
            dim=space.encoder.dim,
        )
        rows = repo.embedded_images(
            session=s, collection_id=space.collection_id, splits=["train", "valid", "test"]
        )
        coll_id = coll.id
    pids = [pid for *_, pid in rows]
    vectors, payloads = space.index.get(pids)
    index = ctx.spaces.index(collection_name(EXTRA), space.encoder.dim)
    index.upsert(pids, vectors, [{**p, "model": EXTRA} for p in payloads])
    index.flush()
    with transaction(ctx.sessions) as s:
        repo.add_embeddings(session=s, collection_id=coll_id, points=[(r[0], r[3]) for r in rows])
    return index, coll_id


def _state(ctx, coll_ids):
    """(images, {collection id: embedding rows}) in the catalog."""
    with ctx.sessions() as s:
        images = s.scalar(select(func.count()).select_from(Image))
        emb = {
            c: s.scalar(
                select(func.count()).select_from(Embedding).where(Embedding.collection_id == c)
            )
            for c in coll_ids
        }
    return images, emb


def _cataloged(ctx, path):
    with ctx.sessions() as s:
        return repo.known_files(session=s, paths=[str(path)]).get(str(path), [])


def test_deleted_files_leave_the_catalog_and_every_index(ctx, small_tree, tmp_path):
    n = ingest_tree(ctx, small_tree).added
    main = ctx.spaces.space().index
    extra, extra_id = add_extra_collection(ctx)
    gone = [small_tree / "coat" / "coat_00001.jpg", small_tree / "trouser" / "trouser_00002.jpg"]
    query = tmp_path / "query.jpg"
    shutil.copyfile(gone[0], query)  # the very pixels of a deleted image
    ids = [_cataloged(ctx, p)[0].image_id for p in gone]
    for path in gone:
        path.unlink()

    again = ingest_tree(ctx, small_tree, models=[])
    assert (again.missing, again.removed, again.added, again.already) == (2, 2, 0, n - 2)
    assert again.warnings == []
    assert all(_cataloged(ctx, p) == [] for p in gone)
    with ctx.sessions() as s:
        assert repo.get_images(session=s, ids=ids) == []
    assert _state(ctx, [ctx.spaces.space().collection_id, extra_id]) == (
        n - 2,
        {ctx.spaces.space().collection_id: n - 2, extra_id: n - 2},
    )
    assert main.count() == extra.count() == n - 2
    for path in gone:
        assert main.count({"path": str(path)}) == extra.count({"path": str(path)}) == 0

    hits, _ = search_by_image(ctx, query, k=n)
    assert {h.path for h in hits}.isdisjoint(map(str, gone)) and len(hits) == n - 2
    [pred] = classify(ctx, [query], k=n)
    assert {nb.path for nb in pred.neighbours}.isdisjoint(map(str, gone))
    third = ingest_tree(ctx, small_tree, models=[])
    assert (third.missing, third.removed, third.already) == (0, 0, n - 2)


def test_garbage_over_a_cataloged_file_removes_its_old_image(ctx, small_tree):
    n = ingest_tree(ctx, small_tree).added
    target = small_tree / "dress" / "dress_00003.jpg"
    [old] = _cataloged(ctx, target)
    target.write_bytes(b"\xff\xd8 garbage, not a JPEG any more")

    again = ingest_tree(ctx, small_tree)
    assert [p for p, _ in again.skipped] == [str(target)]
    assert (again.replaced, again.added, again.missing, again.embedded) == (1, 0, 0, 0)
    assert _cataloged(ctx, target) == []
    index = ctx.spaces.space().index
    assert index.count() == n - 1 and index.count({"path": str(target)}) == 0
    assert _state(ctx, [ctx.spaces.space().collection_id]) == (
        n - 1,
        {ctx.spaces.space().collection_id: n - 1},
    )
    with pytest.raises(NotFoundError):
        index.get([_point(ctx, old.sha256)])


def _point(ctx, sha256):
    from embplat.retrieval import point_id

    return point_id(sha256, ctx.spaces.space().key)


def test_a_moved_tree_keeps_its_images_under_the_new_paths(ctx, small_tree, tmp_path):
    n = ingest_tree(ctx, small_tree).added
    extra, extra_id = add_extra_collection(ctx)
    with ctx.sessions() as s:
        before = {i.sha256: i.id for i in s.scalars(select(Image))}
    new_home = tmp_path / "moved"
    shutil.copytree(small_tree.parent, new_home / "awa2")
    new_root = new_home / "awa2" / "JPEGImages"

    copied = ingest_tree(ctx, new_root, models=[])  # the original is still there: duplicates
    assert (copied.added, copied.moved, len(copied.skipped)) == (0, 0, n)

    shutil.rmtree(small_tree.parent)
    moved = ingest_tree(ctx, new_root, models=[])
    assert (moved.added, moved.moved, moved.skipped, moved.embedded) == (0, n, [], 0)
    assert (moved.missing, moved.removed, moved.replaced) == (0, 0, 0)
    with ctx.sessions() as s:
        after = {i.sha256: (i.id, i.path) for i in s.scalars(select(Image))}
    assert {sha: i for sha, (i, _) in after.items()} == before  # same images, same ids
    assert all(p.startswith(str(new_root) + "/") for _, p in after.values())
    assert {p for _, p in after.values()} == {str(p) for p in _files(new_root)}
    for index in (ctx.spaces.space().index, extra):
        assert index.count() == n
        assert index.count({"path": [p for _, p in after.values()]}) == n
    _, payloads = extra.get([_point(ctx, sha) for sha in after])
    assert {p["path"] for p in payloads} == {p for _, p in after.values()}
    assert {p["model"] for p in payloads} == {EXTRA}  # the rest of the payload is kept

    hits, _ = search_by_image(ctx, new_root / "coat" / "coat_00001.jpg", k=1)
    assert hits[0].path == str(new_root / "coat" / "coat_00001.jpg")
    again = ingest_tree(ctx, new_root, models=[])
    assert (again.added, again.moved, again.already, again.skipped) == (0, 0, n, [])
    assert _state(ctx, [extra_id])[1] == {extra_id: n}


def test_mass_disappearance_is_kept_unless_pruned(ctx, small_tree):
    n = ingest_tree(ctx, small_tree).added
    files = _files(small_tree)
    doomed = [p for p in files if not p.name.endswith("_00001.jpg")]  # 2 of 3 per class
    for path in doomed:
        path.unlink()

    kept = ingest_tree(ctx, small_tree)
    assert (kept.missing, kept.removed) == (len(doomed), 0)
    assert any("--prune" in w and "more than half" in w for w in kept.warnings), kept.warnings
    assert ctx.spaces.space().index.count() == n and _state(ctx, [])[0] == n

    report_only = ingest_tree(ctx, small_tree, prune=False)
    assert (report_only.missing, report_only.removed) == (len(doomed), 0)

    pruned = ingest_tree(ctx, small_tree, prune=True)
    assert (pruned.missing, pruned.removed) == (len(doomed), len(doomed))
    left = n - len(doomed)
    assert ctx.spaces.space().index.count() == left and _state(ctx, [])[0] == left


def test_no_prune_keeps_a_deleted_file_and_remove_images_removes_it(ctx, small_tree):
    n = ingest_tree(ctx, small_tree).added
    target = small_tree / "bag" / "bag_00002.jpg"
    [row] = _cataloged(ctx, target)
    target.unlink()
    kept = ingest_tree(ctx, small_tree, prune=False)
    assert (kept.missing, kept.removed) == (1, 0) and kept.warnings
    assert ctx.spaces.space().index.count() == n
    assert remove_images(ctx, [row.image_id, row.image_id, 10_000]) == 1
    assert remove_images(ctx, [row.image_id]) == 0  # already gone: nothing to do
    assert ctx.spaces.space().index.count() == n - 1 and _cataloged(ctx, target) == []
