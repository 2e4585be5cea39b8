import pytest

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.errors import NotFoundError


def test_jobs_record_state_and_times(sessions):
    with transaction(sessions) as s:
        job = repo.create_job(session=s, kind="ingest", params={"root": "x"})
        assert (job.state, job.done, job.failed) == ("queued", 0, 0)
        repo.update_job(session=s, job_id=job.id, state="running")
        repo.update_job(session=s, job_id=job.id, state="succeeded", done=3, total=3)
        later = repo.create_job(session=s, kind="embed", params={})
    with sessions() as s:
        rows = repo.list_jobs(session=s)
        assert [r.id for r in rows] == [later.id, job.id]  # most recent first
        assert [r.id for r in repo.list_jobs(session=s, limit=1)] == [later.id]
        row = repo.get_job(session=s, job_id=job.id)
        assert row.state == "succeeded" and row.done == 3 and row.params == {"root": "x"}
        assert row.started_at is not None and row.finished_at >= row.started_at
        with pytest.raises(NotFoundError, match="no job with id 999"):
            repo.get_job(session=s, job_id=999)


def test_embedded_images_of_a_collection_by_split(sessions, image_row, model_id):
    with transaction(sessions) as s:
        cid = repo.ensure_classes(session=s, names=["cat"])["cat"]
        rows = [image_row("a" * 64, cid), {**image_row("b" * 64, cid), "split": "test"}]
        repo.add_images(session=s, records=[*rows, image_row("c" * 64, cid)])
        coll = repo.ensure_collection(
            session=s, name="c", model_id=model_id, backend="exact", dim=4
        )
        found = repo.images_by_hash(session=s, hashes=["a" * 64, "b" * 64])
        points = [(found["a" * 64].id, "pa"), (found["b" * 64].id, "pb")]
        repo.add_embeddings(session=s, collection_id=coll.id, points=points)
        rows = repo.embedded_images(session=s, collection_id=coll.id, splits=["train", "test"])
    assert [(r[1], r[2], r[3]) for r in rows] == [("train", "cat", "pa"), ("test", "cat", "pb")]
