"""Evaluate queries against references from their neighbours: kNN votes, retrieval metrics,
per-class tables, and the agreement of an index's (approximate) neighbours with exact ones.

:func:`evaluate_neighbours` scores neighbours however they were found (the platform's
index); :func:`evaluate_retrieval` finds them exactly first and can compare an index's
neighbours with them. Both give one :class:`RetrievalEvaluation`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from embplat.evaluation.metrics import classification_tables, clustering_metrics, retrieval_metrics
from embplat.evaluation.neighbours import Neighbours, ann_agreement, exact_knn
from embplat.retrieval.knn import knn_votes


@dataclass
class RetrievalEvaluation:
    """Everything one evaluation produced; :meth:`summary` is the JSON-ready part.

    ``neighbours`` are those the metrics come from (exact with :func:`evaluate_retrieval`);
    ``ann`` compares an index's neighbours (``ann_neighbours``) with them.
    """

    metrics: dict[str, float]
    per_class: dict[str, dict[str, float]]
    confusion: dict[str, Any]
    predictions: np.ndarray
    vote_share: np.ndarray
    neighbours: Neighbours
    ann: dict[str, Any] | None = None
    ann_neighbours: Neighbours | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Scalars, per-class table, confusion and ANN comparison (no arrays)."""
        out = {**self.info, "metrics": self.metrics, "per_class": self.per_class}
        out["confusion"] = self.confusion
        if self.ann is not None:
            out["ann"] = self.ann
        return out

    def scalars(self) -> dict[str, float]:
        """Flat ``name -> value``: the metrics as they are, the index's as ``index/<name>``,
        its difference as ``index_minus_exact/<name>``, and its agreement with exact search
        (``index/recall@k``, ``index/top1_identical``); ``queries`` and ``references``."""
        out = {k: float(v) for k, v in self.metrics.items()}
        if self.ann is not None:
            out.update({f"index/{k}": float(v) for k, v in self.ann["metrics"].items()})
            out.update({f"index_minus_exact/{k}": float(v) for k, v in self.ann["delta"].items()})
            out.update({f"index/{k}": float(v) for k, v in self.ann["agreement"].items()})
        out["queries"], out["references"] = self.info["queries"], self.info["references"]
        return out


def required_depth(reference_labels: np.ndarray, k: int, *, exclude_self: bool = False) -> int:
    """Neighbours needed for MAP@R and R-precision (the largest class) and a k-vote."""
    largest = int(np.bincount(np.asarray(reference_labels)).max()) - int(exclude_self)
    return max(k, largest, 1)


def neighbour_metrics(
    query_labels: np.ndarray,
    reference_labels: np.ndarray,
    nb: Neighbours,
    *,
    ks: Sequence[int] = (1, 10),
    exclude_self: bool = False,
    weighted: bool = False,
) -> dict[str, float]:
    """Retrieval metrics plus kNN vote accuracy at each k in ``ks`` (``knn_accuracy@k``)."""
    out = retrieval_metrics(query_labels, reference_labels, nb, exclude_self=exclude_self)
    knn_labels = nb.labels(reference_labels)
    for k in ks:
        pred, _ = knn_votes(knn_labels, nb.scores, k, weighted=weighted)
        out[f"knn_accuracy@{k}"] = float((pred == query_labels).mean()) if len(pred) else 0.0
    return out


def evaluate_neighbours(
    query_labels: np.ndarray,
    reference_labels: np.ndarray,
    neighbours: Neighbours,
    *,
    class_names: Sequence[str],
    ks: Sequence[int] = (1, 10),
    exclude_self: bool = False,
    weighted: bool = False,
) -> RetrievalEvaluation:
    """Metrics of queries from their (Q, K) neighbours among labelled references.

    Args:
        class_names: name of each int label.
        ks: vote sizes; the largest gives ``predictions``, the per-class table and confusion.
        exclude_self: queries are the references (leave-one-out), each left out of its
            own neighbours already.
    """
    q_labels, r_labels = np.asarray(query_labels), np.asarray(reference_labels)
    metrics = neighbour_metrics(
        q_labels, r_labels, neighbours, ks=ks, exclude_self=exclude_self, weighted=weighted
    )
    pred, share = knn_votes(
        neighbours.labels(r_labels), neighbours.scores, max(ks), weighted=weighted
    )
    per_class, confusion = classification_tables(q_labels, pred, class_names)
    return RetrievalEvaluation(
        metrics=metrics,
        per_class=per_class,
        confusion=confusion,
        predictions=pred,
        vote_share=share,
        neighbours=neighbours,
        info={
            "queries": len(q_labels),
            "references": len(r_labels),
            "depth": neighbours.indices.shape[1],
        },
    )


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
    seed: int = 0,
) -> RetrievalEvaluation:
    """Full evaluation of queries (Q, D) against references (R, D) with exact search.

    Args:
        class_names: name of each int label.
        ks: vote sizes; the largest gives ``predictions``, the per-class table and confusion.
        ann: neighbours from the index (same reference positions), compared with exact.
        exclude_self: queries are the references (leave-one-out).
        clustering: also NMI and AMI of k-means over the queries (two classes or more).
    """
    q_labels, r_labels = np.asarray(query_labels), np.asarray(reference_labels)
    depth = required_depth(r_labels, max(ks), exclude_self=exclude_self)
    nb = exact_knn(query_vectors, reference_vectors, depth, exclude_self=exclude_self)
    result = evaluate_neighbours(
        q_labels,
        r_labels,
        nb,
        class_names=class_names,
        ks=ks,
        exclude_self=exclude_self,
        weighted=weighted,
    )
    if clustering and len(np.unique(q_labels)) > 1:
        result.metrics.update(clustering_metrics(query_vectors, q_labels, seed=seed))
    if ann is not None:
        ann_metrics = neighbour_metrics(
            q_labels, r_labels, ann, ks=ks, exclude_self=exclude_self, weighted=weighted
        )
        result.ann_neighbours = ann
        result.ann = {
            "metrics": ann_metrics,
            "agreement": ann_agreement(nb, ann, k=max(ks)),
            "delta": {n: v - result.metrics[n] for n, v in ann_metrics.items()},
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
