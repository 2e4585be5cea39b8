"""Use case: the captions of a cataloged image, found by its path or file name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from embplat.catalog import repo
from embplat.errors import DataError, NotFoundError
from embplat.pipelines.context import Context


def image_captions(ctx: Context, image: str) -> dict[str, Any]:
    """The image at ``image`` (a path, or a file name the catalog holds once) and its
    captions.

    Returns:
        ``{"image", "image_id", "split", "class", "captions": [{"ordinal", "text",
        "source", "model"}]}``, captions from files first, then by ordinal.

    Raises:
        NotFoundError: no cataloged image has that path or file name.
        DataError: the file name is that of several cataloged images.
    """
    with ctx.sessions() as session:
        found = repo.find_images(session=session, path=str(Path(image).absolute()))
        if not found:
            found = repo.find_images(session=session, path=image)
        if not found:
            raise NotFoundError(
                f"{image}: not in the catalog; ingest its folder first (`platform ingest DIR`)"
            )
        if len(found) > 1:
            shown = ", ".join(i.path for i in found[:3])
            raise DataError(
                f"{image} names {len(found)} cataloged images ({shown}"
                f"{', ...' if len(found) > 3 else ''}); pass its full path"
            )
        img = found[0]
        captions = repo.get_captions(session=session, image_ids=[img.id]).get(img.id, [])
        return {
            "image": img.path,
            "image_id": img.id,
            "split": img.split,
            "class": img.label.name,
            "captions": [
                {"ordinal": c.ordinal, "text": c.text, "source": c.source, "model": c.model}
                for c in captions
            ],
        }
