"""Search adapters of the Python API: each query kind mapped onto its use case.

Images: ``pipelines.query.search_by_image`` (``kind="image"``), the nearest label vectors of a
DeViSE model (``pipelines.semantic.label_images``, ``kind="label"``) or the nearest captions
of a matching model (``pipelines.crossmodal.captions_of_image``, ``kind="caption"``). Texts:
a sentence index's or a matching model's sentence search, else a DeViSE model's words. A
vector or a stored point's id is searched in the space's index directly, without building an
encoder.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embplat.api.results import Match, SearchResult
from embplat.errors import ConfigError, DataError, IndexEmptyError, NotFoundError
from embplat.pipelines.context import Context
from embplat.pipelines.query import check_split, search_by_image
from embplat.retrieval import Filter, Hit
from embplat.retrieval.base import unit_rows

if TYPE_CHECKING:
    from embplat.retrieval import VectorIndex

#: Point kinds a search may be restricted to.
KINDS = ("image", "label", "caption")
#: The model kind of a sentence index (``pipelines.sentences``: captions embedded by a
#: pretrained text encoder).
SENTENCES = "sentences"


def user_filter(*, label: str | None, split: str | None, kind: str, by_points: bool) -> Filter:
    """The payload filter of a search's options (``kind`` included for vector and point
    queries; image and text queries choose their points by ``kind`` themselves).

    Raises:
        DataError: an unknown split or kind.
    """
    check_split(split, "split")
    if kind not in KINDS:
        raise DataError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    flt: Filter = {key: v for key, v in (("split", split), ("class", label)) if v}
    return {"kind": kind, **flt} if by_points else flt


def by_image(
    ctx: Context, image: Path | bytes, *, k: int, flt: Filter, model: str | None
) -> SearchResult:
    """The images nearest to an image (a file or its encoded bytes)."""
    hits, notes = search_by_image(ctx, image, k=k, flt=flt, model=model)
    matches = [Match(h.label, h.score, h.image_id, h.path) for h in hits]
    return SearchResult(query="image", model=model, matches=matches, notes=notes)


def labels_of_image(
    ctx: Context, path: Path, *, k: int, flt: Filter, model: str | None, space: str = "encoder"
) -> SearchResult:
    """The label vectors of a DeViSE model nearest to an image file (``search --labels``),
    or (``space="clip"``) the labels' prompt vectors of the active open_clip encoder.

    Raises:
        DataError: a class or split filter (label points have neither).
    """
    from embplat.pipelines.clip import clip_labels
    from embplat.pipelines.semantic import label_images

    if flt:
        raise DataError("kind=label searches every label: drop the class and split filters")
    if space == "clip":
        found = clip_labels(ctx, [path], k=k)[0]
    else:
        found = label_images(ctx, [path], model=model, k=k)[0]
    matches = [Match(c.label, c.score, role=c.role) for c in found.candidates]
    return SearchResult(query="image", model=found.model, matches=matches)


def captions_of_image(
    ctx: Context, path: Path, *, k: int, flt: Filter, model: str | None
) -> SearchResult:
    """The captions of a matching model nearest to an image file, each with its image's
    class (``search --captions``).

    Raises:
        DataError: no ``model`` given, or not a matching model.
    """
    from embplat.catalog import repo
    from embplat.pipelines import crossmodal

    if model is None:
        raise DataError("kind=caption needs model= a matching model (`platform models list`)")
    hits = crossmodal.captions_of_image(ctx, path, model=model, k=k, flt=flt)
    with ctx.sessions() as session:
        ids = [h.image_id for h in hits if h.image_id is not None]
        classes = {i.id: i.label.name for i in repo.get_images(session=session, ids=ids)}
    matches = [
        Match(classes.get(h.image_id or 0, ""), h.score, h.image_id, h.path, text=h.text)
        for h in hits
    ]
    return SearchResult(query="image", model=model, matches=matches)


def by_text(
    ctx: Context,
    text: str,
    *,
    k: int,
    flt: Filter,
    model: str | None,
    hubness: str | None = None,
    space: str = "encoder",
    expand: int = 0,
) -> SearchResult:
    """The images nearest to a text: a sentence embedded by a sentence index's text encoder
    (each image once, by its best caption) or by a matching model's text tower, else the
    word vector of the text in a DeViSE model's space (default: the newest; the newest
    sentence index when no DeViSE model exists), or (``space="conse"``) in the ConSE space,
    or (``space="clip"``) embedded by the active open_clip encoder's text tower.
    ``expand`` (query expansion) applies to the DeViSE search only."""
    from embplat.pipelines import crossmodal
    from embplat.pipelines.sentences import has_sentence_index

    if model is None and space == "encoder" and not _has_semantic(ctx):
        model = has_sentence_index(ctx)
    if expand and (
        space != "encoder"
        or _kind_of(ctx, model) == SENTENCES
        or crossmodal.is_caption_model(ctx, model)
    ):
        raise ConfigError(
            "--expand (query expansion) applies to a visual-semantic (DeViSE) model's label "
            f"search, not to {model or space}"
        )
    if space == "conse":
        from embplat.pipelines.conse import conse_search

        hits, used = conse_search(ctx, text, k=k, flt=flt)
    elif space == "clip":
        from embplat.pipelines.clip import clip_search

        hits, used = clip_search(ctx, text, k=k, flt=flt)
    elif _kind_of(ctx, model) == SENTENCES:
        from embplat.pipelines.sentences import search_sentences

        hits, used = search_sentences(ctx, text, model=model, k=k, flt=flt)
    elif crossmodal.is_caption_model(ctx, model):
        assert model is not None  # is_caption_model(None) is False
        hits, used = crossmodal.search_by_sentence(ctx, text, model=model, k=k, flt=flt), model
    else:
        from embplat.pipelines.semantic import search_by_text

        options: dict[str, Any] = {} if hubness is None else {"hubness": hubness}
        hits, used = search_by_text(ctx, text, model=model, k=k, flt=flt, expand=expand, **options)
    matches = [Match(h.label, h.score, h.image_id, h.path) for h in hits]
    return SearchResult(query=f"text {text!r}", model=used, matches=matches)


def _has_semantic(ctx: Context) -> bool:
    """Whether any visual-semantic (DeViSE) model is registered."""
    from embplat.catalog import repo
    from embplat.pipelines.semantic import SEMANTIC_KINDS

    with ctx.sessions() as session:
        return bool(repo.list_models(session=session, kinds=SEMANTIC_KINDS))


def _kind_of(ctx: Context, model: str | None) -> str | None:
    """The registered kind of ``model`` (None for None). Raises NotFoundError for none."""
    from embplat.catalog import repo

    if model is None:
        return None
    with ctx.sessions() as session:
        return str(repo.get_model(session=session, name=model).kind)


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
        NotFoundError: no point with that id, or no such model.
        IndexEmptyError: nothing matches ``flt``.
    """
    if k < 1:
        raise DataError(f"k must be at least 1, got {k}")
    index = space_index(ctx, model)
    if point_id is not None:
        query, what = _stored(index, point_id), f"point {point_id}"
    else:
        query, what = _unit(vector, index.dim), "vector"
    available = index.count(flt)
    if available == 0:
        raise IndexEmptyError(f"no point of index {index.name} matches {flt}")
    notes = [f"k={k} is larger than the {available} matching points"] if k > available else []
    hits = index.search(query, min(k, available), flt)[0]
    return SearchResult(query=what, model=model, matches=[_match(h) for h in hits], notes=notes)


def space_index(ctx: Context, model: str | None) -> VectorIndex:
    """The index of the active encoder's space or of trained ``model``, opened without
    building an encoder when the catalog knows its dimension (a vector query needs none).

    Raises:
        NotFoundError: no such model. ConfigError: ``model`` is a pretrained encoder.
    """
    from embplat.catalog import repo
    from embplat.retrieval import collection_name

    if model is None:
        found = ctx.spaces.active_index()
        return found[1] if found is not None else ctx.spaces.space().index
    ctx.spaces.collection_id(model)  # refuses a pretrained encoder, as the other queries do
    with ctx.sessions() as session:
        dim = repo.get_model(session=session, name=model).dim
    return ctx.spaces.index(collection_name(model), dim)


def _stored(index: VectorIndex, point_id: str) -> np.ndarray:
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
        role=p.get("role"),
        text=p.get("text"),
    )
