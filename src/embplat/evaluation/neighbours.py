"""Neighbours of query vectors among reference vectors: exact (chunked numpy) or from an index.

Exact search is the retrieval layer's brute-force top-k (query chunks, so no full (Q, R)
similarity matrix is built at once). Index search returns what the backend returns
(approximate for nmslib and Qdrant), mapped to the same reference positions, so the two
can be compared.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from embplat.retrieval import Filter, IdPositions, VectorIndex, search_arrays
from embplat.retrieval.base import exact_top_k, l2_normalize


@dataclass(frozen=True)
class Neighbours:
    """(Q, K) reference positions best first (-1 = missing) and their cosine similarities."""

    indices: np.ndarray
    scores: np.ndarray

    def labels(self, reference_labels: np.ndarray) -> np.ndarray:
        """(Q, K) labels of the neighbours; -1 where a neighbour is missing."""
        ref = np.append(np.asarray(reference_labels), -1)
        return ref[np.where(self.indices < 0, len(ref) - 1, self.indices)]


def exact_knn(
    queries: np.ndarray, references: np.ndarray, k: int, *, exclude_self: bool = False
) -> Neighbours:
    """The ``k`` most cosine-similar references of each query, best first.

    Args:
        queries: (Q, D) vectors (normalised here, so any scale works).
        references: (R, D) vectors.
        k: neighbours per query; rows are padded with -1 / 0.0 when R is smaller.
        exclude_self: queries are the references themselves (same order); leave each out.

    Returns:
        Neighbours with (Q, k) indices and scores; equal scores keep reference order
        (:func:`~embplat.retrieval.base.exact_top_k`).
    """
    if exclude_self and len(queries) != len(references):
        raise ValueError("exclude_self needs the queries to be the references")
    q = l2_normalize(np.asarray(queries, dtype=np.float32))
    r = l2_normalize(np.asarray(references, dtype=np.float32))
    cols, sims = exact_top_k(q, r, k + int(exclude_self))
    if exclude_self:  # one more than k was asked for: the query itself is among them
        cols, sims = _drop_own(cols, sims, np.arange(len(q)), np.zeros(cols.shape, bool))
    width = min(k, cols.shape[1])
    idx = np.full((len(q), k), -1, dtype=np.int64)
    scores = np.zeros((len(q), k), dtype=np.float32)
    idx[:, :width], scores[:, :width] = cols[:, :width], sims[:, :width]
    return Neighbours(idx, scores)


def index_neighbours(
    index: VectorIndex,
    queries: np.ndarray,
    reference_ids: Sequence[str],
    k: int,
    *,
    flt: Filter | None = None,
    query_ids: Sequence[str] | None = None,
    chunk: int = 256,
    advance: Callable[[int], None] | None = None,
) -> Neighbours:
    """Neighbours as the index returns them (ANN for nmslib/Qdrant), as reference positions.

    Searched through :func:`~embplat.retrieval.search_arrays`: no object per (query,
    neighbour) pair.

    Args:
        reference_ids: point ids of the references; hits outside them become -1 (their
            scores are kept).
        query_ids: when the queries are indexed points too, each is left out of its own hits.
        chunk: queries searched at once.
        advance: called with the number of queries of each chunk searched (progress).
    """
    extra = int(query_ids is not None)
    mapper = IdPositions(reference_ids, extra=query_ids or ())
    own = mapper.of(query_ids) if query_ids is not None else None
    idx = np.full((len(queries), k), -1, dtype=np.int64)
    scores = np.zeros((len(queries), k), dtype=np.float32)
    for start in range(0, len(queries), chunk):
        found = search_arrays(index, queries[start : start + chunk], k + extra, flt)
        pos, sc = mapper(found), found.scores
        if own is not None:
            pos, sc = _drop_own(pos, sc, own[start : start + len(pos)], found.rows < 0)
        width = min(k, pos.shape[1])
        pos, sc = pos[:, :width], sc[:, :width]
        idx[start : start + len(pos), :width] = np.where(pos < mapper.size, pos, -1)
        scores[start : start + len(pos), :width] = sc
        if advance is not None:
            advance(len(pos))
    return Neighbours(idx, scores)


def _drop_own(
    pos: np.ndarray, scores: np.ndarray, own: np.ndarray, padding: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(Q, K) positions and scores without each query's own position ``own`` (Q,), the
    rest moved up in order; freed and padded places become -1 / 0.0."""
    drop = ((pos == own[:, None]) & (own[:, None] >= 0)) | padding
    order = np.argsort(drop, axis=1, kind="stable")  # kept hits first, in their order
    pos = np.take_along_axis(pos, order, axis=1)
    scores = np.take_along_axis(scores, order, axis=1)
    gone = np.take_along_axis(drop, order, axis=1)
    return np.where(gone, -1, pos), np.where(gone, 0.0, scores).astype(np.float32)


def ann_agreement(exact: Neighbours, ann: Neighbours, k: int = 10) -> dict[str, float]:
    """recall@k of the ANN neighbours against the exact ones, and identical top-1 share."""
    k = min(k, exact.indices.shape[1], ann.indices.shape[1])
    hits = []
    for e_row, a_row in zip(exact.indices[:, :k], ann.indices[:, :k], strict=True):
        truth = set(e_row[e_row >= 0].tolist())
        if truth:
            hits.append(len(truth & set(a_row.tolist())) / len(truth))
    same_top1 = exact.indices[:, 0] == ann.indices[:, 0]
    return {
        f"recall@{k}": float(np.mean(hits)) if hits else 1.0,
        "top1_identical": float(same_top1.mean()) if len(same_top1) else 1.0,
    }
