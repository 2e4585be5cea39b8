"""Use case: evaluate kNN classification and retrieval of one split through the real index."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import numpy as np

from embplat.catalog import repo
from embplat.errors import DataError
from embplat.evaluation.metrics import knn_metrics
from embplat.evaluation.neighbours import index_neighbours
from embplat.pipelines.context import Context
from embplat.pipelines.progress import NoProgress, ProgressSink
from embplat.retrieval import IdPositions, VectorIndex, collection_name

log = logging.getLogger(__name__)


def evaluate_split(
    ctx: Context,
    *,
    split: str = "valid",
    reference: str = "train",
    k: int = 10,
    weighted: bool = False,
    chunk: int = 256,
    progress: ProgressSink | None = None,
    model: str | None = None,
) -> dict[str, Any]:
    """Query every embedded image of ``split`` against the ``reference`` split.

    ``model``: evaluate a trained model's space (``platform models list``) instead.

    When ``reference == split`` each query is left out of its own neighbours
    (the usual protocol for unseen classes, whose images are not enrolled).

    Raises:
        DataError: the split or the reference holds no embedded images.
    """
    key, index, collection_id = _index_space(ctx, model)
    with ctx.sessions() as session:
        rows = repo.embedded_images(
            session=session, collection_id=collection_id, splits=[split, reference]
        )
    queries = [r for r in rows if r[1] == split]
    refs = [r for r in rows if r[1] == reference]
    for name, part in (("split", queries), ("reference split", refs)):
        if not part:
            raise DataError(
                f"{name} {split if part is queries else reference!r} holds no "
                f"embedded images in {index.name}; ingest data first"
            )
    names = sorted({r[2] for r in rows})
    label = {n: i for i, n in enumerate(names)}
    leave_out = reference == split
    depth = min(max(k, max(Counter(r[2] for r in refs).values())), len(refs) - int(leave_out))
    idx, scores = _neighbours(
        index,
        [r[3] for r in queries],
        [r[3] for r in refs],
        reference,
        depth,
        leave_out,
        chunk,
        (progress or NoProgress()).task("evaluating", len(queries)),
    )
    metrics = knn_metrics(
        query_labels=np.array([label[r[2]] for r in queries]),
        reference_labels=np.array([label[r[2]] for r in refs]),
        knn_indices=idx,
        knn_scores=scores,
        k=min(k, depth),
        class_names=names,
        weighted=weighted,
        exclude_self=leave_out,
    )
    return {
        "model": key,
        "index": index.name,
        "split": split,
        "reference": reference,
        "weighted": weighted,
        **metrics,
    }


def _index_space(ctx: Context, model: str | None) -> tuple[str, VectorIndex, int]:
    """(model key, index, collection id) of the space evaluated.

    Evaluation reads stored vectors only, so no encoder is built: a trained model's space
    comes from the catalog, the active encoder's from :meth:`Context.active_index` (built
    only when its key is not known in advance or its collection is not registered yet).
    """
    if model is None:
        found = ctx.active_index()
        if found is not None:
            return found
        space = ctx.space()
        return space.key, space.index, space.collection_id
    collection_id = ctx.collection_id(model)  # ConfigError for a pretrained encoder
    with ctx.sessions() as session:
        dim = repo.get_model(session=session, name=model).dim
    return model, ctx.index(collection_name(model), dim), collection_id


def _neighbours(
    index: VectorIndex,
    query_ids: list[str],
    ref_ids: list[str],
    reference: str,
    depth: int,
    leave_out: bool,
    chunk: int,
    advance: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """(Q, depth) reference positions (-1 = missing) and scores, searched chunk by chunk."""
    positions = IdPositions(ref_ids, extra=query_ids)
    idx = np.full((len(query_ids), depth), -1, dtype=np.int64)
    scores = np.zeros((len(query_ids), depth), dtype=np.float32)
    flt = {"kind": "image", "split": reference}
    for start in range(0, len(query_ids), chunk):
        ids = query_ids[start : start + chunk]
        vectors, _ = index.get(ids)
        found = index_neighbours(
            index,
            vectors,
            ref_ids,
            depth,
            flt=flt,
            query_ids=ids if leave_out else None,
            chunk=len(ids),
            positions=positions,
        )
        idx[start : start + len(ids)] = found.indices
        scores[start : start + len(ids)] = found.scores
        advance(len(ids))
    return idx, scores
