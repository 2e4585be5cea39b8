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
    adjusted = scores - gamma * seen_labels[None, :].astype(scores.dtype)
    pred = adjusted.argmax(axis=1)
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


def confusion(pred: np.ndarray, y: np.ndarray, n: int) -> np.ndarray:
    """(n, n) counts: rows true label, columns predicted label."""
    out = np.zeros((n, n), dtype=np.int64)
    np.add.at(out, (y, pred), 1)
    return out
