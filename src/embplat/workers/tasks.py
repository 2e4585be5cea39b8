"""Celery tasks: thin wrappers taking ids, calling the same library functions as local mode.

The worker's Context (catalog, index, encoder) is built once per worker process and reused,
so the encoder's weights are loaded once, not per task.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from sqlalchemy.exc import OperationalError

from embplat.config import Settings, load_settings
from embplat.errors import ServiceUnavailableError
from embplat.ingest.batches import mark_batch_failed
from embplat.jobs.runner import CAPTION_BATCH, EMBED_BATCH, TRAIN
from embplat.pipelines.context import Context
from embplat.pipelines.embed import run_embed_batch

log = logging.getLogger(__name__)

#: Errors worth retrying: a server that did not answer. Bad data is never retried.
TRANSIENT: tuple[type[BaseException], ...] = (
    ServiceUnavailableError,
    OperationalError,
    ConnectionError,
    TimeoutError,
)

_context: Context | None = None
_settings: Settings | None = None


def configure(settings: Settings) -> None:
    """Use these settings (e.g. with `platform worker` flags) instead of the environment."""
    global _settings, _context
    _settings, _context = settings, None


def worker_context() -> Context:
    """This process's Context, built on first use (jobs always run here, never re-dispatched)."""
    global _context
    if _context is None:
        from embplat.workers.context import build_context

        _context = build_context(_settings or load_settings(), in_process=True)
    return _context


@shared_task(
    name=EMBED_BATCH,
    bind=True,
    autoretry_for=TRANSIENT,
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=8,
)
def embed_batch(self: Any, job_id: int, seq: int) -> dict[str, Any]:
    """Embed batch ``seq`` of job ``job_id`` into the active index; idempotent."""
    ctx = worker_context()
    try:
        return run_embed_batch(ctx, job_id, seq)
    except TRANSIENT as exc:
        if self.request.retries < self.max_retries:
            raise  # autoretry sends it again, with backoff
        _give_up(ctx, job_id, seq, f"gave up after {self.request.retries} retries: {exc!r}")
        raise
    except Exception as exc:
        _give_up(ctx, job_id, seq, f"{type(exc).__name__}: {exc}")
        raise


@shared_task(
    name=CAPTION_BATCH,
    bind=True,
    autoretry_for=TRANSIENT,
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=8,
)
def caption_batch(self: Any, job_id: int, seq: int) -> dict[str, Any]:
    """Caption batch ``seq`` of job ``job_id`` and index the captions; idempotent."""
    from embplat.pipelines.generated_captions import run_caption_batch

    ctx = worker_context()
    try:
        return run_caption_batch(ctx, job_id, seq)
    except TRANSIENT as exc:
        if self.request.retries < self.max_retries:
            raise
        _give_up(ctx, job_id, seq, f"gave up after {self.request.retries} retries: {exc!r}")
        raise
    except Exception as exc:
        _give_up(ctx, job_id, seq, f"{type(exc).__name__}: {exc}")
        raise


def _give_up(ctx: Context, job_id: int, seq: int, error: str) -> None:
    """Mark the batch failed (and its job, once every batch is over); a catalog that is
    down is logged, the batch stays unfinished for `platform jobs resume`."""
    try:
        mark_batch_failed(sessions=ctx.sessions, job_id=job_id, seq=seq, error=error)
    except Exception as exc:
        log.error(
            "job %d batch %d failed (%s) and could not be recorded: %s", job_id, seq, error, exc
        )


@shared_task(name=TRAIN, autoretry_for=TRANSIENT, retry_backoff=True, max_retries=3)
def train(recipe: str, config: dict[str, Any]) -> dict[str, Any]:
    """Train a recipe in this worker (GPU queue); returns ``model`` and ``existing``.

    ``submit_training`` fixed the model's name (in ``config``) and recorded a queued
    ``train`` job: this task runs that job, and a second delivery of it returns the model already
    registered instead of training another (time limits come from the settings).
    """
    from embplat.pipelines.training_jobs import train_queued

    return train_queued(worker_context(), recipe, config)
