"""Server mode: send job batches to Celery workers through the configured broker."""

from __future__ import annotations

import logging

from embplat.config import Settings, mask_url
from embplat.errors import ServiceUnavailableError
from embplat.workers.celery_app import EMBED_TASK, TRAIN_TASK, make_celery

log = logging.getLogger(__name__)


class CeleryDispatcher:
    """A ``Dispatcher`` sending one ``embed_batch`` task per batch."""

    def __init__(self, settings: Settings):
        self.url = settings.celery.broker_url or ""
        self.app = make_celery(settings)

    def check(self) -> None:
        """Connect to the broker once; ServiceUnavailableError names it (password masked)."""
        try:
            with self.app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=5)
        except Exception as exc:
            raise ServiceUnavailableError(
                f"broker {mask_url(self.url)} is unreachable: {exc}; start it or fix "
                "EMBPLAT_BROKER_URL"
            ) from exc

    def send(self, job_id: int, seqs: list[int]) -> None:
        """Queue the batches (routed to the ``gpu`` queue)."""
        with self.app.producer_or_acquire() as producer:
            for seq in seqs:
                self.app.send_task(EMBED_TASK, args=[job_id, seq], producer=producer)
        log.info("job %d: queued %d batches", job_id, len(seqs))

    def send_train(self, recipe: str, config: dict[str, object]) -> str:
        """Queue a training run (``gpu`` queue); returns the Celery task id."""
        self.check()
        result = self.app.send_task(TRAIN_TASK, args=[recipe, config])
        log.info("queued %s training as task %s", recipe, result.id)
        return str(result.id)
