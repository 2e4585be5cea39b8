"""Use cases of ConSE, training-free zero-shot: classify images among label names, and search
the catalog's images by a text, with the bundled ImageNet classifier and word vectors.

A ConSE space is registered like a sentence index: a model of kind ``conse`` named
``conse-<vectors>-t<T>`` whose collection holds one point per cataloged image
(``kind=conse``; payload: image id, class, split, path, sha256). The catalog records no
embeddings for it (nothing to re-embed at ingest, nothing for ``doctor`` to repair): a
search first brings the collection in line with the catalog (embeds new images, drops
points of removed ones). The ImageNet classes' label vectors are cached in
``<home>/conse/<vectors>.npy``.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.errors import DataError, IndexEmptyError
from embplat.models.conse import (
    DEFAULT_TOP,
    IMAGENET_SIZE,
    ConseEncoder,
    class_vectors,
    imagenet_categories,
    imagenet_classifier,
)
from embplat.models.wordvectors import LabelSpace, VectorSource, open_vectors, resolve_source
from embplat.pipelines.context import Context, Space
from embplat.pipelines.query import Neighbour
from embplat.pipelines.query_images import (
    QueryFailure,
    embed_answerable,
    embed_each,
    require_files,
    require_some_file,
)
from embplat.pipelines.semantic_scores import LabelPrediction, top_labels
from embplat.retrieval import Filter, collection_name, point_id

log = logging.getLogger(__name__)

KIND = "conse"
POINTS: dict[str, Any] = {"kind": KIND}
_SPLITS = ("train", "valid", "test")


def conse_name(source: VectorSource, top: int) -> str:
    """The model name of the ConSE space over ``source`` with T = ``top``."""
    return f"{KIND}-{_slug(source)}-t{top}"


def _slug(source: VectorSource) -> str:
    return re.sub(r"[^a-z0-9]+", "-", source.label.lower()).strip("-")


def conse_space(ctx: Context, *, vectors: str = "", top: int = DEFAULT_TOP) -> Space:
    """The ConSE space over ``vectors`` ("" = the active ones, ``glove``, ``minilm``, a file),
    registered (model + collection) on first use.

    Raises:
        ConfigError: T < 1 or unusable vectors. DataError: an unreadable vector file.
    """
    source = resolve_source(vectors, ctx.home)
    name = conse_name(source, top)
    encoder = _encoder(source, top, name, str(ctx.spaces.device), ctx.home)
    with transaction(ctx.sessions) as session:
        model = repo.ensure_model(
            session=session,
            name=name,
            kind=KIND,
            encoder="efficientnet_lite0",
            weights="imagenet",
            dim=encoder.dim,
            image_size=IMAGENET_SIZE,
            config={"vectors": source.as_dict(), "top": top, "collection": collection_name(name)},
        )
        model_id = model.id
    coll_id = ctx.spaces.collection_id(name)
    return Space(encoder, ctx.spaces.index(collection_name(name), encoder.dim), model_id, coll_id)


@functools.lru_cache(maxsize=4)
def _encoder(source: VectorSource, top: int, name: str, device: str, home: Path) -> ConseEncoder:
    """The classifier and the ImageNet classes' vectors, built once per process."""
    cache = home / "conse" / f"{_slug(source)}.npy"
    if cache.is_file():
        matrix = np.load(cache)
    else:
        matrix = class_vectors(open_vectors(source), imagenet_categories())
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, matrix)
    return ConseEncoder(imagenet_classifier(), matrix, key=name, top=top, device=device)


def conse_labels(
    ctx: Context,
    paths: Sequence[Path],
    *,
    k: int = 5,
    top: int = DEFAULT_TOP,
    candidates: Sequence[str] | None = None,
    vectors: str = "",
    failures: list[QueryFailure] | None = None,
) -> list[LabelPrediction]:
    """Training-free zero-shot classification: each image's ConSE vector against the label
    vectors of ``candidates`` (default: every catalog class); same shape as ``label_images``.

    Args:
        top: ConSE's T. vectors: as :func:`conse_space`.
        failures: collects unreadable images (the others are answered); None raises.

    Raises:
        DataError: a path is missing or unreadable (without ``failures``); k < 1; no
            candidate has a vector.
    """
    (require_files if failures is None else require_some_file)(paths)
    if k < 1:
        raise DataError(f"--k must be at least 1, got {k}")
    space = conse_space(ctx, vectors=vectors, top=top)
    names, roles, labels = _candidates(ctx, space, candidates)
    kept, queries = embed_answerable(ctx, space, paths, failures)
    payloads = [{"class": n, "role": roles.get(n, "unseen")} for n in names]
    return [
        top_labels(str(path), row, payloads, k, space.key, 0.0, "none", [])
        for path, row in zip(kept, queries @ labels.T, strict=True)
    ]


