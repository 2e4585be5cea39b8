"""The Celery application, built from Settings (server mode).

``celery -A embplat.workers.celery_app worker`` and ``platform worker`` both use ``app``.
Tasks are acknowledged late and a worker takes one at a time, so a task whose worker dies is
redelivered (after ``EMBPLAT_CELERY_VISIBILITY_TIMEOUT`` on Redis) and runs again — safe,
because every task is idempotent.
"""

from __future__ import annotations

from celery import Celery

from embplat.config import Settings, load_settings

EMBED_TASK = "embplat.embed_batch"
TRAIN_TASK = "embplat.train"
REBUILD_TASK = "embplat.rebuild_index"


def make_celery(settings: Settings) -> Celery:
    """A Celery app for the configured broker, JSON only, late acks, prefetch 1."""
    app = Celery(
        "embplat",
        broker=settings.celery.broker_url or "memory://",
        backend=settings.celery.result_backend,
    )
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue="cpu",
        task_routes={
            EMBED_TASK: {"queue": "gpu"},
            TRAIN_TASK: {"queue": "gpu"},
            REBUILD_TASK: {"queue": "cpu"},
        },
        broker_transport_options={"visibility_timeout": settings.celery.visibility_timeout},
        broker_connection_retry_on_startup=True,
        task_ignore_result=settings.celery.result_backend is None,
        worker_hijack_root_logger=False,
    )
    app.autodiscover_tasks(["embplat.workers"], related_name="tasks", force=True)
    return app


app = make_celery(load_settings())
