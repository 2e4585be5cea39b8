from embplat.catalog import repo
from embplat.catalog.db import transaction


def test_images_are_identified_by_content(sessions, image_row):
    with transaction(sessions) as s:
        ids = repo.ensure_classes(session=s, names=["cat", "dog"])
        assert repo.add_images(session=s, records=[image_row("a" * 64, ids["cat"])]) == 1
        again = [image_row("a" * 64, ids["cat"], "/other.jpg"), image_row("b" * 64, ids["dog"])]
        assert repo.add_images(session=s, records=again) == 1
        assert repo.count_images(session=s) == 2
        assert repo.count_images(session=s, split="test") == 0
        (first,) = repo.images_by_hash(session=s, hashes=["a" * 64]).values()
        assert first.path == f"/x/{'a' * 64}.jpg"  # the first path is kept
        second = repo.images_by_hash(session=s, hashes=["b" * 64])["b" * 64]
        found = repo.get_images(session=s, ids=[second.id, 10**6, first.id])
        assert [i.id for i in found] == [second.id, first.id]


def test_replaced_images_leave_with_their_embedding_rows(sessions, image_row, model_id):
    with transaction(sessions) as s:
        cid = repo.ensure_classes(session=s, names=["cat"])["cat"]
        old, new, other = (
            image_row("a" * 64, cid, "/x/p.bmp"),
            image_row("b" * 64, cid, "/x/p.bmp"),
            image_row("c" * 64, cid),
        )
        rows = [{**old, "mtime_ns": 2**40}, {**new, "mtime_ns": None}, {**other, "mtime_ns": 1}]
        repo.add_images(session=s, records=rows)
        known = repo.known_files(session=s, paths=["/x/p.bmp", "/x/none.bmp"])
        assert list(known) == ["/x/p.bmp"]
        old_id, new_id = (k.image_id for k in known["/x/p.bmp"])  # oldest first
        assert known["/x/p.bmp"][0] == repo.KnownFile(old_id, "a" * 64, 10, 2**40)
        repo.set_image_mtimes(session=s, mtimes={new_id: 2**62})  # beyond 32 bits
        colls = [
            repo.ensure_collection(session=s, name=n, model_id=model_id, backend="exact", dim=d)
            for n, d in (("embplat_m", 4), ("embplat_t", 8))
        ]
        other_id = repo.images_by_hash(session=s, hashes=["c" * 64])["c" * 64].id
        for coll in colls:
            points = [(old_id, f"old-{coll.id}"), (other_id, f"other-{coll.id}")]
            repo.add_embeddings(session=s, collection_id=coll.id, points=points)
    with transaction(sessions) as s:
        assert repo.known_files(session=s, paths=["/x/p.bmp"])["/x/p.bmp"][1].mtime_ns == 2**62
        expected = [("embplat_m", 4, f"old-{colls[0].id}"), ("embplat_t", 8, f"old-{colls[1].id}")]
        assert repo.image_points(session=s, image_ids=[old_id, new_id]) == expected
        assert repo.image_points_by_image(session=s, image_ids=[old_id, new_id]) == {
            old_id: expected
        }
        assert repo.delete_images(session=s, ids=[old_id]) == 1
    with transaction(sessions) as s:
        assert repo.delete_images(session=s, ids=[old_id]) == 0
        left = repo.known_files(session=s, paths=["/x/p.bmp"])["/x/p.bmp"]
        assert [r.image_id for r in left] == [new_id]
        assert [repo.count_embeddings(session=s, collection_id=c.id) for c in colls] == [1, 1]
        assert repo.image_points(session=s, image_ids=[old_id]) == []


def test_moved_images_are_found_by_prefix_and_relocated(sessions, image_row):
    with transaction(sessions) as s:
        ids = repo.ensure_classes(session=s, names=["cat", "dog"])
        rows = [
            image_row("a" * 64, ids["cat"], "/data/cats/a_1.jpg"),
            image_row("b" * 64, ids["cat"], "/data/Cats/b.jpg"),  # another case: not under it
            image_row("c" * 64, ids["cat"], "/data/cats_old/c.jpg"),
        ]
        repo.add_images(session=s, records=rows)
        under = repo.images_with_prefix(session=s, prefix="/data/cats/")
        assert [r.path for r in under] == ["/data/cats/a_1.jpg"]
        assert [r.path for r in repo.images_with_prefix(session=s, prefix="/data/cats/a_")] == [
            "/data/cats/a_1.jpg"
        ]
        move = {"image_id": under[0].image_id, "path": "/data/dogs/a.jpg", "nbytes": 11}
        move |= {"mtime_ns": 5, "class_id": ids["dog"], "split": "test"}
        repo.relocate_images(session=s, moves=[move])
    with sessions() as s:
        (image,) = repo.get_images(session=s, ids=[under[0].image_id])
        assert (image.path, image.nbytes, image.mtime_ns) == ("/data/dogs/a.jpg", 11, 5)
        assert (image.label.name, image.split) == ("dog", "test")
        assert repo.class_image_ids(session=s, class_id=ids["dog"]) == [image.id]
        assert len(repo.class_image_ids(session=s, class_id=ids["cat"])) == 2


def test_trained_collections_leave_out_encoders(sessions, model_id):
    with transaction(sessions) as s:
        trained = repo.ensure_model(
            session=s, name="t", kind="metric", encoder="e", weights="w", dim=8, image_size=8
        )
        for name, mid, dim in (("embplat_m", model_id, 4), ("embplat_t", trained.id, 8)):
            repo.ensure_collection(session=s, name=name, model_id=mid, backend="exact", dim=dim)
    with sessions() as s:
        assert repo.trained_collections(session=s) == [("embplat_t", 8, "t")]
