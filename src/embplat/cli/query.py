"""``platform classify`` and ``platform search``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from embplat.cli.output import console, error_line, print_json, warn_line
from embplat.errors import DataError

if TYPE_CHECKING:
    from embplat.pipelines.crossmodal import CaptionHit
    from embplat.pipelines.query import Neighbour, Prediction, QueryFailure


def register(app: typer.Typer) -> None:
    """Attach these commands to the root app."""
    app.command("classify")(classify_cmd)
    app.command("search")(search_cmd)


Space = typer.Option(
    "--space", help="encoder: kNN vote among images; semantic: nearest label vectors (DeViSE)"
)
ModelOpt = typer.Option("--model", help="a trained model (`platform models list`)")


def classify_cmd(
    ctx: typer.Context,
    images: Annotated[list[Path], typer.Argument(help="image files to classify")],
    k: Annotated[int, typer.Option("--k", help="neighbours in the vote / labels listed")] = 10,
    weighted: Annotated[bool, typer.Option(help="weight votes by similarity")] = False,
    space: Annotated[str, Space] = "encoder",
    model: Annotated[str | None, ModelOpt] = None,
    unseen_only: Annotated[bool, typer.Option(help="semantic: only unseen labels (ZSL)")] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
    show: Annotated[int, typer.Option(min=0, help="neighbours to list per image")] = 5,
    reject_below: Annotated[
        float | None, typer.Option(help="answer `unknown` below this vote share / score")
    ] = None,
    reject_on: Annotated[str, typer.Option(help="what --reject-below compares: share|score")] = (
        "share"
    ),
) -> None:
    """Predict each image's class by kNN vote, or (--space semantic) by the nearest label.

    An image that cannot be read (missing, corrupt, too large) is reported on its own line
    (in `--json`: an entry `{"path", "error"}` in its place) and the others are answered.

    Exit status: 0 every image answered; 1 some images failed; 2 none could be answered, or
    a usage error.
    """
    from embplat.pipelines.query import classify

    context = ctx.obj.context()
    failures: list[QueryFailure] = []
    answers: list[Any]
    if _semantic(space):
        from embplat.pipelines.semantic import label_images

        roles = ["unseen"] if unseen_only else None
        answers = label_images(
            context, images, model=model, k=min(k, 10), roles=roles, failures=failures
        )
    else:
        answers = classify(
            context,
            images,
            k=k,
            weighted=weighted,
            model=model,
            reject_below=reject_below,
            reject_on=reject_on,
            failures=failures,
        )
    if json_out:
        print_json(_in_input_order(images, answers, failures))
    else:
        _print_answers(answers, show)
        for failure in failures:
            error_line(str(failure))
    if failures:
        raise typer.Exit(1)  # a failed operation (some or all images), see cli.app.exit_code


def search_cmd(
    ctx: typer.Context,
    image: Annotated[Path | None, typer.Option("--image", help="query image")] = None,
    text: Annotated[
        str | None, typer.Option("--text", help="query words (DeViSE) or a sentence (matching)")
    ] = None,
    labels: Annotated[bool, typer.Option("--labels", help="image → labels (DeViSE)")] = False,
    captions: Annotated[
        bool, typer.Option("--captions", help="image → captions (a matching --model)")
    ] = False,
    k: Annotated[int, typer.Option("--k")] = 5,
    split: Annotated[str | None, typer.Option(help="only this split: train|valid|test")] = None,
    label: Annotated[str | None, typer.Option("--class", help="only this class")] = None,
    space: Annotated[str, Space] = "encoder",
    model: Annotated[str | None, ModelOpt] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Nearest images to a query image or text, or (--labels) the labels nearest an image.

    With a matching model (`platform train matching`): --text is a sentence embedded by its
    text tower, and --image --captions lists the captions nearest the image.
    """
    from embplat.pipelines import crossmodal, semantic
    from embplat.pipelines.query import check_split, search_by_image

    check_split(split)
    context = ctx.obj.context()
    flt = {key: v for key, v in (("split", split), ("class", label)) if v}
    notes: list[str] = []
    if text is not None and crossmodal.is_caption_model(context, model):
        assert model is not None  # is_caption_model(None) is False
        hits = crossmodal.search_by_sentence(context, text, model=model, k=k, flt=flt)
        title = f"nearest to the sentence {text!r} ({model})"
    elif text is not None:
        hits, used = semantic.search_by_text(context, text, model=model, k=k, flt=flt)
        title = f"nearest to the words {text!r} ({used})"
    elif image is None:
        raise DataError("give a query with --image PATH or --text WORDS")
    elif captions:
        if model is None:
            raise DataError("--captions needs --model NAME of a matching model")
        near = crossmodal.captions_of_image(context, image, model=model, k=k, flt=flt)
        if json_out:
            print_json([c.as_dict() for c in near])
        else:
            console.print(_caption_table(near, f"captions nearest to {image} ({model})"))
        return
    elif labels:
        found = semantic.label_images(context, [image], model=model, k=k)[0]
        if json_out:
            print_json([c.__dict__ for c in found.candidates])
        else:
            console.print(_label_table(found.candidates, f"labels nearest to {image}"))
        return
    else:
        if _semantic(space):
            model = semantic.semantic_model(context, model)
        hits, notes = search_by_image(context, image, k=k, flt=flt, model=model)
        title = f"nearest to {image}" + (f" ({model})" if model else "")
    if json_out:
        print_json([h.__dict__ for h in hits])
        return
    for note in notes:
        warn_line(note)
    console.print(_neighbour_table(hits, title))


