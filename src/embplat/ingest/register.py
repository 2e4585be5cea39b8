"""Register a scanned tree in the catalog: validate every image, hash it, assign its split.

Re-running registers only what is new: files already cataloged (same path, size and
modification time) are not read again. A cataloged file whose stat changed is read again:
same content only gets its new time recorded; new content is registered as a new image, and
the old image is reported as replaced, for the caller to remove from the indexes and then
from the catalog; so is the old image of a file that no longer decodes (it is also skipped).

Content already cataloged under another path is a duplicate while that path still exists. When
that path is gone, the file was moved (or renamed): the image is reported as moved, for the
caller to update its index payloads and then its row; it keeps its id and its vectors.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from sqlalchemy.orm import Session, sessionmaker

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.catalog.models import Image
from embplat.errors import DataError
from embplat.ingest.images import ImageInfo, inspect_image
from embplat.ingest.scan import ScanItem

log = logging.getLogger(__name__)
Progress = Callable[[int], None]


class FileStat(NamedTuple):
    """What a re-run compares with the catalog before reading a file."""

    size: int
    mtime_ns: int | None


@dataclass(frozen=True)
class Move:
    """A cataloged image found at a new path while its cataloged path is gone: the row's new
    values (class and split change only when the new folder names another class)."""

    image_id: int
    old_path: str
    path: str
    class_id: int
    class_name: str
    split: str
    nbytes: int
    mtime_ns: int | None

    def row(self) -> dict[str, object]:
        """The values ``repo.relocate_images`` writes."""
        keys = ("image_id", "path", "class_id", "split", "nbytes", "mtime_ns")
        return {k: getattr(self, k) for k in keys}


@dataclass
class RegisterReport:
    """What registration did: new image ids, files already known, skipped files, the images
    whose file now holds other content or no longer decodes: (path, old image id), still
    cataloged, and the images whose file moved (rows not updated yet)."""

    added: list[int] = field(default_factory=list)
    already: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    replaced: list[tuple[str, int]] = field(default_factory=list)
    moved: list[Move] = field(default_factory=list)


def split_for(sha256: str, *, unseen: bool, valid_fraction: float) -> str:
    """Deterministic split: ``test`` for unseen classes, else train/valid by content hash."""
    if unseen:
        return "test"
    return "valid" if int(sha256[:8], 16) / 0x1_0000_0000 < valid_fraction else "train"


def register_items(
    items: Sequence[ScanItem],
    *,
    sessions: sessionmaker[Session],
    class_ids: dict[str, int],
    unseen: set[str],
    valid_fraction: float,
    max_pixels: int,
    batch_size: int = 256,
    force_split: str | None = None,
    progress: Progress | None = None,
) -> RegisterReport:
    """Validate and catalog images in batches, one transaction per batch.

    Args:
        items: (path, class) pairs from a scan.
        class_ids: class name → catalog id (classes registered beforehand).
        unseen: classes whose images go to the ``test`` split.
        force_split: put every image in this split (e.g. ``train`` when enrolling a class).
        progress: called with the number of files handled after each batch.
    """
    report = RegisterReport()
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        with transaction(sessions) as session:
            _register_chunk(
                chunk, session, report, class_ids, unseen, valid_fraction, max_pixels, force_split
            )
        if progress:
            progress(len(chunk))
    return report


def _register_chunk(
    chunk: Sequence[ScanItem],
    session: Session,
    report: RegisterReport,
    class_ids: dict[str, int],
    unseen: set[str],
    valid_fraction: float,
    max_pixels: int,
    force_split: str | None,
) -> None:
    known = repo.known_files(session=session, paths=[str(i.path) for i in chunk])
    # stat before reading: a file changed while being read gets re-read by the next run
    stats = {str(i.path): _stat(i.path) for i in chunk}
    todo = [i for i in chunk if not _unchanged(known.get(str(i.path), []), stats[str(i.path)])]
    report.already += len(chunk) - len(todo)
    infos = _inspect_all(todo, max_pixels, report, known)
    existing = repo.images_by_hash(session=session, hashes=[info.sha256 for _, info in infos])
    records: list[dict[str, object]] = []
    seen: dict[str, str] = {}
    touched: dict[int, int] = {}
    moved = {m.image_id: m.path for m in report.moved}
    for item, info in infos:
        path, stat = str(item.path), stats[str(item.path)]
        _compare(path, info.sha256, stat.mtime_ns, known.get(path, []), report, touched)
        dup = existing.get(info.sha256)
        split = (
            force_split
            or item.split
            or split_for(
                info.sha256, unseen=item.class_name in unseen, valid_fraction=valid_fraction
            )
        )
        if dup is not None and dup.id not in moved and _gone(dup.path, path):
            report.moved.append(_move(dup, item, class_ids[item.class_name], split, info, stat))
            moved[dup.id] = path
            continue
        first = seen.get(info.sha256)
        if dup is not None or first is not None:
            other = moved.get(dup.id, dup.path) if dup is not None else first
            if other != path:
                report.skipped.append((path, f"duplicate content of {other}"))
            else:
                report.already += 1
            continue
        seen[info.sha256] = path
        records.append(_record(item, info, class_ids[item.class_name], split, stat.mtime_ns))
    repo.set_image_mtimes(session=session, mtimes=touched)
    repo.add_images(session=session, records=records)
    ids = repo.images_by_hash(session=session, hashes=[str(r["sha256"]) for r in records])
    report.added.extend(img.id for img in ids.values())


def _compare(
    path: str,
    sha256: str,
    mtime_ns: int | None,
    rows: Sequence[repo.KnownFile],
    report: RegisterReport,
    touched: dict[int, int],
) -> None:
    """Sort the rows of a re-read file: other content is replaced, the same content was only
    touched (its new time goes into ``touched``: image id -> mtime_ns)."""
    for row in rows:
        if row.sha256 != sha256:
            report.replaced.append((path, row.image_id))
        elif mtime_ns is not None and row.mtime_ns != mtime_ns:
            touched[row.image_id] = mtime_ns


def _unchanged(rows: Sequence[repo.KnownFile], stat: FileStat) -> bool:
    """Cataloged with this size and modification time (NULL time: size alone decides)."""
    return bool(rows) and all(
        r.nbytes == stat.size and r.mtime_ns in (None, stat.mtime_ns) for r in rows
    )


def _move(
    image: Image, item: ScanItem, class_id: int, split: str, info: ImageInfo, stat: FileStat
) -> Move:
    """The move of ``image`` to ``item``'s path: the class its new folder names, the split a
    fresh registration would give when that class differs (else the split it had)."""
    return Move(
        image_id=image.id,
        old_path=image.path,
        path=str(item.path),
        class_id=class_id,
        class_name=item.class_name,
        split=image.split if class_id == image.class_id else split,
        nbytes=info.nbytes,
        mtime_ns=stat.mtime_ns,
    )


def _gone(cataloged: str, path: str) -> bool:
    """The cataloged path of content found at ``path`` no longer exists: a move."""
    return cataloged != path and not os.path.lexists(cataloged)


def _inspect_all(
    items: Sequence[ScanItem],
    max_pixels: int,
    report: RegisterReport,
    known: Mapping[str, Sequence[repo.KnownFile]],
) -> list[tuple[ScanItem, ImageInfo]]:
    """Decode in threads (Pillow releases the GIL while decoding); failures become skips.

    A cataloged file that changed and no longer decodes also has its old images reported as
    replaced: the catalog must not keep serving content the folder no longer holds.
    """

    def one(item: ScanItem) -> ImageInfo | str:
        try:
            return inspect_image(item.path, max_pixels=max_pixels)
        except DataError as exc:
            return str(exc)

    out = []
    with ThreadPoolExecutor(max_workers=4) as pool:
        for item, res in zip(items, pool.map(one, items), strict=True):
            if isinstance(res, str):
                rows = known.get(str(item.path), [])
                reason = _reason(res, item.path)
                if rows:
                    report.replaced.extend((str(item.path), r.image_id) for r in rows)
                    reason += "; its previous image is removed"
                report.skipped.append((str(item.path), reason))
                log.warning("skipped %s", res)
            else:
                out.append((item, res))
    return out


def _record(
    item: ScanItem, info: ImageInfo, class_id: int, split: str, mtime_ns: int | None
) -> dict[str, object]:
    return {
        "sha256": info.sha256,
        "path": str(item.path),
        "class_id": class_id,
        "split": split,
        "width": info.width,
        "height": info.height,
        "mode": info.mode,
        "nbytes": info.nbytes,
        "mtime_ns": mtime_ns,
    }


def _stat(path: Path) -> FileStat:
    try:
        st = path.stat()
    except OSError:
        return FileStat(-1, None)
    return FileStat(st.st_size, st.st_mtime_ns)


def _reason(message: str, path: Path) -> str:
    """The reason without the path prefix the error already carries."""
    prefix = f"{path}: "
    return message[len(prefix) :] if message.startswith(prefix) else message
