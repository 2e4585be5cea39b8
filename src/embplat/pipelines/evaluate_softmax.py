"""The softmax part of ``platform evaluate --model <classifier>``: the trained head on the
split's images.

The model's index holds its backbone features, L2-normalised, which the head cannot read
back, so the split's images are encoded again through ``backbone → head``
(``models.softmax``), with the same decoding as a query. Images of classes the head was
not trained on (unseen or enrolled later) are counted and left out.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from embplat.evaluation.softmax import evaluate_probabilities
from embplat.evaluation.vectors import SplitVectors
from embplat.pipelines.context import Context
from embplat.pipelines.query_images import QueryFailure, embed_answerable
from embplat.pipelines.softmax_classify import SOFTMAX, HeadQuery

log = logging.getLogger(__name__)


def evaluate_head(ctx: Context, model: str, queries: SplitVectors) -> dict[str, Any] | None:
    """The softmax head of ``model`` scored on the ``queries``' images; None for a model
    without one.

    Returns:
        ``evaluation.softmax.evaluate_probabilities``'s JSON, plus ``method``, ``classes``
        (the head's), ``other_classes`` (queries of classes it does not know, left out) and
        ``unreadable`` (images that could not be read again).
    """
    encoder = ctx.spaces.softmax(model)
    if encoder is None:
        return None
    classes = list(encoder.classes)
    known = np.isin(np.asarray(queries.classes, dtype=object), classes)
    mine = queries.where(known)
    failures: list[QueryFailure] = []
    kept, probs = embed_answerable(ctx, HeadQuery(encoder), mine.paths, failures)
    for failure in failures:
        log.warning("softmax evaluation: %s", failure)
    class_of = dict(zip(mine.paths, mine.classes, strict=True))
    position = {name: i for i, name in enumerate(classes)}
    labels = np.array([position[class_of[path]] for path in kept], dtype=np.int64)
    out = evaluate_probabilities(probs.reshape(len(kept), len(classes)), labels, classes, kept)
    return {
        "method": SOFTMAX,
        "classes": classes,
        "other_classes": int((~known).sum()),
        "unreadable": len(failures),
        **out,
    }
