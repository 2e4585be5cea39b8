"""PNG plots (matplotlib's Agg canvas, no display): PCA of a semantic space, confusion matrix.

``matplotlib.figure.Figure`` is used directly instead of ``pyplot``, so no global backend
state is touched and plots can be drawn from worker threads.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from embplat.retrieval.base import l2_normalize


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
        imgs, labs = l2_normalize(panel.image_vectors), l2_normalize(panel.label_vectors)
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
    return save_png(fig, out)


def confusion_figure(
    labels: Sequence[str], matrix: np.ndarray | Sequence[Sequence[int]], title: str = ""
) -> Figure:
    """A confusion matrix (rows true, columns predicted) with counts written in the cells
    (up to 30 classes)."""
    m = np.asarray(matrix)
    n = len(labels)
    side = max(4.0, 1.0 + 0.5 * n)
    fig = Figure(figsize=(side + 0.2, side), layout="constrained")
    ax = fig.subplots()
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(n), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title, fontsize=10)
    top = m.max() if m.size else 0
    for (r, c), value in np.ndenumerate(m):
        if value and n <= 30:
            colour = "white" if value > top / 2 else "black"
            ax.text(c, r, f"{value:g}", ha="center", va="center", fontsize=7, color=colour)
    return fig


def png_bytes(fig: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (for a data URI)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def save_png(fig: Figure, out: Path) -> Path:
    """Save the figure as a PNG file at ``out`` (folders created)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out
