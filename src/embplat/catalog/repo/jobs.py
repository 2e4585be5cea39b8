"""Job rows: create, update, read, list, and the embedded images a job or evaluation reads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from embplat.catalog.models import (
    ClassLabel,
    Embedding,
    Image,
    Job,
    utcnow,
)
from embplat.errors import NotFoundError


def create_job(*, session: Session, kind: str, params: Mapping[str, Any], total: int = 0) -> Job:
    """A new queued job."""
    job = Job(kind=kind, params=dict(params), total=total, state="queued", done=0, failed=0)
    session.add(job)
    session.flush()
    return job


def update_job(*, session: Session, job_id: int, **fields: Any) -> Job:
    """Set fields on a job; ``state`` running/succeeded/failed stamps start/finish times."""
    job = get_job(session=session, job_id=job_id)
    state = fields.get("state")
    if state == "running" and job.started_at is None:
        job.started_at = utcnow()
    if state in {"succeeded", "failed"}:
        job.finished_at = utcnow()
    for key, value in fields.items():
        setattr(job, key, value)
    return job


def get_job(*, session: Session, job_id: int) -> Job:
    """The job with this id; NotFoundError otherwise."""
    job = session.get(Job, job_id)
    if job is None:
        raise NotFoundError(f"no job with id {job_id}")
    return job


def list_jobs(*, session: Session, limit: int = 20) -> list[Job]:
    """Most recent jobs first."""
    return list(session.scalars(select(Job).order_by(Job.id.desc()).limit(limit)))


def embedded_images(
    *, session: Session, collection_id: int, splits: Sequence[str]
) -> list[tuple[int, str, str, str]]:
    """(image id, split, class name, point id) of images stored in the collection."""
    stmt = (
        select(Image.id, Image.split, ClassLabel.name, Embedding.point_id)
        .join(Embedding, Embedding.image_id == Image.id)
        .join(ClassLabel, ClassLabel.id == Image.class_id)
        .where(Embedding.collection_id == collection_id, Image.split.in_(list(splits)))
        .order_by(Image.id)
    )
    return [tuple(row) for row in session.execute(stmt)]  # type: ignore[misc]
