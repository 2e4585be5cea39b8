"""``platform ingest`` and ``platform classes``: register images, enrol or remove classes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from embplat.cli.output import (
    RichProgress,
    comma_list,
    console,
    print_json,
    progress_bars,
    warn_line,
)
from embplat.errors import JobFailedError

if TYPE_CHECKING:
    from embplat.pipelines.ingest import IngestResult

classes_app = typer.Typer(no_args_is_help=True, help="List classes, enrol or remove a class.")


ModelsOpt = Annotated[
    str,
    typer.Option(
        help="trained models whose indexes the images enter too: all (those with an index), "
        "none, or comma-separated names"
    ),
]
PruneOpt = Annotated[
    bool | None,
    typer.Option(
        "--prune/--no-prune",
        help="cataloged images under the folder whose file is gone: by default they are "
        "removed unless that looks like an accident (folder empty, or over half of them gone); "
        "--prune removes them anyway, --no-prune only reports them",
        show_default=False,
    ),
]


def register(app: typer.Typer) -> None:
    """Attach these commands to the root app."""
    app.command("ingest")(ingest)
    app.add_typer(classes_app, name="classes")


def ingest(
    ctx: typer.Context,
    root: Annotated[
        Path,
        typer.Argument(
            help="JPEGImages folder (AwA2), class-per-folder tree, Flickr8k folder, or the "
            "folder of the images a --captions file names"
        ),
    ],
    captions: Annotated[
        Path | None,
        typer.Option(
            help="captions file: Karpathy split JSON (dataset_*.json), COCO captions_*.json, "
            "Flickr8k token .txt, or a .csv/.jsonl manifest (image, caption[, class, split])"
        ),
    ] = None,
    embed: Annotated[bool, typer.Option(help="embed new images into the active index")] = True,
    models: ModelsOpt = "all",
    prune: PruneOpt = None,
    wait: Annotated[bool, typer.Option(help="server mode: wait for the workers")] = False,
    caption_with: Annotated[
        str | None,
        typer.Option(
            help="a captioning model: images under ROOT without captions get generated ones, "
            "indexed for `platform search --text`"
        ),
    ] = None,
    caption_beam: Annotated[int, typer.Option(help="--caption-with's beam width")] = 3,
    json_out: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Catalog every valid image under ROOT (idempotent) and embed it (active index and the
    trained models' indexes). The index follows the folder: rewritten files replace their
    image, moved files keep it under the new path, deleted files leave. Captions (a Flickr8k
    folder's, or --captions) are stored beside their images; bad lines are reported."""
    from embplat.pipelines.ingest import ingest_tree

    context = ctx.obj.context()
    if caption_with is not None:  # a bad model or beam fails before anything is written
        from embplat.models.recipes.caption.config import check_beam
        from embplat.pipelines.captioning import load_captioner

        check_beam(caption_beam, "--caption-beam")
        load_captioner(context, caption_with)
    with progress_bars(not json_out) as bars:
        result = ingest_tree(
            context,
            root,
            embed=embed,
            models=parse_models(models),
            prune=prune,
            captions=captions,
            progress=bars,
        )
        if wait:
            _wait_all(context.sessions, result, bars)
        captioned = None
        if caption_with is not None:
            from embplat.pipelines.generated_captions import caption_folder

            captioned = caption_folder(
                context, root, model=caption_with, beam=caption_beam, progress=bars
            )
    if json_out and captioned is not None:
        print_json({**result.as_dict(), "captioning": captioned})
        return
    _report(result, json_out)
    if captioned is not None:
        from embplat.cli.captions import print_caption_job

        print_caption_job(captioned, json_out=False)


def parse_models(value: str) -> list[str] | None:
    """``all`` → None (every trained model with an index), ``none`` → [], else the names."""
    if value.strip().lower() == "all":
        return None
    if value.strip().lower() == "none":
        return []
    return comma_list(value)


def _wait_all(sessions: Any, result: IngestResult, bars: RichProgress) -> None:
    """Follow the ingest job and each trained model's embed job that workers run."""
    if result.queued:
        _wait(sessions, result, bars)
    for model, info in result.models.items():
        if info.get("queued"):
            done, _ = _follow(sessions, info["job_id"], info["queued"], bars, model)
            info["embedded"] = done


def _wait(sessions: Any, result: IngestResult, bars: RichProgress) -> None:
    """Follow a job run by workers until it finishes; fills in the result's counts."""
    from embplat.ingest.batches import batch_failures

    result.embedded, _ = _follow(sessions, result.job_id, result.queued, bars, "workers")
    result.skipped += batch_failures(sessions=sessions, job_id=result.job_id)


def _follow(
    sessions: Any, job_id: int, total: int, bars: RichProgress, what: str
) -> tuple[int, int]:
    """Poll job ``job_id`` until it ends; returns (embedded, failed).

    Raises:
        JobFailedError: the job failed.
    """
    from embplat.catalog.models import Job

    advance, seen = bars.task(f"{what} embedding (job {job_id})", total), 0
    while True:
        with sessions() as session:
            job = session.get(Job, job_id)
        advance(job.done - seen)
        seen = job.done
        if job.state in {"succeeded", "failed"}:
            break
        time.sleep(0.5)
    if job.state == "failed":
        raise JobFailedError(f"job {job.id} failed: {job.error}")
    return job.done - job.failed, job.failed


