"""kNN majority vote: a pure function with a deterministic tie-break.

Ties on vote weight are broken by the summed similarity of each class's neighbours, then by
the rank of the class's nearest neighbour (the class seen first wins), so the same
neighbours always give the same answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Vote:
    """Result of one vote: winner, its share of the votes, runner-up, and all tallies."""

    label: str
    confidence: float
    runner_up: str | None
    runner_up_share: float
    tallies: dict[str, float]


def knn_vote(labels: Sequence[str], scores: Sequence[float], *, weighted: bool = False) -> Vote:
    """Vote among neighbours, ordered best first.

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
    weight: dict[str, float] = {}
    simsum: dict[str, float] = {}
    first: dict[str, int] = {}
    for rank, (label, score) in enumerate(zip(labels, scores, strict=True)):
        w = max(float(score), 0.0) if weighted else 1.0
        weight[label] = weight.get(label, 0.0) + w
        simsum[label] = simsum.get(label, 0.0) + float(score)
        first.setdefault(label, rank)
    order = sorted(weight, key=lambda c: (-weight[c], -simsum[c], first[c]))
    total = sum(weight.values())
    share = {c: (weight[c] / total if total > 0 else 1.0 / len(weight)) for c in weight}
    runner = order[1] if len(order) > 1 else None
    return Vote(
        label=order[0],
        confidence=share[order[0]],
        runner_up=runner,
        runner_up_share=share[runner] if runner else 0.0,
        tallies={c: weight[c] for c in order},
    )
