"""``platform worker``: a Celery worker that embeds (and trains) for server mode."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Annotated

import typer

from embplat.errors import ConfigError, ServiceUnavailableError

if TYPE_CHECKING:
    from celery import Celery


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
    ping: Annotated[
        bool, typer.Option("--ping", help="check that this host's worker answers, then exit")
    ] = False,
) -> None:
    """Run a Celery worker on the configured broker (EMBPLAT_BROKER_URL)."""
    settings = ctx.obj.settings
    if not settings.server_mode:
        raise ConfigError("no broker configured: set EMBPLAT_BROKER_URL=redis://host:6379/0")
    from embplat.workers import tasks
    from embplat.workers.celery_app import check_worker, make_celery

    app = make_celery(settings)
    if ping:
        _ping(app)
        return
    processes = concurrency or settings.celery.concurrency
    check_worker(settings, concurrency=processes, pool=pool)
    tasks.configure(settings)
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
            str(processes),
            "--prefetch-multiplier",
            "1",
            "--without-gossip",
            "--without-mingle",
        ]
    )


def _ping(app: Celery, timeout: float = 5.0) -> None:
    """The container healthcheck: the worker ``celery@<this host>`` answers a ping."""
    node = f"celery@{socket.gethostname()}"
    replies = app.control.ping(destination=[node], timeout=timeout)
    if not any(node in reply for reply in replies or []):
        raise ServiceUnavailableError(f"worker {node} did not answer a ping within {timeout}s")
    typer.echo(f"{node}: pong")
