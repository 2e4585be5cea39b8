"""``platform db``, ``jobs``, ``encoders`` and ``status``: administration and inspection."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from embplat.cli.output import console, print_json
from embplat.config import mask_url

db_app = typer.Typer(no_args_is_help=True, help="Catalog schema (alembic).")


def register(app: typer.Typer) -> None:
    """Attach these commands to the root app."""
    app.add_typer(db_app, name="db")
    app.command("jobs")(jobs)
    app.command("encoders")(encoders)
    app.command("status")(status)


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Run `alembic upgrade head` on the configured catalog."""
    from embplat.catalog.db import current_revision, make_engine, upgrade

    url = ctx.obj.settings.catalog_url
    engine = make_engine(url)
    upgrade(engine)
    console.print(f"catalog {mask_url(url)} at revision {current_revision(engine)}")


@db_app.command("current")
def db_current(ctx: typer.Context) -> None:
    """Print the catalog's schema revision and the newest one shipped."""
    from embplat.catalog.db import current_revision, head_revision, make_engine

    url = ctx.obj.settings.catalog_url
    console.print(f"{mask_url(url)}: {current_revision(make_engine(url))} (head {head_revision()})")


def jobs(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="how many recent jobs")] = 20,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Recent jobs with their state and progress."""
    from embplat.catalog import repo

    with ctx.obj.context().sessions() as session:
        rows = repo.list_jobs(session=session, limit=limit)
    if json_out:
        print_json(
            [
                {
                    c: getattr(j, c)
                    for c in (
                        "id",
                        "kind",
                        "state",
                        "total",
                        "done",
                        "failed",
                        "error",
                        "created_at",
                        "finished_at",
                    )
                }
                for j in rows
            ]
        )
        return
    table = Table("id", "kind", "state", "done/total", "failed", "started", "error")
    for j in rows:
        table.add_row(
            str(j.id),
            j.kind,
            j.state,
            f"{j.done}/{j.total}",
            str(j.failed),
            f"{j.started_at:%Y-%m-%d %H:%M:%S}" if j.started_at else "",
            (j.error or "")[:60],
        )
    console.print(table)


def encoders() -> None:
    """Registered image encoders."""
    from embplat.models import list_encoders

    for name in list_encoders():
        console.print(name)


def status(ctx: typer.Context, json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Catalog and index at a glance: images per split, points in the active index."""
    from embplat.catalog import repo

    context = ctx.obj.context()
    space = context.space()
    with context.sessions() as session:
        info = {
            "catalog": mask_url(ctx.obj.settings.catalog_url),
            "backend": context.backend,
            "model": space.key,
            "index": space.index.name,
            "points": space.index.count(None),
            "embedded": repo.count_embeddings(session=session, collection_id=space.collection_id),
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
