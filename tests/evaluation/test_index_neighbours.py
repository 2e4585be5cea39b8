"""``index_neighbours`` (array search) gives what a Hit-by-Hit walk over ``search`` gives."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from embplat.evaluation.neighbours import index_neighbours
from embplat.retrieval import IdPositions, VectorIndex
from embplat.retrieval.base import l2_normalize
from embplat.retrieval.exact import ExactIndex
from embplat.retrieval.nmslib_index import NmslibIndex

DIM = 8


def _by_hits(
    index: VectorIndex,
    queries: np.ndarray,
    refs: Sequence[str],
    k: int,
    flt: dict[str, str],
    query_ids: Sequence[str] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """The former implementation: one Hit per (query, neighbour)."""
    pos = {pid: i for i, pid in enumerate(refs)}
    extra = int(query_ids is not None)
    idx = np.full((len(queries), k), -1, dtype=np.int64)
    scores = np.zeros((len(queries), k), dtype=np.float32)
    for row, hits in enumerate(index.search(queries, k + extra, flt)):
        own = query_ids[row] if query_ids is not None else None
        kept = [h for h in hits if h.id != own][:k]
        idx[row, : len(kept)] = [pos.get(h.id, -1) for h in kept]
        scores[row, : len(kept)] = [h.score for h in kept]
    return idx, scores


@pytest.mark.parametrize("backend", ["exact", "nmslib"])
@pytest.mark.parametrize("leave_out", [False, True])
@pytest.mark.parametrize("k", [5, 400])  # 400: more than the references, rows padded
def test_index_neighbours_equal_hit_walk(
    tmp_path: Path, backend: str, leave_out: bool, k: int
) -> None:
    rng = np.random.default_rng(7)
    n = 300
    vectors = l2_normalize(rng.standard_normal((n, DIM)))
    ids = [f"id{i}" for i in range(n)]
    payloads = [{"kind": "image", "split": "train" if i % 4 else "valid"} for i in range(n)]
    index: VectorIndex = (
        ExactIndex("t", DIM)
        if backend == "exact"
        else NmslibIndex("t", DIM, tmp_path, buffer_limit=64)
    )
    index.upsert(ids, vectors, payloads)
    train = [pid for pid, p in zip(ids, payloads, strict=True) if p["split"] == "train"]
    refs = train[5:]  # a few indexed train points are not references: position -1
    query_ids = train[:40] if leave_out else [pid for pid in ids if pid not in train][:40]
    queries = index.get(query_ids)[0]
    flt = {"kind": "image", "split": "train"}
    qids = query_ids if leave_out else None
    got = index_neighbours(index, queries, refs, k, flt=flt, query_ids=qids, chunk=16)
    want_idx, want_scores = _by_hits(index, queries, refs, k, flt, qids)
    assert got.indices.tolist() == want_idx.tolist()
    np.testing.assert_allclose(got.scores, want_scores, atol=1e-6)
    shared = IdPositions(refs, extra=query_ids)  # as evaluate_split passes it, chunk by chunk
    again = index_neighbours(index, queries, refs, k, flt=flt, query_ids=qids, positions=shared)
    assert again.indices.tolist() == want_idx.tolist()
    index.close()
