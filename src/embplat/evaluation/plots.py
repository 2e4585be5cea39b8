"""Saved PNG plots (matplotlib's Agg canvas, no display): PCA of a semantic space, confusion.

``matplotlib.figure.Figure`` is used directly instead of ``pyplot``, so no global backend
state is touched and plots can be drawn from worker threads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


@dataclass(frozen=True)
class PcaPanel:
    """One panel: image vectors (N, D) with class names, label vectors (C, D) with names."""

    title: str
    image_vectors: np.ndarray
    image_labels: Sequence[str]
    label_vectors: np.ndarray
    label_names: Sequence[str]


def pca_panels(panels: Sequence[PcaPanel], out: Path) -> Path:
    """Side-by-side 2-D PCA plots; images as dots, label vectors as triangles of their colour.

    Each panel's PCA is fitted on its unit image and label vectors together.
    """
    from sklearn.decomposition import PCA

    fig = Figure(figsize=(6 * len(panels), 5.5), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel in zip(axes, panels, strict=True):
        names = list(panel.label_names)
        imgs, labs = _unit(panel.image_vectors), _unit(panel.label_vectors)
        xy = PCA(n_components=2, random_state=0).fit_transform(np.vstack([imgs, labs]))
        img_xy, lab_xy = xy[: len(imgs)], xy[len(imgs) :]
        for i, name in enumerate(names):
            colour = f"C{i % 10}"
            mine = np.array([lab == name for lab in panel.image_labels], dtype=bool)
            ax.scatter(*img_xy[mine].T, s=14, alpha=0.6, color=colour, label=name)
            ax.scatter(*lab_xy[i], s=220, marker="^", color=colour, edgecolors="black")
        ax.set_title(panel.title)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(loc="best", fontsize=8)
    return _save(fig, out)


def confusion_png(matrix: np.ndarray, names: Sequence[str], out: Path, title: str) -> Path:
    """A confusion matrix (rows true, columns predicted) with counts written in the cells."""
    n = len(names)
    fig = Figure(figsize=(1.2 + 0.6 * n, 1.0 + 0.6 * n), layout="constrained")
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    top = matrix.max() if matrix.size else 0
    for (r, c), value in np.ndenumerate(matrix):
        if value:
            colour = "white" if value > top / 2 else "black"
            ax.text(c, r, str(value), ha="center", va="center", fontsize=7, color=colour)
    return _save(fig, out)


def _unit(vectors: np.ndarray) -> np.ndarray:
    arr = np.asarray(vectors, dtype=np.float32)
    return arr / np.maximum(np.linalg.norm(arr, axis=1, keepdims=True), 1e-12)


def _save(fig: Figure, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out
