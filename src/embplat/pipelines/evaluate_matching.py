"""Use case behind ``platform evaluate --model <matching model>``: cross-modal retrieval on
the test split, the Karpathy protocol (every caption queries the test images, every test
image queries the test captions; an image's best-placed caption counts).

Read from the model's collection (no model is run): the image and caption points of the
split. Scored twice: exactly, by the similarity the model was trained with
(``pair_scores``: minus the order violation for ``order`` models, the cosine otherwise), and
through the index (cosine search with k = every candidate, ``ranks_from_hits``). The exact
metrics are recorded under their names, the index's with an ``index_`` prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.errors import DataError
from embplat.evaluation.crossmodal import crossmodal_metrics, rank_summary, ranks_from_hits
from embplat.pipelines.context import Context
from embplat.pipelines.crossmodal import caption_point_id
from embplat.retrieval import VectorIndex, collection_name


@dataclass(frozen=True)
class SplitPoints:
    """A split's points in a matching model's collection.

    Attributes:
        image_ids: catalog ids, one per row of ``images`` (I, D).
        image_points: their point ids.
        caption_ids: catalog ids of the captions, one per row of ``texts`` (C, D).
        caption_points: their point ids.
        image_of_text: (C,) row of ``images`` each caption describes.
    """

    image_ids: list[int]
    image_points: list[str]
    images: np.ndarray
    caption_ids: list[int]
    caption_points: list[str]
    texts: np.ndarray
    image_of_text: np.ndarray


def split_points(ctx: Context, model: str, split: str = "test") -> tuple[SplitPoints, VectorIndex]:
    """The image and caption points of ``split`` in ``model``'s collection.

    Raises:
        DataError: the split has no captioned images in the collection.
    """
    with ctx.sessions() as session:
        record = repo.get_model(session=session, name=model)
        dim, coll = record.dim, ctx.spaces.collection_id(model)
        rows = repo.embedded_images(session=session, collection_id=coll, splits=[split])
        captions = repo.split_captions(session=session, splits=[split])
        sha = {i.id: i.sha256 for i in repo.get_images(session=session, ids=[r[0] for r in rows])}
    index = ctx.spaces.index(collection_name(model), dim)
    row_of = {r[0]: n for n, r in enumerate(rows)}
    kept = [c for c in captions if c[1] in row_of]
    if not kept:
        raise DataError(
            f"{model}: no captioned {split} images in its collection; ingest a caption dataset "
            "with a test split, then retrain"
        )
    cap_points = [caption_point_id(sha[c[1]], c[2], model) for c in kept]
    img_points = [r[3] for r in rows]
    return SplitPoints(
        image_ids=[r[0] for r in rows],
        image_points=img_points,
        images=np.asarray(index.get(img_points)[0], np.float32),
        caption_ids=[c[0] for c in kept],
        caption_points=cap_points,
        texts=np.asarray(index.get(cap_points)[0], np.float32),
        image_of_text=np.asarray([row_of[c[1]] for c in kept], np.int64),
    ), index


def exact_scores(points: SplitPoints, kind: str) -> np.ndarray:
    """(I, C) similarities by the model's own measure (``pair_scores``)."""
    import torch

    from embplat.models.recipes.matching import pair_scores

    images, texts = torch.from_numpy(points.images), torch.from_numpy(points.texts)
    return pair_scores(kind, images, texts).numpy()


def index_metrics(points: SplitPoints, index: VectorIndex, split: str) -> dict[str, float]:
    """Both directions' R@K and ranks from the index's cosine search (k = all candidates)."""
    n_img, n_cap = len(points.image_ids), len(points.caption_ids)
    t2i = index.search(points.texts, n_img, {"kind": "image", "split": split})
    owners = [{points.image_points[o]} for o in points.image_of_text]
    t2i_ranks = ranks_from_hits([[h.id for h in hs] for hs in t2i], owners, n_candidates=n_img)
    i2t = index.search(points.images, n_cap, {"kind": "caption", "split": split})
    right: list[set[str]] = [set() for _ in range(n_img)]
    for pid, row in zip(points.caption_points, points.image_of_text, strict=True):
        right[row].add(pid)
    i2t_ranks = ranks_from_hits([[h.id for h in hs] for hs in i2t], right, n_candidates=n_cap)
    out = rank_summary(i2t_ranks, prefix="i2t_") | rank_summary(t2i_ranks, prefix="t2i_")
    out["rsum"] = float(sum(out[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in (1, 5, 10)))
    return out


def evaluate_matching(ctx: Context, model: str, split: str = "test") -> dict[str, Any]:
    """Cross-modal R@1/5/10 and median/mean ranks of ``model`` on ``split``, exact and through
    the index, recorded in the catalog (``platform models compare``).

    Returns:
        JSON-ready: ``model``, ``split``, ``images``, ``captions``, ``loss``, ``metrics``
        (exact), ``index`` (the index's), ``recorded``.
    """
    with ctx.sessions() as session:
        record = repo.get_model(session=session, name=model)
        kind, model_id = str(record.config["train_config"]["loss"]), record.id
    points, index = split_points(ctx, model, split)
    exact = crossmodal_metrics(exact_scores(points, kind), points.image_of_text)
    through = index_metrics(points, index, split)
    values = {**exact, **{f"index_{k}": v for k, v in through.items()}}
    with transaction(ctx.sessions) as session:
        recorded = repo.record_metrics(
            session=session, model_id=model_id, split=split, values=values
        )
    return {
        "model": model,
        "split": split,
        "images": len(points.image_ids),
        "captions": len(points.caption_ids),
        "loss": kind,
        "index_similarity": "cosine",
        "metrics": exact,
        "index": through,
        "recorded": recorded,
    }
