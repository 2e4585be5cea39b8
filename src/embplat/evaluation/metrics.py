"""Retrieval, clustering and classification metrics over labels and neighbours (pure functions).

pytorch-metric-learning's ``AccuracyCalculator`` computes precision@1, R-precision and MAP@R
from neighbours already retrieved (through a ``knn_func`` that returns them), and NMI/AMI
with scikit-learn's k-means (its default needs faiss); scikit-learn gives the per-class
report and the confusion matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from embplat.retrieval.base import l2_normalize

if TYPE_CHECKING:
    import torch

    from embplat.evaluation.neighbours import Neighbours

PML_METRICS = ("precision_at_1", "r_precision", "mean_average_precision_at_r")


class PrecomputedKNN:
    """A pytorch-metric-learning ``knn_func`` answering from neighbours already retrieved."""

    def __init__(self, indices: np.ndarray, scores: np.ndarray):
        import torch

        self.indices = torch.as_tensor(indices, dtype=torch.long)
        self.scores = torch.as_tensor(scores, dtype=torch.float32)

    def __call__(
        self, query: torch.Tensor, k: int, reference: torch.Tensor, ref_includes_query: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(Q, k) similarities and reference positions; ``k`` is capped at what was retrieved."""
        k = min(k, self.indices.shape[1])
        return self.scores[:, :k].to(query.device), self.indices[:, :k].to(query.device)


def retrieval_metrics(
    query_labels: np.ndarray,
    reference_labels: np.ndarray,
    neighbours: Neighbours,
    *,
    exclude_self: bool = False,
) -> dict[str, float]:
    """precision@1, R-precision and MAP@R from precomputed neighbours (PML's definitions).

    With ``exclude_self`` the queries are the references and each class count excludes
    the query itself (PML's ``ref_includes_query``).
    """
    import torch
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    ref = np.append(np.asarray(reference_labels), -1)  # sentinel for missing neighbours
    idx = np.where(neighbours.indices < 0, len(ref) - 1, neighbours.indices)
    calc = AccuracyCalculator(
        include=PML_METRICS,
        k="max_bin_count",
        device=torch.device("cpu"),
        knn_func=PrecomputedKNN(idx, neighbours.scores),
    )
    q_labels = np.asarray(query_labels)
    # with exclude_self PML checks that the reference starts with the queries: it does
    dummy_q = np.zeros((len(q_labels), 1), dtype=np.float32)
    dummy_r = np.zeros((len(ref), 1), dtype=np.float32)
    out = calc.get_accuracy(dummy_q, q_labels, dummy_r, ref, ref_includes_query=exclude_self)
    return {name: float(value) for name, value in out.items()}


def recall_at_k(
    query_labels: np.ndarray, knn_labels: np.ndarray, ks: Sequence[int]
) -> dict[str, float]:
    """Fraction of queries with at least one same-class item among their first k neighbours.

    Args:
        query_labels: (Q,) int labels.
        knn_labels: (Q, K) labels of neighbours, best first (-1 marks padding).
        ks: the k of each ``recall@k``; those above K are left out.
    """
    hit = knn_labels == np.asarray(query_labels)[:, None]
    return {f"recall@{k}": float(hit[:, :k].any(axis=1).mean()) for k in ks if k <= hit.shape[1]}


class SklearnKMeans:
    """A PML ``kmeans_func`` on scikit-learn (PML's default needs faiss)."""

    def __init__(self, seed: int = 0):
        self.seed = seed

    def __call__(self, x: torch.Tensor, n_clusters: int) -> np.ndarray:
        """(N, D) vectors → (N,) cluster ids."""
        from sklearn.cluster import KMeans

        data = x.detach().cpu().numpy().astype(np.float32)
        return KMeans(n_clusters=n_clusters, n_init=3, random_state=self.seed).fit_predict(data)


def _no_knn(*args: Any) -> tuple[torch.Tensor, torch.Tensor]:
    raise AssertionError("clustering metrics need no neighbours")


def clustering_metrics(
    vectors: np.ndarray, labels: np.ndarray, *, seed: int = 0
) -> dict[str, float]:
    """NMI and AMI of k-means (k = number of classes) over (N, D) embeddings."""
    import torch
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    calc = AccuracyCalculator(
        include=("NMI", "AMI"),
        device=torch.device("cpu"),
        kmeans_func=SklearnKMeans(seed),
        knn_func=_no_knn,  # PML builds a faiss kNN at construction when none is given
    )
    unit = l2_normalize(np.asarray(vectors, dtype=np.float32))
    out = calc.get_accuracy(unit, np.asarray(labels))
    return {name: float(value) for name, value in out.items()}


def confusion(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[int]) -> np.ndarray:
    """(L, L) counts over ``labels``: rows true label, columns predicted label."""
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(np.asarray(y_true), np.asarray(y_pred), labels=list(labels))


def classification_tables(
    query_labels: np.ndarray, predictions: np.ndarray, class_names: Sequence[str]
) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """Per-class precision/recall/F1/support and the confusion matrix (true rows, predicted
    columns) over the classes that occur as truth or prediction (-1: no prediction)."""
    from sklearn.metrics import classification_report

    present = sorted(set(query_labels.tolist()) | set(predictions[predictions >= 0].tolist()))
    names = [class_names[i] for i in present]
    report = classification_report(
        query_labels,
        predictions,
        labels=present,
        target_names=names,
        output_dict=True,
        zero_division=0,
    )
    matrix = confusion(query_labels, predictions, present).tolist()
    return {n: report[n] for n in names}, {"labels": names, "matrix": matrix}
