"""``platform images``: remove cataloged images from the catalog and every index."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from embplat.cli.output import console, print_json

images_app = typer.Typer(no_args_is_help=True, help="Remove cataloged images.")


def register(app: typer.Typer) -> None:
    """Attach these commands to the root app."""
    app.add_typer(images_app, name="images")


@images_app.command("delete")
def images_delete(
    ctx: typer.Context,
    paths: Annotated[
        list[str] | None,
        typer.Argument(
            help="cataloged image paths or globs (quote them: `*`, `?` within a folder, `**` "
            "across folders), matched against the catalog, so files already gone can be named",
            metavar="PATH",
            show_default=False,
        ),
    ] = None,
    ids: Annotated[
        list[int] | None,
        typer.Option("--id", help="catalog image id (repeatable)", metavar="N", show_default=False),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="print what was removed as JSON")
    ] = False,
) -> None:
    """Remove images from every index (the active one and every trained model's), then from
    the catalog. Files on disk are not touched: a later `ingest` of their folder adds them
    again, so delete the files too to be rid of them."""
    from embplat.errors import DataError
    from embplat.pipelines.remove import find_images, remove_images

    if not paths and not ids:
        raise DataError("name the images to delete: PATH or glob arguments, or --id N")
    context = ctx.obj.context()
    found = find_images(context, paths or [], ids or [])
    removed = remove_images(context, [row.image_id for row in found])
    if json_out:
        print_json(
            {"removed": removed, "images": [{"id": r.image_id, "path": r.path} for r in found]}
        )
        return
    for row in found:  # soft wrap: a path is never broken across lines
        console.print(f"removed {escape(row.path)} [dim](image {row.image_id})[/]", soft_wrap=True)
    noun = "image" if removed == 1 else "images"
    console.print(f"[bold]{removed} {noun} removed[/] from the catalog and every index")
