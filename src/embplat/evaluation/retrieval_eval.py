"""Evaluate query vectors against reference vectors: exact kNN, ANN agreement, clustering.

Exact neighbours are computed in numpy, chunked over queries and references so a large
split never builds a full (Q, R) similarity matrix. ANN neighbours (as returned by the
platform's index) are evaluated with the same code and compared with the exact ones.
pytorch-metric-learning's ``AccuracyCalculator`` gives precision@1, R-precision, MAP@R,
NMI and AMI; its default k-means needs faiss, so scikit-learn's KMeans is passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from sklearn.cluster import KMeans
from sklearn.metrics import classification_report, confusion_matrix

from embplat.evaluation.metrics import PML_METRICS, PrecomputedKNN
from embplat.evaluation.neighbours import Neighbours, ann_agreement, exact_knn, unit_rows
from embplat.retrieval.knn import knn_vote


@dataclass
class RetrievalEvaluation:
    """Everything one evaluation produced; :meth:`summary` is the JSON-ready part."""

    metrics: dict[str, float]
    per_class: dict[str, dict[str, float]]
    confusion: dict[str, Any]
    predictions: np.ndarray
    vote_share: np.ndarray
    neighbours: Neighbours
    ann: dict[str, Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Scalars, per-class table, confusion and ANN comparison (no arrays)."""
        out = {**self.info, "metrics": self.metrics, "per_class": self.per_class}
        out["confusion"] = self.confusion
        if self.ann is not None:
            out["ann"] = self.ann
        return out


def required_depth(reference_labels: np.ndarray, k: int, *, exclude_self: bool = False) -> int:
    """Neighbours needed for MAP@R and R-precision (the largest class) and a k-vote."""
    largest = int(np.bincount(np.asarray(reference_labels)).max()) - int(exclude_self)
    return max(k, largest, 1)


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


class SklearnKMeans:
    """A PML ``kmeans_func`` on scikit-learn (PML's default needs faiss)."""

    def __init__(self, seed: int = 0):
        self.seed = seed

    def __call__(self, x: torch.Tensor, n_clusters: int) -> np.ndarray:
        """(N, D) vectors → (N,) cluster ids."""
        data = x.detach().cpu().numpy().astype(np.float32)
        return KMeans(n_clusters=n_clusters, n_init=3, random_state=self.seed).fit_predict(data)


def _no_knn(*args: Any) -> tuple[torch.Tensor, torch.Tensor]:
    raise AssertionError("clustering metrics need no neighbours")


def clustering_metrics(
    vectors: np.ndarray, labels: np.ndarray, *, seed: int = 0
) -> dict[str, float]:
    """NMI and AMI of k-means (k = number of classes) over the queries' embeddings."""
    calc = AccuracyCalculator(
        include=("NMI", "AMI"),
        device=torch.device("cpu"),
        kmeans_func=SklearnKMeans(seed),
        knn_func=_no_knn,  # PML builds a faiss kNN at construction when none is given
    )
    out = calc.get_accuracy(unit_rows(vectors), np.asarray(labels))
    return {name: float(value) for name, value in out.items()}