@classes_app.command("add")
def classes_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="class name, e.g. bag")],
    folder: Annotated[
        Path | None, typer.Argument(help="folder of example images of the class")
    ] = None,
    zero_shot: Annotated[
        bool, typer.Option("--zero-shot", help="no images: a label for DeViSE models only")
    ] = False,
    attributes: Annotated[
        str | None,
        typer.Option(
            help="with --zero-shot, for models trained on class attributes: the class's "
            "predicates, 'footwear=100,open=80,straps' (a bare name is 100)"
        ),
    ] = None,
    models: ModelsOpt = "all",
    prune: PruneOpt = None,
    wait: Annotated[bool, typer.Option(help="server mode: wait for the workers")] = True,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Enrol a class from example images: searchable and classifiable at once, no retraining
    (in the active index and, by default, in every trained model's index).

    With --zero-shot and no folder, the class gets only a label vector (its name's word
    vector, or with --attributes its row of the class-attribute table) and becomes a
    candidate of `classify --space semantic` at once.
    """
    from embplat.errors import ConfigError
    from embplat.models.attributes import parse_attribute_values
    from embplat.pipelines.ingest import enrol_class

    if attributes is not None and not zero_shot:
        raise ConfigError("--attributes describe a zero-shot class: add --zero-shot")
    values = None if attributes is None else parse_attribute_values(attributes)
    context = ctx.obj.context()
    if folder is None:
        _add_zero_shot(context, name, zero_shot, json_out, values)
        return
    with progress_bars(not json_out) as bars:
        result = enrol_class(
            context, name, folder, models=parse_models(models), prune=prune, progress=bars
        )
        if wait:
            _wait_all(context.sessions, result, bars)
    if zero_shot:  # also (re)publish its label vector to the visual-semantic models
        from embplat.pipelines.zero_shot_classes import add_zero_shot_class

        add_zero_shot_class(context, name, values)
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


@classes_app.command("remove")
def classes_remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="class name, as `platform classes list` shows")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Remove a class: its images leave every index (the active one and every trained
    model's) and the catalog, then the class itself. Files on disk are not touched."""
    from embplat.pipelines.remove import remove_class

    result = remove_class(ctx.obj.context(), name)
    if json_out:
        print_json(result)
        return
    labels = f", {result['labels']} label vectors" if result["labels"] else ""
    console.print(
        f"removed class [bold]{escape(name)}[/]: {result['images']} images{labels} "
        "(catalog and every index)"
    )


def _add_zero_shot(
    context: Any, name: str, zero_shot: bool, json_out: bool, values: dict[str, float] | None
) -> None:
    from embplat.errors import DataError
    from embplat.pipelines.zero_shot_classes import add_zero_shot_class

    if not zero_shot:
        raise DataError(f"give a FOLDER of {name} images, or --zero-shot to add only its label")
    result = add_zero_shot_class(context, name, values)
    if json_out:
        print_json(result)
        return
    models = ", ".join(result["models"]) or "no visual-semantic model yet"
    console.print(f"[bold]{name}[/] ({result['role']}): label vector added to {models}")


def _report(result: IngestResult, json_out: bool) -> None:
    if json_out:
        print_json(result.as_dict())
        return
    for warning in result.warnings:
        warn_line(warning)
    for path, reason in result.skipped:
        warn_line(f"skipped {path}: {reason}")
    if result.queued:
        console.print(
            f"queued {result.queued} images for the workers as job {result.job_id}: "
            "follow with `platform jobs --watch`"
        )
    for model, info in result.models.items():
        if info.get("queued"):
            console.print(f"{model}: queued {info['queued']} images as job {info['job_id']}")
        else:
            console.print(f"{model}: {info['embedded']} images embedded into its index")
    if result.captions or result.captions_updated:
        console.print(f"captions: {result.captions} new, {result.captions_updated} updated")
    if result.attributes:
        console.print(f"class attributes: {result.attributes} (`--vectors attributes`)")
    console.print(
        f"[bold]{result.root}[/] ({result.layout}): {result.scanned} files, "
        f"{result.added} new, {_changes(result)}{result.already} already cataloged, "
        f"{len(result.skipped)} skipped, {result.embedded} embedded  [dim](job {result.job_id})[/]"
    )


def _changes(result: IngestResult) -> str:
    """The summary's "replaced / moved / removed" part, empty when nothing changed."""
    parts = [f"{result.replaced} replaced"] if result.replaced else []
    if result.moved:
        parts.append(f"{result.moved} moved")
    if result.removed:
        parts.append(f"{result.removed} removed (files gone)")
    if result.missing > result.removed:
        parts.append(f"{result.missing - result.removed} missing (kept)")
    return "".join(f"{p}, " for p in parts)
