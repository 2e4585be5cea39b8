"""Search adapters of the Python API: each query kind mapped onto its use case.

Image and text queries call ``pipelines.query.search_by_image`` and
``pipelines.semantic.search_by_text``; a vector or a stored point's id is searched in the
space's index directly (no use case takes a vector yet).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embplat.api.results import Match, SearchResult
from embplat.errors import DataError, IndexEmptyError, NotFoundError
from embplat.pipelines.context import Context
from embplat.pipelines.query import check_split, search_by_image
from embplat.retrieval import Filter, Hit
from embplat.retrieval.base import unit_rows

#: Point kinds a search may be restricted to.
KINDS = ("image", "label")


def user_filter(*, label: str | None, split: str | None, kind: str, by_points: bool) -> Filter:
    """The payload filter of a search's options.

    Raises:
        DataError: an unknown split or kind, or ``kind=label`` for an image or text query.
    """
    check_split(split, "split")
    if kind not in KINDS:
        raise DataError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind != "image" and not by_points:
        raise DataError(
            "kind=label needs a vector= or point_id= query; images and texts find images"
        )
    flt: Filter = {key: v for key, v in (("split", split), ("class", label)) if v}
    return {"kind": kind, **flt} if by_points else flt


def by_image(ctx: Context, path: Path, *, k: int, flt: Filter, model: str | None) -> SearchResult:
    """The images nearest to an image file (``platform search --image``)."""
    hits, notes = search_by_image(ctx, path, k=k, flt=flt, model=model)
    matches = [Match(h.label, h.score, h.image_id, h.path) for h in hits]
    return SearchResult(query=f"image {path}", model=model, matches=matches, notes=notes)


def by_text(ctx: Context, text: str, *, k: int, flt: Filter, model: str | None) -> SearchResult:
    """The images nearest to a text's word vector in a DeViSE model's space."""
    from embplat.pipelines.semantic import search_by_text

    hits, used = search_by_text(ctx, text, model=model, k=k, flt=flt)
    matches = [Match(h.label, h.score, h.image_id, h.path) for h in hits]
    return SearchResult(query=f"text {text!r}", model=used, matches=matches)


def by_vector(
    ctx: Context,
    vector: Sequence[float] | np.ndarray | None,
    point_id: str | None,
    *,
    k: int,
    flt: Filter,
    model: str | None,
) -> SearchResult:
    """The points nearest to a vector (normalised here) or to a stored point.

    Raises:
        DataError: the vector is not ``dim`` finite numbers, a bad point id, k < 1.
        NotFoundError: no point with that id.
        IndexEmptyError: nothing matches ``flt``.
    """
    if k < 1:
        raise DataError(f"k must be at least 1, got {k}")
    space = ctx.spaces.space(model)
    if point_id is not None:
        query, what = _stored(space.index, point_id), f"point {point_id}"
    else:
        query, what = _unit(vector, space.index.dim), "vector"
    available = space.index.count(flt)
    if available == 0:
        raise IndexEmptyError(f"no point of index {space.index.name} matches {flt}")
    notes = [f"k={k} is larger than the {available} matching points"] if k > available else []
    hits = space.index.search(query, min(k, available), flt)[0]
    return SearchResult(query=what, model=model, matches=[_match(h) for h in hits], notes=notes)


def _stored(index: Any, point_id: str) -> np.ndarray:
    try:
        uuid.UUID(point_id)
    except ValueError as exc:
        raise DataError(f"point id {point_id!r} is not a UUID (see docs/qdrant.md)") from exc
    vectors, _ = index.get([point_id])
    if len(vectors) == 0:
        raise NotFoundError(f"no point {point_id} in index {index.name}")
    return np.asarray(vectors[:1], dtype=np.float32)


def _unit(vector: Any, dim: int) -> np.ndarray:
    """One query row, checked and normalised by the indexes' own ``unit_rows``."""
    try:
        row = np.asarray(vector, dtype=np.float32).reshape(1, -1)
    except (TypeError, ValueError) as exc:
        raise DataError(f"vector must be {dim} numbers ({exc})") from exc
    try:
        return unit_rows(row, dim)
    except DataError as exc:
        raise DataError(
            f"vector must be {dim} finite numbers, not all zero (got {row.shape[1]}: {exc}); "
            "the space's dimension is in `platform models list`"
        ) from exc


def _match(hit: Hit) -> Match:
    p = hit.payload
    image_id = p.get("image_id")
    return Match(
        label=str(p.get("class")),
        score=round(hit.score, 6),
        image_id=None if image_id is None else int(image_id),
        path=p.get("path"),
    )
