"""Evaluations from neighbours (index) and from vectors (exact, with the index beside it)."""

import numpy as np
import pytest

from embplat.evaluation.neighbours import Neighbours
from embplat.evaluation.retrieval_eval import (
    evaluate_neighbours,
    evaluate_retrieval,
    required_depth,
    worst_queries,
)

NAMES = ["a", "b", "c"]


def _angles(*degrees: float) -> np.ndarray:
    rad = np.radians(degrees)
    return np.stack([np.cos(rad), np.sin(rad)], axis=1).astype(np.float32)


def _case() -> tuple[np.ndarray, np.ndarray, Neighbours]:
    # references: 2 of class a (pos 0,1), 2 of b (2,3), 1 of c (4)
    reference = np.array([0, 0, 1, 1, 2])
    query = np.array([0, 1, 2])
    idx = np.array(
        [
            [0, 2, 1, 3, 4],  # a: hits at ranks 1 and 3
            [0, 1, 2, 3, 4],  # b: hits at ranks 3 and 4
            [4, 0, 1, 2, 3],  # c: hit at rank 1
        ]
    )
    scores = np.tile(np.linspace(0.9, 0.5, 5), (3, 1)).astype(np.float32)
    return query, reference, Neighbours(idx, scores)


def test_evaluate_neighbours_matches_hand_computed_values():
    query, reference, nb = _case()
    r = evaluate_neighbours(query, reference, nb, class_names=NAMES, ks=(1, 3))
    m = r.metrics
    assert m["precision_at_1"] == pytest.approx(2 / 3)
    # R-precision: a: R=2, top2=[a,b] → 1/2; b: R=2, top2=[a,a] → 0; c: R=1 → 1
    assert m["r_precision"] == pytest.approx((0.5 + 0 + 1) / 3)
    # MAP@R: a: (1/1)/2 = 0.5 (rank 3 is beyond R=2); b: 0; c: 1
    assert m["mean_average_precision_at_r"] == pytest.approx((0.5 + 0 + 1) / 3)
    assert m["knn_accuracy@1"] == pytest.approx(2 / 3)
    # 3-NN votes: a: [a,b,a] → a ✓; b: [a,a,b] → a ✗; c: [c,a,a] → a ✗
    assert m["knn_accuracy@3"] == pytest.approx(1 / 3)
    assert r.predictions.tolist() == [0, 0, 0]
    assert r.vote_share.tolist() == pytest.approx([2 / 3, 2 / 3, 2 / 3])
    assert r.confusion == {"labels": NAMES, "matrix": [[1, 0, 0], [1, 0, 0], [1, 0, 0]]}
    assert r.per_class["a"]["recall"] == pytest.approx(1.0)
    assert r.per_class["a"]["precision"] == pytest.approx(1 / 3)
    assert r.info == {"queries": 3, "references": 5, "depth": 5}


def test_missing_neighbours_are_padding_not_matches():
    query, reference, nb = _case()
    nb.indices[0, 0] = -1  # the first query's best neighbour is missing
    r = evaluate_neighbours(query, reference, nb, class_names=NAMES, ks=(3,))
    assert r.metrics["precision_at_1"] == pytest.approx(1 / 3)


def test_leave_one_out_does_not_count_the_query_as_its_own_match():
    labels = np.array([0, 0, 1, 1])
    # perfect neighbours, each query left out of its own list
    idx = np.array([[1, 2, 3], [0, 2, 3], [3, 0, 1], [2, 0, 1]])
    scores = np.tile(np.array([0.9, 0.5, 0.4], dtype=np.float32), (4, 1))
    r = evaluate_neighbours(
        labels, labels, Neighbours(idx, scores), class_names=["a", "b"], ks=(1,), exclude_self=True
    )
    assert r.metrics["r_precision"] == pytest.approx(1.0)
    assert r.metrics["mean_average_precision_at_r"] == pytest.approx(1.0)
    assert r.metrics["knn_accuracy@1"] == pytest.approx(1.0)
    assert required_depth(np.array([0, 0, 0, 1, 1]), 1, exclude_self=True) == 2
    assert required_depth(np.array([0, 0, 0, 1, 1]), 10) == 10


def test_evaluate_retrieval_end_to_end_with_ann_comparison():
    # references: class a near 0°, class b near 90°; queries: a, a, b, and a b-query near a
    refs = _angles(0, 10, 20, 80, 90, 100)
    ref_labels = np.array([0, 0, 0, 1, 1, 1])
    queries, q_labels = _angles(4, 16, 86, 30), np.array([0, 0, 1, 1])
    result = evaluate_retrieval(
        queries, q_labels, refs, ref_labels, class_names=["a", "b"], ks=(1, 3), clustering=False
    )
    assert result.info == {"queries": 4, "references": 6, "depth": 3}
    assert result.neighbours.indices.tolist() == [[0, 1, 2], [2, 1, 0], [4, 3, 5], [2, 1, 0]]
    assert result.metrics["precision_at_1"] == pytest.approx(3 / 4)
    assert result.metrics["knn_accuracy@1"] == pytest.approx(3 / 4)
    assert result.metrics["knn_accuracy@3"] == pytest.approx(3 / 4)
    assert result.predictions.tolist() == [0, 0, 1, 0]
    assert result.confusion["matrix"] == [[2, 0], [1, 1]]
    assert worst_queries(q_labels, result.predictions) == [3]
    assert result.ann is None and "index/precision_at_1" not in result.scalars()

    ann = Neighbours(result.neighbours.indices.copy(), result.neighbours.scores.copy())
    ann.indices[3] = [3, 2, 1]  # the index finds a b-neighbour first for the last query
    result = evaluate_retrieval(
        queries, q_labels, refs, ref_labels, class_names=["a", "b"], ks=(1, 3), ann=ann
    )
    assert result.ann_neighbours is ann
    assert result.ann["agreement"] == {"recall@3": pytest.approx(11 / 12), "top1_identical": 0.75}
    assert result.ann["metrics"]["precision_at_1"] == 1.0
    assert result.ann["delta"]["precision_at_1"] == pytest.approx(0.25)
    assert {"NMI", "AMI"} <= set(result.metrics)
    summary = result.summary()
    assert summary["ann"]["agreement"]["top1_identical"] == 0.75 and "per_class" in summary
    flat = result.scalars()
    assert flat["index/precision_at_1"] == 1.0 and flat["index/top1_identical"] == 0.75
    assert flat["index_minus_exact/precision_at_1"] == pytest.approx(0.25)
    assert (flat["queries"], flat["references"]) == (4, 6)


def test_exact_evaluation_equals_scoring_the_exact_neighbours():
    """The two entry points share one scoring: exact neighbours given, or found."""
    rng = np.random.default_rng(3)
    refs, queries = rng.normal(size=(30, 4)), rng.normal(size=(12, 4))
    r_labels, q_labels = rng.integers(0, 3, 30), rng.integers(0, 3, 12)
    found = evaluate_retrieval(
        queries, q_labels, refs, r_labels, class_names=NAMES, ks=(1, 5), clustering=False
    )
    given = evaluate_neighbours(q_labels, r_labels, found.neighbours, class_names=NAMES, ks=(1, 5))
    assert given.metrics == found.metrics
    assert given.predictions.tolist() == found.predictions.tolist()
    assert given.per_class == found.per_class