def votes(
    knn_labels: np.ndarray, knn_scores: np.ndarray, k: int, *, weighted: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(Q,) majority-vote labels over the first ``k`` neighbours (-1 = none) and vote shares."""
    pred = np.full(len(knn_labels), -1, dtype=np.int64)
    share = np.zeros(len(knn_labels), dtype=np.float32)
    for q, (labels, scores) in enumerate(zip(knn_labels[:, :k], knn_scores[:, :k], strict=True)):
        valid = labels >= 0
        if valid.any():
            vote = knn_vote(
                [str(x) for x in labels[valid]], scores[valid].tolist(), weighted=weighted
            )
            pred[q], share[q] = int(vote.label), vote.confidence
    return pred, share


def classification_tables(
    query_labels: np.ndarray, predictions: np.ndarray, class_names: Sequence[str]
) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """Per-class precision/recall/F1/support and the confusion matrix (true rows, predicted
    columns) over the classes that occur as truth or prediction."""
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
    matrix = confusion_matrix(query_labels, predictions, labels=present).tolist()
    return {n: report[n] for n in names}, {"labels": names, "matrix": matrix}


def neighbour_metrics(
    query_labels: np.ndarray,
    reference_labels: np.ndarray,
    nb: Neighbours,
    *,
    ks: Sequence[int] = (1, 10),
    exclude_self: bool = False,
    weighted: bool = False,
) -> dict[str, float]:
    """Retrieval metrics plus kNN vote accuracy at each k in ``ks``."""
    out = retrieval_metrics(query_labels, reference_labels, nb, exclude_self=exclude_self)
    knn_labels = nb.labels(reference_labels)
    for k in ks:
        pred, _ = votes(knn_labels, nb.scores, k, weighted=weighted)
        out[f"knn_accuracy@{k}"] = float((pred == query_labels).mean()) if len(pred) else 0.0
    return out


def evaluate_retrieval(
    query_vectors: np.ndarray,
    query_labels: np.ndarray,
    reference_vectors: np.ndarray,
    reference_labels: np.ndarray,
    *,
    class_names: Sequence[str],
    ks: Sequence[int] = (1, 10),
    ann: Neighbours | None = None,
    exclude_self: bool = False,
    weighted: bool = False,
    clustering: bool = True,
    chunk: int = 1024,
    seed: int = 0,
) -> RetrievalEvaluation:
    """Full evaluation of queries (Q, D) against references (R, D) with exact search.

    Args:
        class_names: name of each int label.
        ks: vote sizes; the last one gives ``predictions``, the per-class table and confusion.
        ann: neighbours from the index (same reference positions), compared with exact.
        exclude_self: queries are the references (leave-one-out).
    """
    q_labels, r_labels = np.asarray(query_labels), np.asarray(reference_labels)
    depth = required_depth(r_labels, max(ks), exclude_self=exclude_self)
    nb = exact_knn(query_vectors, reference_vectors, depth, exclude_self=exclude_self, chunk=chunk)
    metrics = neighbour_metrics(
        q_labels, r_labels, nb, ks=ks, exclude_self=exclude_self, weighted=weighted
    )
    if clustering and len(np.unique(q_labels)) > 1:
        metrics.update(clustering_metrics(query_vectors, q_labels, seed=seed))
    pred, share = votes(nb.labels(r_labels), nb.scores, max(ks), weighted=weighted)
    per_class, confusion = classification_tables(q_labels, pred, class_names)
    result = RetrievalEvaluation(
        metrics=metrics,
        per_class=per_class,
        confusion=confusion,
        predictions=pred,
        vote_share=share,
        neighbours=nb,
        info={"queries": len(q_labels), "references": len(r_labels), "depth": depth},
    )
    if ann is not None:
        ann_metrics = neighbour_metrics(
            q_labels, r_labels, ann, ks=ks, exclude_self=exclude_self, weighted=weighted
        )
        result.ann = {
            "metrics": ann_metrics,
            "agreement": ann_agreement(nb, ann, k=max(ks)),
            "delta": {n: v - metrics[n] for n, v in ann_metrics.items()},
        }
    return result


def worst_queries(
    query_labels: np.ndarray,
    predictions: np.ndarray,
    *,
    classes: int = 3,
    per_class: int = 4,
) -> list[int]:
    """Positions of misclassified queries of the ``classes`` classes with the lowest recall.

    Classes are ranked by recall, then by name order (label); queries keep their order.
    """
    labels = np.asarray(query_labels)
    wrong = predictions != labels
    ranked = sorted(np.unique(labels), key=lambda c: (1 - wrong[labels == c].mean(), c))
    out: list[int] = []
    for c in ranked[:classes]:
        out.extend(np.flatnonzero(wrong & (labels == c))[:per_class].tolist())
    return out


def describe_queries(
    result: RetrievalEvaluation,
    positions: Sequence[int],
    *,
    query_labels: np.ndarray,
    reference_labels: np.ndarray,
    query_paths: Sequence[str],
    reference_paths: Sequence[str],
    class_names: Sequence[str],
    k: int = 10,
) -> list[dict[str, Any]]:
    """The report's ``worst`` entries for the queries at ``positions``: query path, true
    and predicted class, the ``k`` nearest references (path, class, score) and the vote
    count per class among them."""
    knn_labels = result.neighbours.labels(reference_labels)
    cases = []
    for q in positions:
        idx, labels = result.neighbours.indices[q, :k], knn_labels[q, :k]
        found = idx >= 0
        scores = result.neighbours.scores[q, :k][found]
        classes, counts = np.unique(labels[found], return_counts=True)
        pred = int(result.predictions[q])
        cases.append(
            {
                "query": str(query_paths[q]),
                "true": class_names[int(query_labels[q])],
                "predicted": class_names[pred] if pred >= 0 else "none",
                "neighbours": [
                    (str(reference_paths[i]), class_names[c], float(s))
                    for i, c, s in zip(idx[found], labels[found], scores, strict=True)
                ],
                "vote": {class_names[c]: int(n) for c, n in zip(classes, counts, strict=True)},
            }
        )
    return cases
