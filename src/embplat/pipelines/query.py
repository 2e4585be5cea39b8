"""Use case: search images by image; what every query answers with (:class:`Neighbour`)
and the checks queries share (split names, ``k`` against what the index holds).

Query images themselves (files or encoded bytes, failures) are ``pipelines.query_images``';
classification is ``pipelines.classify``'s.
"""

from __future__ import annotations

from dataclasses import dataclass

from embplat.errors import DataError, IndexEmptyError
from embplat.pipelines.context import Context, Space
from embplat.pipelines.query_images import QueryImage, embed_query_images, require_files
from embplat.retrieval import Filter, Hit

#: The splits images are cataloged in (``ingest.register.split_for``).
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Neighbour:
    """One retrieved image."""

    path: str
    label: str
    score: float
    image_id: int | None = None

    @classmethod
    def from_hit(cls, hit: Hit) -> Neighbour:
        """Build from an index hit's payload."""
        p = hit.payload
        return cls(
            path=str(p.get("path")),
            label=str(p.get("class")),
            score=round(hit.score, 6),
            image_id=p.get("image_id"),
        )


def check_split(split: str | None, flag: str = "--split") -> None:
    """Refuse a split name the catalog never uses. Raises DataError naming ``flag`` and
    listing the valid ones."""
    if split is not None and split not in SPLITS:
        raise DataError(f"{flag} must be one of {', '.join(SPLITS)}, got {split!r}")


def checked_k(
    space: Space, k: int, flt: Filter, user_filter: Filter | None = None
) -> tuple[int, list[str]]:
    """``k`` capped at the images matching ``flt``, with a note when it was capped.

    The one count of a query call: the index's ``search`` does not count again (the Qdrant
    backend counts only when a search comes back empty), so classifying a batch of images
    costs one count, however many images it holds.

    Raises:
        DataError: ``k`` < 1, or ``user_filter`` matches no image of a non-empty index.
        IndexEmptyError: no image matches ``flt`` (nothing enrolled yet).
    """
    if k < 1:
        raise DataError(f"--k must be at least 1, got {k}")
    available = space.index.count(flt)
    if available == 0 and user_filter and space.index.count({"kind": "image"}):
        wanted = ", ".join(f"{key}={value!r}" for key, value in user_filter.items())
        raise DataError(
            f"no image in index {space.index.name} matches {wanted}; check the names with "
            "`platform classes list` or drop the filter"
        )
    if available == 0:
        raise IndexEmptyError(
            f"index {space.index.name} holds no enrolled images yet: "
            "run `platform ingest DIR` (or `platform classes add NAME DIR`) first"
        )
    if k > available:
        return available, [
            f"k={k} is larger than the {available} enrolled images; used k={available}"
        ]
    return k, []


def search_by_image(
    ctx: Context,
    path: QueryImage,
    *,
    k: int = 5,
    flt: Filter | None = None,
    model: str | None = None,
) -> tuple[list[Neighbour], list[str]]:
    """The ``k`` images nearest to ``path`` (a file or encoded bytes; any split unless
    filtered), with notes.

    ``model``: search a trained model's space (e.g. a DeViSE model's semantic space).
    """
    require_files([path])
    space = ctx.spaces.space(model)
    user_filter = dict(flt or {})
    flt = {"kind": "image", **user_filter}
    k_used, notes = checked_k(space, k, flt, user_filter)
    query = embed_query_images(space, [path], max_pixels=ctx.ingest.max_pixels)
    hits = space.index.search(query, k_used, flt)[0]
    return [Neighbour.from_hit(h) for h in hits], notes
