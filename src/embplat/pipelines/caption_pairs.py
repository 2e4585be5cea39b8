"""The (image, caption) pairs of some splits, with the images' vectors read back from an
index: what matching models train on (the active encoder's cached features) and what their
points are made from."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from embplat.catalog import repo
from embplat.errors import DataError
from embplat.pipelines.context import Context
from embplat.retrieval import VectorIndex

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaptionPairs:
    """Images of some splits and their captions.

    Attributes:
        image_ids: catalog ids, one per row of ``features``.
        features: (I, F) float32 vectors of the images, read from an index.
        caption_ids: catalog ids of the C captions; texts, ordinals: theirs.
        image_of_text: (C,) int, the row of ``features`` each caption describes.
    """

    image_ids: list[int]
    features: np.ndarray
    caption_ids: list[int]
    texts: list[str]
    ordinals: list[int]
    image_of_text: np.ndarray

    def __len__(self) -> int:
        return len(self.caption_ids)


def caption_pairs(
    ctx: Context,
    *,
    index: VectorIndex,
    collection_id: int,
    splits: Sequence[str],
    chunk: int = 1024,
) -> CaptionPairs:
    """Every caption of an image of ``splits`` stored in the collection, by image id then
    ordinal (captions of images the collection lacks are skipped, with a log note).

    Args:
        index, collection_id: the space the image vectors are read from.
    """
    with ctx.sessions() as session:
        captions = repo.split_captions(session=session, splits=list(splits))
        stored = repo.embedded_images(
            session=session, collection_id=collection_id, splits=list(splits)
        )
    point_of = {image_id: pid for image_id, _, _, pid in stored}
    rows: dict[int, int] = {}
    kept = [c for c in captions if c[1] in point_of]
    if len(kept) < len(captions):
        log.warning(
            "%d captions of %s images skipped: their image is not in %s",
            len(captions) - len(kept),
            "/".join(splits),
            index.name,
        )
    for _, image_id, _, _ in kept:
        rows.setdefault(image_id, len(rows))
    image_ids = list(rows)
    parts = [
        np.asarray(index.get([point_of[i] for i in image_ids[s : s + chunk]])[0], np.float32)
        for s in range(0, len(image_ids), chunk)
    ]
    features = np.concatenate(parts) if parts else np.empty((0, index.dim), np.float32)
    return CaptionPairs(
        image_ids=image_ids,
        features=features,
        caption_ids=[c[0] for c in kept],
        texts=[c[3] for c in kept],
        ordinals=[c[2] for c in kept],
        image_of_text=np.asarray([rows[c[1]] for c in kept], dtype=np.int64),
    )


def require_pairs(pairs: CaptionPairs, split: str) -> None:
    """Refuse a split without captioned, embedded images.

    Raises:
        DataError: naming the split and the fix.
    """
    if not len(pairs):
        raise DataError(
            f"no captioned images in the {split} split of the active encoder's index: ingest a "
            "caption dataset first (e.g. `platform datasets scenes --out data/scenes` then "
            "`platform ingest data/scenes`)"
        )
