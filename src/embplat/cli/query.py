"""``platform classify`` and ``platform search``: a thin layer over :class:`embplat.api.Platform`.

Both build a ``Platform`` on the command's settings and context and call its methods; `--json`
prints the answers' ``to_dict()``, the same keys as the Python API and the HTTP service.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from embplat.cli.output import console, error_line, print_json, warn_line
from embplat.errors import DataError

if TYPE_CHECKING:
    from embplat.api import Classification, Match, Platform, SearchResult, ZeroShot


def register(app: typer.Typer) -> None:
    """Attach these commands to the root app."""
    app.command("classify")(classify_cmd)
    app.command("search")(search_cmd)


Space = typer.Option(
    "--space",
    help="encoder: kNN vote among images; semantic: nearest label vectors (DeViSE); conse: "
    "ImageNet head's top classes combined (no training); clip: an open_clip encoder's label "
    "prompts and text tower (no training)",
)
HubnessOpt = typer.Option(
    "--hubness", help="rescoring over the label set: none | csls | isoftmax (see README)"
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
    gamma: Annotated[
        float | None,
        typer.Option(help="semantic: calibration subtracted from seen labels (default: stored)"),
    ] = None,
    hubness: Annotated[str, HubnessOpt] = "none",
    top: Annotated[int, typer.Option(help="conse: ImageNet classes combined")] = 10,
    knn: Annotated[
        bool, typer.Option("--knn", help="a classifier --model: kNN vote, not its softmax head")
    ] = False,
) -> None:
    """Predict each image's class by kNN vote, or (--space semantic|conse|clip) by the nearest
    label.

    With --model of a trained classifier: its softmax head's class and probabilities
    (--k most probable listed); --knn votes among its neighbours instead.

    An image that cannot be read (missing, corrupt, too large) is reported on its own line
    (in `--json`: an entry `{"source", "error"}` in its place) and the others are answered.

    Exit status: 0 every image answered; 1 some or all images failed, or nothing is
    enrolled; 2 a usage error.
    """
    from embplat.api import Failure

    platform = _platform(ctx)
    answers: Sequence[Classification | ZeroShot | Failure]
    if _semantic(space, conse=True):
        answers = platform.zero_shot(
            images, k=min(k, 10), model=model, unseen_only=unseen_only, gamma=gamma,
            hubness=hubness, space=space, top=top,
        )  # fmt: skip
    else:
        answers = platform.classify_many(
            images,
            k=k,
            weighted=weighted,
            model=model,
            reject_below=reject_below,
            reject_on=reject_on,
            knn=knn,
        )
    failures = [a for a in answers if isinstance(a, Failure)]
    if json_out:
        print_json([a.to_dict() for a in answers])
    else:
        _print_answers([a for a in answers if not isinstance(a, Failure)], show)
        for failure in failures:
            error_line(f"{failure.source}: {failure.error}")
    if failures:
        raise typer.Exit(1)  # a failed operation (some or all images), see cli.app.exit_code


def search_cmd(
    ctx: typer.Context,
    image: Annotated[Path | None, typer.Option("--image", help="query image")] = None,
    text: Annotated[
        str | None,
        typer.Option("--text", help="query words (DeViSE) or a sentence (matching, clip)"),
    ] = None,
    labels: Annotated[
        bool, typer.Option("--labels", help="image → labels (DeViSE, or --space clip)")
    ] = False,
    captions: Annotated[
        bool, typer.Option("--captions", help="image → captions (a matching --model)")
    ] = False,
    k: Annotated[int, typer.Option("--k")] = 5,
    split: Annotated[str | None, typer.Option(help="only this split: train|valid|test")] = None,
    label: Annotated[str | None, typer.Option("--class", help="only this class")] = None,
    space: Annotated[str, Space] = "encoder",
    model: Annotated[str | None, ModelOpt] = None,
    hubness: Annotated[str | None, HubnessOpt] = None,
    expand: Annotated[
        int,
        typer.Option(
            "--expand",
            help="DeViSE --text: search again with the mean of the N best images (query "
            "expansion; 0 = off)",
        ),
    ] = 0,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Nearest images to a query image or text, or (--labels) the labels nearest an image.

    With a matching model (`platform train matching`): --text is a sentence embedded by its
    text tower, and --image --captions lists the captions nearest the image. With an open_clip
    encoder and --space clip: --text is embedded by its text tower, --image --labels lists the
    nearest class prompts.
    """
    from embplat.pipelines.query import check_split

    check_split(split)
    semantic = _semantic(space, conse=text is not None)
    if text is None and image is None:
        raise DataError("give a query with --image PATH or --text WORDS")
    if text is None and captions and model is None:
        raise DataError("--captions needs --model NAME of a matching model")
    platform = _platform(ctx)
    kind = "image"
    if text is None and (captions or labels):
        kind = "caption" if captions else "label"
    if text is None and kind == "image" and semantic and space != "clip":
        model = platform.semantic_model(model)
    query = {"text": text} if text is not None else {"image": image}
    found = platform.search(
        **query, k=k, label=label, split=split, kind=kind, model=model, hubness=hubness,
        space=space if space in ("conse", "clip") else "encoder", expand=expand,
    )  # fmt: skip
    if json_out:
        print_json(found.to_dict())
        return
    for note in found.notes:
        warn_line(note)
    console.print(_result_table(found, kind))


