"""Neighbours of query vectors among reference vectors: exact (chunked numpy) or from an index.

Exact search never builds a full (Q, R) similarity matrix: it walks query chunks and
reference blocks, keeping a running top-k. Index search returns what the backend returns
(approximate for nmslib and Qdrant), mapped to the same reference positions, so the two
can be compared.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from embplat.retrieval import Filter, IdPositions, VectorIndex, search_arrays


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
    queries: np.ndarray,
    references: np.ndarray,
    k: int,
    *,
    exclude_self: bool = False,
    chunk: int = 1024,
    ref_chunk: int = 16384,
) -> Neighbours:
    """The ``k`` most cosine-similar references of each query, best first.

    Args:
        queries: (Q, D) vectors (normalised here, so any scale works).
        references: (R, D) vectors.
        k: neighbours per query; rows are padded with -1 / 0.0 when R is smaller.
        exclude_self: queries are the references themselves (same order); leave each out.
        chunk, ref_chunk: block sizes; memory peaks at about chunk x ref_chunk floats.

    Returns:
        Neighbours with (Q, k) indices and scores; equal scores keep reference order except
        for exact ties at the k-th place.
    """
    if exclude_self and len(queries) != len(references):
        raise ValueError("exclude_self needs the queries to be the references")
    n_q = len(queries)
    idx = np.full((n_q, k), -1, dtype=np.int64)
    scores = np.zeros((n_q, k), dtype=np.float32)
    for q0 in range(0, n_q, chunk):
        q = unit_rows(queries[q0 : q0 + chunk])
        best_i = np.empty((len(q), 0), dtype=np.int64)
        best_s = np.empty((len(q), 0), dtype=np.float32)
        for r0 in range(0, len(references), ref_chunk):
            sims = q @ unit_rows(references[r0 : r0 + ref_chunk]).T
            if exclude_self:
                rows = np.arange(len(q))
                cols = rows + q0 - r0
                ok = (cols >= 0) & (cols < sims.shape[1])
                sims[rows[ok], cols[ok]] = -np.inf
            top = _top_k(sims, k)
            cand_i = np.concatenate([best_i, top + r0], axis=1)
            cand_s = np.concatenate([best_s, np.take_along_axis(sims, top, axis=1)], axis=1)
            order = np.lexsort((cand_i, -cand_s), axis=1)[:, :k]
            best_i = np.take_along_axis(cand_i, order, axis=1)
            best_s = np.take_along_axis(cand_s, order, axis=1)
        valid = np.isfinite(best_s)
        idx[q0 : q0 + len(q), : best_i.shape[1]] = np.where(valid, best_i, -1)
        scores[q0 : q0 + len(q), : best_s.shape[1]] = np.where(valid, best_s, 0.0)
    return Neighbours(idx, scores)


def unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def _top_k(sims: np.ndarray, k: int) -> np.ndarray:
    """Column positions of the k largest entries per row (unordered)."""
    if sims.shape[1] <= k:
        return np.broadcast_to(np.arange(sims.shape[1]), sims.shape).copy()
    return np.argpartition(-sims, k - 1, axis=1)[:, :k]


def index_neighbours(
    index: VectorIndex,
    queries: np.ndarray,
    reference_ids: Sequence[str],
    k: int,
    *,
    flt: Filter | None = None,
    query_ids: Sequence[str] | None = None,
    chunk: int = 256,
    positions: IdPositions | None = None,
) -> Neighbours:
    """Neighbours as the index returns them (ANN for nmslib/Qdrant), as reference positions.

    Searched through :func:`~embplat.retrieval.search_arrays`: no object per (query,
    neighbour) pair.

    Args:
        reference_ids: point ids of the references; hits outside them become -1 (their
            scores are kept).
        query_ids: when the queries are indexed points too, each is left out of its own hits.
        positions: ``IdPositions(reference_ids, extra=query_ids or ())`` to reuse across
            calls (a chunked caller); built here when None.
    """
    extra = int(query_ids is not None)
    mapper = positions or IdPositions(reference_ids, extra=query_ids or ())
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
