"""Embed cataloged images into a vector index: decode → transform → forward → upsert.

Order of writes keeps catalog and index consistent across crashes: a unit of images is
upserted and flushed to the index first, then recorded in the catalog. A crash in between
leaves points the catalog does not know yet; the re-run re-embeds them under the same
deterministic point ids, so nothing is duplicated or lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.catalog.models import Image
from embplat.ingest.decode import BatchDecoder, prefetched
from embplat.models.encoders import ImageEncoder
from embplat.retrieval import VectorIndex, point_id

log = logging.getLogger(__name__)
Progress = Callable[[int], None]


@dataclass
class EmbedReport:
    """Images written to the index, those that failed to load (path, reason), and those
    handed to workers instead (server mode)."""

    done: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    queued: int = 0


def payload_for(image: Image, model_key: str) -> dict[str, Any]:
    """The payload stored with every image point (also read by other services)."""
    return {
        "image_id": image.id,
        "class": image.label.name,
        "split": image.split,
        "sha256": image.sha256,
        "path": image.path,
        "kind": "image",
        "model": model_key,
    }


def embed_images(
    image_ids: Sequence[int],
    *,
    sessions: sessionmaker[Session],
    encoder: ImageEncoder,
    index: VectorIndex,
    collection_id: int,
    batch_size: int = 32,
    num_workers: int = 1,
    commit_every: int = 256,
    max_pixels: int = 40_000_000,
    progress: Progress | None = None,
) -> EmbedReport:
    """Embed the given images (those not stored yet) into ``index``.

    Args:
        image_ids: catalog ids; ids already recorded for this collection are skipped.
        batch_size: images per forward pass.
        num_workers: decode threads working ahead of the forward pass (Pillow and the
            resize release the GIL); 0 decodes each batch in this thread, then runs it.
        commit_every: images per durable unit (index flush, then catalog commit).
        progress: called with the number of images handled after each mini-batch.

    Returns:
        Counts of embedded images and the files that could not be loaded.
    """
    report = EmbedReport()
    with sessions() as session:
        todo = repo.pending_image_ids(
            session=session, collection_id=collection_id, image_ids=image_ids
        )
    units = [todo[start : start + commit_every] for start in range(0, len(todo), commit_every)]
    unit_of = {image_id: n // commit_every for n, image_id in enumerate(todo)}
    images: dict[int, Image] = {}  # the catalog rows of the units being worked on

    def chunks() -> Iterator[list[tuple[int, str]]]:
        """Each unit's rows in forward-pass batches; a unit's catalog rows are read when
        the decode threads reach it (in the consuming thread: sessions stay on it)."""
        for unit in units:
            with sessions() as session:
                found = {i.id: i for i in repo.get_images(session=session, ids=unit)}
            images.update(found)
            rows = [(i, found[i].path) for i in unit if i in found]
            yield from (rows[s : s + batch_size] for s in range(0, len(rows), batch_size))

    def commit(number: int, points: list[tuple[int, str]]) -> None:
        """Unit ``number``'s durable point: index first, then the catalog."""
        index.flush()
        with transaction(sessions) as session:
            repo.add_embeddings(session=session, collection_id=collection_id, points=points)
        report.done += len(points)
        for image_id in units[number]:
            images.pop(image_id, None)

    # one decode pipeline over every unit: the threads keep decoding the next unit's first
    # batches while this thread flushes the index and commits the catalog
    decoder = BatchDecoder(encoder, max_pixels)
    points: list[tuple[int, str]] = []
    current = 0
    for ids, batch, bad in prefetched(decoder, chunks(), num_workers):
        number = unit_of[ids[0] if ids else bad[0][0]]  # every row is in ids or in bad
        if number != current:
            commit(current, points)
            points, current = [], number
        if ids and batch is not None:
            vectors = decoder.encode(batch)
            pids = [point_id(images[i].sha256, encoder.key) for i in ids]
            payloads = [payload_for(images[i], encoder.key) for i in ids]
            index.upsert(pids, vectors, payloads)
            points.extend(zip(ids, pids, strict=True))
        report.failed.extend((images[i].path, msg) for i, msg in bad)
        if progress:
            progress(len(ids) + len(bad))
    if units:
        commit(current, points)
    return report
