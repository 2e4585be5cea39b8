"""Use case: submit a training to the job runner, at most once per model name.

The training is recorded as a queued ``train`` job under a fixed model name, then submitted
as a task: the job runner trains it here (local mode) or sends it to a GPU worker (server
mode). The name travels in the task's config, so a task delivered twice (a worker killed,
a broker redelivery) finds its model, or its job, instead of training a second model.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.catalog.models import Job
from embplat.errors import ConfigError, NotFoundError
from embplat.jobs.identity import RUNNER_KEY, runner_alive
from embplat.jobs.runner import TRAIN, Task
from embplat.pipelines.context import Context
from embplat.pipelines.jobs import ACTIVE
from embplat.progress import ProgressSink

log = logging.getLogger(__name__)


def submit_training(
    ctx: Context,
    recipe: str,
    config: Mapping[str, Any],
    progress: ProgressSink | None = None,
) -> dict[str, Any]:
    """Fix the model's name, record a queued ``train`` job, submit it to the job runner.

    Returns:
        ``job`` (id), ``model`` (name), ``recipe``, ``queued`` (the worker task's id, or None
        when it was trained here) and, when trained here, ``existing``.

    Raises:
        ConfigError: bad config, the name is taken or already queued.
        DataError: (trained here) fewer than two trainable classes, a label with no vector.
        ServiceUnavailableError: the broker does not answer (nothing is written).
    """
    from embplat.models.recipes import make_config

    cfg = make_config(recipe, config)
    name = _free_name(ctx, recipe, cfg.name)
    payload = {**cfg.as_dict(), "name": name}
    make_config(recipe, payload)  # the name is valid in the config, too
    ctx.runner.check()
    with transaction(ctx.sessions) as session:
        params = {"recipe": recipe, "model": name, "config": payload}
        job_id = repo.create_job(session=session, kind="train", params=params).id
    task = Task(TRAIN, (recipe, payload), lambda: train_queued(ctx, recipe, payload, progress))
    try:
        done = ctx.runner.submit([task])
    except BaseException as exc:
        _fail_if_queued(ctx.sessions, job_id, exc)
        raise
    out: dict[str, Any] = {"job": job_id, "model": name, "recipe": recipe, "queued": None}
    if done.queued:
        out["queued"] = done.queued[0]
        with transaction(ctx.sessions) as session:
            job = repo.get_job(session=session, job_id=job_id)
            job.params = {**job.params, "task": out["queued"]}
        log.info("job %d: %s training of %s queued as task %s", job_id, recipe, name, out["queued"])
    else:
        out["existing"] = done.results[0]["existing"]
    return out


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


def train_queued(
    ctx: Context,
    recipe: str,
    config: Mapping[str, Any],
    progress: ProgressSink | None = None,
) -> dict[str, Any]:
    """Run a training submitted by :func:`submit_training` (here, or in a worker), at most
    once per name.

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
        model = train_recipe(ctx, recipe, config, progress, job_id=job_id)
    except Exception as exc:  # refused before it started (bad data): the job says why
        if job_id is not None:
            _fail_if_queued(ctx.sessions, job_id, exc)
        raise
    return {"model": model, "existing": False}


def _fail_if_queued(sessions: sessionmaker[Session], job_id: int, exc: BaseException) -> None:
    """A job that never started: mark it failed with the reason."""
    with transaction(sessions) as session:
        if repo.get_job(session=session, job_id=job_id).state == "queued":
            error = f"{type(exc).__name__}: {exc}"
            repo.update_job(session=session, job_id=job_id, state="failed", error=error)


def _registered(ctx: Context, name: str) -> bool:
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
