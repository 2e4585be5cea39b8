"""Catalog access: plain functions, keyword-only arguments, an explicit session.

Writes that may race (two workers, a re-run) are ``INSERT .. ON CONFLICT DO NOTHING`` on the
natural keys, so they never duplicate rows and never deadlock on each other's inserts.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, bindparam, delete, func, select, update
from sqlalchemy.orm import Session

from embplat.catalog.models import (
    ClassLabel,
    Collection,
    Embedding,
    Image,
    Job,
    MetricValue,
    ModelRecord,
    utcnow,
)
from embplat.errors import NotFoundError


def insert_ignore(
    *, session: Session, model: type, rows: Sequence[Mapping[str, Any]], keys: Sequence[str]
) -> int:
    """Insert rows, skipping those that collide on ``keys``; returns how many were inserted."""
    if not rows:
        return 0
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    stmt = insert(model).values(list(rows)).on_conflict_do_nothing(index_elements=list(keys))
    # RETURNING lists only the rows actually inserted (rowcount is -1 on some drivers)
    return len(session.execute(stmt.returning(model.id)).all())  # type: ignore[attr-defined]


# --- classes ---------------------------------------------------------------------------------


def ensure_classes(
    *,
    session: Session,
    names: Iterable[str],
    roles: Mapping[str, str] | None = None,
    source: str | None = None,
) -> dict[str, int]:
    """Register class names (existing ones keep their role); returns name -> id."""
    names = list(dict.fromkeys(names))
    roles = roles or {}
    rows = [{"name": n, "role": roles.get(n, "seen"), "source": source} for n in names]
    insert_ignore(session=session, model=ClassLabel, rows=rows, keys=["name"])
    found = session.execute(
        select(ClassLabel.name, ClassLabel.id).where(ClassLabel.name.in_(names))
    )
    return {name: cid for name, cid in found}


def class_counts(*, session: Session) -> list[tuple[ClassLabel, dict[str, int]]]:
    """Every class with its image count per split, in name order."""
    counts: dict[int, dict[str, int]] = {}
    rows = session.execute(
        select(Image.class_id, Image.split, func.count()).group_by(Image.class_id, Image.split)
    )
    for cid, split, n in rows:
        counts.setdefault(cid, {})[split] = n
    classes = session.scalars(select(ClassLabel).order_by(ClassLabel.name)).all()
    return [(c, counts.get(c.id, {})) for c in classes]


def get_class(*, session: Session, name: str) -> ClassLabel | None:
    """The class called ``name``, or None."""
    return session.scalar(select(ClassLabel).where(ClassLabel.name == name))


# --- images ----------------------------------------------------------------------------------


class KnownFile(NamedTuple):
    """A cataloged image as a re-run sees its file: the row, its content, the stat it had."""

    image_id: int
    sha256: str
    nbytes: int
    mtime_ns: int | None


def known_files(*, session: Session, paths: Sequence[str]) -> dict[str, list[KnownFile]]:
    """path -> the catalog rows recorded under it, for the given paths (re-runs compare them
    with the file's stat to skip unchanged files unread).

    A path has several rows only when its file was replaced and the old row is not removed
    yet (an interrupted re-ingest, or a catalog written before replacements were detected).
    """
    out: dict[str, list[KnownFile]] = {}
    for start in range(0, len(paths), 500):
        chunk = paths[start : start + 500]
        rows = session.execute(
            select(Image.path, Image.id, Image.sha256, Image.nbytes, Image.mtime_ns)
            .where(Image.path.in_(chunk))
            .order_by(Image.id)
        )
        for path, image_id, sha256, nbytes, mtime_ns in rows:
            out.setdefault(path, []).append(KnownFile(image_id, sha256, nbytes, mtime_ns))
    return out


def set_image_mtimes(*, session: Session, mtimes: Mapping[int, int]) -> None:
    """Record new file modification times (image id -> ``st_mtime_ns``) of unchanged content.

    Ids deleted meanwhile (a concurrent re-ingest replaced them) are ignored.
    """
    if not mtimes:
        return
    table = cast(Table, Image.__table__)
    # a Core executemany: the ORM's bulk update by primary key fails on rows gone meanwhile
    stmt = (
        update(table)
        .where(table.c.id == bindparam("image_id"))
        .values(mtime_ns=bindparam("new_mtime"))
    )
    rows = [{"image_id": i, "new_mtime": m} for i, m in mtimes.items()]
    session.execute(stmt, rows)


def images_by_hash(*, session: Session, hashes: Sequence[str]) -> dict[str, Image]:
    """sha256 -> Image for hashes already in the catalog."""
    out: dict[str, Image] = {}
    for start in range(0, len(hashes), 500):
        chunk = hashes[start : start + 500]
        out.update(
            (i.sha256, i) for i in session.scalars(select(Image).where(Image.sha256.in_(chunk)))
        )
    return out


def add_images(*, session: Session, records: Sequence[Mapping[str, Any]]) -> int:
    """Insert image rows (keys as in ``Image``); content already present is skipped."""
    return insert_ignore(session=session, model=Image, rows=records, keys=["sha256"])


def get_images(*, session: Session, ids: Sequence[int]) -> list[Image]:
    """Images by id, in the order given (missing ids are dropped)."""
    found = {i.id: i for i in session.scalars(select(Image).where(Image.id.in_(list(ids))))}
    return [found[i] for i in ids if i in found]


def count_images(*, session: Session, split: str | None = None) -> int:
    """Number of images, optionally of one split."""
    stmt = select(func.count()).select_from(Image)
    if split:
        stmt = stmt.where(Image.split == split)
    return int(session.scalar(stmt) or 0)


def image_points(*, session: Session, image_ids: Sequence[int]) -> list[tuple[str, int, str]]:
    """(collection name, dim, point id) of every recorded point of the given images."""
    out: list[tuple[str, int, str]] = []
    ids = list(image_ids)
    for start in range(0, len(ids), 500):
        stmt = (
            select(Collection.name, Collection.dim, Embedding.point_id)
            .join(Embedding, Embedding.collection_id == Collection.id)
            .where(Embedding.image_id.in_(ids[start : start + 500]))
            .order_by(Collection.id, Embedding.id)
        )
        out.extend(tuple(row) for row in session.execute(stmt))  # type: ignore[misc]
    return out


def delete_images(*, session: Session, ids: Sequence[int]) -> int:
    """Delete images and their embedding rows (the index points must be gone already).

    Returns:
        How many image rows were deleted (ids already gone are not counted).
    """
    removed = 0
    ids = list(ids)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        session.execute(delete(Embedding).where(Embedding.image_id.in_(chunk)))
        gone = session.execute(delete(Image).where(Image.id.in_(chunk)).returning(Image.id))
        removed += len(gone.all())
    return removed


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


# --- jobs ------------------------------------------------------------------------------------


def create_job(*, session: Session, kind: str, params: Mapping[str, Any], total: int = 0) -> Job:
    """A new queued job."""
    job = Job(kind=kind, params=dict(params), total=total, state="queued", done=0, failed=0)
    session.add(job)
    session.flush()
    return job


def update_job(*, session: Session, job_id: int, **fields: Any) -> Job:
    """Set fields on a job; ``state`` running/succeeded/failed stamps start/finish times."""
    job = get_job(session=session, job_id=job_id)
    state = fields.get("state")
    if state == "running" and job.started_at is None:
        job.started_at = utcnow()
    if state in {"succeeded", "failed"}:
        job.finished_at = utcnow()
    for key, value in fields.items():
        setattr(job, key, value)
    return job


def get_job(*, session: Session, job_id: int) -> Job:
    """The job with this id; NotFoundError otherwise."""
    job = session.get(Job, job_id)
    if job is None:
        raise NotFoundError(f"no job with id {job_id}")
    return job


def list_jobs(*, session: Session, limit: int = 20) -> list[Job]:
    """Most recent jobs first."""
    return list(session.scalars(select(Job).order_by(Job.id.desc()).limit(limit)))


def embedded_images(
    *, session: Session, collection_id: int, splits: Sequence[str]
) -> list[tuple[int, str, str, str]]:
    """(image id, split, class name, point id) of images stored in the collection."""
    stmt = (
        select(Image.id, Image.split, ClassLabel.name, Embedding.point_id)
        .join(Embedding, Embedding.image_id == Image.id)
        .join(ClassLabel, ClassLabel.id == Image.class_id)
        .where(Embedding.collection_id == collection_id, Image.split.in_(list(splits)))
        .order_by(Image.id)
    )
    return [tuple(row) for row in session.execute(stmt)]  # type: ignore[misc]


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


# --- evaluation metrics ----------------------------------------------------------------------


def record_metrics(
    *, session: Session, model_id: int, split: str, values: Mapping[str, Any]
) -> int:
    """Store a model's metrics on ``split``, replacing earlier values of the same names.

    Real numbers only, numpy's included (bools and other types are skipped); NaN and
    infinities are stored as NULL. Returns how many values were written.
    """
    now = utcnow()
    rows = [
        {
            "model_id": model_id,
            "split": split,
            "name": name,
            "value": float(v) if math.isfinite(float(v)) else None,
            "created_at": now,
        }
        for name, v in values.items()
        if isinstance(v, numbers.Real) and not isinstance(v, bool)
    ]
    if not rows:
        return 0
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    stmt = insert(MetricValue).values(rows)
    stmt = stmt.on_conflict_do_update(
        index_elements=["model_id", "split", "name"],
        set_={"value": stmt.excluded.value, "created_at": stmt.excluded.created_at},
    )
    session.execute(stmt)
    return len(rows)


def model_metrics(
    *, session: Session, names: Sequence[str], split: str | None = None
) -> dict[str, dict[str, float | None]]:
    """model name -> {metric: value} for the given models, in the order given.

    Metric keys are ``split/name``, or just ``name`` when ``split`` is given.

    Raises:
        NotFoundError: a name is not a registered model; the message lists the known ones.
    """
    models = {m.name: m.id for m in session.scalars(select(ModelRecord))}
    missing = [n for n in names if n not in models]
    if missing:
        known = ", ".join(sorted(models)) or "none yet"
        raise NotFoundError(f"no model named {', '.join(map(repr, missing))} (known: {known})")
    ids = {models[n]: n for n in names}
    stmt = (
        select(MetricValue)
        .where(MetricValue.model_id.in_(list(ids)))
        .order_by(MetricValue.split, MetricValue.name)
    )
    if split is not None:
        stmt = stmt.where(MetricValue.split == split)
    out: dict[str, dict[str, float | None]] = {n: {} for n in names}
    for row in session.scalars(stmt):
        key = row.name if split is not None else f"{row.split}/{row.name}"
        out[ids[row.model_id]][key] = row.value
    return out


# --- keeping the catalog in step with the folders ---------------------------------------------


class PathRow(NamedTuple):
    """A cataloged image by its file: id, stored path, class id."""

    image_id: int
    path: str
    class_id: int


def images_with_prefix(*, session: Session, prefix: str) -> list[PathRow]:
    """Images whose stored path starts with ``prefix`` (case-sensitive, exact), in id order.

    Ingest passes a scanned root plus the separator (the images under that root); the
    ``images delete`` command passes the literal head of a glob.
    """
    stmt = (
        select(Image.id, Image.path, Image.class_id)
        .where(Image.path.startswith(prefix, autoescape=True))
        .order_by(Image.id)
    )
    # SQLite's LIKE ignores ASCII case: the exact test is made here
    return [PathRow(*row) for row in session.execute(stmt) if row[1].startswith(prefix)]


def class_image_ids(*, session: Session, class_id: int) -> list[int]:
    """Ids of every image of a class, in id order."""
    stmt = select(Image.id).where(Image.class_id == class_id).order_by(Image.id)
    return list(session.scalars(stmt))


def image_points_by_image(
    *, session: Session, image_ids: Sequence[int]
) -> dict[int, list[tuple[str, int, str]]]:
    """image id -> (collection name, dim, point id) of each of its recorded points."""
    out: dict[int, list[tuple[str, int, str]]] = {}
    ids = list(image_ids)
    for start in range(0, len(ids), 500):
        stmt = (
            select(Embedding.image_id, Collection.name, Collection.dim, Embedding.point_id)
            .join(Collection, Embedding.collection_id == Collection.id)
            .where(Embedding.image_id.in_(ids[start : start + 500]))
            .order_by(Collection.id, Embedding.id)
        )
        for image_id, name, dim, pid in session.execute(stmt):
            out.setdefault(image_id, []).append((name, dim, pid))
    return out


def relocate_images(*, session: Session, moves: Sequence[Mapping[str, Any]]) -> None:
    """Point image rows at the place their file moved to.

    Args:
        moves: dicts with ``image_id``, ``path``, ``nbytes``, ``mtime_ns``, ``class_id`` and
            ``split``; ids deleted meanwhile are ignored.
    """
    if not moves:
        return
    table = cast(Table, Image.__table__)
    stmt = (
        update(table)
        .where(table.c.id == bindparam("image_id"))
        .values(
            path=bindparam("new_path"),
            nbytes=bindparam("new_nbytes"),
            mtime_ns=bindparam("new_mtime"),
            class_id=bindparam("new_class"),
            split=bindparam("new_split"),
        )
    )
    rows = [
        {
            "image_id": m["image_id"],
            "new_path": m["path"],
            "new_nbytes": m["nbytes"],
            "new_mtime": m["mtime_ns"],
            "new_class": m["class_id"],
            "new_split": m["split"],
        }
        for m in moves
    ]
    session.execute(stmt, rows)


def trained_collections(*, session: Session) -> list[tuple[str, int, str]]:
    """(collection name, dim, model name) of every trained model's collection (those that
    may hold ``label`` points), oldest first."""
    stmt = (
        select(Collection.name, Collection.dim, ModelRecord.name)
        .join(ModelRecord, Collection.model_id == ModelRecord.id)
        .where(ModelRecord.kind != "encoder")
        .order_by(Collection.id)
    )
    return [tuple(row) for row in session.execute(stmt)]  # type: ignore[misc]


def delete_class(*, session: Session, class_id: int) -> None:
    """Delete a class row (its images must be gone already)."""
    session.execute(delete(ClassLabel).where(ClassLabel.id == class_id))
