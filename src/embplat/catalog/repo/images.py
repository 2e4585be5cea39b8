"""Image rows: registration lookups, stat updates, the points of images, and keeping the
catalog in step with the folders (moves, path prefixes, removal)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, bindparam, delete, func, select, update
from sqlalchemy.orm import Session

from embplat.catalog.models import (
    Caption,
    ClassLabel,
    Collection,
    Embedding,
    Image,
    ModelRecord,
)
from embplat.catalog.repo._common import chunks, insert_ignore

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
    for chunk in chunks(paths):
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
    for chunk in chunks(hashes):
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


def all_image_ids(*, session: Session) -> list[int]:
    """Ids of every cataloged image, ascending."""
    return list(session.scalars(select(Image.id).order_by(Image.id)))


def count_images(*, session: Session, split: str | None = None) -> int:
    """Number of images, optionally of one split."""
    stmt = select(func.count()).select_from(Image)
    if split:
        stmt = stmt.where(Image.split == split)
    return int(session.scalar(stmt) or 0)


def _point_rows(session: Session, image_ids: Sequence[int]) -> Iterator[tuple[int, str, int, str]]:
    """(image id, collection name, dim, point id) of every recorded point of the images,
    by collection then point within each chunk of ids."""
    for chunk in chunks(list(image_ids)):
        stmt = (
            select(Embedding.image_id, Collection.name, Collection.dim, Embedding.point_id)
            .join(Collection, Embedding.collection_id == Collection.id)
            .where(Embedding.image_id.in_(chunk))
            .order_by(Collection.id, Embedding.id)
        )
        yield from (tuple(row) for row in session.execute(stmt))  # type: ignore[misc]


def image_points(*, session: Session, image_ids: Sequence[int]) -> list[tuple[str, int, str]]:
    """(collection name, dim, point id) of every recorded point of the given images."""
    return [(name, dim, pid) for _, name, dim, pid in _point_rows(session, image_ids)]


def delete_images(*, session: Session, ids: Sequence[int]) -> int:
    """Delete images, their embedding rows and their captions (the index points, image and
    caption ones, must be gone already).

    Returns:
        How many image rows were deleted (ids already gone are not counted).
    """
    removed = 0
    for chunk in chunks(list(ids)):
        session.execute(delete(Embedding).where(Embedding.image_id.in_(chunk)))
        # the foreign key cascades too; explicit, so no engine setting is relied upon
        session.execute(delete(Caption).where(Caption.image_id.in_(chunk)))
        gone = session.execute(delete(Image).where(Image.id.in_(chunk)).returning(Image.id))
        removed += len(gone.all())
    return removed


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
    for image_id, name, dim, pid in _point_rows(session, image_ids):
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
