"""SQLAlchemy 2 models of the catalog. The schema itself is created by alembic migrations.

Unique constraints carry idempotency: an image is identified by its content hash, an
embedding by (collection, image), a class by its name, a caption by (image, source,
ordinal) — so re-runs and concurrent writers insert nothing twice.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Timezone-aware now, the only clock the catalog uses."""
    return datetime.now(UTC)


def as_utc(when: datetime) -> datetime:
    """A catalog time as timezone-aware UTC: SQLite hands back naive datetimes for
    timezone-aware columns (PostgreSQL keeps the zone)."""
    return when if when.tzinfo else when.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    """Declarative base with a naming convention so migrations are stable across dialects."""

    metadata = MetaData(naming_convention=NAMING)


class ClassLabel(Base):
    """A class name. ``role`` is ``seen`` (trainclasses), ``unseen`` (testclasses) or
    ``none``: the neutral class of images that came with captions but no class (training
    recipes that learn classes read ``seen`` images only, so they never learn it)."""

    __tablename__ = "classes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[str] = mapped_column(String(16), default="seen")
    source: Mapped[str | None] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Image(Base):
    """One image file, identified by the sha256 of its bytes.

    ``nbytes`` and ``mtime_ns`` are the file's stat when it was read: a re-run that finds both
    unchanged skips the file unread (``mtime_ns`` is NULL on rows cataloged before it existed).
    """

    __tablename__ = "images"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    path: Mapped[str] = mapped_column(String(2048), index=True)
    class_id: Mapped[int] = mapped_column(ForeignKey("classes.id"), index=True)
    split: Mapped[str] = mapped_column(String(16), index=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    mode: Mapped[str] = mapped_column(String(16))
    nbytes: Mapped[int] = mapped_column(Integer)
    mtime_ns: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    label: Mapped[ClassLabel] = relationship(lazy="joined")


class ModelRecord(Base):
    """An embedding model: encoder, weights, dimension, and the config to rebuild it."""

    __tablename__ = "models"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(32), default="encoder")
    encoder: Mapped[str] = mapped_column(String(100))
    weights: Mapped[str] = mapped_column(String(1024))
    dim: Mapped[int] = mapped_column(Integer)
    image_size: Mapped[int] = mapped_column(Integer)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Collection(Base):
    """A vector index (nmslib directory or Qdrant collection) holding one model's embeddings."""

    __tablename__ = "collections"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    backend: Mapped[str] = mapped_column(String(32))
    dim: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    model: Mapped[ModelRecord] = relationship(lazy="joined")


class Embedding(Base):
    """Marks an image as stored in a collection; written only after the index write is durable."""

    __tablename__ = "embeddings"
    __table_args__ = (UniqueConstraint("collection_id", "image_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    point_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Job(Base):
    """A unit of work (ingest, embed, train) with progress, run in-process or by a worker."""

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class JobBatch(Base):
    """One batch of a job (e.g. 256 image ids to embed); retried batches rewrite the same points."""

    __tablename__ = "job_batches"
    __table_args__ = (UniqueConstraint("job_id", "seq"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="queued")
    items: Mapped[list[int]] = mapped_column(JSON, default=list)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[list[list[str]]] = mapped_column(JSON, default=list)
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class MetricValue(Base):
    """One evaluation number of a model on a split (e.g. test precision_at_1).

    Re-evaluating overwrites the value (unique model, split, name); NULL = not a number.
    """

    __tablename__ = "metrics"
    __table_args__ = (UniqueConstraint("model_id", "split", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    split: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200))
    value: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Caption(Base):
    """One sentence describing an image: read from a captions file (``source="file"``,
    ``model`` NULL) or written by a captioning model (``source="generated"``, ``model`` its
    name).

    ``ordinal`` is the caption's place among its image's captions of that source (Flickr8k's
    ``#n``, the position in a JSON list or a manifest): a re-run of the same file writes the
    same rows, a corrected file updates their text. Captions leave with their image.
    """

    __tablename__ = "captions"
    __table_args__ = (UniqueConstraint("image_id", "source", "ordinal"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # the unique constraint's index (image_id first) serves lookups by image
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    text: Mapped[str] = mapped_column(Text)
    ordinal: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(16), default="file")
    model: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
