"""The caption points of images: where they are, so they leave (or move) with their image,
and which ones ``platform doctor`` finds left behind.

Caption points live in the collections of sentence indexes (``pipelines.sentences``, one
point per caption of any source) and of matching models (``pipelines.crossmodal``, one point
per file caption). No catalog row records them, as ``embeddings`` rows record image points:
their ids are derived from catalog rows (a sentence index's from the caption's id, a
matching model's from the image's content hash and the caption's ordinal), so they are
computed from the captions while those rows still exist, i.e. before the catalog deletes
them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from embplat.catalog import repo
from embplat.pipelines import crossmodal, sentences
from embplat.pipelines.context import Context

#: (collection name, dim, point id), as ``repo.image_points`` gives image points.
Point = tuple[str, int, str]


def caption_points(
    ctx: Context, image_ids: Sequence[int], *, present_only: bool = False
) -> dict[int, list[Point]]:
    """image id -> the caption points of its captions, in every collection that holds
    caption points.

    Args:
        present_only: keep only the points the index holds (a caption never indexed has
            none); otherwise every id a caption point would have, which deleting ignores.
    """
    with ctx.sessions() as session:
        keys = repo.caption_keys(session=session, image_ids=image_ids)
        collections = repo.model_collections(session=session) if keys else []
    out: dict[int, list[Point]] = {}
    for name, dim, model, kind in collections:
        index = ctx.spaces.index(name, dim)
        if index.count({"kind": "caption"}) == 0:
            continue
        present = set(index.ids()) if present_only else None
        for key in keys:
            pid = (
                sentences.caption_point_id(key.caption_id, model)
                if kind == sentences.KIND
                else crossmodal.caption_point_id(key.sha256, key.ordinal, model)
            )
            if present is None or pid in present:
                out.setdefault(key.image_id, []).append((name, dim, pid))
    return out


def orphan_caption_points(ctx: Context, points: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The caption points (point id -> payload) whose image, or whose caption, is no longer
    cataloged, or whose caption now belongs to another image; in the order given.

    A payload without ``caption_id`` is judged by its image alone.
    """
    image_ids = {int(p.get("image_id", -1)) for p in points.values()}
    caption_ids = [int(p["caption_id"]) for p in points.values() if p.get("caption_id") is not None]
    with ctx.sessions() as session:
        alive = {i.id for i in repo.get_images(session=session, ids=sorted(image_ids))}
        owners = repo.caption_owners(session=session, ids=caption_ids)
    orphans = []
    for pid, payload in points.items():
        image_id = int(payload.get("image_id", -1))
        caption_id = payload.get("caption_id")
        owned = caption_id is None or owners.get(int(caption_id)) == image_id
        if image_id not in alive or not owned:
            orphans.append(pid)
    return orphans
