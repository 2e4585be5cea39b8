"""``platform db``, ``jobs``, ``encoders`` and ``status``: administration and inspection."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from embplat.cli.output import console, print_json, progress_bars

db_app = typer.Typer(no_args_is_help=True, help="Catalog schema (alembic).")
jobs_app = typer.Typer(help="Recent jobs; resume one.")


def register(app: typer.Typer) -> None:
    """Attach these commands to the root app."""
    app.add_typer(db_app, name="db")
    app.add_typer(jobs_app, name="jobs")
    app.command("encoders")(encoders)
    app.command("status")(status)


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Run `alembic upgrade head` on the configured catalog."""
    from embplat.catalog.db import current_revision, make_engine, upgrade
    from embplat.config import mask_url

    url = ctx.obj.settings.catalog_url
    engine = make_engine(url)
    upgrade(engine)
    console.print(f"catalog {mask_url(url)} at revision {current_revision(engine)}")


@db_app.command("current")
def db_current(
    ctx: typer.Context, json_out: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """Print the catalog's schema revision and the newest one shipped."""
    from embplat.catalog.db import current_revision, head_revision, make_engine
    from embplat.config import mask_url

    url = ctx.obj.settings.catalog_url
    current, head = current_revision(make_engine(url)), head_revision()
    if json_out:
        print_json({"catalog": mask_url(url), "current": current, "head": head})
        return
    console.print(f"{mask_url(url)}: {current} (head {head})")


@jobs_app.callback(invoke_without_command=True)
def jobs(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="how many recent jobs")] = 20,
    watch: Annotated[bool, typer.Option("--watch", help="refresh until all are finished")] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Recent jobs: state, done/total, failures, images/s (`jobs resume ID` to resume one)."""
    if ctx.invoked_subcommand is not None:
        return
    sessions = ctx.obj.context().sessions  # local mode: dead processes' jobs interrupted
    if json_out:
        print_json([job_dict(j) for j in _recent(sessions, limit)])
        return
    if not watch:
        console.print(jobs_table(_recent(sessions, limit)))
        return
    from embplat.pipelines.jobs import ACTIVE, interrupt_dead_jobs

    local = not ctx.obj.settings.server_mode
    with Live(jobs_table(_recent(sessions, limit)), console=console, refresh_per_second=2) as live:
        while True:
            if local:  # a job whose process is killed while we watch ends too
                interrupt_dead_jobs(sessions)
            rows = _recent(sessions, limit)
            live.update(jobs_table(rows))
            if not any(j.state in ACTIVE for j in rows):
                break
            time.sleep(1.0)


@jobs_app.command("resume")
def jobs_resume(
    ctx: typer.Context,
    job_id: Annotated[int, typer.Argument(help="the job's id (`platform jobs`)")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Run a job's unfinished batches again (after a crash, an `interrupted` job, lost
    broker messages or a batch that gave up): here in local mode, by the workers in server
    mode."""
    from embplat.pipelines.jobs import resume_job

    context = ctx.obj.context()
    with progress_bars(not json_out) as bars:
        out = resume_job(context, job_id, progress=bars)
    if json_out:
        print_json(out)
        return
    if out["queued"]:
        console.print(
            f"job {job_id}: {out['queued']} batches sent to the workers again; follow with "
            "`platform jobs --watch`"
        )
    else:
        console.print(f"job {job_id}: {out['resumed']} batches run again, job {out['state']}")


def _recent(sessions: Any, limit: int) -> list[Any]:
    from embplat.catalog import repo

    with sessions() as session:
        return repo.list_jobs(session=session, limit=limit)


def job_dict(j: Any) -> dict[str, Any]:
    """JSON-ready view of a job row, with its rate."""
    keys = (
        "id",
        "kind",
        "state",
        "total",
        "done",
        "failed",
        "error",
        "created_at",
        "started_at",
        "finished_at",
    )
    return {**{c: getattr(j, c) for c in keys}, "per_second": round(_rate(j), 2)}


def _rate(j: Any) -> float:
    if not j.started_at or not j.done:
        return 0.0
    from embplat.catalog.models import as_utc

    end = as_utc(j.finished_at or datetime.now(UTC))
    return j.done / max((end - as_utc(j.started_at)).total_seconds(), 1e-3)


def jobs_table(rows: list[Any]) -> Table:
    """A Rich table of jobs."""
    table = Table("id", "kind", "state", "done/total", "failed", "items/s", "started", "error")
    for j in rows:
        table.add_row(
            str(j.id),
            j.kind,
            j.state,
            f"{j.done}/{j.total}",
            str(j.failed),
            f"{_rate(j):.1f}",
            f"{j.started_at:%Y-%m-%d %H:%M:%S}" if j.started_at else "",
            (j.error or "")[:60],
        )
    return table


def encoders(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Registered image encoders."""
    from embplat.models.registry import encoder_names

    if json_out:
        print_json(encoder_names())
        return
    for name in encoder_names():
        console.print(name)


def status(ctx: typer.Context, json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Catalog and index at a glance: images per split, points in the active index."""
    from embplat.catalog import repo
    from embplat.config import mask_url

    context = ctx.obj.context()
    # read from the catalog when it can; building the encoder (torch) only for a new space
    found = context.spaces.active_index()
    if found is None:
        space = context.spaces.space()
        found = (space.key, space.index, space.collection_id)
    key, index, collection_id = found
    with context.sessions() as session:
        info = {
            "catalog": mask_url(ctx.obj.settings.catalog_url),
            "backend": context.spaces.backend,
            "model": key,
            "index": index.name,
            "points": index.count(None),
            "embedded": repo.count_embeddings(session=session, collection_id=collection_id),
            **{
                f"images_{s}": repo.count_images(session=session, split=s)
                for s in ("train", "valid", "test")
            },
        }
    if json_out:
        print_json(info)
        return
    for key, value in info.items():
        console.print(f"[bold]{key}[/]: {value}")
