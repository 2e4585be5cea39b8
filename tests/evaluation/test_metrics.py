"""Retrieval (PML), clustering and classification metrics on hand-made labels and neighbours."""

import math

import numpy as np
import pytest

from embplat.evaluation.metrics import (
    classification_tables,
    clustering_metrics,
    confusion,
    recall_at_k,
    retrieval_metrics,
)
from embplat.evaluation.neighbours import Neighbours


def _angles(*degrees: float) -> np.ndarray:
    rad = np.radians(degrees)
    return np.stack([np.cos(rad), np.sin(rad)], axis=1).astype(np.float32)


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


def test_recall_at_k_skips_ks_beyond_the_neighbours():
    q = np.array([1, 2])
    labels = np.array([[0, 1, 1], [0, 0, 2]])
    assert recall_at_k(q, labels, [1, 2, 3, 10]) == {
        "recall@1": 0.0,
        "recall@2": 0.5,
        "recall@3": 1.0,
    }
    assert recall_at_k(np.array([0]), np.array([[-1, -1]]), [1])["recall@1"] == 0.0


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


def test_confusion_counts_rows_true_columns_predicted():
    m = confusion(np.array([0, 1, 2, 2]), np.array([0, 1, 1, 2]), range(3))
    assert m.tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    # labels outside the list (-1: no prediction) are not counted
    assert confusion(np.array([0, 1]), np.array([-1, 1]), [0, 1]).tolist() == [[0, 0], [0, 1]]


def test_classification_tables_over_present_classes():
    pred = np.array([1, 2, -1])
    per_class, table = classification_tables(np.array([1, 0, 0]), pred, ["a", "b", "c"])
    assert table == {"labels": ["a", "b", "c"], "matrix": [[0, 0, 1], [0, 1, 0], [0, 0, 0]]}
    assert per_class["b"]["precision"] == 1.0 and per_class["a"]["recall"] == 0.0
    assert per_class["a"]["support"] == 2 and set(per_class) == {"a", "b", "c"}
