"""Use cases about jobs themselves: close the ones whose process died, queue a training.

An in-process job records its runner (host, pid, process start time; see
``embplat.workers.runner``). A process killed outright (SIGKILL, out of memory, a closed
laptop) cannot mark its job failed, so the job would stay ``running`` forever and
``platform jobs --watch`` would never return. :func:`interrupt_dead_jobs` finds those on
this host and marks them ``interrupted``; ``platform jobs resume ID`` finishes their batches.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.catalog.models import Job, as_utc, utcnow
from embplat.errors import ConfigError
from embplat.pipelines.context import Context
from embplat.workers.runner import RUNNER_KEY, runner_alive, this_runner

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


def claim_job(sessions: sessionmaker[Session], job_id: int, *, here: bool) -> None:
    """Before resuming a job: record this process as its runner (``here``: its batches run
    in this process), or drop the runner (they go to workers)."""
    with transaction(sessions) as session:
        job = repo.get_job(session=session, job_id=job_id)
        params = {k: v for k, v in (job.params or {}).items() if k != RUNNER_KEY}
        job.params = {**params, RUNNER_KEY: this_runner()} if here else params


def queue_training(ctx: Context, recipe: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """Server mode: fix the model's name, record a queued ``train`` job, send it to a worker.

    The name travels in the task's config, so a task delivered twice (a worker killed, a
    broker redelivery) finds its model, or its job, instead of training a second model.

    Returns:
        ``job`` (id), ``model`` (name), ``task`` (Celery id), ``recipe``.

    Raises:
        ConfigError: bad config, the name is taken or already queued, or no broker.
        ServiceUnavailableError: the broker does not answer (nothing is written).
    """
    from embplat.models.recipes import make_config

    if ctx.dispatch is None:
        raise ConfigError("no broker configured: set EMBPLAT_BROKER_URL to queue a training")
    cfg = make_config(recipe, config)
    name = _free_name(ctx, recipe, cfg.name)
    payload = {**cfg.as_dict(), "name": name}
    make_config(recipe, payload)  # the name is valid in the config, too
    ctx.dispatch.check()
    with transaction(ctx.sessions) as session:
        params = {"recipe": recipe, "model": name, "config": payload}
        job_id = repo.create_job(session=session, kind="train", params=params).id
    try:
        task = ctx.dispatch.send_train(recipe, payload)
    except BaseException as exc:
        with transaction(ctx.sessions) as session:
            repo.update_job(session=session, job_id=job_id, state="failed", error=str(exc))
        raise
    with transaction(ctx.sessions) as session:
        job = repo.get_job(session=session, job_id=job_id)
        job.params = {**job.params, "task": task}
    log.info("job %d: %s training of %s queued as task %s", job_id, recipe, name, task)
    return {"job": job_id, "model": name, "task": task, "recipe": recipe}


def _free_name(ctx: Context, recipe: str, wanted: str | None) -> str:
    """``model_name``'s choice, also free of trainings queued but not finished yet."""
    from embplat.pipelines.train_data import model_name

    pending = pending_trainings(ctx.sessions)
    name = model_name(ctx, recipe, wanted)
    if wanted and name in pending:
        raise ConfigError(
            f"a training of a model named {name!r} is queued already (job {pending[name]}); "
            "choose another --name"
        )
    while name in pending:  # `<recipe>-N` taken by a queued job: the next number
        prefix, _, number = name.rpartition("-")
        name = f"{prefix}-{int(number) + 1}"
    return name


def pending_trainings(sessions: sessionmaker[Session]) -> dict[str, int]:
    """model name -> job id of every ``train`` job not finished yet (queued or running)."""
    with sessions() as session:
        rows = session.execute(
            select(Job.id, Job.params).where(Job.kind == "train", Job.state.in_(ACTIVE))
        ).all()
    return {str(p["model"]): job_id for job_id, p in rows if (p or {}).get("model")}


def train_queued(ctx: Context, recipe: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """In a worker: run a training queued by :func:`queue_training`, at most once per name.

    A model of that name registered already (the task was delivered again after it
    finished) is returned as it is; otherwise the queued job (or, if the process that
    started it is gone, the same job again) trains it.

    Returns:
        ``model`` and ``existing`` (True when nothing was trained).
    """
    from embplat.pipelines.train import train_recipe

    name = config.get("name")
    if name and _registered(ctx, str(name)):
        log.warning("model %s exists already: task delivered again, not training twice", name)
        job_id = pending_trainings(ctx.sessions).get(str(name))
        if job_id is not None:
            with transaction(ctx.sessions) as session:
                repo.update_job(session=session, job_id=job_id, state="succeeded")
        return {"model": name, "existing": True}
    job_id = _queued_job(ctx, str(name)) if name else None
    try:
        model = train_recipe(ctx, recipe, config, job_id=job_id)
    except Exception as exc:  # refused before it started (bad data): the job says why
        if job_id is not None:
            with transaction(ctx.sessions) as session:
                job = repo.get_job(session=session, job_id=job_id)
                if job.state == "queued":
                    repo.update_job(
                        session=session,
                        job_id=job_id,
                        state="failed",
                        error=f"{type(exc).__name__}: {exc}",
                    )
        raise
    return {"model": model, "existing": False}


def _registered(ctx: Context, name: str) -> bool:
    from embplat.errors import NotFoundError

    with ctx.sessions() as session:
        try:
            repo.get_model(session=session, name=name)
        except NotFoundError:
            return False
    return True


def _queued_job(ctx: Context, name: str) -> int | None:
    """The newest train job of this model that is not over, unless its process lives."""
    with ctx.sessions() as session:
        rows = session.execute(
            select(Job.id, Job.state, Job.params)
            .where(Job.kind == "train", Job.state != "succeeded")
            .order_by(Job.id.desc())
        ).all()
    for job_id, state, params in rows:
        if (params or {}).get("model") != name:
            continue
        runner = (params or {}).get(RUNNER_KEY)
        if state == "running" and isinstance(runner, Mapping) and runner_alive(runner):
            raise ConfigError(f"model {name!r} is being trained by job {job_id} already")
        return int(job_id)
    return None
