"""``platform vectors load|use|show|reset``: the word vectors DeViSE maps images onto."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from embplat.cli.output import console, print_json

vectors_app = typer.Typer(
    no_args_is_help=True, help="Word vectors (fastText, GloVe, MiniLM prompt vectors)."
)


def register(app: typer.Typer) -> None:
    """Attach this group to the root app."""
    app.add_typer(vectors_app, name="vectors")


@vectors_app.command("load")
def vectors_load(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="fastText .bin, .vec, or GloVe .txt file")],
    max_words: Annotated[
        int | None, typer.Option(help="text files: keep only the first N words")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Make FILE the active word vectors (text files are converted once into the data home)."""
    from embplat.models.vector_files import source_for_file
    from embplat.models.wordvectors import open_vectors, set_active_source

    home = ctx.obj.settings.home
    source = source_for_file(file, home, max_words=max_words)
    vectors = open_vectors(source)
    set_active_source(home, source)
    if json_out:
        print_json({**source.as_dict(), "dim": vectors.dim})
        return
    console.print(f"active word vectors: {source.label} ({vectors.dim}-d, {source.kind})")


@vectors_app.command("use")
def vectors_use(
    ctx: typer.Context,
    name: Annotated[
        str,
        typer.Argument(
            help="glove (bundled GloVe 6B 50-d), minilm (MiniLM prompts) or attributes "
            "(the class attributes ingested with an AwA2 predicate matrix)"
        ),
    ],
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Make a built-in source the active vectors: `minilm` embeds each label in prompts
    ("a photo of a {label}", ...) with the bundled all-MiniLM-L6-v2 (384-d, offline);
    `attributes` describes each class by its row of the ingested predicate matrix."""
    from embplat.errors import ConfigError
    from embplat.models.wordvectors import (
        ATTRIBUTES,
        NAMED_SOURCES,
        open_vectors,
        resolve_source,
        set_active_source,
    )

    names = sorted([*NAMED_SOURCES, ATTRIBUTES])
    if name not in names:
        raise ConfigError(
            f"unknown word vectors {name!r}; choose one of: {', '.join(names)}, "
            "or load a file with `platform vectors load FILE`"
        )
    source = resolve_source(name, ctx.obj.settings.home)
    vectors = open_vectors(source)
    set_active_source(ctx.obj.settings.home, source)
    if json_out:
        print_json({**source.as_dict(), "dim": vectors.dim})
        return
    console.print(f"active word vectors: {source.label} ({vectors.dim}-d, {source.kind})")


@vectors_app.command("reset")
def vectors_reset(ctx: typer.Context) -> None:
    """Go back to the bundled GloVe 6B 50-d vectors."""
    from embplat.models.wordvectors import VectorSource, set_active_source

    set_active_source(ctx.obj.settings.home, VectorSource())
    console.print("active word vectors: glove-6B-50d (bundled)")


@vectors_app.command("show")
def vectors_show(
    ctx: typer.Context,
    words: Annotated[list[str] | None, typer.Argument(help="labels or words to look up")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The active vectors; with WORDS, whether each has a vector and its similarity to the rest."""
    import numpy as np

    from embplat.errors import DataError
    from embplat.models.wordvectors import active_source, label_vector, open_vectors

    source = active_source(ctx.obj.settings.home)
    vectors = open_vectors(source)
    found: dict[str, np.ndarray] = {}
    missing: list[str] = []
    for word in words or []:
        try:
            found[word] = label_vector(vectors, word)
        except DataError:
            missing.append(word)
    names = list(found)
    sims = {a: {b: round(float(found[a] @ found[b]), 4) for b in names} for a in names}
    if json_out:
        print_json({**source.as_dict(), "dim": vectors.dim, "similarity": sims, "unknown": missing})
        return
    console.print(f"[bold]active[/]: {source.label} ({vectors.dim}-d, {source.kind})")
    if names:
        table = Table("", *names, title="cosine similarity of label vectors")
        for a in names:
            table.add_row(a, *(f"{sims[a][b]:.3f}" for b in names))
        console.print(table)
    for word in missing:
        console.print(f"[yellow]{word}[/]: no vector (none of its words is known)")
