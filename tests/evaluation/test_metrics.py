import numpy as np
import pytest

from embplat.evaluation.metrics import knn_metrics, knn_predictions, recall_at_k

NAMES = ["a", "b", "c"]


def _case():
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
    return query, reference, idx, scores


def test_metrics_match_hand_computed_values():
    query, reference, idx, scores = _case()
    m = knn_metrics(
        query_labels=query,
        reference_labels=reference,
        knn_indices=idx,
        knn_scores=scores,
        k=3,
        class_names=NAMES,
    )
    assert m["precision_at_1"] == pytest.approx(2 / 3)
    # R-precision: a: R=2, top2=[a,b] → 1/2; b: R=2, top2=[a,a] → 0; c: R=1 → 1
    assert m["r_precision"] == pytest.approx((0.5 + 0 + 1) / 3)
    # MAP@R: a: (1/1)/2 = 0.5 (rank 3 is beyond R=2); b: 0; c: 1
    assert m["mean_average_precision_at_r"] == pytest.approx((0.5 + 0 + 1) / 3)
    assert m["recall@1"] == pytest.approx(2 / 3)
    assert m["recall@5"] == pytest.approx(1.0)
    # 3-NN votes: a: [a,b,a] → a ✓; b: [a,a,b] → a ✗; c: [c,a,a] → a ✗
    assert m["accuracy"] == pytest.approx(1 / 3)
    assert m["confusion"]["labels"] == ["a", "b", "c"]
    assert m["confusion"]["matrix"] == [[1, 0, 0], [1, 0, 0], [1, 0, 0]]
    assert m["per_class"]["a"]["recall"] == pytest.approx(1.0)
    assert m["per_class"]["a"]["precision"] == pytest.approx(1 / 3)


def test_missing_neighbours_are_padding_not_matches():
    query, reference, idx, scores = _case()
    idx = idx.copy()
    idx[0, 0] = -1  # the first query's best neighbour is missing
    m = knn_metrics(
        query_labels=query,
        reference_labels=reference,
        knn_indices=idx,
        knn_scores=scores,
        k=3,
        class_names=NAMES,
    )
    assert m["precision_at_1"] == pytest.approx(1 / 3)


def test_recall_at_k_and_predictions():
    q = np.array([1, 2])
    labels = np.array([[0, 1, 1], [0, 0, 2]])
    assert recall_at_k(q, labels, [1, 2, 3]) == {"recall@1": 0.0, "recall@2": 0.5, "recall@3": 1.0}
    scores = np.ones_like(labels, dtype=np.float32)
    assert knn_predictions(labels, scores, 3).tolist() == [1, 0]
    assert knn_predictions(np.array([[-1, -1]]), np.zeros((1, 2)), 2).tolist() == [-1]


def test_leave_one_out_does_not_count_the_query_as_its_own_match():
    labels = np.array([0, 0, 1, 1])
    # perfect neighbours, each query left out of its own list
    idx = np.array([[1, 2, 3], [0, 2, 3], [3, 0, 1], [2, 0, 1]])
    scores = np.tile(np.array([0.9, 0.5, 0.4], dtype=np.float32), (4, 1))
    m = knn_metrics(
        query_labels=labels,
        reference_labels=labels,
        knn_indices=idx,
        knn_scores=scores,
        k=1,
        class_names=["a", "b"],
        exclude_self=True,
    )
    assert m["r_precision"] == pytest.approx(1.0)
    assert m["mean_average_precision_at_r"] == pytest.approx(1.0)
    assert m["accuracy"] == pytest.approx(1.0)
