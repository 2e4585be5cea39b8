"""Catalog queries behind ``platform doctor``: collections, their recorded points, and the
rows a repair deletes or adds."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from embplat.catalog.models import Collection, Embedding, Image
from embplat.catalog.repo._common import chunks


def list_collections(*, session: Session) -> list[Collection]:
    """Every collection (with its model row), oldest first."""
    return list(session.scalars(select(Collection).order_by(Collection.id)))


def recorded_points(*, session: Session, collection_id: int) -> dict[str, int]:
    """point id -> image id of every image the catalog records as stored in the collection."""
    stmt = select(Embedding.point_id, Embedding.image_id).where(
        Embedding.collection_id == collection_id
    )
    return {pid: image_id for pid, image_id in session.execute(stmt)}


def forget_points(*, session: Session, collection_id: int, point_ids: Sequence[str]) -> int:
    """Delete the embedding rows of these points, so the images count as pending again.

    Returns:
        How many rows were deleted.
    """
    removed = 0
    for chunk in chunks(list(point_ids)):
        stmt = (
            delete(Embedding)
            .where(
                Embedding.collection_id == collection_id,
                Embedding.point_id.in_(chunk),
            )
            .returning(Embedding.id)
        )
        removed += len(session.execute(stmt).all())
    return removed


def image_paths(*, session: Session) -> list[tuple[int, str]]:
    """(image id, path) of every cataloged image, in id order."""
    return [(i, p) for i, p in session.execute(select(Image.id, Image.path).order_by(Image.id))]
