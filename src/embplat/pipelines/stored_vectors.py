"""The stored vectors of an embedding space: its index opened without the encoder, and the
embedded images of some splits read back from it (evaluation reads, never encodes)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from embplat.catalog import repo
from embplat.errors import ConfigError
from embplat.evaluation.vectors import SplitVectors
from embplat.pipelines.context import Context
from embplat.retrieval import VectorIndex, collection_name


@dataclass(frozen=True)
class IndexedSpace:
    """The index of an embedding space with its catalog rows (no encoder)."""

    key: str
    index: VectorIndex
    model_id: int
    collection_id: int


def open_space(ctx: Context, model: str | None = None) -> IndexedSpace:
    """A trained model's index, or the active encoder's (``model`` None or its key), without
    building an encoder unless the active one's catalog rows do not exist yet.

    Raises:
        NotFoundError: no such model.
        ConfigError: a pretrained encoder other than the active one.
    """
    spaces = ctx.spaces
    if model is not None:
        with ctx.sessions() as session:
            record = repo.get_model(session=session, name=model)
            kind, dim, model_id = record.kind, record.dim, record.id
        if kind != "encoder":
            index = spaces.index(collection_name(model), dim)
            return IndexedSpace(model, index, model_id, spaces.collection_id(model))
        if model != (spaces.encoder_key or spaces.registered()[0].key):
            raise ConfigError(
                f"{model!r} is a pretrained encoder that is not the active one; evaluate it "
                "with `platform --encoder NAME [--image-size S] evaluate`"
            )
    found = spaces.active_index()
    if found is None:
        space = spaces.space()
        return IndexedSpace(space.key, space.index, space.model_id, space.collection_id)
    key, index, collection_id = found
    with ctx.sessions() as session:
        model_id = repo.get_model(session=session, name=key).id
    return IndexedSpace(key, index, model_id, collection_id)


def split_vectors(
    ctx: Context,
    space: IndexedSpace,
    splits: Sequence[str],
    *,
    vectors: bool = True,
    chunk: int = 1024,
) -> SplitVectors:
    """Every image of ``splits`` stored in the space's collection (catalog order), vectors
    and paths read back from the index in chunks of ``chunk``; ``vectors=False``: ids and
    classes only, (N, 0) vectors."""
    with ctx.sessions() as session:
        rows = repo.embedded_images(
            session=session, collection_id=space.collection_id, splits=list(splits)
        )
    ids, classes = [r[3] for r in rows], [r[2] for r in rows]
    if not vectors:
        return SplitVectors(ids, classes, [""] * len(ids), np.empty((len(ids), 0), np.float32))
    parts, paths = [], []
    for start in range(0, len(ids), chunk):
        found, payloads = space.index.get(ids[start : start + chunk])
        parts.append(np.asarray(found, dtype=np.float32))
        paths += [str(p.get("path", "")) for p in payloads]
    empty = np.empty((0, space.index.dim), dtype=np.float32)
    return SplitVectors(ids, classes, paths, np.concatenate(parts) if parts else empty)
