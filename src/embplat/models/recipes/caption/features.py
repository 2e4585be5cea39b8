"""Where the decoder's (B, P, C) location features come from while training.

A split is a :class:`CaptionSet` (images loaded by row, their captions). While the encoder is
frozen, every image's feature map is computed once (:func:`cached_features`); while it is
fine-tuned, images are loaded and encoded per batch (:func:`image_features`). Both give a
:data:`Features` function of image rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from embplat.errors import DataError
from embplat.models.recipes.caption.model import SpatialEncoder

#: ``features(image rows (B,), train) -> (B, P, C)`` float32 on the training device; with
#: ``train`` the encoder's gradients are kept (when it is being fine-tuned).
Features = Callable[[np.ndarray, bool], torch.Tensor]


@dataclass
class CaptionSet:
    """One split; rows are images.

    Attributes:
        load: image rows → (B, 3, S, S) float images, normalised for the encoder.
        captions: the reference captions of each image row (at least one each).
    """

    load: Callable[[Sequence[int]], torch.Tensor]
    captions: list[list[str]]

    def __post_init__(self) -> None:
        empty = next((i for i, refs in enumerate(self.captions) if not refs), None)
        if empty is not None:
            raise DataError(f"image row {empty} has no caption; every image needs at least one")

    def __len__(self) -> int:
        return len(self.captions)


def autocast(device: torch.device, amp: bool) -> torch.autocast:
    """float16 autocast on CUDA when ``amp``; a no-op context otherwise."""
    return torch.autocast(device.type, dtype=torch.float16, enabled=amp and device.type == "cuda")


@torch.no_grad()
def cached_features(
    encoder: SpatialEncoder, split: CaptionSet, *, batch_size: int, device: torch.device, amp: bool
) -> Features:
    """Encode every image of ``split`` once (eval mode, in batches) and serve rows from the
    (N, P, C) float16 cache, kept on ``device``."""
    encoder.eval()
    maps = []
    for start in range(0, len(split), batch_size):
        rows = list(range(start, min(start + batch_size, len(split))))
        with autocast(device, amp):
            maps.append(encoder(split.load(rows).to(device)).half())
    cache = torch.cat(maps)

    def features(rows: np.ndarray, train: bool) -> torch.Tensor:
        return cache[torch.as_tensor(rows, device=cache.device)].float()

    return features


def image_features(
    encoder: SpatialEncoder, split: CaptionSet, *, device: torch.device, amp: bool
) -> Features:
    """Load and encode the rows' images at every call (each distinct image once)."""

    def features(rows: np.ndarray, train: bool) -> torch.Tensor:
        unique, inverse = np.unique(rows, return_inverse=True)  # an image's captions share it
        with torch.set_grad_enabled(train and torch.is_grad_enabled()), autocast(device, amp):
            maps = encoder(split.load(unique.tolist()).to(device))
        return maps.float()[torch.as_tensor(inverse, device=device)]

    return features
