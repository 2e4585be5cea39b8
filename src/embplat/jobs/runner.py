"""The job runner: records jobs in the catalog and runs their tasks here or on workers.

One interface, two implementations, chosen once where the objects are built
(``embplat.workers.context.build_context``), as qdrant-client picks its local or remote
implementation once: :class:`InProcessRunner` (local mode, and inside a worker) calls each
task in this process; ``embplat.workers.celery_runner.CeleryRunner`` (server mode) sends it
to the Celery workers, which call the same use-case function. Use cases submit
:class:`Task` objects and read the :class:`Submitted` outcome; they never ask which runner
they have.

Both record progress in the ``jobs`` table, which ``platform jobs`` reads.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.jobs.identity import RUNNER_KEY, this_runner

log = logging.getLogger(__name__)

#: Worker task names (``embplat.workers.tasks`` defines a Celery task for each).
EMBED_BATCH = "embplat.embed_batch"
CAPTION_BATCH = "embplat.caption_batch"
TRAIN = "embplat.train"


@dataclass(frozen=True)
class Task:
    """One unit of work: the worker task's name and JSON arguments, and the same work as a
    call in this process (what :class:`InProcessRunner` runs)."""

    name: str
    args: tuple[Any, ...]
    here: Callable[[], dict[str, Any]]


@dataclass(frozen=True)
class Submitted:
    """What became of submitted tasks: their results when they ran here, or the ids of the
    worker tasks they were sent as."""

    results: list[dict[str, Any]] = field(default_factory=list)
    queued: list[str] = field(default_factory=list)


@dataclass
class JobHandle:
    """Progress reporting for a running job; catalog writes are throttled to ~1 per second.

    The job's ``total`` is written only once :meth:`set_total` declared it: a total set
    elsewhere (e.g. by ``plan_batches``) is never overwritten with this handle's 0.
    """

    job_id: int
    sessions: sessionmaker[Session]
    runner: JobRunner | None = None
    total: int = 0
    done: int = 0
    failed: int = 0
    #: Tasks of this job sent to workers: then the job goes on after its work returns.
    queued: int = 0
    _total_set: bool = field(default=False, repr=False)
    _last: float = field(default=0.0, repr=False)

    def submit(self, tasks: Sequence[Task]) -> Submitted:
        """Hand this job's tasks to its runner (run here, or sent to workers)."""
        if self.runner is None:
            raise RuntimeError(f"job {self.job_id} has no runner to submit tasks to")
        out = self.runner.submit(tasks)
        self.queued += len(out.queued)
        return out

    def set_total(self, total: int) -> None:
        """Declare how many items the job will handle."""
        self.total, self._total_set = total, True
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
        fields: dict[str, Any] = {"done": self.done, "failed": self.failed}
        if self._total_set:
            fields["total"] = self.total
        with transaction(self.sessions) as session:
            repo.update_job(session=session, job_id=self.job_id, **fields)


class JobRunner:
    """Records jobs and runs their tasks; subclasses decide where tasks run.

    Attributes:
        in_process: tasks run in this process, where the indexes they write are open (work
            that needs those indexes themselves, such as healing one from the catalog, is
            done only then; workers heal theirs through ``platform doctor``).
    """

    in_process: bool = True

    def __init__(self, sessions: sessionmaker[Session]):
        self.sessions = sessions

    def check(self) -> None:
        """Fail fast (ServiceUnavailableError naming the broker) before any work is written."""

    def submit(self, tasks: Sequence[Task]) -> Submitted:
        """Run the tasks (here, in order), or send them to workers."""
        raise NotImplementedError

    def run(
        self,
        *,
        kind: str,
        params: Mapping[str, Any],
        work: Callable[[JobHandle], dict[str, Any]],
        job_id: int | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Run ``work`` here as a recorded job; returns (job id, result).

        Errors mark the job failed. A job whose work sent tasks to workers stays running
        (the workers finish it); otherwise it ends ``succeeded`` with ``work``'s result.

        Args:
            job_id: run this existing job (e.g. one queued by ``submit_training``) instead
                of creating one; its params are updated with ``params``.
        """
        job_id = self._start(kind, params, job_id)
        handle = JobHandle(job_id, self.sessions, runner=self)
        try:
            result = work(handle)
        except BaseException as exc:
            with transaction(self.sessions) as session:
                repo.update_job(
                    session=session,
                    job_id=job_id,
                    state="failed",
                    error=f"{type(exc).__name__}: {exc}",
                    done=handle.done,
                    failed=handle.failed,
                )
            raise
        self._finish(handle, result)
        return job_id, result

    def claim(self, job_id: int) -> None:
        """Before resuming a job: record this process as its runner when its tasks run here,
        else drop the runner (workers run them)."""
        with transaction(self.sessions) as session:
            job = repo.get_job(session=session, job_id=job_id)
            params = {k: v for k, v in (job.params or {}).items() if k != RUNNER_KEY}
            job.params = {**params, RUNNER_KEY: this_runner()} if self.in_process else params

    def _start(self, kind: str, params: Mapping[str, Any], job_id: int | None) -> int:
        """Create (or take over) the job row, mark it running by this process."""
        with transaction(self.sessions) as session:
            if job_id is None:
                job_id = repo.create_job(session=session, kind=kind, params=params).id
            job = repo.get_job(session=session, job_id=job_id)
            job.params = {**(job.params or {}), **params, RUNNER_KEY: this_runner()}
            repo.update_job(
                session=session, job_id=job_id, state="running", error=None, finished_at=None
            )
        return job_id

    def _finish(self, handle: JobHandle, result: dict[str, Any]) -> None:
        with transaction(self.sessions) as session:
            job = repo.get_job(session=session, job_id=handle.job_id)
            if handle.queued:  # workers own it now: no process here to watch
                current = {k: v for k, v in (job.params or {}).items() if k != RUNNER_KEY}
                job.params = {**current, "queued": result}
                return
            repo.update_job(
                session=session,
                job_id=handle.job_id,
                state="succeeded",
                result=result,
                total=max(job.total, handle.total, handle.done),
                done=handle.done,
                failed=handle.failed,
            )


class InProcessRunner(JobRunner):
    """Runs every task in this process (local mode, and a worker's own context)."""

    in_process = True

    def submit(self, tasks: Sequence[Task]) -> Submitted:
        return Submitted(results=[task.here() for task in tasks])
