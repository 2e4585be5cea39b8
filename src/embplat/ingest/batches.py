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

from sqlalchemy.orm import Session, sessionmaker

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.catalog.models import Job
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
    items = [
        image_ids[start : start + batch_size] for start in range(0, len(image_ids), batch_size)
    ]
    with transaction(sessions) as session:
        repo.add_batches(session=session, job_id=job_id, items=items)
        job = repo.get_job(session=session, job_id=job_id)
        job.params = {**(job.params or {}), "bulk": len(image_ids) >= BULK_THRESHOLD}
        repo.update_job(session=session, job_id=job_id, total=len(image_ids), state="running")
    return list(range(len(items)))


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
        items = repo.start_batch(session=session, job_id=job_id, seq=seq)
        bulk = job_is_bulk(repo.get_job(session=session, job_id=job_id))
    if bulk:
        index.defer_indexing()
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
        done = len(items) - len(report.failed)
        repo.finish_batch(session=session, job_id=job_id, seq=seq, done=done, failed=report.failed)
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
    """After a job's last batch: restore deferred indexing; point the alias at a full index.

    Every backend takes these calls; one with nothing to restore or no aliases ignores them.
    """
    if bulk:
        index.restore_indexing()
    if succeeded and alias:
        index.set_alias(alias)


def mark_batch_failed(
    *, sessions: sessionmaker[Session], job_id: int, seq: int, error: str
) -> None:
    """Record a batch that gave up (after retries); the job is marked failed."""
    with transaction(sessions) as session:
        repo.fail_batch(session=session, job_id=job_id, seq=seq, error=error)
    refresh_job(sessions=sessions, job_id=job_id)


def refresh_job(*, sessions: sessionmaker[Session], job_id: int) -> str:
    """Recompute a job's progress from its batches; finishes it when every batch is over."""
    with transaction(sessions) as session:
        batches = repo.job_batches(session=session, job_id=job_id)
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
        return repo.count_batches(session=session, job_id=job_id)


def unfinished_batches(*, sessions: sessionmaker[Session], job_id: int) -> list[int]:
    """Sequence numbers of batches not yet done (to resume a job)."""
    with sessions() as session:
        return repo.unfinished_batches(session=session, job_id=job_id)


def reset_batches(*, sessions: sessionmaker[Session], job_id: int, seqs: Sequence[int]) -> None:
    """Put batches back in the queue (state ``queued``, error cleared) and the job back to
    ``running``, before they are run again."""
    with transaction(sessions) as session:
        repo.requeue_batches(session=session, job_id=job_id, seqs=seqs)
        repo.update_job(session=session, job_id=job_id, state="running", error=None)


def batch_failures(*, sessions: sessionmaker[Session], job_id: int) -> list[tuple[str, str]]:
    """(path, reason) of every image a job's batches could not load."""
    with sessions() as session:
        return repo.batch_failures(session=session, job_id=job_id)