def _candidates(
    ctx: Context, space: Space, candidates: Sequence[str] | None
) -> tuple[list[str], dict[str, str], np.ndarray]:
    """Candidate names with a vector, their catalog roles, and their (L, D) vectors."""
    with ctx.sessions() as session:
        roles = repo.class_roles(session=session)
    wanted = list(candidates) if candidates is not None else sorted(roles)
    labels = LabelSpace(_vectors_of(ctx, space))
    names, rows = [], []
    for name in wanted:
        try:
            rows.append(labels.vector(name))
        except DataError as exc:
            log.warning("%s", exc)
            continue
        names.append(name)
    if not names:
        raise DataError(
            "no candidate label has a word vector: add classes (`platform ingest`, "
            "`platform classes add NAME --zero-shot`) or pass candidates"
        )
    return names, roles, np.stack(rows)


def _vectors_of(ctx: Context, space: Space) -> Any:
    with ctx.sessions() as session:
        config = repo.get_model(session=session, name=space.key).config or {}
    return open_vectors(VectorSource.from_dict(config.get("vectors")))


def conse_search(
    ctx: Context,
    text: str,
    *,
    k: int = 10,
    top: int = DEFAULT_TOP,
    vectors: str = "",
    flt: Filter | None = None,
) -> tuple[list[Neighbour], str]:
    """The catalog's images whose ConSE vectors are nearest to the label vector of ``text``.

    Returns:
        The hits, best first, and the ConSE space searched.

    Raises:
        DataError: no word of ``text`` has a vector; k < 1.
        IndexEmptyError: the catalog holds no images.
    """
    if k < 1:
        raise DataError(f"--k must be at least 1, got {k}")
    space = conse_space(ctx, vectors=vectors, top=top)
    query = LabelSpace(_vectors_of(ctx, space)).vector(text)
    sync_conse_index(ctx, space)
    flt = {**POINTS, **(flt or {})}
    if space.index.count(flt) == 0:
        raise IndexEmptyError(f"{space.index.name} holds no images: ingest some first")
    hits = space.index.search(query[None, :], k, flt)[0]
    return [Neighbour.from_hit(h) for h in hits], space.key


def sync_conse_index(ctx: Context, space: Space) -> dict[str, int]:
    """Embed the cataloged images the ConSE collection lacks; drop points of images that are
    gone. Returns ``{"added", "removed", "failed"}``."""
    wanted: dict[str, dict[str, Any]] = {}
    with ctx.sessions() as session:
        for split in _SPLITS:
            for image_id, path, cls, sha in repo.labelled_images(session=session, splits=[split]):
                wanted[point_id(sha, space.key)] = {
                    **POINTS,
                    **{"image_id": image_id, "path": path, "class": cls, "split": split},
                    "sha256": sha,
                    "model": space.key,
                }
    have = set(space.index.ids())
    removed = space.index.delete(sorted(have - set(wanted)))
    todo = [pid for pid in wanted if pid not in have]
    kept, vecs, failed = embed_each(
        space,
        [wanted[p]["path"] for p in todo],
        max_pixels=ctx.ingest.max_pixels,
        batch_size=ctx.embed.batch_size,
    )
    done = {wanted[p]["path"]: p for p in todo}
    ids = [done[path] for path in kept]
    if ids:
        space.index.upsert(ids, vecs, [wanted[p] for p in ids])
    if ids or removed:
        space.index.flush()
    for failure in failed:
        log.warning("ConSE: not embedded %s", failure)
    return {"added": len(ids), "removed": removed, "failed": len(failed)}
