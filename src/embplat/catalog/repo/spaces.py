"""Models, collections and embedding rows; trained models and their training data."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from embplat.catalog.models import (
    ClassLabel,
    Collection,
    Embedding,
    Image,
    ModelRecord,
)
from embplat.catalog.repo._common import insert_ignore
from embplat.errors import NotFoundError

# --- models and collections ------------------------------------------------------------------


def ensure_model(*, session: Session, name: str, **fields: Any) -> ModelRecord:
    """The model called ``name``, created with ``fields`` if new."""
    insert_ignore(
        session=session, model=ModelRecord, rows=[{"name": name, **fields}], keys=["name"]
    )
    return session.scalars(select(ModelRecord).where(ModelRecord.name == name)).one()


def get_model(*, session: Session, name: str) -> ModelRecord:
    """The model called ``name``; NotFoundError lists the known ones."""
    model = session.scalar(select(ModelRecord).where(ModelRecord.name == name))
    if model is None:
        known = ", ".join(session.scalars(select(ModelRecord.name))) or "none yet"
        raise NotFoundError(f"no model named {name!r} (known: {known})")
    return model


def ensure_collection(
    *, session: Session, name: str, model_id: int, backend: str, dim: int
) -> Collection:
    """The collection called ``name``, created if new."""
    row = {"name": name, "model_id": model_id, "backend": backend, "dim": dim}
    insert_ignore(session=session, model=Collection, rows=[row], keys=["name"])
    return session.scalars(select(Collection).where(Collection.name == name)).one()


def model_collections(*, session: Session) -> list[tuple[str, int, str, str]]:
    """(collection name, dim, model name, model kind) of every collection of a model that
    is not a plain encoder (those that may hold caption or label points), oldest first."""
    stmt = (
        select(Collection.name, Collection.dim, ModelRecord.name, ModelRecord.kind)
        .join(ModelRecord, Collection.model_id == ModelRecord.id)
        .where(ModelRecord.kind != "encoder")
        .order_by(Collection.id)
    )
    return [tuple(row) for row in session.execute(stmt)]  # type: ignore[misc]


# --- embeddings ------------------------------------------------------------------------------


def pending_image_ids(
    *, session: Session, collection_id: int, image_ids: Sequence[int] | None = None
) -> list[int]:
    """Ids of images not yet stored in the collection (optionally among ``image_ids``)."""
    done = select(Embedding.image_id).where(Embedding.collection_id == collection_id)
    stmt = select(Image.id).where(Image.id.not_in(done)).order_by(Image.id)
    if image_ids is not None:
        stmt = stmt.where(Image.id.in_(list(image_ids)))
    return list(session.scalars(stmt))


def add_embeddings(
    *, session: Session, collection_id: int, points: Sequence[tuple[int, str]]
) -> int:
    """Record (image_id, point_id) pairs as stored in the collection; repeats are ignored."""
    rows = [{"collection_id": collection_id, "image_id": i, "point_id": p} for i, p in points]
    return insert_ignore(
        session=session, model=Embedding, rows=rows, keys=["collection_id", "image_id"]
    )


def count_embeddings(*, session: Session, collection_id: int) -> int:
    """Number of images recorded as stored in the collection."""
    stmt = (
        select(func.count()).select_from(Embedding).where(Embedding.collection_id == collection_id)
    )
    return int(session.scalar(stmt) or 0)


# --- training data and trained models ----------------------------------------------------------


def labelled_images(
    *, session: Session, splits: Sequence[str], roles: Sequence[str] | None = None
) -> list[tuple[int, str, str, str]]:
    """(image id, path, class name, sha256) of the images in ``splits``, in id order."""
    stmt = (
        select(Image.id, Image.path, ClassLabel.name, Image.sha256)
        .join(ClassLabel, ClassLabel.id == Image.class_id)
        .where(Image.split.in_(list(splits)))
        .order_by(Image.id)
    )
    if roles is not None:
        stmt = stmt.where(ClassLabel.role.in_(list(roles)))
    return [tuple(row) for row in session.execute(stmt)]  # type: ignore[misc]


def list_models(*, session: Session, kinds: Sequence[str] | None = None) -> list[ModelRecord]:
    """Registered models (optionally of some kinds), oldest first."""
    stmt = select(ModelRecord).order_by(ModelRecord.id)
    if kinds is not None:
        stmt = stmt.where(ModelRecord.kind.in_(list(kinds)))
    return list(session.scalars(stmt))


def embedded_trained_models(*, session: Session) -> list[str]:
    """Trained models (not pretrained encoders) whose own collection holds embedded images,
    oldest first: the indexes that new images must also enter."""
    stmt = (
        select(ModelRecord.name)
        .join(Collection, Collection.model_id == ModelRecord.id)
        .join(Embedding, Embedding.collection_id == Collection.id)
        .where(ModelRecord.kind != "encoder")
        .group_by(ModelRecord.id, ModelRecord.name)
        .order_by(ModelRecord.id)
    )
    return list(session.scalars(stmt))
