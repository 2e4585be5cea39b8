"""The Celery application, built from Settings (server mode).

``platform worker`` and the server-mode job runner build their app with :func:`make_celery` from the
Settings they were given (CLI flags included). ``celery -A embplat.workers.celery_app``
(Flower, ``celery inspect``) finds the module-level ``app``, built from the environment on
first access, so importing this module for the task names reads no configuration.

Tasks are acknowledged late and a worker takes one at a time, so a task whose worker dies is
redelivered (after ``EMBPLAT_CELERY_VISIBILITY_TIMEOUT`` on Redis) and runs again: embedding
batches are idempotent, and a training carries its model name, so a second delivery finds
the model instead of training another. Time limits below the visibility timeout make sure a
task still running is never delivered to a second worker.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from embplat.config import Settings, load_settings
from embplat.errors import ConfigError
from embplat.jobs.runner import CAPTION_BATCH, EMBED_BATCH, TRAIN


def make_celery(settings: Settings) -> Celery:
    """A Celery app for the configured broker, JSON only, late acks, prefetch 1, time limits
    from the settings, task events on (Flower)."""
    c = settings.celery
    app = Celery("embplat", broker=c.broker_url or "memory://", backend=c.result_backend)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue="cpu",
        task_routes={name: {"queue": "gpu"} for name in (EMBED_BATCH, CAPTION_BATCH, TRAIN)},
        task_soft_time_limit=c.task_soft_time_limit,
        task_time_limit=c.task_time_limit,
        task_annotations={
            TRAIN: {
                "soft_time_limit": c.train_soft_time_limit,
                "time_limit": c.train_time_limit,
            }
        },
        # events for Flower / `celery events`: workers send task events, clients "sent" ones
        worker_send_task_events=True,
        task_send_sent_event=True,
        broker_transport_options={"visibility_timeout": c.visibility_timeout},
        broker_connection_retry_on_startup=True,
        task_ignore_result=c.result_backend is None,
        worker_hijack_root_logger=False,
    )
    app.autodiscover_tasks(["embplat.workers"], related_name="tasks", force=True)
    return app


def check_worker(settings: Settings, *, concurrency: int, pool: str) -> None:
    """Refuse a worker configuration that would give a single-writer backend two writers.

    Raises:
        ConfigError: Qdrant's local mode (a folder, no server URL) with more than one worker
            process or thread: local mode takes one writer; use a Qdrant server or 1.
    """
    concurrent = pool != "solo" and concurrency > 1
    if settings.index_backend == "qdrant" and settings.qdrant_path is not None and concurrent:
        raise ConfigError(
            f"Qdrant local mode ({settings.qdrant_path}) takes one writer, but the worker "
            f"would run {concurrency} {pool} processes: set EMBPLAT_CELERY_CONCURRENCY=1 "
            "(or --concurrency 1), or use a Qdrant server (EMBPLAT_QDRANT_URL)"
        )


def __getattr__(name: str) -> Any:
    """``app`` for ``celery -A``: built from the environment once, on first access."""
    if name == "app":
        app = make_celery(load_settings())
        globals()["app"] = app
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
