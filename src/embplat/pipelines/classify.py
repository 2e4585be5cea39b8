"""Use case: classify images by the kNN vote of their nearest enrolled images (or a trained
classifier's softmax head, ``pipelines.softmax_classify``), optionally rejecting an
uncertain answer as ``unknown`` (open set)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from embplat.evaluation.open_set import open_set_decision
from embplat.pipelines.context import Context
from embplat.pipelines.query import Neighbour, checked_k
from embplat.pipelines.query_images import (
    QueryFailure,
    QueryImage,
    embed_answerable,
    require_files,
    require_some_file,
)
from embplat.retrieval import Filter
from embplat.retrieval.knn import knn_vote

#: Classification votes among enrolled images: the train split (enrolled classes included).
ENROLLED: dict[str, Any] = {"kind": "image", "split": "train"}
#: The label of a prediction rejected by ``classify(reject_below=...)``.
UNKNOWN = "unknown"


@dataclass
class Prediction:
    """kNN vote for one query image."""

    path: str
    label: str
    confidence: float
    runner_up: str | None
    runner_up_share: float
    k: int
    tallies: dict[str, float] = field(default_factory=dict)
    neighbours: list[Neighbour] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    best_label: str | None = None  # the vote's winner when ``label`` is "unknown" (rejected)
    method: str = "knn"  # or "softmax": a trained classifier's head answered (k is 0)
    probabilities: dict[str, float] = field(default_factory=dict)  # softmax: top classes

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def classify(
    ctx: Context,
    paths: Sequence[QueryImage],
    *,
    k: int = 10,
    weighted: bool = False,
    flt: Filter | None = None,
    model: str | None = None,
    reject_below: float | None = None,
    reject_on: str = "share",
    failures: list[QueryFailure] | None = None,
    knn: bool = False,
) -> list[Prediction]:
    """Predict the class of each image (a file or encoded bytes) by majority vote of its
    ``k`` nearest enrolled images; each answer's ``path`` is its :func:`query_label`.

    ``model``: a trained model's space (``platform models list``) instead of the encoder's.
    A model with a softmax head (``platform train classifier``) answers with the head
    instead (``pipelines.softmax_classify``: ``k`` most probable classes listed) unless
    ``knn``.
    ``reject_below``: answer ``unknown`` (open set) when the winner's vote share
    (``reject_on="share"``) or the nearest neighbour's cosine (``"score"``) is below it.
    ``failures``: collects the images that cannot be read (missing, corrupt, too large) so
    the others are still answered; None raises for the first one.

    Raises:
        DataError: a path does not exist or is not an image (without ``failures``); ``k`` < 1.
        ConfigError: ``reject_on`` is neither ``share`` nor ``score``.
        IndexEmptyError: nothing is enrolled yet.
    """
    open_set_decision(1.0, 1.0, None, on=reject_on)  # validates reject_on before any work
    (require_files if failures is None else require_some_file)(paths)
    head = ctx.spaces.softmax(model) if model is not None and not knn else None
    if head is not None:
        from embplat.pipelines.softmax_classify import classify_softmax

        return classify_softmax(
            ctx, head, head.classes, paths, top=k, reject_below=reject_below,
            reject_on=reject_on, failures=failures,
        )  # fmt: skip
    space = ctx.spaces.space(model)
    flt = {**ENROLLED, **(flt or {})}
    k_used, notes = checked_k(space, k, flt)
    kept, queries = embed_answerable(ctx, space, paths, failures)
    if not kept:
        return []
    out = []
    for label, hits in zip(kept, space.index.search(queries, k_used, flt), strict=True):
        vote = knn_vote(
            [str(h.payload.get("class")) for h in hits], [h.score for h in hits], weighted=weighted
        )
        accept = open_set_decision(vote.confidence, hits[0].score, reject_below, on=reject_on)
        out.append(
            Prediction(
                path=label,
                label=vote.label if accept else UNKNOWN,
                confidence=round(vote.confidence, 4),
                runner_up=vote.runner_up,
                runner_up_share=round(vote.runner_up_share, 4),
                k=k_used,
                tallies=vote.tallies,
                neighbours=[Neighbour.from_hit(h) for h in hits],
                notes=notes,
                best_label=None if accept else vote.label,
            )
        )
    return out
