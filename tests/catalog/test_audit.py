from embplat.catalog import audit, repo
from embplat.catalog.db import transaction


def test_recorded_points_are_listed_and_forgotten(sessions, image_row, model_id):
    with transaction(sessions) as s:
        cid = repo.ensure_classes(session=s, names=["cat"])["cat"]
        repo.add_images(session=s, records=[image_row(c * 64, cid) for c in "ab"])
        ids = [i.id for i in repo.images_by_hash(session=s, hashes=["a" * 64, "b" * 64]).values()]
        coll = repo.ensure_collection(
            session=s, name="c", model_id=model_id, backend="exact", dim=4
        )
        repo.add_embeddings(
            session=s, collection_id=coll.id, points=[(ids[0], "p0"), (ids[1], "p1")]
        )
    with transaction(sessions) as s:
        assert [c.name for c in audit.list_collections(session=s)] == ["c"]
        assert audit.recorded_points(session=s, collection_id=coll.id) == {
            "p0": ids[0],
            "p1": ids[1],
        }
        assert audit.forget_points(session=s, collection_id=coll.id, point_ids=["p1", "gone"]) == 1
        assert repo.pending_image_ids(session=s, collection_id=coll.id) == [ids[1]]
        assert [p for _, p in audit.image_paths(session=s)] == [f"/x/{c * 64}.jpg" for c in "ab"]
