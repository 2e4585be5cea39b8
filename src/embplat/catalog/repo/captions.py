"""Caption rows: store a file's captions (idempotent), read an image's captions, list the
captions of a split, the keys caption point ids are derived from, find an image by the path
or file name a user types."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from embplat.catalog.models import Caption, Image
from embplat.catalog.repo._common import chunks, insert_ignore, upsert


class CaptionWrite(NamedTuple):
    """What :func:`add_captions` did: rows inserted, rows whose text changed."""

    added: int
    updated: int


def add_captions(*, session: Session, rows: Sequence[Mapping[str, Any]]) -> CaptionWrite:
    """Store captions (keys ``image_id``, ``text``, ``ordinal``, ``source``, optional
    ``model``), keyed by (image, source, ordinal).

    A re-run of the same rows writes nothing; a row whose text differs from the stored one
    (a corrected captions file) overwrites it. Rows of images deleted meanwhile fail on the
    foreign key, as any write to a missing image does.
    """
    rows = list({(r["image_id"], r["source"], r["ordinal"]): r for r in rows}.values())
    stored: dict[tuple[int, str, int], str] = {}
    for chunk in chunks(sorted({int(r["image_id"]) for r in rows})):
        stmt = select(Caption.image_id, Caption.source, Caption.ordinal, Caption.text).where(
            Caption.image_id.in_(chunk)
        )
        stored.update(((i, s, o), t) for i, s, o, t in session.execute(stmt))
    fresh, changed = [], []
    for row in rows:
        old = stored.get((row["image_id"], row["source"], row["ordinal"]))
        if old is None:
            fresh.append({"model": None, **row})
        elif old != row["text"]:
            changed.append({"model": None, **row})
    keys = ["image_id", "source", "ordinal"]
    # a concurrent writer may have inserted some of them: those are not counted twice
    added = insert_ignore(session=session, model=Caption, rows=fresh, keys=keys)
    upsert(session=session, model=Caption, rows=changed, keys=keys, update=["text", "model"])
    return CaptionWrite(added, len(changed))


def get_captions(
    *, session: Session, image_ids: Sequence[int], source: str | None = None
) -> dict[int, list[Caption]]:
    """image id -> its captions (file captions first, then by ordinal); images without
    captions are absent."""
    out: dict[int, list[Caption]] = {}
    for chunk in chunks(list(image_ids)):
        stmt = select(Caption).where(Caption.image_id.in_(chunk))
        if source is not None:
            stmt = stmt.where(Caption.source == source)
        for caption in session.scalars(stmt.order_by(Caption.source, Caption.ordinal)):
            out.setdefault(caption.image_id, []).append(caption)
    return out


def count_captions(*, session: Session, split: str | None = None) -> int:
    """Number of captions, optionally of the images of one split."""
    stmt = select(func.count()).select_from(Caption)
    if split:
        stmt = stmt.join(Image, Image.id == Caption.image_id).where(Image.split == split)
    return int(session.scalar(stmt) or 0)


def split_captions(
    *, session: Session, splits: Sequence[str], source: str = "file"
) -> list[tuple[int, int, int, str]]:
    """(caption id, image id, ordinal, text) of the captions of the images in ``splits``,
    by image id then ordinal (the order evaluation and training read them in)."""
    stmt = (
        select(Caption.id, Caption.image_id, Caption.ordinal, Caption.text)
        .join(Image, Image.id == Caption.image_id)
        .where(Image.split.in_(list(splits)), Caption.source == source)
        .order_by(Caption.image_id, Caption.ordinal)
    )
    return [tuple(row) for row in session.execute(stmt)]  # type: ignore[misc]


def captioned_image_ids(
    *, session: Session, image_ids: Sequence[int] | None = None, source: str | None = None
) -> list[int]:
    """Ids of the images (of ``image_ids``, or all) that have a caption (of ``source``)."""
    stmt = select(Caption.image_id).distinct()
    if source is not None:
        stmt = stmt.where(Caption.source == source)
    if image_ids is None:
        return sorted(session.scalars(stmt))
    out: list[int] = []
    for chunk in chunks(list(image_ids)):
        out.extend(session.scalars(stmt.where(Caption.image_id.in_(chunk))))
    return sorted(set(out))


class CaptionKey(NamedTuple):
    """What a caption point's id is derived from: the caption's row, its image's content,
    its ordinal."""

    caption_id: int
    image_id: int
    sha256: str
    ordinal: int


def caption_keys(*, session: Session, image_ids: Sequence[int]) -> list[CaptionKey]:
    """The keys of every caption (any source) of the given images, by image then caption."""
    out: list[CaptionKey] = []
    for chunk in chunks(sorted(set(image_ids))):
        stmt = (
            select(Caption.id, Caption.image_id, Image.sha256, Caption.ordinal)
            .join(Image, Image.id == Caption.image_id)
            .where(Caption.image_id.in_(chunk))
            .order_by(Caption.image_id, Caption.id)
        )
        out.extend(CaptionKey(*row) for row in session.execute(stmt))
    return out


def caption_owners(*, session: Session, ids: Sequence[int]) -> dict[int, int]:
    """caption id -> its image id, for the given caption ids still cataloged."""
    out: dict[int, int] = {}
    for chunk in chunks(sorted(set(ids))):
        stmt = select(Caption.id, Caption.image_id).where(Caption.id.in_(chunk))
        out.update((cid, image_id) for cid, image_id in session.execute(stmt))
    return out


def image_splits(*, session: Session, paths: Sequence[str]) -> dict[str, tuple[int, str]]:
    """path -> (image id, split) of the newest image stored under each of ``paths`` (an
    older row under the same path is a replaced file not removed yet)."""
    out: dict[str, tuple[int, str]] = {}
    for chunk in chunks(list(paths)):
        stmt = select(Image.path, Image.id, Image.split).where(Image.path.in_(chunk))
        for path, image_id, split in session.execute(stmt.order_by(Image.id)):
            out[path] = (image_id, split)
    return out


def find_images(*, session: Session, path: str) -> list[Image]:
    """The images stored under ``path`` (an absolute path), else those whose file name is
    ``path``'s last part (what a user types for ``some.jpg``), in id order."""
    exact = list(session.scalars(select(Image).where(Image.path == path).order_by(Image.id)))
    if exact:
        return exact
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    stmt = select(Image).where(Image.path.endswith("/" + name, autoescape=True)).order_by(Image.id)
    # SQLite's LIKE ignores ASCII case: the exact test is made here
    return [i for i in session.scalars(stmt) if i.path.rsplit("/", 1)[-1] == name]
