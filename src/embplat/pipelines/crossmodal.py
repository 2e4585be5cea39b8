"""Use cases of matching (image–caption) models: their points, sentence search, captions of
an image.

A matching model's collection (``embplat_<name>``) holds image points (``kind=image``, the
payload of every image point) and caption points (``kind=caption``: ``image_id``, ``text``,
``ordinal``, ``split``, ``path`` of the image), both under deterministic ids. ``search
--text`` embeds the sentence with the model's text tower and searches its image points;
``search --image --captions`` embeds the image with the model's image side and searches its
caption points.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.errors import ConfigError, DataError, IndexEmptyError
from embplat.pipelines.caption_pairs import caption_pairs
from embplat.pipelines.context import Context, Space
from embplat.pipelines.query import Neighbour
from embplat.pipelines.query_images import embed_query_images, require_files
from embplat.retrieval import Filter, VectorIndex, collection_name, point_id

if TYPE_CHECKING:
    from embplat.models.recipes.matching import MatchingModel

log = logging.getLogger(__name__)

SPLITS = ["train", "valid", "test"]


@dataclass(frozen=True)
class CaptionHit:
    """One retrieved caption, with the image it describes."""

    text: str
    score: float
    path: str
    image_id: int | None
    ordinal: int | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def caption_point_id(sha256: str, ordinal: int, model: str) -> str:
    """Deterministic id of caption ``ordinal`` of the image with ``sha256`` in ``model``."""
    return point_id(f"{sha256}#{ordinal}", model, kind="caption")


def recipe_data(ctx: Context, model: str | None) -> str | None:
    """What the recipe of registered ``model`` trains on (``RecipeSpec.data``: ``classes``,
    ``captions``, ``captioning``); None for no model or one no recipe made (an encoder).

    Raises:
        NotFoundError: no such model.
    """
    if model is None:
        return None
    from embplat.models.recipes import get_recipe, list_recipes

    with ctx.sessions() as session:
        kind = repo.get_model(session=session, name=model).kind
    return get_recipe(kind).data if kind in list_recipes() else None


def is_caption_model(ctx: Context, model: str | None) -> bool:
    """Whether ``model`` is a trained model of a recipe that learns from captions."""
    return recipe_data(ctx, model) == "captions"


def load_model(ctx: Context, model: str) -> MatchingModel:
    """The registered matching ``model`` rebuilt from its best checkpoint.

    Raises:
        NotFoundError: no such model. ConfigError: not a matching model, or its checkpoint
            is missing.
    """
    from embplat.models.checkpoints import load_checkpoint
    from embplat.models.recipes.matching.saved import load_matching_model

    if not is_caption_model(ctx, model):
        raise ConfigError(f"model {model!r} is not an image–caption (matching) model")
    with ctx.sessions() as session:
        checkpoint = repo.get_model(session=session, name=model).config["checkpoint"]
    return load_matching_model(load_checkpoint(ctx.home / checkpoint), home=ctx.home)


def write_points(ctx: Context, name: str, model: MatchingModel, space: Space) -> tuple[int, int]:
    """Fill ``name``'s collection from the active ``space``'s stored image vectors: an image
    point per embedded image (recorded in the catalog) and a caption point per caption.

    Returns:
        (image points, caption points) written.
    """
    index = ctx.spaces.index(collection_name(name), model.spec["config"]["embed_dim"])
    collection_id = ctx.spaces.collection_id(name)
    model.eval()
    points = _write_image_points(ctx, name, model, space, index)
    captions = _write_caption_points(ctx, name, model, space, index)
    index.flush()
    with transaction(ctx.sessions) as session:
        repo.add_embeddings(session=session, collection_id=collection_id, points=points)
    log.info("%s: %d image points, %d caption points", name, len(points), captions)
    return len(points), captions


def _write_image_points(
    ctx: Context, name: str, model: MatchingModel, space: Space, index: VectorIndex
) -> list[tuple[int, str]]:
    """Every image of the active space, projected by the image tower; (image id, point id)."""
    import torch

    from embplat.ingest.embedding import payload_for

    with ctx.sessions() as session:
        rows = repo.embedded_images(
            session=session, collection_id=space.collection_id, splits=SPLITS
        )
        images = {i.id: i for i in repo.get_images(session=session, ids=[r[0] for r in rows])}
        ids = [point_id(images[r[0]].sha256, name) for r in rows]
        payloads = [payload_for(images[r[0]], name) for r in rows]
    features = np.asarray(space.index.get([r[3] for r in rows])[0], np.float32) if rows else None
    with torch.no_grad():
        vectors = _chunked(lambda x: model.embed_images(torch.from_numpy(x)), features)
    _upsert(index, ids, vectors, payloads)
    return [(r[0], pid) for r, pid in zip(rows, ids, strict=True)]


def _write_caption_points(
    ctx: Context, name: str, model: MatchingModel, space: Space, index: VectorIndex
) -> int:
    """Every caption of an image of the active space, by the text tower; how many."""
    import torch

    pairs = caption_pairs(ctx, index=space.index, collection_id=space.collection_id, splits=SPLITS)
    with torch.no_grad():
        vectors = _chunked(lambda t: model.embed_texts(model.text.prepare(list(t))), pairs.texts)
    with ctx.sessions() as session:
        images = {i.id: i for i in repo.get_images(session=session, ids=pairs.image_ids)}
        owners = [images[pairs.image_ids[r]] for r in pairs.image_of_text]
        rows = list(zip(owners, pairs.texts, pairs.ordinals, pairs.caption_ids, strict=True))
        ids = [caption_point_id(o.sha256, n, name) for o, _, n, _ in rows]
        payloads = [_caption_payload(o, text, n, c, name) for o, text, n, c in rows]
    _upsert(index, ids, vectors, payloads)
    return len(ids)


def search_by_sentence(
    ctx: Context, text: str, *, model: str, k: int = 10, flt: Filter | None = None
) -> list[Neighbour]:
    """The ``k`` images of matching ``model`` nearest to the sentence ``text``, best first.

    Raises:
        DataError: an empty sentence, one without a known word (``glove``), or k < 1.
        IndexEmptyError: the model's collection holds no images.
    """
    import torch

    if k < 1:
        raise DataError(f"--k must be at least 1, got {k}")
    if not text.strip():
        raise DataError("--text is empty: give a sentence, e.g. 'a red circle left of a square'")
    net = load_model(ctx, model)
    with torch.no_grad():
        query = net.embed_texts(net.text.prepare([text])).numpy().astype(np.float32)
    index = ctx.spaces.index(collection_name(model), query.shape[1])
    if index.count({"kind": "image"}) == 0:  # a filter matching nothing is no error
        raise IndexEmptyError(f"{index.name} holds no images to search: retrain {model}")
    flt = {"kind": "image", **(flt or {})}
    return [Neighbour.from_hit(h) for h in index.search(query, k, flt)[0]]


def captions_of_image(
    ctx: Context, path: Path, *, model: str, k: int = 5, flt: Filter | None = None
) -> list[CaptionHit]:
    """The ``k`` captions of matching ``model`` nearest to the image file ``path``.

    Raises:
        DataError: a missing or unreadable file; k < 1; not a matching model.
        IndexEmptyError: the model's collection holds no captions.
    """
    if k < 1:
        raise DataError(f"--k must be at least 1, got {k}")
    if not is_caption_model(ctx, model):
        raise DataError(
            f"--captions needs a matching model (`platform train matching`), got {model!r}"
        )
    require_files([path])
    space = ctx.spaces.space(model)
    if space.index.count({"kind": "caption"}) == 0:  # a filter matching nothing is no error
        raise IndexEmptyError(f"{space.index.name} holds no captions: retrain {model}")
    flt = {"kind": "caption", **(flt or {})}
    query = embed_query_images(space, [path], max_pixels=ctx.ingest.max_pixels)
    return [
        CaptionHit(
            text=str(h.payload.get("text")),
            score=round(h.score, 6),
            path=str(h.payload.get("path")),
            image_id=h.payload.get("image_id"),
            ordinal=h.payload.get("ordinal"),
        )
        for h in space.index.search(query, k, flt)[0]
    ]


def _caption_payload(
    image: Any, text: str, ordinal: int, caption_id: int, model: str
) -> dict[str, Any]:
    return {
        "kind": "caption",
        "image_id": image.id,
        "class": image.label.name,  # so caption searches filter by class like image ones
        "caption_id": caption_id,
        "text": text,
        "ordinal": ordinal,
        "split": image.split,
        "path": image.path,
        "sha256": image.sha256,
        "model": model,
    }


def _chunked(embed: Any, items: Any, chunk: int = 512) -> np.ndarray:
    """``embed`` over ``items`` in chunks → (N, D) float32 numpy."""
    if items is None or not len(items):
        return np.empty((0, 0), np.float32)
    parts = [embed(items[s : s + chunk]).cpu().numpy() for s in range(0, len(items), chunk)]
    return np.concatenate(parts).astype(np.float32)


def _upsert(
    index: VectorIndex,
    ids: Sequence[str],
    vectors: np.ndarray,
    payloads: list[dict[str, Any]],
    chunk: int = 1024,
) -> None:
    for s in range(0, len(ids), chunk):
        index.upsert(ids[s : s + chunk], vectors[s : s + chunk], payloads[s : s + chunk])
