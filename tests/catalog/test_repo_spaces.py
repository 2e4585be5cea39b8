import pytest

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.errors import NotFoundError


def test_pending_embeddings_shrink_as_points_are_recorded(sessions, image_row, model_id):
    with transaction(sessions) as s:
        cid = repo.ensure_classes(session=s, names=["cat"])["cat"]
        repo.add_images(session=s, records=[image_row(c * 64, cid) for c in "abc"])
        coll = repo.ensure_collection(
            session=s, name="embplat_m", model_id=model_id, backend="exact", dim=4
        )
        pending = repo.pending_image_ids(session=s, collection_id=coll.id)
        assert len(pending) == 3
        points = [(pending[0], "p0"), (pending[1], "p1")]
        assert repo.add_embeddings(session=s, collection_id=coll.id, points=points) == 2
        assert repo.add_embeddings(session=s, collection_id=coll.id, points=points[:1]) == 0
        assert repo.pending_image_ids(session=s, collection_id=coll.id) == [pending[2]]
        among = repo.pending_image_ids(session=s, collection_id=coll.id, image_ids=pending[:2])
        assert among == []
        assert repo.count_embeddings(session=s, collection_id=coll.id) == 2


def test_models_are_registered_once_and_looked_up_by_name(sessions, model_id):
    with transaction(sessions) as s:
        same = repo.ensure_model(
            session=s, name="m", encoder="other", weights="w", dim=9, image_size=8
        )
        assert (same.id, same.dim) == (model_id, 4)
        repo.ensure_model(
            session=s, name="t", kind="metric", encoder="e", weights="w", dim=8, image_size=8
        )
        assert repo.get_model(session=s, name="t").kind == "metric"
        assert [m.name for m in repo.list_models(session=s)] == ["m", "t"]
        assert [m.name for m in repo.list_models(session=s, kinds=["metric"])] == ["t"]
        with pytest.raises(NotFoundError, match=r"no model named 'x' \(known: m, t\)"):
            repo.get_model(session=s, name="x")


def test_training_data_and_the_trained_models_new_images_must_enter(sessions, image_row):
    with transaction(sessions) as s:
        ids = repo.ensure_classes(session=s, names=["cat", "owl"], roles={"owl": "unseen"})
        repo.add_images(
            session=s,
            records=[image_row("a" * 64, ids["cat"]), image_row("b" * 64, ids["owl"])],
        )
        rows = repo.labelled_images(session=s, splits=["train"], roles=["seen"])
        assert [(r[2], r[3]) for r in rows] == [("cat", "a" * 64)]
        assert len(repo.labelled_images(session=s, splits=["train"])) == 2
        assert repo.labelled_images(session=s, splits=["test"]) == []
        for name, kind in (("enc", "encoder"), ("t1", "metric"), ("t2", "metric")):
            model = repo.ensure_model(
                session=s, name=name, kind=kind, encoder="e", weights="w", dim=4, image_size=8
            )
            coll = repo.ensure_collection(
                session=s, name=f"embplat_{name}", model_id=model.id, backend="exact", dim=4
            )
            if name != "t2":  # t2 has an empty collection
                repo.add_embeddings(session=s, collection_id=coll.id, points=[(rows[0][0], "p")])
        assert repo.embedded_trained_models(session=s) == ["t1"]
