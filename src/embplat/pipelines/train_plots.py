"""DeViSE's PCA plot: images of 4 classes and their label vectors, before/after unfreezing."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from embplat.catalog import repo
from embplat.evaluation.plots import PcaPanel, pca_panels
from embplat.ingest.images import load_rgb
from embplat.models.checkpoints import load_trained_encoder
from embplat.models.registry import ImageEncoder
from embplat.models.train_config import frozen_phase
from embplat.models.training import EpochResult
from embplat.models.wordvectors import LabelSpace
from embplat.pipelines.context import Context

log = logging.getLogger(__name__)

#: Splits searched for plot images, in order of preference (held-out images first).
PLOT_SPLITS = ("valid", "test", "train")


def devise_pca_plot(
    ctx: Context,
    model: str,
    epochs: Sequence[EpochResult],
    classes: Sequence[str],
    labels_in: LabelSpace,
    *,
    per_class: int = 40,
) -> Path | None:
    """``<home>/models/<model>/pca.png``: two seen and two unseen classes (when there are),
    at the last frozen epoch and at the last epoch.

    Returns:
        The PNG path, or None when no epoch or no image is available.
    """
    snapshots = [r for r in epochs if r.phase in ("frozen", "ridge")][-1:]  # the projection's
    if epochs and not frozen_phase(epochs[-1].phase):
        snapshots.append(epochs[-1])
    names, paths, labels = _plot_images(ctx, classes, per_class)
    if not snapshots or not paths:
        return None
    label_vecs = labels_in.matrix(names)
    panels = []
    for r in snapshots:
        encoder = load_trained_encoder(r.checkpoint, name=model, device=ctx.spaces.device)
        when = "backbone frozen" if frozen_phase(r.phase) else "after unfreezing"
        panels.append(
            PcaPanel(
                f"{model} epoch {r.epoch} ({when})",
                _encode(encoder, paths, ctx.ingest.max_pixels),
                labels,
                label_vecs,
                names,
            )
        )
    return pca_panels(panels, ctx.home / "models" / model / "pca.png")


def _plot_images(
    ctx: Context, classes: Sequence[str], per_class: int
) -> tuple[list[str], list[str], list[str]]:
    """(4 class names, image paths, their class names): 2 seen + 2 unseen when available."""
    by_class: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    with ctx.sessions() as session:
        roles = repo.class_roles(session=session)
        for split in PLOT_SPLITS:
            for _, path, cls, _ in repo.labelled_images(session=session, splits=[split]):
                by_class[cls][split].append(path)
    unseen = [c for c in sorted(by_class) if roles.get(c) == "unseen"][:2]
    seen = [c for c in classes if c in by_class][: 4 - len(unseen)]
    names = seen + unseen
    paths, labels = [], []
    for name in names:
        chosen = [p for split in PLOT_SPLITS for p in by_class[name][split]][:per_class]
        paths += chosen
        labels += [name] * len(chosen)
    return names, paths, labels


@torch.inference_mode()
def _encode(encoder: ImageEncoder, paths: Sequence[str], max_pixels: int) -> np.ndarray:
    out = []
    for start in range(0, len(paths), 32):
        images = [load_rgb(p, max_pixels=max_pixels) for p in paths[start : start + 32]]
        out.append(encoder.encode_images(torch.stack([encoder.transform(i) for i in images])))
    return np.concatenate(out)
