"""Unseen classes: open-set rejection, its accuracy/coverage trade-off, and the seen/unseen drop.

Open set: a kNN prediction is answered ``unknown`` when the winning class's vote share, or
the nearest neighbour's similarity, is below a threshold. Sweeping the threshold over
queries of seen classes (which should be accepted and classified) and of unseen classes
(whose right answer is ``unknown``) gives the accuracy/coverage curve: ``open_set_curve``
adds never-enrolled images to an evaluation's queries; ``open_set_without`` is the
unseen-class experiment's view of a model trained without some classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from embplat.errors import ConfigError
from embplat.evaluation.neighbours import exact_knn
from embplat.retrieval.knn import knn_votes

if TYPE_CHECKING:
    from embplat.evaluation.retrieval_eval import RetrievalEvaluation
    from embplat.evaluation.vectors import SplitVectors

REJECT_ON = ("share", "score")


def open_set_decision(
    vote_share: float, top_score: float, reject_below: float | None, *, on: str = "share"
) -> bool:
    """True when the prediction stands, False when it must be answered ``unknown``.

    Args:
        vote_share: the winning class's share of the vote, in [0, 1].
        top_score: cosine similarity of the nearest neighbour.
        reject_below: threshold; None accepts everything.
        on: ``share`` or ``score``: which of the two is compared.

    Raises:
        ConfigError: ``on`` is neither ``share`` nor ``score``.
    """
    if on not in REJECT_ON:
        raise ConfigError(f"--reject-on must be one of {', '.join(REJECT_ON)}, got {on!r}")
    if reject_below is None:
        return True
    return (vote_share if on == "share" else top_score) >= reject_below


def _thresholds(confidence: np.ndarray, most: int) -> np.ndarray:
    values = np.unique(confidence)
    if len(values) > most:
        values = np.unique(np.quantile(confidence, np.linspace(0.0, 1.0, most)))
    return values


def accuracy_coverage_curve(
    true_labels: np.ndarray,
    predictions: np.ndarray,
    confidence: np.ndarray,
    unseen: np.ndarray,
    *,
    thresholds: Sequence[float] | None = None,
    most: int = 50,
) -> list[dict[str, Any]]:
    """Open-set trade-off: for each threshold, what is accepted and how well.

    Args:
        true_labels: (Q,) int labels.
        predictions: (Q,) predicted labels (unseen queries are always predicted wrong).
        confidence: (Q,) vote share or top score of each prediction.
        unseen: (Q,) bool, True for queries of classes absent from the references.
        thresholds: values to try; default the distinct confidences (at most ``most``).

    Returns:
        One dict per threshold (ascending): ``threshold``; ``coverage`` (seen queries
        accepted); ``accuracy`` (correct among accepted seen queries); ``unknown_rate``
        (unseen queries rejected); ``open_set_accuracy`` (accepted-and-correct seen plus
        rejected unseen, over all queries). A rate with an empty denominator is None.
    """
    truth, pred = np.asarray(true_labels), np.asarray(predictions)
    conf, unseen = np.asarray(confidence, dtype=np.float64), np.asarray(unseen, dtype=bool)
    seen = ~unseen
    correct = (pred == truth) & seen
    values = np.asarray(thresholds, dtype=np.float64) if thresholds is not None else None
    rows = []
    for t in np.sort(values) if values is not None else _thresholds(conf, most):
        accept = conf >= t
        rows.append(
            {
                "threshold": float(t),
                "coverage": _rate(accept & seen, seen),
                "accuracy": _rate(accept & correct, accept & seen),
                "unknown_rate": _rate(~accept & unseen, unseen),
                "open_set_accuracy": _rate(
                    (accept & correct) | (~accept & unseen), np.ones_like(seen)
                ),
            }
        )
    return rows


def best_threshold(curve: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The row of an ``accuracy_coverage_curve`` with the highest open-set accuracy (the
    lowest such threshold among ties); None for an empty curve."""
    best = None
    for row in curve:
        if best is None or (row["open_set_accuracy"] or 0.0) > (best["open_set_accuracy"] or 0.0):
            best = row
    return best


def _rate(hits: np.ndarray, among: np.ndarray) -> float | None:
    n = int(among.sum())
    return float((hits & among).sum() / n) if n else None


def per_class_precision_at_1(
    query_labels: np.ndarray, top1_labels: np.ndarray, class_names: Sequence[str]
) -> dict[str, float]:
    """precision@1 of each class present among the queries: name -> share whose nearest
    neighbour has the same class."""
    labels = np.asarray(query_labels)
    hit = np.asarray(top1_labels) == labels
    return {class_names[c]: float(hit[labels == c].mean()) for c in np.unique(labels)}


