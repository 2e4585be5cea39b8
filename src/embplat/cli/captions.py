"""``platform caption``: captions generated for image files; ``platform captions``: the
captions stored with an image, generating them for cataloged images, the sentence index."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from embplat.cli.output import console, error_line, print_json, progress_bars

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


def caption_cmd(
    ctx: typer.Context,
    images: Annotated[list[Path], typer.Argument(help="image files to caption")],
    model: Annotated[
        str | None, typer.Option(help="a captioning model (default: the newest)")
    ] = None,
    beam: Annotated[int, typer.Option(help="beam width, 1 (greedy) to 10")] = 3,
    n: Annotated[int, typer.Option("--n", help="captions per image, best first (<= --beam)")] = 1,
    attention_png: Annotated[
        Path | None,
        typer.Option(
            help="write the attention of every word over the image (a PNG; with "
            "several images, OUT_<i>.png each)"
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print as JSON")] = False,
) -> None:
    """Generate captions for image files with a captioning model (`platform train caption`),
    with their log-probabilities.

    Exit status: 0 every image captioned; 1 some images could not be read (each reported).
    """
    from embplat.pipelines.captioning import caption_files
    from embplat.pipelines.query_images import QueryFailure

    failures: list[QueryFailure] = []
    results = caption_files(
        ctx.obj.context(), images, model=model, beam=beam, n=n,
        attention_png=attention_png, failures=failures,
    )  # fmt: skip
    if json_out:
        print_json(
            {"results": [r.as_dict() for r in results], "failures": [f.as_dict() for f in failures]}
        )
    else:
        for r in results:
            console.print(f"[bold]{escape(r.path)}[/] ({r.model}, beam {r.beam})")
            for c in r.captions:
                console.print(f"  {escape(c.text)}  [dim]log p {c.logprob:.3f}[/]")
            if r.attention:
                console.print(f"  attention: {escape(r.attention)}")
        for failure in failures:
            error_line(str(failure))
    if failures:
        raise typer.Exit(1)


@app.command("generate")
def generate(
    ctx: typer.Context,
    model: Annotated[
        str | None, typer.Option(help="a captioning model (default: the newest)")
    ] = None,
    beam: Annotated[int, typer.Option(help="beam width, 1 (greedy) to 10")] = 3,
    text_encoder: Annotated[
        str, typer.Option(help="sentence index's text encoder: minilm | glove")
    ] = "minilm",
    all_images: Annotated[
        bool, typer.Option("--all", help="also images that have captions (regenerated)")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="print as JSON")] = False,
) -> None:
    """Caption the cataloged images that have no caption, store the captions (source
    generated) and index them for `platform search --text` (a job of batches, on the
    workers in server mode; `platform jobs resume` finishes an interrupted one)."""
    from embplat.pipelines.generated_captions import caption_images

    with progress_bars(not json_out) as bars:
        out = caption_images(
            ctx.obj.context(), model=model, beam=beam, text_encoder_name=text_encoder,
            uncaptioned_only=not all_images, progress=bars,
        )  # fmt: skip
    print_caption_job(out, json_out)


def print_caption_job(out: dict[str, object], json_out: bool) -> None:
    """A caption job's summary (``pipelines.generated_captions.caption_images``)."""
    if json_out:
        print_json(out)
        return
    if out["queued"]:
        console.print(
            f"queued captioning of {out['queued']} images with {out['model']} as job "
            f"{out['job_id']}: follow with `platform jobs --watch`"
        )
        return
    console.print(
        f"captioned {out['captioned']} images with {out['model']} (job {out['job_id']}); "
        "search them with `platform search --text SENTENCE`"
    )
    for path, reason in out["failed"]:  # type: ignore[attr-defined]
        error_line(f"{path}: {reason}")


@app.command("index")
def index(
    ctx: typer.Context,
    text_encoder: Annotated[str, typer.Option(help="minilm | glove")] = "minilm",
    json_out: Annotated[bool, typer.Option("--json", help="print as JSON")] = False,
) -> None:
    """Embed every caption of the catalog (files and generated) into the sentence index
    `sentences-<encoder>`, which `platform search --text` searches."""
    from embplat.pipelines.sentences import index_captions, index_name

    written = index_captions(ctx.obj.context(), text_encoder_name=text_encoder)
    if json_out:
        print_json({"index": index_name(text_encoder), "captions": written})
    else:
        console.print(f"{index_name(text_encoder)}: {written} captions indexed")