def _in_input_order(
    images: list[Path], answers: list[Any], failures: list[QueryFailure]
) -> list[dict[str, Any]]:
    """Answers and failures as JSON entries, one per query image in the order given."""
    answered, failed = iter(answers), iter(failures)
    next_answer, next_failure = next(answered, None), next(failed, None)
    out: list[dict[str, Any]] = []
    for path in images:
        if next_failure is not None and next_failure.path == str(path):
            out.append(next_failure.as_dict())
            next_failure = next(failed, None)
        elif next_answer is not None:
            out.append(next_answer.as_dict())
            next_answer = next(answered, None)
    return out


def _print_answers(answers: list[Any], show: int) -> None:
    """Human output: kNN predictions (with their notes) or zero-shot label predictions."""
    from embplat.pipelines.query import Prediction

    for note in answers[0].notes if answers and isinstance(answers[0], Prediction) else []:
        warn_line(note)
    for answer in answers:
        if isinstance(answer, Prediction):
            _print_prediction(answer, show)
            continue
        console.print(
            f"[bold]{answer.path}[/] → [bold green]{answer.label}[/] ({answer.role}, "
            f"cosine {answer.score:.4f}, model {answer.model})"
        )
        if show:
            console.print(_label_table(answer.candidates[:show], None))


def _semantic(space: str) -> bool:
    if space not in {"encoder", "semantic"}:
        raise DataError(f"--space must be encoder or semantic, got {space!r}")
    return space == "semantic"


def _label_table(scores: list[Any], title: str | None) -> Table:
    table = Table("#", "label", "role", "cosine", title=title, title_justify="left")
    for rank, s in enumerate(scores, 1):
        table.add_row(str(rank), s.label, s.role, f"{s.score:.4f}")
    return table


def _print_prediction(p: Prediction, show: int) -> None:
    runner = f", runner-up {p.runner_up} {p.runner_up_share:.0%}" if p.runner_up else ""
    best = f"best {p.best_label}: " if p.best_label else ""
    console.print(
        f"[bold]{p.path}[/] → [bold green]{p.label}[/] "
        f"({best}{p.confidence:.0%} of {p.k} votes{runner})"
    )
    if show:
        console.print(_neighbour_table(p.neighbours[:show], None))


def _caption_table(hits: list[CaptionHit], title: str) -> Table:
    table = Table("#", "caption", "score", "image", title=title, title_justify="left")
    for rank, h in enumerate(hits, 1):
        table.add_row(str(rank), h.text, f"{h.score:.4f}", h.path)
    return table


def _neighbour_table(hits: list[Neighbour], title: str | None) -> Table:
    table = Table("#", "class", "score", "path", title=title, title_justify="left")
    for rank, h in enumerate(hits, 1):
        table.add_row(str(rank), h.label, f"{h.score:.4f}", h.path)
    return table
