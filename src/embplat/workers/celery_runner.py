"""Server mode's job runner: tasks go to Celery workers through the configured broker."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy.orm import Session, sessionmaker

from embplat.config import Settings, mask_url
from embplat.errors import ServiceUnavailableError
from embplat.jobs.runner import JobRunner, Submitted, Task
from embplat.workers.celery_app import make_celery

log = logging.getLogger(__name__)


class CeleryRunner(JobRunner):
    """A :class:`~embplat.jobs.runner.JobRunner` that sends each task to the workers (the
    ``gpu`` or ``cpu`` queue, as ``make_celery`` routes it) instead of running it here."""

    in_process = False

    def __init__(self, sessions: sessionmaker[Session], settings: Settings):
        super().__init__(sessions)
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

    def submit(self, tasks: Sequence[Task]) -> Submitted:
        """Queue the tasks over one broker connection; returns their Celery task ids."""
        ids: list[str] = []
        with self.app.producer_or_acquire() as producer:
            for task in tasks:
                sent = self.app.send_task(task.name, args=list(task.args), producer=producer)
                ids.append(str(sent.id))
        if tasks:
            log.info("queued %d %s tasks", len(tasks), tasks[0].name)
        return Submitted(queued=ids)
