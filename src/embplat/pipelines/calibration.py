"""Use case: choose a visual-semantic model's GZSL calibration when it is trained.

The train images (at most ``per_class`` per class) and valid images of the model's seen
classes go through the trained backbone of the registered checkpoint; the features feed
:func:`~embplat.evaluation.gzsl_calibration.calibrate_by_class_splits`. Only seen classes
take part, so the stored gamma never saw an unseen image. ``label_images`` applies it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from embplat.catalog import repo
from embplat.errors import DataError
from embplat.evaluation.gzsl_calibration import ClassSplitCalibration, calibrate_by_class_splits
from embplat.ingest.images import load_rgb
from embplat.models.checkpoints import load_trained_encoder
from embplat.models.encoders import TorchImageEncoder
from embplat.pipelines.context import Context

log = logging.getLogger(__name__)


def calibrate_checkpoint(
    ctx: Context,
    checkpoint: str | Path,
    classes: Sequence[str],
    label_vectors: np.ndarray,
    *,
    per_class: int = 100,
) -> ClassSplitCalibration:
    """Calibrated-stacking gamma of a trained DeViSE checkpoint, from its seen classes only.

    Args:
        checkpoint: the registered epoch's checkpoint (backbone + projection).
        classes: the C seen classes, in training order.
        label_vectors: (C, D) their unit label vectors as trained (centred when trained so).
        per_class: train images per class fed to the surrogate fits (the first ones by id).

    Raises:
        DataError: fewer than 3 classes, or no valid image of them.
    """
    train, valid = _images(ctx, classes, per_class)
    encoder = load_trained_encoder(checkpoint, device=ctx.spaces.device)
    exported = encoder.module
    if not isinstance(exported, torch.nn.Sequential):
        raise DataError(f"{checkpoint} exports no projection head to calibrate")
    backbone = exported[0]  # exported as Sequential(backbone, projection)
    train_x, train_y = _features(encoder, backbone, train, ctx.ingest.max_pixels)
    valid_x, valid_y = _features(encoder, backbone, valid, ctx.ingest.max_pixels)
    found = calibrate_by_class_splits(train_x, train_y, valid_x, valid_y, label_vectors)
    log.info(
        "GZSL calibration of %s: gamma %.4f (folds %s)", checkpoint, found.gamma, found.fold_gammas
    )
    return found


def _images(
    ctx: Context, classes: Sequence[str], per_class: int
) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(path, class index) of train images (``per_class`` at most per class) and of valid
    images of ``classes``."""
    index = {c: i for i, c in enumerate(classes)}
    with ctx.sessions() as session:
        rows = repo.labelled_images(session=session, splits=["train"])
        valid_rows = repo.labelled_images(session=session, splits=["valid"])
    taken: dict[str, int] = defaultdict(int)
    train = []
    for _, path, cls, _ in rows:
        if cls in index and taken[cls] < per_class:
            taken[cls] += 1
            train.append((path, index[cls]))
    valid = [(path, index[cls]) for _, path, cls, _ in valid_rows if cls in index]
    if not valid:
        raise DataError(f"no valid images of {', '.join(classes)} to calibrate GZSL on")
    return train, valid


@torch.inference_mode()
def _features(
    encoder: TorchImageEncoder,
    backbone: torch.nn.Module,
    rows: Sequence[tuple[str, int]],
    max_pixels: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(N, F) backbone features and (N,) class indices of the readable images."""
    feats: list[np.ndarray] = []
    labels: list[int] = []
    device = next(backbone.parameters()).device
    for start in range(0, len(rows), 64):
        images, batch_labels = [], []
        for path, label in rows[start : start + 64]:
            try:
                images.append(encoder.transform(load_rgb(path, max_pixels=max_pixels)))
            except DataError as exc:
                log.warning("calibration skips %s: %s", path, exc)
                continue
            batch_labels.append(label)
        if images:
            feats.append(backbone(torch.stack(images).to(device)).float().cpu().numpy())
            labels += batch_labels
    if not feats:
        return np.empty((0, 0), np.float32), np.empty(0, np.int64)
    return np.concatenate(feats), np.asarray(labels, dtype=np.int64)
