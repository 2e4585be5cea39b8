"""Training samples: (image path, class index) pairs, decoded and transformed on the fly.

The image loader is injected (``embplat.ingest.images.load_rgb`` in practice), so this layer
never imports the ingest package.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms as T


@dataclass(frozen=True)
class Sample:
    """One training image: its file and its class index."""

    path: str
    label: int


class ImageSamples(Dataset):
    """(path, label) samples → ((3, S, S) tensor, label), decoded by an injected loader."""

    def __init__(
        self,
        samples: Sequence[Sample],
        transform: Callable[[Image.Image], torch.Tensor],
        loader: Callable[[str], Image.Image],
    ):
        self.samples, self.transform, self.loader = list(samples), transform, loader

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        s = self.samples[i]
        return self.transform(self.loader(s.path)), s.label

    @property
    def labels(self) -> list[int]:
        """Class index of every sample, in order."""
        return [s.label for s in self.samples]


def train_transform(size: int, mean: Sequence[float], std: Sequence[float]) -> T.Compose:
    """Augmentation: random resized crop, horizontal flip, small rotation; then normalise."""
    return T.Compose(
        [
            T.RandomResizedCrop(size, scale=(0.6, 1.0), ratio=(0.8, 1.25)),
            T.RandomHorizontalFlip(),
            T.RandomRotation(10),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )


def eval_transform(size: int, mean: Sequence[float], std: Sequence[float]) -> T.Compose:
    """What the exported encoder does: resize, centre crop, normalise."""
    return T.Compose([T.Resize(size), T.CenterCrop(size), T.ToTensor(), T.Normalize(mean, std)])


@dataclass(frozen=True)
class TrainData:
    """Training samples twice (augmented, plain for feature caching) and the valid samples."""

    train: ImageSamples
    train_plain: ImageSamples
    valid: ImageSamples
