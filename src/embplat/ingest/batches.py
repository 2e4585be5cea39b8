"""Embedding jobs split into batches, the unit both modes execute.

A job's images are cut into ``JobBatch`` rows (default 256 image ids each). Local mode runs
them in-process one after another; server mode sends one Celery task per batch. Running a
batch twice (a retry, a worker killed mid-batch) is harmless: images already recorded are
skipped and the rest are rewritten under the same deterministic point ids.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.catalog.models import Job, JobBatch
from embplat.errors import NotFoundError
from embplat.ingest.embedding import EmbedReport, Progress, embed_images
from embplat.models.encoders import ImageEncoder
from embplat.retrieval import VectorIndex

log = logging.getLogger(__name__)

#: Alias that always names the current model's collection (Qdrant; see docs/qdrant.md).
IMAGES_ALIAS = "embplat_images"
#: Jobs at least this large load with HNSW indexing deferred until their last batch.
BULK_THRESHOLD = 5000


def plan_batches(
    *, sessions: sessionmaker[Session], job_id: int, image_ids: Sequence[int], batch_size: int
) -> list[int]:
    """Create the job's batches (idempotent per sequence number); returns their seqs.

    Whether the job is a bulk load (at least ``BULK_THRESHOLD`` images: HNSW indexing
    deferred until its last batch) is decided here, once, and kept in the job's params
    (``bulk``), so every batch of the job agrees whatever happens to its counters.
    """
    rows = [
        {
            "job_id": job_id,
            "seq": seq,
            "items": list(image_ids[start : start + batch_size]),
            "state": "queued",
            "attempts": 0,
            "done": 0,
            "failed": [],
        }
        for seq, start in enumerate(range(0, len(image_ids), batch_size))
    ]
    with transaction(sessions) as session:
        repo.insert_ignore(session=session, model=JobBatch, rows=rows, keys=["job_id", "seq"])
        job = repo.get_job(session=session, job_id=job_id)
        job.params = {**(job.params or {}), "bulk": len(image_ids) >= BULK_THRESHOLD}
        repo.update_job(session=session, job_id=job_id, total=len(image_ids), state="running")
    return list(range(len(rows)))


def run_batch(
    *,
    sessions: sessionmaker[Session],
    job_id: int,
    seq: int,
    encoder: ImageEncoder,
    index: VectorIndex,
    collection_id: int,
    batch_size: int,
    num_workers: int,
    max_pixels: int,
    progress: Progress | None = None,
    alias: str | None = IMAGES_ALIAS,
) -> dict[str, Any]:
    """Embed one batch of a job and record the outcome; returns a small JSON summary.

    After the job's last batch the index's ``alias`` (Qdrant) is pointed at it, unless None.
    """
    with transaction(sessions) as session:
        batch = _batch(session, job_id, seq)
        batch.state, batch.attempts = "running", batch.attempts + 1
        items = list(batch.items)
        bulk = job_is_bulk(repo.get_job(session=session, job_id=job_id))
    if bulk:
        _call(index, "defer_indexing")
    report: EmbedReport = embed_images(
        items,
        sessions=sessions,
        encoder=encoder,
        index=index,
        collection_id=collection_id,
        batch_size=batch_size,
        num_workers=num_workers,
        commit_every=len(items) or 1,
        max_pixels=max_pixels,
        progress=progress,
    )
    with transaction(sessions) as session:
        batch = _batch(session, job_id, seq)
        batch.state = "done"
        batch.done = len(items) - len(report.failed)
        batch.failed = [list(f) for f in report.failed]
    state = refresh_job(sessions=sessions, job_id=job_id)
    if state in {"succeeded", "failed"}:
        finish_index(index, succeeded=state == "succeeded", bulk=bulk, alias=alias)
    return {
        "job": job_id,
        "seq": seq,
        "embedded": report.done,
        "failed": len(report.failed),
        "job_state": state,
    }


def job_is_bulk(job: Job) -> bool:
    """The bulk decision ``plan_batches`` stored (jobs planned before it: from the total)."""
    stored = (job.params or {}).get("bulk")
    return bool(stored) if stored is not None else job.total >= BULK_THRESHOLD


def finish_index(
    index: VectorIndex, *, succeeded: bool, bulk: bool, alias: str | None = IMAGES_ALIAS
) -> None:
    """After a job's last batch: restore deferred indexing; point the alias at a full index."""
    if bulk:
        _call(index, "restore_indexing")
    if succeeded and alias:
        _call(index, "set_alias", alias)


