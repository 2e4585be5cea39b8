"""Exact neighbours (``exact_knn``), an index's neighbours as reference positions
(``index_neighbours``: what a Hit-by-Hit walk over ``search`` gives), their agreement."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from embplat.evaluation.neighbours import Neighbours, ann_agreement, exact_knn, index_neighbours
from embplat.retrieval import VectorIndex
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
    searched: list[int] = []
    again = index_neighbours(
        index, queries, refs, k, flt=flt, query_ids=qids, advance=searched.append
    )
    assert again.indices.tolist() == want_idx.tolist()
    assert searched == [40]  # one chunk of the default size, reported once
    index.close()


def _angles(*degrees: float) -> np.ndarray:
    rad = np.radians(degrees)
    return np.stack([np.cos(rad), np.sin(rad)], axis=1).astype(np.float32)


def test_exact_knn_matches_a_full_sort() -> None:
    rng = np.random.default_rng(0)
    queries, refs = rng.normal(size=(7, 5)), rng.normal(size=(23, 5))
    nb = exact_knn(queries, refs, 6)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    r = refs / np.linalg.norm(refs, axis=1, keepdims=True)
    full = q @ r.T
    expected = np.argsort(-full, axis=1)[:, :6]
    assert np.array_equal(nb.indices, expected)
    assert np.allclose(nb.scores, np.take_along_axis(full, expected, axis=1), atol=1e-6)


def test_exact_knn_ties_padding_and_leave_one_out() -> None:
    refs = _angles(0, 90, 0, 30)  # references 0 and 2 are identical
    nb = exact_knn(_angles(10), refs, 6)
    assert nb.indices.tolist() == [[0, 2, 3, 1, -1, -1]]  # tie → lower position first
    assert nb.scores[0, :4] == pytest.approx(np.cos(np.radians([10, 10, 20, 80])), abs=1e-6)
    assert nb.scores[0, 4:].tolist() == [0.0, 0.0]
    own = exact_knn(refs, refs, 2, exclude_self=True)
    # 0 and 2 are each other's nearest; nobody finds itself
    assert own.indices.tolist() == [[2, 3], [3, 0], [0, 3], [0, 2]]
    assert own.scores[:, 0] == pytest.approx([1.0, 0.5, 1.0, math.cos(math.radians(30))])
    padded = exact_knn(refs, refs, 5, exclude_self=True)  # three others each, then padding
    assert padded.indices[:, 3:].tolist() == [[-1, -1]] * 4
    assert all(i not in row for i, row in enumerate(padded.indices.tolist()))
    with pytest.raises(ValueError, match="exclude_self"):
        exact_knn(refs[:2], refs, 2, exclude_self=True)


def test_index_neighbours_map_hits_and_leave_the_query_out() -> None:
    index = ExactIndex("t", 2)
    refs = _angles(0, 30, 90)
    ids = ["a", "b", "c"]
    index.upsert(ids, refs, [{"kind": "image"}] * 3)
    nb = index_neighbours(index, refs, ids, 2, query_ids=ids, chunk=2)
    assert nb.indices.tolist() == [[1, 2], [0, 2], [1, 0]]
    assert nb.scores[0] == pytest.approx([math.cos(math.radians(30)), 0.0], abs=1e-6)
    only_ab = index_neighbours(index, _angles(80), ["a", "b"], 3)
    assert only_ab.indices.tolist() == [[-1, 1, 0]]  # "c" is not a reference


def test_ann_agreement_ignores_missing_exact_neighbours() -> None:
    exact = Neighbours(np.array([[0, 1, -1], [2, 0, 1]]), np.zeros((2, 3)))
    ann = Neighbours(np.array([[1, 0, 2], [2, 1, 3]]), np.zeros((2, 3)))
    # q0: {0,1} ⊂ ann → 1; q1: {2,0,1} ∩ {2,1,3} = 2/3
    assert ann_agreement(exact, ann, k=3) == {
        "recall@3": pytest.approx(5 / 6),
        "top1_identical": 0.5,
    }
