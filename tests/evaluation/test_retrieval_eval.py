import math

import numpy as np
import pytest

from embplat.errors import ConfigError
from embplat.evaluation.neighbours import Neighbours, ann_agreement, exact_knn, index_neighbours
from embplat.evaluation.open_set import (
    accuracy_coverage_curve,
    open_set_decision,
    per_class_precision_at_1,
    precision_drop,
)
from embplat.evaluation.retrieval_eval import (
    classification_tables,
    clustering_metrics,
    evaluate_retrieval,
    required_depth,
    retrieval_metrics,
    votes,
    worst_queries,
)
from embplat.retrieval.exact import ExactIndex


def _angles(*degrees: float) -> np.ndarray:
    rad = np.radians(degrees)
    return np.stack([np.cos(rad), np.sin(rad)], axis=1).astype(np.float32)


def test_exact_knn_in_small_blocks_matches_a_full_sort():
    rng = np.random.default_rng(0)
    queries, refs = rng.normal(size=(7, 5)), rng.normal(size=(23, 5))
    nb = exact_knn(queries, refs, 6, chunk=3, ref_chunk=4)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    r = refs / np.linalg.norm(refs, axis=1, keepdims=True)
    full = q @ r.T
    expected = np.argsort(-full, axis=1)[:, :6]
    assert np.array_equal(nb.indices, expected)
    assert np.allclose(nb.scores, np.take_along_axis(full, expected, axis=1), atol=1e-6)


def test_exact_knn_ties_padding_and_leave_one_out():
    refs = _angles(0, 90, 0, 30)  # references 0 and 2 are identical
    nb = exact_knn(_angles(10), refs, 6, ref_chunk=2)
    assert nb.indices.tolist() == [[0, 2, 3, 1, -1, -1]]  # tie → lower position first
    assert nb.scores[0, :4] == pytest.approx(np.cos(np.radians([10, 10, 20, 80])), abs=1e-6)
    assert nb.scores[0, 4:].tolist() == [0.0, 0.0]
    own = exact_knn(refs, refs, 2, exclude_self=True, chunk=3, ref_chunk=2)
    # 0 and 2 are each other's nearest; nobody finds itself
    assert own.indices.tolist() == [[2, 3], [3, 0], [0, 3], [0, 2]]
    assert own.scores[:, 0] == pytest.approx([1.0, 0.5, 1.0, math.cos(math.radians(30))])


def test_index_neighbours_map_hits_and_leave_the_query_out(tmp_path):
    index = ExactIndex("t", 2)
    refs = _angles(0, 30, 90)
    ids = ["a", "b", "c"]
    index.upsert(ids, refs, [{"kind": "image"}] * 3)
    nb = index_neighbours(index, refs, ids, 2, query_ids=ids, chunk=2)
    assert nb.indices.tolist() == [[1, 2], [0, 2], [1, 0]]
    assert nb.scores[0] == pytest.approx([math.cos(math.radians(30)), 0.0], abs=1e-6)
    only_ab = index_neighbours(index, _angles(80), ["a", "b"], 3)
    assert only_ab.indices.tolist() == [[-1, 1, 0]]  # "c" is not a reference


# Leave-one-out case: labels a a a b b; neighbours given (self already excluded).
LOO_LABELS = np.array([0, 0, 0, 1, 1])
LOO = Neighbours(
    np.array([[3, 1, 2, 4], [0, 2, 3, 4], [3, 4, 0, 1], [4, 0, 1, 2], [0, 3, 1, 2]]),
    np.tile(np.linspace(0.9, 0.6, 4), (5, 1)).astype(np.float32),
)


def test_retrieval_metrics_leave_one_out_use_class_sizes_without_the_query():
    m = retrieval_metrics(LOO_LABELS, LOO_LABELS, LOO, exclude_self=True)
    # R is 2 for a (3 minus itself) and 1 for b.
    # q0 [b a ..]: RP 1/2, AP@R (0 + 1/2)/2; q1 [a a]: 1, 1; q2 [b b]: 0, 0;
    # q3 [b]: 1, 1; q4 [a]: 0, 0
    assert m["precision_at_1"] == pytest.approx(2 / 5)
    assert m["r_precision"] == pytest.approx((0.5 + 1 + 0 + 1 + 0) / 5)
    assert m["mean_average_precision_at_r"] == pytest.approx((0.25 + 1 + 0 + 1 + 0) / 5)
    assert required_depth(LOO_LABELS, 1, exclude_self=True) == 2
    assert required_depth(LOO_LABELS, 10) == 10


def test_retrieval_metrics_with_separate_references_and_missing_neighbours():
    reference = np.array([0, 0, 1, 1, 2])
    nb = Neighbours(
        np.array([[0, 2, 1], [-1, 2, 3], [4, 0, 1]]), np.full((3, 3), 0.5, dtype=np.float32)
    )
    m = retrieval_metrics(np.array([0, 1, 2]), reference, nb)
    # q0: [a b]: RP 1/2, AP@R 1/2; q1: [- b]: RP 1/2, AP@R (1/2)/2; q2 (R=1): 1, 1
    assert m["precision_at_1"] == pytest.approx(2 / 3)
    assert m["r_precision"] == pytest.approx((0.5 + 0.5 + 1) / 3)
    assert m["mean_average_precision_at_r"] == pytest.approx((0.5 + 0.25 + 1) / 3)


