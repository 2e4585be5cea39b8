"""kNN majority vote: pure functions over arrays with a deterministic tie-break.

Ties on vote weight are broken by the summed similarity of each class's neighbours, then by
the rank of the class's nearest neighbour (the class seen first wins), so the same
neighbours always give the same answer. :func:`knn_votes` votes for many queries at once
(evaluation); :func:`knn_vote` is the same vote for one query with class names (classify).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Vote:
    """Result of one vote: winner, its share of the votes, runner-up, and all tallies."""

    label: str
    confidence: float
    runner_up: str | None
    runner_up_share: float
    tallies: dict[str, float]


@dataclass(frozen=True)
class Tallies:
    """The votes of Q queries over C classes, classes ranked best first.

    Attributes:
        weight: (Q, C) vote weight of each class (0 for a class with no neighbour).
        share: (Q, C) each class's share of its query's total vote weight.
        order: (Q, C) class ids, the winner first; classes without a neighbour come last.
        voters: (Q, C) bool, True where the class has at least one neighbour.
    """

    weight: np.ndarray
    share: np.ndarray
    order: np.ndarray
    voters: np.ndarray


def tally(knn_labels: np.ndarray, knn_scores: np.ndarray, *, weighted: bool = False) -> Tallies:
    """Count the votes of each query's neighbours, best first.

    Args:
        knn_labels: (Q, K) int class ids of the neighbours; -1 marks a missing neighbour.
        knn_scores: (Q, K) cosine similarities (higher = closer).
        weighted: weight each vote by its similarity (clamped at 0) instead of 1.
    """
    labels = np.asarray(knn_labels, dtype=np.int64)
    scores = np.asarray(knn_scores, dtype=np.float64)
    n_q, k = labels.shape
    n_c = int(labels.max(initial=-1)) + 1
    rows, ranks = np.nonzero(labels >= 0)
    cols = labels[rows, ranks]
    votes = np.maximum(scores[rows, ranks], 0.0) if weighted else np.ones(len(rows))
    weight, simsum = np.zeros((n_q, n_c)), np.zeros((n_q, n_c))
    first = np.full((n_q, n_c), k, dtype=np.int64)
    np.add.at(weight, (rows, cols), votes)  # in rank order: sums as a Python loop makes them
    np.add.at(simsum, (rows, cols), scores[rows, ranks])
    np.minimum.at(first, (rows, cols), ranks)
    voters = first < k
    order = np.lexsort((first, -simsum, -weight, ~voters), axis=1)
    total = weight.sum(axis=1, keepdims=True)
    even = voters / np.maximum(voters.sum(axis=1, keepdims=True), 1)
    share = np.where(total > 0, weight / np.where(total > 0, total, 1.0), even)
    return Tallies(weight, share, order, voters)


def knn_votes(
    knn_labels: np.ndarray, knn_scores: np.ndarray, k: int, *, weighted: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Vote among the first ``k`` neighbours of each query.

    Args:
        knn_labels: (Q, K) int class ids, best first; -1 marks a missing neighbour.
        knn_scores: (Q, K) similarities.

    Returns:
        (Q,) int64 winning class (-1 for a query without neighbours) and (Q,) float32 its
        share of the vote weight (0 without neighbours).
    """
    labels = np.asarray(knn_labels)[:, :k]
    if labels.size == 0 or labels.max(initial=-1) < 0:
        return np.full(len(labels), -1, np.int64), np.zeros(len(labels), np.float32)
    t = tally(labels, np.asarray(knn_scores)[:, :k], weighted=weighted)
    winner = t.order[:, 0]
    rows = np.arange(len(winner))
    has = t.voters[rows, winner]
    share = np.where(has, t.share[rows, winner], 0.0).astype(np.float32)
    return np.where(has, winner, -1).astype(np.int64), share


def knn_vote(labels: Sequence[str], scores: Sequence[float], *, weighted: bool = False) -> Vote:
    """Vote among one query's neighbours, ordered best first.

    Args:
        labels: class of each neighbour (length k).
        scores: cosine similarity of each neighbour (higher = closer).
        weighted: weight each vote by its similarity (clamped at 0) instead of 1.

    Returns:
        The winning class; ``confidence`` is its share of the total vote weight.

    Raises:
        ValueError: no neighbours, or labels and scores differ in length.
    """
    if not labels:
        raise ValueError("cannot vote without neighbours")
    if len(labels) != len(scores):
        raise ValueError(f"{len(labels)} labels but {len(scores)} scores")
    names = list(dict.fromkeys(labels))
    ids = {name: i for i, name in enumerate(names)}
    codes = np.array([[ids[label] for label in labels]], dtype=np.int64)
    t = tally(codes, np.array([scores], dtype=np.float64), weighted=weighted)
    order = [int(c) for c in t.order[0] if t.voters[0, c]]
    runner = names[order[1]] if len(order) > 1 else None
    return Vote(
        label=names[order[0]],
        confidence=float(t.share[0, order[0]]),
        runner_up=runner,
        runner_up_share=float(t.share[0, order[1]]) if runner else 0.0,
        tallies={names[c]: float(t.weight[0, c]) for c in order},
    )
