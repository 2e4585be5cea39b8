"""Remove images from every index and the catalog: by id, by path or glob, by class, and the
images a re-ingest found superseded.

Order of writes mirrors embedding's: the points leave every index first (flushed) — image
points, and the caption points of the images' captions in sentence indexes and matching
models — then one catalog transaction deletes the embedding, caption and image rows. A crash
in between leaves the catalog rows, from which the same point ids are derived again; running
the removal again (or the next ingest, for superseded and vanished files) finishes it, since
deleting points that are already gone is a no-op.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.errors import NotFoundError
from embplat.pipelines.caption_points import caption_points
from embplat.retrieval.base import point_id

if TYPE_CHECKING:
    from embplat.pipelines.context import Context

log = logging.getLogger(__name__)
_GLOB_CHARS = re.compile(r"[*?\[]")


def remove_images(ctx: Context, image_ids: Sequence[int]) -> int:
    """Delete images, and the caption points of their captions, from every index that holds
    them (flushed), then from the catalog (with their captions).

    Args:
        image_ids: catalog ids; unknown ids and repeats are ignored.

    Returns:
        How many image rows were deleted.
    """
    ids = sorted(set(image_ids))
    if not ids:
        return 0
    with ctx.sessions() as session:
        points = repo.image_points(session=session, image_ids=ids)
    points += [p for rows in caption_points(ctx, ids).values() for p in rows]
    by_index: dict[tuple[str, int], list[str]] = {}
    for name, dim, pid in points:
        by_index.setdefault((name, dim), []).append(pid)
    for (name, dim), pids in by_index.items():
        index = ctx.spaces.index(name, dim)  # the space's own handle when it is open already
        gone = index.delete(pids)
        index.flush()
        log.info("removed %d of %d points from %s", gone, len(pids), name)
    with transaction(ctx.sessions) as session:
        removed = repo.delete_images(session=session, ids=ids)
    log.info("removed %d images from the catalog", removed)
    return removed


def remove_superseded(ctx: Context, replaced: Sequence[tuple[str, int]]) -> int:
    """Remove the images whose file now holds other content, or no longer decodes.

    Args:
        replaced: (path, old image id) pairs, as in ``RegisterReport.replaced``.

    Returns:
        How many image rows were deleted.
    """
    removed = remove_images(ctx, [image_id for _, image_id in replaced])
    for path, image_id in replaced:
        log.info("replaced %s: its previous content (image %d) is removed", path, image_id)
    return removed


def find_images(
    ctx: Context, patterns: Sequence[str] = (), ids: Sequence[int] = ()
) -> list[repo.PathRow]:
    """Cataloged images named by path, glob or id, in id order, each once.

    A pattern is made absolute as ingest stores paths (``Path.absolute()``) and matched
    against the catalog, not the disk, so images whose file is gone can be named. In a glob,
    ``*`` and ``?`` stay within one folder, ``**`` spans folders.

    Raises:
        NotFoundError: a path, glob or id matches no cataloged image (the message names it).
    """
    found: dict[int, repo.PathRow] = {}
    with ctx.sessions() as session:
        for pattern in patterns:
            text = str(Path(pattern).expanduser().absolute())
            head = _GLOB_CHARS.split(text, maxsplit=1)[0]
            rows = repo.images_with_prefix(session=session, prefix=head)
            if head == text:
                rows = [r for r in rows if r.path == text]
            else:
                regex = glob_regex(text)
                rows = [r for r in rows if regex.fullmatch(r.path)]
            if not rows:
                hint = f"; for a whole folder use '{text}/**'" if head == text else ""
                raise NotFoundError(f"no cataloged image matches {pattern} ({text}){hint}")
            found.update((r.image_id, r) for r in rows)
        by_id = {i.id: i for i in repo.get_images(session=session, ids=list(ids))}
        for image_id in ids:
            if image_id not in by_id:
                raise NotFoundError(f"no cataloged image with id {image_id}")
            img = by_id[image_id]
            found[image_id] = repo.PathRow(img.id, img.path, img.class_id)
    return [found[i] for i in sorted(found)]


def remove_class(ctx: Context, name: str) -> dict[str, object]:
    """Remove class ``name``: its images leave every index and the catalog, its label points
    leave the trained models' indexes, then the class row goes.

    Returns:
        ``class``, ``images`` (image rows deleted) and ``labels`` (label points deleted).

    Raises:
        NotFoundError: no class is called ``name`` (the message lists the known ones).
    """
    with ctx.sessions() as session:
        label = repo.get_class(session=session, name=name)
        if label is None:
            known = ", ".join(c.name for c, _ in repo.class_counts(session=session))
            raise NotFoundError(f"no class named {name!r} (known: {known or 'none yet'})")
        class_id = label.id
        image_ids = repo.class_image_ids(session=session, class_id=class_id)
        collections = repo.trained_collections(session=session)
    removed = remove_images(ctx, image_ids)
    labels = 0
    for coll, dim, model in collections:
        index = ctx.spaces.index(coll, dim)
        n = index.delete([point_id(name, model, kind="label")])
        if n:
            index.flush()
            labels += n
    with transaction(ctx.sessions) as session:
        repo.delete_class(session=session, class_id=class_id)
    log.info("removed class %s: %d images, %d label points", name, removed, labels)
    return {"class": name, "images": removed, "labels": labels}


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A compiled regex for a path glob: ``**`` any folders, ``*``/``?`` within a name,
    ``[...]`` a character class (``[!...]`` negated)."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1 : end]
            neg = body.startswith("!")
            body = re.escape(body[1:] if neg else body).replace(r"\-", "-")
            out.append(f"[{'^' if neg else ''}{body}]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))