def _platform(ctx: typer.Context) -> Platform:
    """The Python API on this command's settings and context (the CLI closes the context)."""
    from embplat.api import Platform

    return Platform(settings=ctx.obj.settings, context=ctx.obj.context())


def _semantic(space: str, *, conse: bool = False) -> bool:
    """Whether ``--space`` asks for label vectors (``semantic``, ``clip``, or ``conse`` where
    allowed)."""
    allowed = {"encoder", "semantic", "clip", *(["conse"] if conse else [])}
    if space not in allowed:
        raise DataError(f"--space must be one of {', '.join(sorted(allowed))}, got {space!r}")
    return space != "encoder"


def _print_answers(answers: list[Classification | ZeroShot], show: int) -> None:
    """Human output: kNN votes (with their notes) or zero-shot label predictions."""
    from embplat.api import Classification

    for note in answers[0].notes if answers and isinstance(answers[0], Classification) else []:
        warn_line(note)
    for answer in answers:
        if isinstance(answer, Classification):
            _print_vote(answer, show)
            continue
        calibrated = f", gamma {answer.gamma:.3f}" if answer.gamma else ""
        console.print(
            f"[bold]{answer.source}[/] → [bold green]{answer.label}[/] ({answer.role}, "
            f"score {answer.score:.4f}, model {answer.model}{calibrated})"
        )
        for note in answer.notes:
            warn_line(note)
        if show:
            console.print(_label_table(answer.candidates[:show], None))


def _print_vote(c: Classification, show: int) -> None:
    runner = f", runner-up {c.runner_up} {c.runner_up_share:.0%}" if c.runner_up else ""
    best = f"best {c.best_label}: " if c.best_label else ""
    if c.method == "softmax":
        console.print(
            f"[bold]{c.source}[/] → [bold green]{c.label}[/] ({best}p={c.confidence:.2f}, "
            f"softmax{runner})"
        )
        if show:
            table = Table("#", "class", "probability", title=None)
            for rank, (label, p) in enumerate(list(c.probabilities.items())[:show], 1):
                table.add_row(str(rank), label, f"{p:.4f}")
            console.print(table)
        return
    console.print(
        f"[bold]{c.source}[/] → [bold green]{c.label}[/] "
        f"({best}{c.confidence:.0%} of {c.k} votes{runner})"
    )
    if show:
        console.print(_neighbour_table(c.neighbours[:show], None))


def _result_table(found: SearchResult, kind: str) -> Table:
    """A search's matches as the table of their kind (images, labels or captions)."""
    what = found.query.removeprefix("image ")
    used = f" ({found.model})" if found.model else ""
    if kind == "label":
        return _label_table(found.matches, f"labels nearest to {what}{used}")
    if kind == "caption":
        table = Table("#", "caption", "score", "image", title=f"captions nearest to {what}{used}")
        table.title_justify = "left"
        for rank, m in enumerate(found.matches, 1):
            table.add_row(str(rank), m.text or "", f"{m.score:.4f}", m.path or "")
        return table
    return _neighbour_table(found.matches, f"nearest to {found.query}{used}")


def _label_table(scores: list[Match], title: str | None) -> Table:
    table = Table("#", "label", "role", "cosine", title=title, title_justify="left")
    for rank, s in enumerate(scores, 1):
        table.add_row(str(rank), s.label, s.role or "", f"{s.score:.4f}")
    return table


def _neighbour_table(hits: list[Match], title: str | None) -> Table:
    table = Table("#", "class", "score", "path", title=title, title_justify="left")
    for rank, h in enumerate(hits, 1):
        table.add_row(str(rank), h.label, f"{h.score:.4f}", h.path or "")
    return table