def _call(index: VectorIndex, method: str, *args: Any) -> None:
    """Backend-specific hooks (Qdrant's): other backends simply lack them."""
    fn = getattr(index, method, None)
    if callable(fn):
        fn(*args)


def mark_batch_failed(
    *, sessions: sessionmaker[Session], job_id: int, seq: int, error: str
) -> None:
    """Record a batch that gave up (after retries); the job is marked failed."""
    with transaction(sessions) as session:
        batch = _batch(session, job_id, seq)
        batch.state, batch.error = "failed", error
    refresh_job(sessions=sessions, job_id=job_id)


def refresh_job(*, sessions: sessionmaker[Session], job_id: int) -> str:
    """Recompute a job's progress from its batches; finishes it when every batch is over."""
    with transaction(sessions) as session:
        batches = list(session.scalars(select(JobBatch).where(JobBatch.job_id == job_id)))
        done = sum(b.done for b in batches)
        failed = sum(len(b.failed) for b in batches)
        over = all(b.state in {"done", "failed"} for b in batches)
        errors = [f"batch {b.seq}: {b.error}" for b in batches if b.state == "failed"]
        fields: dict[str, Any] = {"done": done + failed, "failed": failed}
        if over:
            fields["state"] = "failed" if errors else "succeeded"
            fields["error"] = "; ".join(errors) or None
            fields["result"] = {"embedded": done, "failed": failed, "batches": len(batches)}
        job = repo.update_job(session=session, job_id=job_id, **fields)
        return job.state


def count_batches(*, sessions: sessionmaker[Session], job_id: int) -> int:
    """How many batches a job was cut into (0 for jobs that are not batched)."""
    with sessions() as session:
        stmt = select(func.count()).select_from(JobBatch).where(JobBatch.job_id == job_id)
        return int(session.scalar(stmt) or 0)


def unfinished_batches(*, sessions: sessionmaker[Session], job_id: int) -> list[int]:
    """Sequence numbers of batches not yet done (to resume a job)."""
    with sessions() as session:
        stmt = select(JobBatch.seq).where(JobBatch.job_id == job_id, JobBatch.state != "done")
        return list(session.scalars(stmt.order_by(JobBatch.seq)))


def reset_batches(*, sessions: sessionmaker[Session], job_id: int, seqs: Sequence[int]) -> None:
    """Put batches back in the queue (state ``queued``, error cleared) and the job back to
    ``running``, before they are run again."""
    with transaction(sessions) as session:
        for seq in seqs:
            batch = _batch(session, job_id, seq)
            batch.state, batch.error = "queued", None
        repo.update_job(session=session, job_id=job_id, state="running", error=None)


def batch_failures(*, sessions: sessionmaker[Session], job_id: int) -> list[tuple[str, str]]:
    """(path, reason) of every image a job's batches could not load."""
    with sessions() as session:
        rows = session.scalars(select(JobBatch.failed).where(JobBatch.job_id == job_id))
        return [(str(p), str(r)) for failed in rows for p, r in failed]


def _batch(session: Session, job_id: int, seq: int) -> JobBatch:
    batch = session.scalar(select(JobBatch).where(JobBatch.job_id == job_id, JobBatch.seq == seq))
    if batch is None:
        raise NotFoundError(f"job {job_id} has no batch {seq}")
    return batch
