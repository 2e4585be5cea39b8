"""``platform ingest`` and ``platform classes``: register images, enrol new classes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from embplat.cli.output import console, print_json, progress_bars, warn_line
from embplat.pipelines.ingest import IngestResult, enrol_class, ingest_tree

classes_app = typer.Typer(no_args_is_help=True, help="List classes, enrol a new class.")


def register(app: typer.Typer) -> None:
    """Attach these commands to the root app."""
    app.command("ingest")(ingest)
    app.add_typer(classes_app, name="classes")


def ingest(
    ctx: typer.Context,
    root: Annotated[Path, typer.Argument(help="JPEGImages folder (AwA2) or class-per-folder tree")],
    embed: Annotated[bool, typer.Option(help="embed new images into the active index")] = True,
    json_out: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Catalog every valid image under ROOT (idempotent) and embed it."""
    with progress_bars(not json_out) as bars:
        result = ingest_tree(ctx.obj.context(), root, embed=embed, progress=bars)
    _report(result, json_out)


@classes_app.command("add")
def classes_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="class name, e.g. bag")],
    folder: Annotated[Path, typer.Argument(help="folder of example images of the class")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Enrol a class from example images: searchable and classifiable at once, no retraining."""
    with progress_bars(not json_out) as bars:
        result = enrol_class(ctx.obj.context(), name, folder, progress=bars)
    _report(result, json_out)


@classes_app.command("list")
def classes_list(
    ctx: typer.Context, json_out: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """Every class with its role and image count per split."""
    from embplat.catalog import repo

    with ctx.obj.context().sessions() as session:
        rows = repo.class_counts(session=session)
    if json_out:
        print_json([{"name": c.name, "role": c.role, "images": n} for c, n in rows])
        return
    table = Table("class", "role", "train", "valid", "test")
    for c, n in rows:
        table.add_row(c.name, c.role, *(str(n.get(s, 0)) for s in ("train", "valid", "test")))
    console.print(table)


def _report(result: IngestResult, json_out: bool) -> None:
    if json_out:
        print_json(result.as_dict())
        return
    for warning in result.warnings:
        warn_line(warning)
    for path, reason in result.skipped:
        warn_line(f"skipped {path}: {reason}")
    console.print(
        f"[bold]{result.root}[/] ({result.layout}): {result.scanned} files, "
        f"{result.added} new, {result.already} already cataloged, "
        f"{len(result.skipped)} skipped, {result.embedded} embedded  [dim](job {result.job_id})[/]"
    )
