"""A softmax classifier's evaluation: accuracy, scikit-learn's classification report, the
confusion matrix of its predictions, and its worst mistakes (the most confident wrong ones)
drawn as a grid of images.

Pure functions over (N, C) probabilities and (N,) labels; the grid is drawn with matplotlib's
object API (no pyplot), images read with Pillow.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from embplat.evaluation.metrics import classification_tables

log = logging.getLogger(__name__)

#: Mistakes shown in the report's grid.
WORST = 16


def worst_mistakes(probs: np.ndarray, labels: np.ndarray, n: int = WORST) -> np.ndarray:
    """Rows of the ``n`` most confident wrong predictions, most confident first (ties by
    row).

    Args:
        probs: (N, C) class probabilities.
        labels: (N,) true class indices.
    """
    wrong = np.flatnonzero(probs.argmax(axis=1) != labels)
    confidence = probs[wrong].max(axis=1)
    return wrong[np.argsort(-confidence, kind="stable")[:n]]


def evaluate_probabilities(
    probs: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    paths: Sequence[str],
    *,
    worst: int = WORST,
) -> dict[str, Any]:
    """Score a softmax classifier's (N, C) ``probs`` against (N,) ``labels``.

    Returns:
        JSON-ready: ``accuracy``, ``images``, ``classification_report`` (scikit-learn's
        text), ``per_class`` (precision, recall, f1-score, support), ``confusion``
        (``{"labels", "matrix"}``, true rows, predicted columns), ``worst`` (``{"path",
        "true", "predicted", "confidence"}`` of the most confident mistakes).
    """
    from sklearn.metrics import accuracy_score, classification_report

    predictions = probs.argmax(axis=1)
    present = sorted(set(labels.tolist()) | set(predictions.tolist()))
    report = classification_report(
        labels,
        predictions,
        labels=present,
        target_names=[class_names[i] for i in present],
        digits=3,
        zero_division=0,
    )
    per_class, confusion = classification_tables(labels, predictions, class_names)
    rows = worst_mistakes(probs, labels, worst)
    return {
        "accuracy": float(accuracy_score(labels, predictions)) if len(labels) else float("nan"),
        "images": len(labels),
        "classification_report": str(report),
        "per_class": per_class,
        "confusion": confusion,
        "worst": [
            {
                "path": paths[i],
                "true": class_names[labels[i]],
                "predicted": class_names[predictions[i]],
                "confidence": round(float(probs[i].max()), 4),
            }
            for i in rows
        ],
    }


def mistakes_figure(worst: Sequence[dict[str, Any]], columns: int = 8) -> Figure:
    """A grid of the mistakes (``evaluate_probabilities``'s ``worst``): each image titled
    ``true → predicted`` and the predicted class's probability."""
    rows = max(1, -(-len(worst) // columns))
    fig = Figure(figsize=(1.6 * columns, 1.9 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, case in zip(axes.flat, worst, strict=False):
        image = _read(case["path"])
        if image is not None:
            ax.imshow(image)
        ax.set_title(
            f"{case['true']} →\n{case['predicted']} ({case['confidence']:.2f})", fontsize=7
        )
    return fig


def _read(path: str | Path) -> np.ndarray | None:
    try:
        with Image.open(path) as src:
            return np.asarray(src.convert("RGB"))
    except (OSError, ValueError) as exc:
        log.warning("report: cannot read %s: %s", path, exc)
        return None
