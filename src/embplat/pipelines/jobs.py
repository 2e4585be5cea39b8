"""Use cases about jobs themselves: close the ones whose process died, find stale ones,
resume the unfinished batches of one.

An in-process job records its runner (host, pid, process start time; see
``embplat.jobs.identity``). A process killed outright (SIGKILL, out of memory, a closed
laptop) cannot mark its job failed, so the job would stay ``running`` forever and
``platform jobs --watch`` would never return. :func:`interrupt_dead_jobs` finds those on
this host and marks them ``interrupted``; ``platform jobs resume ID`` finishes their batches.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.catalog.models import Job, as_utc, utcnow
from embplat.errors import ConfigError
from embplat.jobs.identity import RUNNER_KEY, runner_alive
from embplat.jobs.runner import Task
from embplat.pipelines.context import Context
from embplat.progress import NoProgress, ProgressSink, deferred_task

log = logging.getLogger(__name__)

#: States of a job someone is (or should be) working on.
ACTIVE = ("running", "queued")
#: States of a job nobody works on any more.
FINISHED = frozenset({"succeeded", "failed", "interrupted"})


def interrupt_dead_jobs(sessions: sessionmaker[Session]) -> list[int]:
    """Mark ``interrupted`` every running/queued in-process job whose process on this host
    is gone (pid dead, a zombie, or reused by a later process); returns their ids.

    Jobs run by workers (no runner recorded) and jobs of other hosts are left alone.
    """
    with sessions() as session:
        active = session.execute(select(Job.id, Job.params).where(Job.state.in_(ACTIVE))).all()
    dead = [
        (job_id, params[RUNNER_KEY])
        for job_id, params in active
        if isinstance((params or {}).get(RUNNER_KEY), Mapping)
        and runner_alive(params[RUNNER_KEY]) is False
    ]
    interrupted: list[int] = []
    for job_id, runner in dead:
        with transaction(sessions) as session:
            job = repo.get_job(session=session, job_id=job_id)
            if job.state not in ACTIVE or (job.params or {}).get(RUNNER_KEY) != runner:
                continue  # finished or taken over meanwhile
            job.state, job.finished_at = "interrupted", utcnow()
            job.error = (
                f"interrupted: process {runner.get('pid')} on {runner.get('host')} that ran "
                "this job is gone (killed or crashed); `platform jobs resume "
                f"{job_id}` runs its unfinished batches, or run the command again"
            )
        interrupted.append(job_id)
        log.warning("job %d: its process %s is gone; marked interrupted", job_id, runner)
    return interrupted


def stale_worker_jobs(sessions: sessionmaker[Session], *, older_than: float) -> list[int]:
    """Running/queued jobs run by workers (batched, no in-process runner) none of whose
    batches changed for ``older_than`` seconds: their broker messages were lost (a flushed
    Redis) or every worker is gone. ``older_than`` should exceed the visibility timeout plus
    a task's time limit, after which Celery itself would have redelivered a batch."""
    from datetime import timedelta

    from sqlalchemy import func

    from embplat.catalog.models import JobBatch

    cutoff = utcnow() - timedelta(seconds=older_than)
    with sessions() as session:
        active = session.execute(select(Job.id, Job.params).where(Job.state.in_(ACTIVE))).all()
        worker_jobs = [j for j, params in active if RUNNER_KEY not in (params or {})]
        if not worker_jobs:
            return []
        latest = session.execute(
            select(JobBatch.job_id, func.max(JobBatch.updated_at))
            .where(JobBatch.job_id.in_(worker_jobs))
            .group_by(JobBatch.job_id)
        ).all()
    return sorted(job_id for job_id, last in latest if as_utc(last) < cutoff)


def resume_job(
    ctx: Context, job_id: int, *, progress: ProgressSink | None = None
) -> dict[str, Any]:
    """Run a job's unfinished batches again: those a crash, a lost broker message or a
    worker that gave up left undone. Local mode runs them here; server mode sends them to the
    workers again (the job runner decides). Batches are idempotent, so resuming a batch still
    in flight is harmless.

    Returns:
        ``job``, ``resumed`` (batches), ``queued`` (sent to workers) and the job's ``state``.

    Raises:
        NotFoundError: no such job.
        ConfigError: the job has no batches (e.g. a training job).
    """
    # imported here: `interrupt_dead_jobs` runs at every start-up, which must not load torch
    from embplat.ingest.batches import (
        count_batches,
        refresh_job,
        reset_batches,
        unfinished_batches,
    )
    from embplat.pipelines.embed import embed_batch_task

    with ctx.sessions() as session:
        kind = repo.get_job(session=session, job_id=job_id).kind
    if not count_batches(sessions=ctx.sessions, job_id=job_id):
        raise ConfigError(f"job {job_id} ({kind}) has no batches to resume")
    ctx.runner.claim(job_id)  # this process runs the batches, or the workers do
    seqs = unfinished_batches(sessions=ctx.sessions, job_id=job_id)
    out: dict[str, Any] = {"job": job_id, "kind": kind, "resumed": len(seqs), "queued": 0}
    if seqs:
        ctx.runner.check()
        reset_batches(sessions=ctx.sessions, job_id=job_id, seqs=seqs)
        bar = deferred_task(
            progress or NoProgress(), f"job {job_id}: {len(seqs)} batches", len(seqs)
        )
        make = embed_batch_task
        if kind == "caption":
            from embplat.pipelines.generated_captions import caption_batch_task as make
        tasks = [make(ctx, job_id, seq) for seq in seqs]
        done = ctx.runner.submit([_counted(task, bar) for task in tasks])
        out["queued"] = len(done.queued)
        log.info("resumed %d batches of job %d", len(seqs), job_id)
    out["state"] = refresh_job(sessions=ctx.sessions, job_id=job_id)
    return out


def _counted(task: Task, advance: Callable[[int], None]) -> Task:
    """``task`` advancing ``advance`` by one when it has run here."""

    def here() -> dict[str, Any]:
        out = task.here()
        advance(1)
        return out

    return replace(task, here=here)
