"""Job runner: records a job in the catalog and runs its work in-process (local mode).

Server mode sends the same use-case functions to Celery workers; both paths record progress
in the ``jobs`` table, which ``platform jobs`` reads. A job run in-process records who runs
it (host, pid, process start time) under ``params["runner"]``, so a job whose process was
killed can be told from one still running (``embplat.pipelines.jobs.interrupt_dead_jobs``).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from embplat.catalog import repo
from embplat.catalog.db import transaction

log = logging.getLogger(__name__)

#: The key of a job's ``params`` naming the process that runs it in-process.
RUNNER_KEY = "runner"


def _stat_fields(pid: int) -> list[str]:
    """Fields 3.. of ``/proc/<pid>/stat`` (state first), or [] where it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return []
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    return stat.rsplit(")", 1)[-1].split()


def process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux ``/proc``), or None.

    Together with the pid it names one process: a pid reused later has another start time.
    """
    fields = _stat_fields(pid)
    try:
        return int(fields[19])  # field 22 of proc(5): starttime
    except (IndexError, ValueError):
        return None


def this_runner() -> dict[str, Any]:
    """Identity of this process: ``{"host", "pid", "start"}`` (start None without /proc)."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start": process_start(pid)}


def runner_alive(runner: Mapping[str, Any]) -> bool | None:
    """Whether the recorded process still runs: None when it ran on another host (unknown).

    A pid that is gone, a zombie, or reused by a process started at another time is dead.
    """
    if runner.get("host") != socket.gethostname():
        return None
    try:
        pid = int(runner["pid"])
    except (KeyError, TypeError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    if _zombie(pid):
        return False
    recorded, now = runner.get("start"), process_start(pid)
    return recorded is None or now is None or int(recorded) == now


def _zombie(pid: int) -> bool:
    fields = _stat_fields(pid)
    return bool(fields) and fields[0] in {"Z", "X"}


@dataclass
class JobHandle:
    """Progress reporting for a running job; catalog writes are throttled to ~1 per second.

    The job's ``total`` is written only once :meth:`set_total` declared it: a total set
    elsewhere (e.g. by ``plan_batches``) is never overwritten with this handle's 0.
    """

    job_id: int
    sessions: sessionmaker[Session]
    total: int = 0
    done: int = 0
    failed: int = 0
    detached: bool = False
    _total_set: bool = field(default=False, repr=False)
    _last: float = field(default=0.0, repr=False)

    def detach(self) -> None:
        """The rest of the job runs elsewhere (workers): leave it running when work returns."""
        self.detached = True

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


def run_in_process(
    *,
    sessions: sessionmaker[Session],
    kind: str,
    params: Mapping[str, Any],
    work: Callable[[JobHandle], dict[str, Any]],
    job_id: int | None = None,
) -> tuple[int, dict[str, Any]]:
    """Run ``work`` as a recorded job; returns (job id, result). Errors mark the job failed.

    Args:
        job_id: run this existing job (e.g. one queued at dispatch time) instead of creating
            one; its params are updated with ``params``.
    """
    job_id = _start(sessions, kind, params, job_id)
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
    with transaction(sessions) as session:
        job = repo.get_job(session=session, job_id=job_id)
        if handle.detached:  # workers own it now: no in-process runner to watch
            current = {k: v for k, v in (job.params or {}).items() if k != RUNNER_KEY}
            job.params = {**current, "queued": result}
            return job_id, result
        repo.update_job(
            session=session,
            job_id=job_id,
            state="succeeded",
            result=result,
            total=max(job.total, handle.total, handle.done),
            done=handle.done,
            failed=handle.failed,
        )
    return job_id, result


def _start(
    sessions: sessionmaker[Session], kind: str, params: Mapping[str, Any], job_id: int | None
) -> int:
    """Create (or take over) the job row, mark it running by this process."""
    with transaction(sessions) as session:
        if job_id is None:
            job_id = repo.create_job(session=session, kind=kind, params=params).id
        job = repo.get_job(session=session, job_id=job_id)
        job.params = {**(job.params or {}), **params, RUNNER_KEY: this_runner()}
        repo.update_job(
            session=session, job_id=job_id, state="running", error=None, finished_at=None
        )
    return job_id