def test_votes_shares_and_tables():
    knn_labels = np.array([[0, 1, 1], [2, 0, 1], [-1, -1, -1]])
    scores = np.array([[0.9, 0.8, 0.7], [0.9, 0.8, 0.7], [0, 0, 0]], dtype=np.float32)
    pred, share = votes(knn_labels, scores, 3)
    # q1: three-way tie on count and similarity order → nearest first (2)
    assert pred.tolist() == [1, 2, -1]
    assert share.tolist() == pytest.approx([2 / 3, 1 / 3, 0.0])
    assert votes(knn_labels, scores, 1)[0].tolist() == [0, 2, -1]
    per_class, confusion = classification_tables(np.array([1, 0, 0]), pred, ["a", "b", "c"])
    assert confusion == {"labels": ["a", "b", "c"], "matrix": [[0, 0, 1], [0, 1, 0], [0, 0, 0]]}
    assert per_class["b"]["precision"] == 1.0 and per_class["a"]["recall"] == 0.0


def test_clustering_metrics_against_the_entropy_formula():
    separated = _angles(0, 5, 90, 95)
    labels = np.array([0, 0, 1, 1])
    assert clustering_metrics(separated, labels) == pytest.approx({"NMI": 1.0, "AMI": 1.0})
    # k-means (k=2) must split {0°, 8°, 12°} from {90°}: clusters (0,0,0,1) vs labels (0,0,1,1)
    m = clustering_metrics(_angles(0, 8, 12, 90), labels)
    h_y = math.log(2)
    h_c = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    h_y_given_c = 0.75 * -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    mutual = h_y - h_y_given_c
    assert m["NMI"] == pytest.approx(mutual / ((h_y + h_c) / 2))
    assert m["AMI"] < m["NMI"]


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

    ann = Neighbours(result.neighbours.indices.copy(), result.neighbours.scores.copy())
    ann.indices[3] = [3, 2, 1]  # the index finds a b-neighbour first for the last query
    result = evaluate_retrieval(
        queries, q_labels, refs, ref_labels, class_names=["a", "b"], ks=(1, 3), ann=ann
    )
    assert result.ann["agreement"] == {"recall@3": pytest.approx(11 / 12), "top1_identical": 0.75}
    assert result.ann["metrics"]["precision_at_1"] == 1.0
    assert result.ann["delta"]["precision_at_1"] == pytest.approx(0.25)
    assert {"NMI", "AMI"} <= set(result.metrics)
    summary = result.summary()
    assert summary["ann"]["agreement"]["top1_identical"] == 0.75 and "per_class" in summary


def test_ann_agreement_ignores_missing_exact_neighbours():
    exact = Neighbours(np.array([[0, 1, -1], [2, 0, 1]]), np.zeros((2, 3)))
    ann = Neighbours(np.array([[1, 0, 2], [2, 1, 3]]), np.zeros((2, 3)))
    # q0: {0,1} ⊂ ann → 1; q1: {2,0,1} ∩ {2,1,3} = 2/3
    assert ann_agreement(exact, ann, k=3) == {
        "recall@3": pytest.approx(5 / 6),
        "top1_identical": 0.5,
    }


def test_open_set_decision():
    assert open_set_decision(0.6, 0.2, 0.5) is True
    assert open_set_decision(0.4, 0.9, 0.5) is False
    assert open_set_decision(0.4, 0.9, 0.5, on="score") is True
    assert open_set_decision(0.0, 0.0, None) is True
    with pytest.raises(ConfigError, match="share, score"):
        open_set_decision(0.5, 0.5, 0.1, on="margin")


def test_accuracy_coverage_curve_by_hand():
    truth = np.array([0, 0, 1, 1, 2, 2])  # class 2 is unseen: always mispredicted
    pred = np.array([0, 1, 1, 1, 0, 1])
    conf = np.array([0.9, 0.5, 0.8, 0.6, 0.4, 0.7])
    unseen = truth == 2
    curve = accuracy_coverage_curve(truth, pred, conf, unseen, thresholds=[0.0, 0.65, 0.95])
    assert curve[0] == {
        "threshold": 0.0,
        "coverage": 1.0,
        "accuracy": 0.75,  # 3 of the 4 seen queries right
        "unknown_rate": 0.0,
        "open_set_accuracy": 0.5,
    }
    # ≥ 0.65 accepts seen 0.9 ✓, 0.8 ✓ and unseen 0.7; rejects unseen 0.4
    assert curve[1] == {
        "threshold": 0.65,
        "coverage": 0.5,
        "accuracy": 1.0,
        "unknown_rate": 0.5,
        "open_set_accuracy": pytest.approx(3 / 6),
    }
    assert curve[2]["coverage"] == 0.0 and curve[2]["accuracy"] is None
    assert curve[2]["unknown_rate"] == 1.0
    default = accuracy_coverage_curve(truth, pred, conf, unseen)
    assert [row["threshold"] for row in default] == pytest.approx(sorted(conf))


def test_per_class_precision_and_unseen_drop():
    names = ["a", "b", "c"]
    base = per_class_precision_at_1(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]), names)
    assert base == {"a": 0.5, "b": 1.0, "c": 1.0}
    held = {"a": 0.5, "b": 0.5, "c": 0.25}
    drop = precision_drop(base, held, ["c"])
    assert drop["per_class"]["c"] == {
        "all_classes": 1.0,
        "without_unseen": 0.25,
        "drop": 0.75,
        "unseen": True,
    }
    assert drop["mean_drop_unseen"] == 0.75
    assert drop["mean_drop_seen"] == 0.25
    assert drop["mean_drop_all"] == pytest.approx((0 + 0.5 + 0.75) / 3)
    with pytest.raises(ConfigError, match="zebra"):
        precision_drop(base, held, ["zebra"])
