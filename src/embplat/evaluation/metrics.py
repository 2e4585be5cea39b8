"""Retrieval and kNN-classification metrics over precomputed neighbours (pure functions).

The neighbours come from the platform's real index; pytorch-metric-learning's
``AccuracyCalculator`` computes precision@1, R-precision and MAP@R from them through a
``knn_func`` that returns those neighbours, and scikit-learn gives the per-class report.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from sklearn.metrics import classification_report, confusion_matrix

from embplat.retrieval.knn import knn_vote

PML_METRICS = ("precision_at_1", "r_precision", "mean_average_precision_at_r")


class PrecomputedKNN:
    """A pytorch-metric-learning ``knn_func`` answering from neighbours already retrieved."""

    def __init__(self, indices: np.ndarray, scores: np.ndarray):
        self.indices = torch.as_tensor(indices, dtype=torch.long)
        self.scores = torch.as_tensor(scores, dtype=torch.float32)

    def __call__(
        self, query: torch.Tensor, k: int, reference: torch.Tensor, ref_includes_query: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(Q, k) similarities and reference positions; ``k`` is capped at what was retrieved."""
        k = min(k, self.indices.shape[1])
        return self.scores[:, :k].to(query.device), self.indices[:, :k].to(query.device)


def recall_at_k(query_labels: np.ndarray, knn_labels: np.ndarray, ks: Sequence[int]) -> dict:
    """Fraction of queries with at least one same-class item among their first k neighbours.

    Args:
        query_labels: (Q,) int labels.
        knn_labels: (Q, K) labels of neighbours, best first (-1 marks padding).
    """
    hit = knn_labels == query_labels[:, None]
    return {f"recall@{k}": float(hit[:, :k].any(axis=1).mean()) for k in ks if k <= hit.shape[1]}


def knn_predictions(
    knn_labels: np.ndarray, knn_scores: np.ndarray, k: int, *, weighted: bool = False
) -> np.ndarray:
    """(Q,) majority-vote label over the first ``k`` neighbours of each query (-1 = none)."""
    out = np.full(len(knn_labels), -1, dtype=np.int64)
    for q, (labels, scores) in enumerate(zip(knn_labels[:, :k], knn_scores[:, :k], strict=True)):
        valid = labels >= 0
        if valid.any():
            vote = knn_vote(
                [str(x) for x in labels[valid]], scores[valid].tolist(), weighted=weighted
            )
            out[q] = int(vote.label)
    return out


def knn_metrics(
    *,
    query_labels: np.ndarray,
    reference_labels: np.ndarray,
    knn_indices: np.ndarray,
    knn_scores: np.ndarray,
    k: int,
    class_names: Sequence[str],
    weighted: bool = False,
    exclude_self: bool = False,
) -> dict[str, Any]:
    """All metrics for one evaluation.

    Args:
        query_labels: (Q,) int labels of the queries.
        reference_labels: (R,) int labels of the searchable items.
        knn_indices: (Q, K) positions into the reference, best first; -1 = no neighbour.
            K must be at least the largest class count (for MAP@R) and at least ``k``.
        knn_scores: (Q, K) cosine similarities.
        k: neighbours in the majority vote.
        class_names: name of each int label.
        exclude_self: queries are the reference itself, in the same order, and the
            neighbours already leave each query out (leave-one-out): R counts one match less.

    Returns:
        Dict with accuracy, precision_at_1, r_precision, mean_average_precision_at_r,
        recall@1/5/10/k, a per-class report and a confusion matrix.
    """
    ref = np.append(reference_labels, -1)  # sentinel for padded (missing) neighbours
    idx = np.where(knn_indices < 0, len(ref) - 1, knn_indices)
    knn_labels = ref[idx]
    calc = AccuracyCalculator(
        include=PML_METRICS,
        k="max_bin_count",
        device=torch.device("cpu"),
        knn_func=PrecomputedKNN(idx, knn_scores),
    )
    dummy_q = np.zeros((len(query_labels), 1), dtype=np.float32)
    dummy_r = np.zeros((len(ref), 1), dtype=np.float32)
    pml = calc.get_accuracy(dummy_q, query_labels, dummy_r, ref, ref_includes_query=exclude_self)
    pred = knn_predictions(knn_labels, knn_scores, k, weighted=weighted)
    present = sorted(set(query_labels.tolist()) | set(pred[pred >= 0].tolist()))
    names = [class_names[i] for i in present]
    report = classification_report(
        query_labels, pred, labels=present, target_names=names, output_dict=True, zero_division=0
    )
    return {
        "queries": len(query_labels),
        "references": len(reference_labels),
        "k": k,
        "accuracy": float((pred == query_labels).mean()) if len(pred) else 0.0,
        **{m: float(v) for m, v in pml.items()},
        **recall_at_k(query_labels, knn_labels, sorted({1, 5, 10, k})),
        "per_class": {n: report[n] for n in names},
        "confusion": {
            "labels": names,
            "matrix": confusion_matrix(query_labels, pred, labels=present).tolist(),
        },
    }
