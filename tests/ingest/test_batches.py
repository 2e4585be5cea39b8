"""Job batches: idempotent re-runs, progress from batches, index hooks at the end of a job."""

import pytest

from embplat.catalog import repo
from embplat.catalog.db import make_engine, session_factory, transaction, upgrade
from embplat.ingest import batches
from embplat.ingest.register import register_items
from embplat.ingest.scan import scan_tree
from embplat.models import get_encoder
from embplat.retrieval.exact import ExactIndex


class SpyIndex(ExactIndex):
    """An exact index recording the lifecycle calls a job makes (exact's own are no-ops)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.calls = []

    def defer_indexing(self):
        self.calls.append("defer")

    def restore_indexing(self):
        self.calls.append("restore")

    def set_alias(self, alias):
        self.calls.append(f"alias:{alias}")


@pytest.fixture
def planned(tmp_path, fmnist_root):
    engine = make_engine(f"sqlite:///{tmp_path / 'c.sqlite3'}")
    upgrade(engine)
    sessions = session_factory(engine)
    scan = scan_tree(fmnist_root)
    with transaction(sessions) as s:
        ids = repo.ensure_classes(session=s, names=scan.classes)
    reg = register_items(
        scan.items[:30],
        sessions=sessions,
        class_ids=ids,
        unseen=set(),
        valid_fraction=0.0,
        max_pixels=10**7,
    )
    encoder = get_encoder("tiny_cnn")
    with transaction(sessions) as s:
        model = repo.ensure_model(
            session=s,
            name=encoder.key,
            encoder=encoder.name,
            weights="random",
            dim=encoder.dim,
            image_size=32,
            config={},
        )
        coll = repo.ensure_collection(
            session=s, name="c", model_id=model.id, backend="exact", dim=encoder.dim
        )
        job = repo.create_job(session=s, kind="embed", params={})
    seqs = batches.plan_batches(
        sessions=sessions, job_id=job.id, image_ids=reg.added, batch_size=12
    )
    return sessions, encoder, coll.id, job.id, seqs


def _replanned(planned):
    """The same images planned again as a new job (under the current BULK_THRESHOLD)."""
    from sqlalchemy import select

    from embplat.catalog.models import JobBatch

    sessions, encoder, coll, job_id, _ = planned
    with sessions() as s:
        items = s.scalars(select(JobBatch.items).where(JobBatch.job_id == job_id)).all()
    with transaction(sessions) as s:
        job = repo.create_job(session=s, kind="embed", params={})
    ids = [i for batch in items for i in batch]
    seqs = batches.plan_batches(sessions=sessions, job_id=job.id, image_ids=ids, batch_size=12)
    return sessions, encoder, coll, job.id, seqs


def _run(planned, index, seq):
    sessions, encoder, coll, job, _ = planned
    return batches.run_batch(
        sessions=sessions,
        job_id=job,
        seq=seq,
        encoder=encoder,
        index=index,
        collection_id=coll,
        batch_size=8,
        num_workers=0,
        max_pixels=10**7,
    )


def test_batches_finish_the_job_and_reruns_are_idempotent(planned):
    sessions, _, _, job_id, seqs = planned
    assert seqs == [0, 1, 2]
    index = SpyIndex("c", 64)
    assert _run(planned, index, 0)["job_state"] == "running"
    assert _run(planned, index, 0)["embedded"] == 0  # a retried batch writes nothing twice
    for seq in seqs[1:]:
        out = _run(planned, index, seq)
    assert out["job_state"] == "succeeded"
    with sessions() as s:
        job = repo.get_job(session=s, job_id=job_id)
    assert (job.done, job.total, job.failed) == (30, 30, 0)
    assert index.count(None) == 30
    assert index.calls == ["alias:embplat_images"]  # small job: no deferred indexing
    assert batches.unfinished_batches(sessions=sessions, job_id=job_id) == []


def test_large_jobs_defer_indexing_until_the_last_batch(planned, monkeypatch):
    monkeypatch.setattr(batches, "BULK_THRESHOLD", 10)
    planned = _replanned(planned)  # the bulk decision is taken when the job is planned
    index = SpyIndex("c", 64)
    for seq in planned[4]:
        _run(planned, index, seq)
    assert index.calls == ["defer", "defer", "defer", "restore", "alias:embplat_images"]


def test_bulk_job_on_a_backend_with_nothing_to_defer(planned, monkeypatch):
    """The lifecycle calls reach every backend; exact's defaults do nothing and succeed."""
    monkeypatch.setattr(batches, "BULK_THRESHOLD", 10)
    planned = _replanned(planned)
    index = ExactIndex("c", 64)
    outs = [_run(planned, index, seq) for seq in planned[4]]
    assert outs[-1]["job_state"] == "succeeded" and index.count() == 30


