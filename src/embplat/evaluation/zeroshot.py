"""Zero-shot metrics over a score matrix: ZSL top-k, GZSL seen/unseen/H, calibrated stacking.

Pure functions over arrays. ``scores`` is (N, C): similarity of each image to each candidate
label; ``y`` (N,) the index of each image's true label among the C candidates. Accuracies are
*per-class* means (the average of each class's accuracy), the usual ZSL protocol, so a class
with many images does not dominate.

GZSL (Chao et al., 2016; Xian et al., 2018): every image is classified among all labels, seen
and unseen; ``seen`` is the per-class accuracy on images of seen classes, ``unseen`` on images
of unseen classes, and ``H = 2·seen·unseen / (seen + unseen)``. Calibrated stacking subtracts
a constant ``gamma`` from the seen labels' scores, trading seen for unseen accuracy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: Default gamma grid for calibrated stacking: cosine scores lie in [-1, 1], so a difference
#: between two of them lies in [-2, 2].
GAMMA_GRID = np.round(np.arange(-2.0, 2.0001, 0.005), 4)


def per_class_accuracy(
    scores: np.ndarray, y: np.ndarray, *, k: int = 1
) -> tuple[float, dict[int, float]]:
    """Mean over classes of the share of images whose label is among the top ``k`` scores.

    Returns:
        (mean, {class index: accuracy}) over the classes present in ``y``; NaN when empty.
    """
    if len(y) == 0:
        return float("nan"), {}
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    hit = (top == y[:, None]).any(axis=1)
    per = {int(c): float(hit[y == c].mean()) for c in np.unique(y)}
    return float(np.mean(list(per.values()))), per


def harmonic_mean(a: float, b: float) -> float:
    """``2ab / (a + b)``; 0 when both are 0."""
    return 0.0 if a + b == 0 else 2 * a * b / (a + b)


def gzsl_accuracy(
    scores: np.ndarray,
    y: np.ndarray,
    seen_labels: np.ndarray,
    *,
    gamma: float = 0.0,
) -> dict[str, float]:
    """Seen, unseen and harmonic-mean accuracy among all labels.

    Args:
        scores: (N, C) similarities to all labels.
        y: (N,) true label index.
        seen_labels: (C,) bool, True for labels of seen (training) classes.
        gamma: calibrated stacking constant subtracted from the seen labels' scores.
    """
    pred = gzsl_predictions(scores, seen_labels, gamma)
    on_seen = seen_labels[y]
    seen = _per_class_hits(pred[on_seen], y[on_seen])
    unseen = _per_class_hits(pred[~on_seen], y[~on_seen])
    return {"seen": seen, "unseen": unseen, "H": harmonic_mean(seen, unseen)}


def _per_class_hits(pred: np.ndarray, y: np.ndarray) -> float:
    if len(y) == 0:
        return float("nan")
    return float(np.mean([np.mean(pred[y == c] == c) for c in np.unique(y)]))


def calibrate_gamma(
    scores: np.ndarray, y: np.ndarray, seen_labels: np.ndarray, grid: np.ndarray = GAMMA_GRID
) -> float:
    """The gamma of ``grid`` with the best H on these images; ties go to the smallest |gamma|."""
    best, best_h = 0.0, -1.0
    for gamma in sorted(grid, key=lambda g: (abs(g), g)):
        h = gzsl_accuracy(scores, y, seen_labels, gamma=float(gamma))["H"]
        if h > best_h + 1e-12:
            best, best_h = float(gamma), h
    return best


def gzsl_predictions(scores: np.ndarray, seen_labels: np.ndarray, gamma: float = 0.0) -> np.ndarray:
    """(N,) label chosen among all labels after subtracting ``gamma`` from the seen ones."""
    return (scores - gamma * seen_labels[None, :].astype(scores.dtype)).argmax(axis=1)


def rounded(metrics: Mapping[str, float]) -> dict[str, float | None]:
    """Accuracies to 4 decimals; NaN (no such images) becomes None."""
    return {k: (None if np.isnan(v) else round(v, 4)) for k, v in metrics.items()}


def image_counts(y: np.ndarray, seen_labels: np.ndarray) -> dict[str, int]:
    """How many images are of seen and of unseen classes."""
    on_seen = seen_labels[y]
    return {"seen_images": int(on_seen.sum()), "unseen_images": int((~on_seen).sum())}


def zsl_summary(
    scores: np.ndarray, y: np.ndarray, seen_labels: np.ndarray, names: Sequence[str]
) -> dict[str, Any] | None:
    """ZSL: images of unseen classes among the unseen labels only; per-class top-1 and
    top-5 (top-k with k = min(5, unseen labels)). None without unseen images or labels.

    Args:
        scores: (N, C) similarities to all labels; ``names`` (C,) their class names.
        y: (N,) true label index; seen_labels: (C,) bool.
    """
    on_unseen = ~seen_labels[y]
    cols = np.flatnonzero(~seen_labels)
    if not on_unseen.any() or len(cols) == 0:
        return None
    sub = scores[on_unseen][:, cols]
    sub_y = np.searchsorted(cols, y[on_unseen])
    top1, per = per_class_accuracy(sub, sub_y, k=1)
    k = min(5, len(cols))
    topk, _ = per_class_accuracy(sub, sub_y, k=k)
    return {
        "images": int(on_unseen.sum()),
        "labels": len(cols),
        "top1": round(top1, 4),
        "top5": round(topk, 4),
        "top5_k": k,
        "per_class_top1": {names[cols[c]]: round(v, 4) for c, v in per.items()},
    }


def calibrated_summary(
    scores: np.ndarray, y: np.ndarray, seen_labels: np.ndarray, hashes: Sequence[str]
) -> dict[str, Any]:
    """Calibrated stacking without peeking: the images are cut in two halves by their
    content hash (``hashes``, hex sha256); gamma is chosen on one half and GZSL with and
    without it is reported on the other."""
    half = np.array([int(h[:8] or "0", 16) % 2 == 0 for h in hashes])
    gamma = calibrate_gamma(scores[half], y[half], seen_labels)
    ev = ~half
    raw = gzsl_accuracy(scores[ev], y[ev], seen_labels)
    cal = gzsl_accuracy(scores[ev], y[ev], seen_labels, gamma=gamma)
    return {
        "gamma": gamma,
        "calibration_images": int(half.sum()),
        "eval_images": int(ev.sum()),
        "without": rounded(raw),
        "with": rounded(cal),
    }
