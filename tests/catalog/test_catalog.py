import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from embplat.catalog import repo
from embplat.catalog.db import (
    current_revision,
    ensure_schema,
    head_revision,
    make_engine,
    session_factory,
    transaction,
    upgrade,
)
from embplat.catalog.models import Base
from embplat.errors import ServiceUnavailableError


@pytest.fixture
def sessions(catalog_url):
    engine = make_engine(catalog_url)
    upgrade(engine)
    yield session_factory(engine)
    engine.dispose()


def test_migrations_reach_head_and_match_models(catalog_url):
    engine = make_engine(catalog_url)
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    tables = set(inspect(engine).get_table_names())
    assert {"classes", "images", "models", "collections", "embeddings", "jobs"} <= tables
    engine.dispose()


def test_server_mode_refuses_an_old_schema_with_the_command_to_run(catalog_url):
    engine = make_engine(catalog_url)
    with pytest.raises(ServiceUnavailableError, match="platform db upgrade"):
        ensure_schema(engine, auto_upgrade=False)
    ensure_schema(engine, auto_upgrade=True)
    ensure_schema(engine, auto_upgrade=False)  # now at head: no error
    engine.dispose()


def _image(sha: str, class_id: int, path: str = "") -> dict:
    return {
        "sha256": sha,
        "path": path or f"/x/{sha}.jpg",
        "class_id": class_id,
        "split": "train",
        "width": 4,
        "height": 4,
        "mode": "RGB",
        "nbytes": 10,
    }


def test_inserts_are_idempotent(sessions):
    with transaction(sessions) as s:
        ids = repo.ensure_classes(session=s, names=["cat", "dog"], roles={"dog": "unseen"})
        again = repo.ensure_classes(session=s, names=["dog", "cat"], roles={"dog": "seen"})
        assert ids == again
        assert repo.get_class(session=s, name="dog").role == "unseen"  # first write wins
        assert repo.add_images(session=s, records=[_image("a" * 64, ids["cat"])]) == 1
        assert (
            repo.add_images(
                session=s,
                records=[_image("a" * 64, ids["cat"], "/other.jpg"), _image("b" * 64, ids["dog"])],
            )
            == 1
        )
        assert repo.count_images(session=s) == 2


def test_pending_embeddings_shrink_as_points_are_recorded(sessions):
    with transaction(sessions) as s:
        cid = repo.ensure_classes(session=s, names=["cat"])["cat"]
        repo.add_images(session=s, records=[_image(c * 64, cid) for c in "abc"])
        model = repo.ensure_model(
            session=s, name="m", encoder="e", weights="w", dim=4, image_size=8, config={}
        )
        coll = repo.ensure_collection(
            session=s, name="embplat_m", model_id=model.id, backend="exact", dim=4
        )
        pending = repo.pending_image_ids(session=s, collection_id=coll.id)
        assert len(pending) == 3
        assert (
            repo.add_embeddings(
                session=s, collection_id=coll.id, points=[(pending[0], "p0"), (pending[1], "p1")]
            )
            == 2
        )
        assert (
            repo.add_embeddings(session=s, collection_id=coll.id, points=[(pending[0], "p0")]) == 0
        )
        assert repo.pending_image_ids(session=s, collection_id=coll.id) == [pending[2]]
        assert repo.count_embeddings(session=s, collection_id=coll.id) == 2
        rows = repo.embedded_images(session=s, collection_id=coll.id, splits=["train"])
        assert [r[3] for r in rows] == ["p0", "p1"]


