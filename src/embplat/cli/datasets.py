"""``platform datasets``: build sample datasets: Fashion-MNIST in the AwA2 layout from local
files, captioned scenes in the Flickr8k layout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from embplat.cli.output import comma_list, console

app = typer.Typer(no_args_is_help=True)

#: ``embplat.ingest.fashion_mnist.DEFAULT_FMNIST_DIR``, repeated so that the help does not
#: import numpy and Pillow (tests/cli/test_startup.py checks they agree).
DEFAULT_FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


@app.command("fashion-mnist")
def fashion_mnist(
    out: Annotated[Path, typer.Option(help="output folder (JPEGImages/ and split files)")],
    per_class: Annotated[int, typer.Option(help="images per class")] = 200,
    unseen: Annotated[
        str | None, typer.Option(help="comma-separated classes for testclasses")
    ] = None,
    classes: Annotated[str | None, typer.Option(help="comma-separated subset of classes")] = None,
    source: Annotated[str, typer.Option(help="train or test images of Fashion-MNIST")] = "train",
    offset: Annotated[int, typer.Option(help="skip this many picks per class")] = 0,
    size: Annotated[int, typer.Option(help="side of the written JPEGs")] = 28,
    seed: Annotated[int, typer.Option()] = 0,
    source_dir: Annotated[
        Path, typer.Option(help="folder of the IDX .gz files")
    ] = DEFAULT_FMNIST_DIR,
) -> None:
    """Write Fashion-MNIST images as JPEGImages/<class>/<class>_<id>.jpg plus split files."""
    from embplat.ingest.fashion_mnist import build_fashion_mnist

    if source not in ("train", "test"):
        raise typer.BadParameter(f"--source must be train or test, got {source!r}")
    root = build_fashion_mnist(
        out,
        per_class=per_class,
        unseen=comma_list(unseen),
        classes=comma_list(classes) or None,
        source=source,  # type: ignore[arg-type]
        offset=offset,
        seed=seed,
        source_dir=source_dir,
        size=size,
    )
    console.print(f"wrote {root}")


@app.command("scenes")
def scenes(
    out: Annotated[Path, typer.Option(help="output folder (Flickr8k layout)")],
    images: Annotated[int, typer.Option(help="how many images (a tenth test, a tenth dev)")] = 2000,
    seed: Annotated[int, typer.Option()] = 0,
    size: Annotated[int, typer.Option(help="side of the written JPEGs in pixels")] = 128,
) -> None:
    """Render captioned scenes (coloured shapes left of / above one another, five true
    captions each) as Flicker8k_Dataset/ + Flickr8k.token.txt + Flickr_8k.*Images.txt:
    `platform ingest OUT` catalogs images and captions."""
    from embplat.ingest.scenes import build_scenes

    root = build_scenes(out, images=images, seed=seed, size=size)
    console.print(f"wrote {images} captioned scenes to {root}")
