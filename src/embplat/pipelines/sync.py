"""Keep the catalog and every index in step with a re-scanned folder: moved files get their new
path, files gone from disk leave (unless that looks like an accident).

Writes follow the order of embedding and removal: the indexes first (flushed), then the
catalog. A crash in between is finished by the next ingest: a moved file is found at its new
path again (its old path is still cataloged and still gone), a vanished file is still gone.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.errors import NotFoundError
from embplat.ingest.register import Move
from embplat.pipelines.caption_points import caption_points
from embplat.pipelines.remove import remove_images

if TYPE_CHECKING:
    from embplat.pipelines.context import Context
    from embplat.retrieval.base import VectorIndex

log = logging.getLogger(__name__)


@dataclass
class VanishedReport:
    """Cataloged images under a root whose file is gone: how many, how many were removed,
    and a warning when they were kept."""

    missing: int = 0
    removed: int = 0
    paths: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def apply_moves(ctx: Context, moves: Sequence[Move]) -> int:
    """Point moved images at their new path: the payload of each of their points in every
    index (image points, and the caption points of their captions; re-upserted with the
    stored vector), flushed, then the catalog rows.

    Returns:
        How many images were moved.
    """
    if not moves:
        return 0
    by_id = {m.image_id: m for m in moves}
    with ctx.sessions() as session:
        points = repo.image_points_by_image(session=session, image_ids=list(by_id))
    for image_id, rows in caption_points(ctx, list(by_id), present_only=True).items():
        points.setdefault(image_id, []).extend(rows)
    by_index: dict[tuple[str, int], list[tuple[str, Move]]] = {}
    for image_id, rows in points.items():
        for name, dim, pid in rows:
            by_index.setdefault((name, dim), []).append((pid, by_id[image_id]))
    for (name, dim), items in by_index.items():
        index = ctx.spaces.index(name, dim)
        pids, vectors, payloads = _stored(index, [pid for pid, _ in items])
        move_of = dict(items)
        for pid, payload in zip(pids, payloads, strict=True):
            move = move_of[pid]
            payload.update(path=move.path, split=move.split)
            payload["class"] = move.class_name
        if pids:
            index.upsert(pids, vectors, payloads)
        index.flush()
        log.info("updated %d moved points in %s", len(pids), name)
    with transaction(ctx.sessions) as session:
        repo.relocate_images(session=session, moves=[m.row() for m in moves])
    for m in moves:
        log.info("moved %s -> %s (image %d)", m.old_path, m.path, m.image_id)
    return len(moves)


def _stored(
    index: VectorIndex, pids: list[str]
) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
    """The points of ``pids`` the index holds: ids, (N, dim) vectors, payloads (a point the
    catalog records but the index lost is left for ``platform doctor``)."""
    try:
        vectors, payloads = index.get(pids)
        return pids, vectors, payloads
    except NotFoundError:
        present = [pid for pid in pids if _has(index, pid)]
    if not present:
        return [], np.empty((0, index.dim), np.float32), []
    vectors, payloads = index.get(present)
    return present, vectors, payloads


def _has(index: VectorIndex, pid: str) -> bool:
    try:
        index.get([pid])
    except NotFoundError:
        log.warning("point %s is cataloged but missing from %s", pid, index.name)
        return False
    return True


def prune_vanished(
    ctx: Context,
    root: Path,
    *,
    prune: bool | None = None,
    fresh: Collection[int] = (),
) -> VanishedReport:
    """Find cataloged images under ``root`` whose file no longer exists, and remove them from
    every index and the catalog.

    Default (``prune`` None): the index follows the folder, so files deleted on disk leave the
    index too — a deleted file must not stay a search hit and a kNN voter. But a vanished
    folder looks the same as a deleted one, so removal is refused, and the images only
    reported, when it looks like an accident: ``root`` is missing or empty (an unmounted disk),
    or more than half of the images cataloged under it before this run are gone.
    ``prune=True`` removes them anyway; ``prune=False`` only reports.

    Args:
        root: the scanned folder, made absolute as ingest stores paths.
        fresh: ids cataloged or moved under ``root`` by this run (not counted as "before").
    """
    prefix = str(root) if str(root).endswith(os.sep) else str(root) + os.sep
    with ctx.sessions() as session:
        rows = repo.images_with_prefix(session=session, prefix=prefix)
    gone = [r for r in rows if not os.path.lexists(r.path)]
    report = VanishedReport(missing=len(gone), paths=[r.path for r in gone])
    if not gone or prune is False:
        if gone:
            report.warnings.append(
                f"{len(gone)} cataloged images under {root} are gone from disk; kept "
                "(--no-prune). `platform images delete` or `ingest --prune` removes them"
            )
        return report
    before = len([r for r in rows if r.image_id not in fresh])
    accident = _accident(root, len(gone), before)
    if accident and not prune:
        report.warnings.append(
            f"{len(gone)} of {before} cataloged images under {root} are gone from disk and "
            f"were kept: {accident}; if they were deleted on purpose, re-run with --prune"
        )
        log.warning(report.warnings[-1])
        return report
    report.removed = remove_images(ctx, [r.image_id for r in gone])
    for r in gone:
        log.info("removed %s (file gone, image %d)", r.path, r.image_id)
    return report


def _accident(root: Path, gone: int, before: int) -> str | None:
    """Why removing ``gone`` of the ``before`` images cataloged under ``root`` looks like an
    accident, or None."""
    if not root.is_dir():
        return "the folder is missing (unmounted?)"
    if not any(root.iterdir()):
        return "the folder is empty (unmounted?)"
    if mostly_gone(gone, before):
        return "that is more than half of them"
    return None


def mostly_gone(gone: int, total: int) -> bool:
    """More than half of ``total`` cataloged files gone at once: an unmounted or moved
    folder far more often than a deliberate deletion, so nothing is removed automatically."""
    return 2 * gone > total