def precision_drop(
    with_all: Mapping[str, float], without_unseen: Mapping[str, float], unseen: Sequence[str]
) -> dict[str, Any]:
    """Compare per-class precision@1 of a model trained on all classes with one trained
    without the ``unseen`` classes (both evaluated on all classes).

    Returns:
        ``per_class``: class -> {all_classes, without_unseen, drop, unseen}; and the mean
        drop over unseen classes, over seen classes and over all classes (None if empty).
    """
    unknown = sorted(set(unseen) - set(with_all))
    if unknown:
        raise ConfigError(f"unseen classes {unknown} were not evaluated; known: {sorted(with_all)}")
    rows = {
        name: {
            "all_classes": base,
            "without_unseen": without_unseen.get(name, 0.0),
            "drop": base - without_unseen.get(name, 0.0),
            "unseen": name in set(unseen),
        }
        for name, base in with_all.items()
    }

    def mean_drop(names: list[str]) -> float | None:
        return float(np.mean([rows[n]["drop"] for n in names])) if names else None

    return {
        "per_class": rows,
        "mean_drop_unseen": mean_drop([n for n in rows if rows[n]["unseen"]]),
        "mean_drop_seen": mean_drop([n for n in rows if not rows[n]["unseen"]]),
        "mean_drop_all": mean_drop(list(rows)),
    }


def hit_rate(hits: np.ndarray) -> float | None:
    """Share of True in a bool array; None when it is empty (no such queries)."""
    return float(hits.mean()) if len(hits) else None


def open_set_curve(
    result: RetrievalEvaluation,
    q_labels: np.ndarray,
    names: Sequence[str],
    unseen: SplitVectors,
    refs: SplitVectors,
    *,
    k: int = 10,
    weighted: bool = False,
) -> list[dict[str, Any]]:
    """Accuracy/coverage over the vote-share threshold: the evaluated (seen) queries plus
    the ``unseen`` images, whose right answer is ``unknown`` (their class is not enrolled).

    Args:
        result, q_labels, names: the evaluation of the seen queries and their int labels.
        unseen: never-enrolled images, searched exactly among ``refs`` (a ``k``-vote).
    """
    if not len(unseen):
        return []
    everything = sorted(set(names) | set(unseen.classes))
    remap = np.array([everything.index(n) for n in names] + [-1])  # -1: no prediction
    nb = exact_knn(unseen.vectors, refs.vectors, k)
    labels_u = nb.labels(refs.labels(everything))
    pred_u, share_u = knn_votes(labels_u, nb.scores, k, weighted=weighted)
    truth = np.concatenate([remap[q_labels], unseen.labels(everything)])
    enrolled = set(refs.classes)
    return accuracy_coverage_curve(
        truth,
        np.concatenate([remap[result.predictions], pred_u]),
        np.concatenate([result.vote_share, share_u]),
        np.array([everything[t] not in enrolled for t in truth]),
    )


def open_set_without(
    queries: SplitVectors, refs: SplitVectors, held: Sequence[str], *, k: int = 10
) -> dict[str, Any]:
    """The held-out classes as unknowns: references are the other classes' images only.

    Returns:
        ``seen_accuracy`` (``k``-vote accuracy of the other classes' queries among themselves,
        the closed-set accuracy without the held-out classes; None without such queries),
        ``curve`` (``accuracy_coverage_curve`` over the vote share of a ``k``-vote), and the
        ROC AUC with which the vote share (``auroc_share``) and the nearest neighbour's
        cosine similarity (``auroc_score``) rank known-class queries above unknown ones
        (None when either group is empty), i.e. which ``--reject-on`` works better.
    """
    from sklearn.metrics import roc_auc_score

    enrolled = ~np.isin(refs.classes, list(held))
    names = sorted(set(queries.classes) | set(refs.classes))
    q_labels = queries.labels(names)
    r_labels = refs.labels(names)[enrolled]
    nb = exact_knn(queries.vectors, refs.vectors[enrolled], k)
    pred, share = knn_votes(nb.labels(r_labels), nb.scores, k)
    unknown = np.isin(queries.classes, list(held))
    both = 0 < unknown.sum() < len(unknown)
    known = ~unknown
    return {
        "seen_accuracy": hit_rate(pred[known] == q_labels[known]),
        "curve": accuracy_coverage_curve(q_labels, pred, share, unknown),
        "auroc_share": float(roc_auc_score(~unknown, share)) if both else None,
        "auroc_score": float(roc_auc_score(~unknown, nb.scores[:, 0])) if both else None,
    }
