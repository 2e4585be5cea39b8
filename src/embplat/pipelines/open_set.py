"""Open-set evaluation: classes treated as never enrolled, whose right answer is ``unknown``.

``hold_out`` takes such classes out of an evaluation's queries and references;
``open_set_curve`` adds their queries (and a catalog's unseen test classes) to the evaluated
known queries for the accuracy/coverage trade-off; ``open_set_without`` is the unseen-class
experiment's view of a model trained without them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.metrics import roc_auc_score

from embplat.errors import ConfigError
from embplat.evaluation.neighbours import exact_knn
from embplat.evaluation.open_set import accuracy_coverage_curve
from embplat.evaluation.retrieval_eval import RetrievalEvaluation, votes

if TYPE_CHECKING:  # evaluate_model imports this module
    from embplat.pipelines.evaluate_model import SplitVectors


def hold_out(
    queries: SplitVectors, refs: SplitVectors, unknown: Sequence[str]
) -> tuple[SplitVectors, SplitVectors, SplitVectors]:
    """Queries and references without the ``unknown`` classes, and those classes' queries."""
    if not unknown:
        return queries, refs, queries.where(np.zeros(len(queries), dtype=bool))
    absent = sorted(set(unknown) - set(queries.classes))
    if absent:
        raise ConfigError(
            f"--unknown classes {absent} have no query in this split; classes here: "
            f"{', '.join(sorted(set(queries.classes)))}"
        )
    is_unknown = np.isin(queries.classes, list(unknown))
    kept_refs = refs.where(~np.isin(refs.classes, list(unknown)))
    if is_unknown.all() or not len(kept_refs):
        raise ConfigError(f"--unknown {', '.join(unknown)} leaves nothing known to evaluate")
    return queries.where(~is_unknown), kept_refs, queries.where(is_unknown)


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
    """
    if not len(unseen):
        return []
    everything = sorted(set(names) | set(unseen.classes))
    remap = np.array([everything.index(n) for n in names] + [-1])  # -1: no prediction
    nb = exact_knn(unseen.vectors, refs.vectors, k)
    pred_u, share_u = votes(nb.labels(refs.labels(everything)), nb.scores, k, weighted=weighted)
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
    enrolled = ~np.isin(refs.classes, list(held))
    names = sorted(set(queries.classes) | set(refs.classes))
    q_labels = queries.labels(names)
    r_labels = refs.labels(names)[enrolled]
    nb = exact_knn(queries.vectors, refs.vectors[enrolled], k)
    pred, share = votes(nb.labels(r_labels), nb.scores, k)
    unknown = np.isin(queries.classes, list(held))
    both = 0 < unknown.sum() < len(unknown)
    known = ~unknown
    return {
        "seen_accuracy": hit_rate(pred[known] == q_labels[known]),
        "curve": accuracy_coverage_curve(q_labels, pred, share, unknown),
        "auroc_share": float(roc_auc_score(~unknown, share)) if both else None,
        "auroc_score": float(roc_auc_score(~unknown, nb.scores[:, 0])) if both else None,
    }


def hit_rate(hits: np.ndarray) -> float | None:
    """Share of True in a bool array; None when it is empty (no such queries)."""
    return float(hits.mean()) if len(hits) else None
