"""Remove images whose file now holds other content (found by a re-ingest).

Order of writes mirrors embedding's: the points leave every index first (flushed), then one
catalog transaction deletes the embedding rows and the image rows. A crash in between leaves
the catalog rows; the next ingest finds the file changed again and finishes the removal
(deleting points that are already gone is a no-op).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.pipelines.context import Context

log = logging.getLogger(__name__)


def remove_superseded(ctx: Context, replaced: Sequence[tuple[str, int]]) -> int:
    """Delete superseded images from every index that holds them, then from the catalog.

    Args:
        replaced: (path, old image id) pairs, as in ``RegisterReport.replaced``.

    Returns:
        How many image rows were deleted.
    """
    ids = sorted({image_id for _, image_id in replaced})
    if not ids:
        return 0
    with ctx.sessions() as session:
        points = repo.image_points(session=session, image_ids=ids)
    by_index: dict[tuple[str, int], list[str]] = {}
    for name, dim, pid in points:
        by_index.setdefault((name, dim), []).append(pid)
    for (name, dim), pids in by_index.items():
        index = ctx.index(name, dim)  # the space's own handle when it is open already
        gone = index.delete(pids)
        index.flush()
        log.info("removed %d of %d superseded points from %s", gone, len(pids), name)
    with transaction(ctx.sessions) as session:
        removed = repo.delete_images(session=session, ids=ids)
    for path, image_id in replaced:
        log.info("replaced %s: its previous content (image %d) is removed", path, image_id)
    return removed
