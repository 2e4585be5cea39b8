"""``platform worker``: a Celery worker that embeds (and trains) for server mode."""

from __future__ import annotations

from typing import Annotated

import typer

from embplat.errors import ConfigError


def register(app: typer.Typer) -> None:
    """Attach this command to the root app."""
    app.command("worker")(worker)


def worker(
    ctx: typer.Context,
    queues: Annotated[
        str, typer.Option(help="comma-separated queues: gpu (embed, train), cpu")
    ] = "gpu,cpu",
    concurrency: Annotated[int | None, typer.Option(help="worker processes")] = None,
    pool: Annotated[str, typer.Option(help="prefork, solo or threads")] = "prefork",
    loglevel: Annotated[str, typer.Option(help="celery log level")] = "info",
) -> None:
    """Run a Celery worker on the configured broker (EMBPLAT_BROKER_URL)."""
    settings = ctx.obj.settings
    if not settings.server_mode:
        raise ConfigError("no broker configured: set EMBPLAT_BROKER_URL=redis://host:6379/0")
    from embplat.workers import tasks
    from embplat.workers.celery_app import make_celery

    tasks.configure(settings)
    app = make_celery(settings)
    app.worker_main(
        [
            "worker",
            "--queues",
            queues,
            "--pool",
            pool,
            "--loglevel",
            loglevel,
            "--concurrency",
            str(concurrency or settings.celery.concurrency),
            "--prefetch-multiplier",
            "1",
            "--without-gossip",
            "--without-mingle",
        ]
    )
