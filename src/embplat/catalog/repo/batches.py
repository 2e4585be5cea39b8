"""Job batches: the rows a batched job (embedding) is cut into, and their outcomes."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from embplat.catalog.models import JobBatch
from embplat.catalog.repo._common import insert_ignore
from embplat.errors import NotFoundError

# --- job batches -----------------------------------------------------------------------------


def add_batches(*, session: Session, job_id: int, items: Sequence[Sequence[int]]) -> int:
    """Queue one batch per entry of ``items`` (sequence numbers 0, 1, ...), skipping those
    the job already has, so planning a job twice adds nothing.

    Returns:
        How many batches were added.
    """
    rows = [
        {
            "job_id": job_id,
            "seq": seq,
            "items": list(batch),
            "state": "queued",
            "attempts": 0,
            "done": 0,
            "failed": [],
        }
        for seq, batch in enumerate(items)
    ]
    return insert_ignore(session=session, model=JobBatch, rows=rows, keys=["job_id", "seq"])


def get_batch(*, session: Session, job_id: int, seq: int) -> JobBatch:
    """The batch ``seq`` of a job; NotFoundError otherwise."""
    stmt = select(JobBatch).where(JobBatch.job_id == job_id, JobBatch.seq == seq)
    batch = session.scalar(stmt)
    if batch is None:
        raise NotFoundError(f"job {job_id} has no batch {seq}")
    return batch


def start_batch(*, session: Session, job_id: int, seq: int) -> list[int]:
    """Mark a batch running (one more attempt); returns its item ids."""
    batch = get_batch(session=session, job_id=job_id, seq=seq)
    batch.state, batch.attempts = "running", batch.attempts + 1
    return list(batch.items)


def finish_batch(
    *, session: Session, job_id: int, seq: int, done: int, failed: Sequence[Sequence[str]]
) -> None:
    """Record a batch that ran: ``done`` items stored, ``failed`` (path, reason) pairs."""
    batch = get_batch(session=session, job_id=job_id, seq=seq)
    batch.state, batch.done = "done", done
    batch.failed = [list(f) for f in failed]


def fail_batch(*, session: Session, job_id: int, seq: int, error: str) -> None:
    """Record a batch that gave up, with its error."""
    batch = get_batch(session=session, job_id=job_id, seq=seq)
    batch.state, batch.error = "failed", error


def requeue_batches(*, session: Session, job_id: int, seqs: Sequence[int]) -> None:
    """Put batches back in the queue: state ``queued``, error cleared."""
    for seq in seqs:
        batch = get_batch(session=session, job_id=job_id, seq=seq)
        batch.state, batch.error = "queued", None


def job_batches(*, session: Session, job_id: int) -> list[JobBatch]:
    """Every batch of a job, by sequence number."""
    stmt = select(JobBatch).where(JobBatch.job_id == job_id).order_by(JobBatch.seq)
    return list(session.scalars(stmt))


def count_batches(*, session: Session, job_id: int) -> int:
    """How many batches a job was cut into (0 for jobs that are not batched)."""
    stmt = select(func.count()).select_from(JobBatch).where(JobBatch.job_id == job_id)
    return int(session.scalar(stmt) or 0)


def unfinished_batches(*, session: Session, job_id: int) -> list[int]:
    """Sequence numbers of a job's batches not yet done, ascending."""
    stmt = select(JobBatch.seq).where(JobBatch.job_id == job_id, JobBatch.state != "done")
    return list(session.scalars(stmt.order_by(JobBatch.seq)))


def batch_failures(*, session: Session, job_id: int) -> list[tuple[str, str]]:
    """(path, reason) of every item a job's batches could not load."""
    rows = session.scalars(select(JobBatch.failed).where(JobBatch.job_id == job_id))
    return [(str(p), str(r)) for failed in rows for p, r in failed]
