"""Use case: classify images with a trained classifier's softmax head (``classify --model``).

A model trained by the ``classifier`` recipe answers with its head: the top class, its
probability as the confidence, and the ``top`` most probable classes. ``classify --knn``
(``pipelines.classify.classify(knn=True)``) keeps the vote among the neighbours in the model's
feature space instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from embplat.errors import DataError
from embplat.evaluation.open_set import open_set_decision
from embplat.models.registry import ImageEncoder
from embplat.pipelines.classify import UNKNOWN, Prediction
from embplat.pipelines.context import Context
from embplat.pipelines.query_images import QueryFailure, QueryImage, embed_answerable

#: ``Prediction.method`` of an answer of the softmax head.
SOFTMAX = "softmax"


@dataclass(frozen=True)
class HeadQuery:
    """What ``embed_answerable`` needs: the encoder that turns images into probabilities."""

    encoder: ImageEncoder


def top_probabilities(probs: np.ndarray, classes: Sequence[str], top: int) -> dict[str, float]:
    """The ``top`` most probable classes of one (C,) row, most probable first; ties by
    class index (a stable sort), probabilities rounded to 6 places."""
    order = np.argsort(-probs, kind="stable")[: max(1, top)]
    return {classes[i]: round(float(probs[i]), 6) for i in order}


def classify_softmax(
    ctx: Context,
    encoder: ImageEncoder,
    classes: Sequence[str],
    paths: Sequence[QueryImage],
    *,
    top: int = 10,
    reject_below: float | None = None,
    reject_on: str = "share",
    failures: list[QueryFailure] | None = None,
) -> list[Prediction]:
    """Each image's class by the softmax head of ``encoder`` (a ``models.softmax``
    ``SoftmaxEncoder``: images → (N, C) probabilities over ``classes``).

    ``reject_below``: answer ``unknown`` when the top probability is below it (the
    maximum-softmax-probability rule; ``reject_on`` ``share`` and ``score`` both mean it).

    Raises:
        DataError: ``top`` < 1; an image cannot be read and ``failures`` is None.
    """
    if top < 1:
        raise DataError(f"--k must be at least 1, got {top}")
    kept, probs = embed_answerable(ctx, HeadQuery(encoder), paths, failures)
    out = []
    for label, row in zip(kept, probs, strict=True):
        listed = top_probabilities(row, classes, top)
        ranked = top_probabilities(row, classes, 2)
        (best, p_best), *rest = ranked.items()
        accept = open_set_decision(p_best, p_best, reject_below, on=reject_on)
        out.append(
            Prediction(
                path=label,
                label=best if accept else UNKNOWN,
                confidence=round(p_best, 4),
                runner_up=rest[0][0] if rest else None,
                runner_up_share=round(rest[0][1], 4) if rest else 0.0,
                k=0,
                best_label=None if accept else best,
                method=SOFTMAX,
                probabilities=listed,
            )
        )
    return out