def test_replaced_images_leave_with_their_embedding_rows(sessions):
    with transaction(sessions) as s:
        cid = repo.ensure_classes(session=s, names=["cat"])["cat"]
        old, new, other = (
            _image("a" * 64, cid, "/x/p.bmp"),
            _image("b" * 64, cid, "/x/p.bmp"),
            _image("c" * 64, cid),
        )
        rows = [{**old, "mtime_ns": 2**40}, {**new, "mtime_ns": None}, {**other, "mtime_ns": 1}]
        repo.add_images(session=s, records=rows)
        known = repo.known_files(session=s, paths=["/x/p.bmp", "/x/none.bmp"])
        assert list(known) == ["/x/p.bmp"]
        old_id, new_id = (k.image_id for k in known["/x/p.bmp"])  # oldest first
        assert known["/x/p.bmp"][0] == repo.KnownFile(old_id, "a" * 64, 10, 2**40)
        repo.set_image_mtimes(session=s, mtimes={new_id: 2**62})  # beyond 32 bits
        model = repo.ensure_model(
            session=s, name="m", encoder="e", weights="w", dim=4, image_size=8, config={}
        )
        colls = [
            repo.ensure_collection(session=s, name=n, model_id=model.id, backend="exact", dim=d)
            for n, d in (("embplat_m", 4), ("embplat_t", 8))
        ]
        other_id = repo.images_by_hash(session=s, hashes=["c" * 64])["c" * 64].id
        for coll in colls:
            points = [(old_id, f"old-{coll.id}"), (other_id, f"other-{coll.id}")]
            repo.add_embeddings(session=s, collection_id=coll.id, points=points)
    with transaction(sessions) as s:
        assert repo.known_files(session=s, paths=["/x/p.bmp"])["/x/p.bmp"][1].mtime_ns == 2**62
        assert repo.image_points(session=s, image_ids=[old_id, new_id]) == [
            ("embplat_m", 4, f"old-{colls[0].id}"),
            ("embplat_t", 8, f"old-{colls[1].id}"),
        ]
        assert repo.delete_images(session=s, ids=[old_id]) == 1
    with transaction(sessions) as s:
        assert repo.delete_images(session=s, ids=[old_id]) == 0
        left = repo.known_files(session=s, paths=["/x/p.bmp"])["/x/p.bmp"]
        assert [r.image_id for r in left] == [new_id]
        assert [repo.count_embeddings(session=s, collection_id=c.id) for c in colls] == [1, 1]
        assert repo.image_points(session=s, image_ids=[old_id]) == []


def test_jobs_record_state_and_times(sessions):
    with transaction(sessions) as s:
        job = repo.create_job(session=s, kind="ingest", params={"root": "x"})
        repo.update_job(session=s, job_id=job.id, state="running")
        repo.update_job(session=s, job_id=job.id, state="succeeded", done=3, total=3)
    with sessions() as s:
        (row,) = repo.list_jobs(session=s)
        assert row.state == "succeeded" and row.done == 3
        assert row.started_at is not None and row.finished_at >= row.started_at


def test_unreachable_database_names_url_without_password():
    engine = make_engine("postgresql+psycopg://user:secret@127.0.0.1:1/nope")
    with pytest.raises(ServiceUnavailableError) as err:
        current_revision(engine)
    assert "secret" not in str(err.value)
    assert "127.0.0.1:1/nope" in str(err.value)


def test_concurrent_writers_neither_deadlock_nor_duplicate(sessions):
    """Two writers racing over the same classes, images and embeddings (as two workers do)."""
    import threading

    with transaction(sessions) as s:
        model = repo.ensure_model(
            session=s, name="m", encoder="e", weights="w", dim=4, image_size=8, config={}
        )
        coll_id = repo.ensure_collection(
            session=s, name="c", model_id=model.id, backend="exact", dim=4
        ).id
    errors, barrier = [], threading.Barrier(2)
    shas = [f"{i:064x}" for i in range(60)]

    def writer(order):
        try:
            barrier.wait()
            for chunk in range(0, 60, 10):
                with transaction(sessions) as s:
                    cid = repo.ensure_classes(session=s, names=["a", "b"][::order])["a"]
                    repo.add_images(
                        session=s,
                        records=[_image(h, cid) for h in shas[chunk : chunk + 10][::order]],
                    )
                with transaction(sessions) as s:
                    ids = repo.images_by_hash(session=s, hashes=shas[chunk : chunk + 10])
                    repo.add_embeddings(
                        session=s,
                        collection_id=coll_id,
                        points=[(i.id, i.sha256[:8]) for i in ids.values()],
                    )
        except Exception as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(o,)) for o in (1, -1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    with sessions() as s:
        assert repo.count_images(session=s) == 60
        assert repo.count_embeddings(session=s, collection_id=coll_id) == 60
        assert len(repo.class_counts(session=s)) == 2
