"""``platform captions``: the captions stored with an image."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from embplat.cli.output import console, print_json

app = typer.Typer(no_args_is_help=True)


@app.command("show")
def show(
    ctx: typer.Context,
    image: Annotated[str, typer.Argument(help="image path, or a file name cataloged once")],
    json_out: Annotated[bool, typer.Option("--json", help="print as JSON")] = False,
) -> None:
    """The captions of a cataloged image (from captions files, or generated)."""
    from embplat.pipelines.captions import image_captions

    found = image_captions(ctx.obj.context(), image)
    if json_out:
        print_json(found)
        return
    console.print(
        f"[bold]{escape(found['image'])}[/] (image {found['image_id']}, {found['split']}, "
        f"class {escape(found['class'])})"
    )
    if not found["captions"]:
        console.print("no captions")
        return
    table = Table("#", "source", "caption")
    for caption in found["captions"]:
        source = caption["source"] + (f" ({caption['model']})" if caption["model"] else "")
        table.add_row(str(caption["ordinal"]), source, escape(caption["text"]))
    console.print(table)