def test_failed_batch_fails_the_job_with_its_error(planned):
    sessions, _, _, job_id, _ = planned
    batches.mark_batch_failed(sessions=sessions, job_id=job_id, seq=1, error="disk full")
    index = SpyIndex("c", 64)
    _run(planned, index, 0)
    out = _run(planned, index, 2)
    assert out["job_state"] == "failed"
    with sessions() as s:
        assert "batch 1: disk full" in repo.get_job(session=s, job_id=job_id).error
    assert "alias:embplat_images" not in index.calls


def test_bulk_is_decided_once_when_planned(planned, monkeypatch):
    """The decision survives a job total that changes later (e.g. a progress write)."""
    sessions, _, _, job_id, seqs = planned
    with sessions() as s:
        assert repo.get_job(session=s, job_id=job_id).params["bulk"] is False
    monkeypatch.setattr(batches, "BULK_THRESHOLD", 10)
    with transaction(sessions) as s:  # planned as small: a bigger total changes nothing
        repo.update_job(session=s, job_id=job_id, total=10**6)
    index = SpyIndex("c", 64)
    for seq in seqs:
        _run(planned, index, seq)
    assert index.calls == ["alias:embplat_images"]


def test_job_handle_keeps_a_total_it_did_not_set(planned):
    from embplat.jobs.runner import JobHandle

    sessions, _, _, job_id, _ = planned
    handle = JobHandle(job_id, sessions)
    handle.advance(5)
    with sessions() as s:
        assert repo.get_job(session=s, job_id=job_id).total == 30  # plan_batches' total
    handle.set_total(40)
    with sessions() as s:
        assert repo.get_job(session=s, job_id=job_id).total == 40


@pytest.mark.slow
def test_large_local_ingest_leaves_nmslib_with_its_graph(tmp_path, fmnist_root, monkeypatch):
    """Past the bulk threshold, in several batches: indexing is deferred, then restored
    after the last batch, so the index ends with an HNSW graph over every point."""
    import json

    from embplat.config import load_settings
    from embplat.pipelines.ingest import ingest_tree
    from embplat.workers.context import build_context

    env = {
        "EMBPLAT_HOME": str(tmp_path / "home"),
        "EMBPLAT_BROKER_URL": "",
        "EMBPLAT_CATALOG_URL": "",
        "EMBPLAT_INDEX_BACKEND": "nmslib",
        "EMBPLAT_INDEX_BUFFER_LIMIT": "32",
        "EMBPLAT_EMBED_ENCODER": "tiny_cnn",
        "EMBPLAT_EMBED_NUM_WORKERS": "0",
        "EMBPLAT_INGEST_BATCH_SIZE": "16",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(batches, "BULK_THRESHOLD", 50)
    ctx = build_context(load_settings())
    result = ingest_tree(ctx, fmnist_root)
    index = ctx.spaces.space().index
    assert result.embedded == 120 and index.count(None) == 120
    with ctx.sessions() as s:
        job = repo.get_job(session=s, job_id=result.job_id)
        n_batches = batches.count_batches(sessions=ctx.sessions, job_id=job.id)
    assert (job.state, job.total, job.done, job.failed) == ("succeeded", 120, 120, 0)
    assert job.params["bulk"] is True and n_batches == 8
    assert index._graph is not None and index._built == 120  # every point in the graph
    ctx.close()
    (manifest,) = (tmp_path / "home" / "index").rglob("manifest.json")
    assert json.loads(manifest.read_text())["graph"]
