"""``platform classify`` and ``platform search``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from embplat.cli.output import console, print_json, warn_line
from embplat.errors import DataError
from embplat.pipelines.query import Neighbour, Prediction, classify, search_by_image


def register(app: typer.Typer) -> None:
    """Attach these commands to the root app."""
    app.command("classify")(classify_cmd)
    app.command("search")(search_cmd)


def classify_cmd(
    ctx: typer.Context,
    images: Annotated[list[Path], typer.Argument(help="image files to classify")],
    k: Annotated[int, typer.Option("--k", help="neighbours in the vote")] = 10,
    weighted: Annotated[bool, typer.Option(help="weight votes by similarity")] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
    show: Annotated[int, typer.Option(help="neighbours to list per image")] = 5,
) -> None:
    """Predict each image's class by majority vote of its k nearest enrolled images."""
    predictions = classify(ctx.obj.context(), images, k=k, weighted=weighted)
    if json_out:
        print_json([p.as_dict() for p in predictions])
        return
    for note in predictions[0].notes if predictions else []:
        warn_line(note)
    for p in predictions:
        _print_prediction(p, show)


def search_cmd(
    ctx: typer.Context,
    image: Annotated[Path | None, typer.Option("--image", help="query image")] = None,
    k: Annotated[int, typer.Option("--k")] = 5,
    split: Annotated[str | None, typer.Option(help="only this split: train|valid|test")] = None,
    label: Annotated[str | None, typer.Option("--class", help="only this class")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Nearest images to a query image, with class and similarity."""
    if image is None:
        raise DataError("give a query with --image PATH")
    flt = {key: v for key, v in (("split", split), ("class", label)) if v}
    hits, notes = search_by_image(ctx.obj.context(), image, k=k, flt=flt)
    if json_out:
        print_json([h.__dict__ for h in hits])
        return
    for note in notes:
        warn_line(note)
    console.print(_neighbour_table(hits, f"nearest to {image}"))


def _print_prediction(p: Prediction, show: int) -> None:
    runner = f", runner-up {p.runner_up} {p.runner_up_share:.0%}" if p.runner_up else ""
    console.print(
        f"[bold]{p.path}[/] → [bold green]{p.label}[/] ({p.confidence:.0%} of {p.k} votes{runner})"
    )
    if show:
        console.print(_neighbour_table(p.neighbours[:show], None))


def _neighbour_table(hits: list[Neighbour], title: str | None) -> Table:
    table = Table("#", "class", "score", "path", title=title, title_justify="left")
    for rank, h in enumerate(hits, 1):
        table.add_row(str(rank), h.label, f"{h.score:.4f}", h.path)
    return table
