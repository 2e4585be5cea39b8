"""Job runner: records a job in the catalog and runs its work in-process (local mode).

Server mode sends the same use-case functions to Celery workers; both paths record progress
in the ``jobs`` table, which ``platform jobs`` reads.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from embplat.catalog import repo
from embplat.catalog.db import transaction

log = logging.getLogger(__name__)


@dataclass
class JobHandle:
    """Progress reporting for a running job; catalog writes are throttled to ~1 per second."""

    job_id: int
    sessions: sessionmaker[Session]
    total: int = 0
    done: int = 0
    failed: int = 0
    detached: bool = False
    _last: float = field(default=0.0, repr=False)

    def detach(self) -> None:
        """The rest of the job runs elsewhere (workers): leave it running when work returns."""
        self.detached = True

    def set_total(self, total: int) -> None:
        """Declare how many items the job will handle."""
        self.total = total
        self._write(force=True)

    def advance(self, n: int, *, failed: int = 0) -> None:
        """Count ``n`` more items handled, ``failed`` of them unsuccessfully."""
        self.done += n
        self.failed += failed
        self._write(force=False)

    def _write(self, *, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last < 1.0:
            return
        self._last = now
        with transaction(self.sessions) as session:
            repo.update_job(
                session=session,
                job_id=self.job_id,
                total=self.total,
                done=self.done,
                failed=self.failed,
            )


def run_in_process(
    *,
    sessions: sessionmaker[Session],
    kind: str,
    params: Mapping[str, Any],
    work: Callable[[JobHandle], dict[str, Any]],
) -> tuple[int, dict[str, Any]]:
    """Run ``work`` as a recorded job; returns (job id, result). Errors mark the job failed."""
    with transaction(sessions) as session:
        job_id = repo.create_job(session=session, kind=kind, params=params).id
        repo.update_job(session=session, job_id=job_id, state="running")
    handle = JobHandle(job_id, sessions)
    try:
        result = work(handle)
    except BaseException as exc:
        with transaction(sessions) as session:
            repo.update_job(
                session=session,
                job_id=job_id,
                state="failed",
                error=f"{type(exc).__name__}: {exc}",
                done=handle.done,
                failed=handle.failed,
            )
        raise
    if handle.detached:
        with transaction(sessions) as session:
            repo.update_job(session=session, job_id=job_id, params={**params, "queued": result})
        return job_id, result
    with transaction(sessions) as session:
        repo.update_job(
            session=session,
            job_id=job_id,
            state="succeeded",
            result=result,
            total=max(handle.total, handle.done),
            done=handle.done,
            failed=handle.failed,
        )
    return job_id, result
