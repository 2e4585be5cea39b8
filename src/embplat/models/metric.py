"""Deep metric learning pieces of the ``metric`` recipe (``models.recipes.metric``): its
config, losses, miners, distances, sampler and transforms, independent of the training loop.

Losses, miners, distances and the sampler come from pytorch-metric-learning, configured
through their constructors. Losses that own parameters (ProxyNCA's proxies, ArcFace's class
weights) are ``nn.Module``s: they get their own optimiser parameter group and their
``state_dict`` is saved next to the model's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from pytorch_metric_learning import distances, losses, miners, samplers
from torch import nn
from torchvision import transforms as T

from embplat.errors import ConfigError
from embplat.models.train_config import LoopOptions, TrainConfig

LOSSES = ("triplet-epshn", "proxynca", "arcface", "subcenter-arcface")
DISTANCES = ("cosine", "euclidean")
OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class MetricConfig(TrainConfig):
    """The ``metric`` recipe: the shared training fields plus the loss and its embedding.

    ``margin`` and ``scale`` are in the loss's own units (triplet: distance margin;
    ArcFace: degrees and logit scale; ProxyNCA: ``scale`` is the softmax scale);
    None keeps pytorch-metric-learning's default. ``loss_lr`` (None = ``lr``) is the
    learning rate of the loss's own parameters (proxies, class weights).
    """

    loss: str = "triplet-epshn"
    backbone_lr_mult: float = 1.0
    dim: int = 128
    bn: bool = False
    distance: str = "cosine"
    optimizer: str = "adam"
    loss_lr: float | None = None
    momentum: float = 0.9
    margin: float | None = None
    scale: float | None = None
    sub_centers: int = 3
    m_per_class: int = 4
    resize: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, value, choices in (
            ("loss", self.loss, LOSSES),
            ("distance", self.distance, DISTANCES),
            ("optimizer", self.optimizer, OPTIMIZERS),
        ):
            if value not in choices:
                raise ConfigError(f"unknown {name} {value!r}; choose one of: {', '.join(choices)}")
        for name in ("dim", "m_per_class", "sub_centers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.loss_lr is not None and self.loss_lr <= 0:
            raise ConfigError(f"loss_lr must be positive, got {self.loss_lr}")
        if self.batch_size % self.m_per_class:
            raise ConfigError(
                f"batch size {self.batch_size} is not a multiple of m_per_class "
                f"{self.m_per_class}; choose e.g. --batch-size {self.m_per_class * 8}"
            )
        if self.loss in ("arcface", "subcenter-arcface") and self.distance != "cosine":
            raise ConfigError(f"{self.loss} is defined on cosine similarity; use --distance cosine")
        self.check_epochs()

    def loop_options(self, device: str) -> LoopOptions:
        """The loop settings, with the loss parameters' own learning rate and the optimiser
        (``sgd``: SGD with ``momentum``; ``adam``: the loop's AdamW, decoupled weight decay)."""
        return replace(
            super().loop_options(device),
            loss_lr=self.loss_lr,
            optimizer="sgd" if self.optimizer == "sgd" else "adamw",
            momentum=self.momentum,
        )


def make_distance(name: str) -> distances.BaseDistance:
    """``cosine`` → CosineSimilarity; ``euclidean`` → L2 distance between unit vectors."""
    if name == "cosine":
        return distances.CosineSimilarity()
    if name == "euclidean":
        return distances.LpDistance(normalize_embeddings=True, p=2, power=1)
    raise ConfigError(f"unknown distance {name!r}; choose one of: {', '.join(DISTANCES)}")


def build_loss(
    cfg: MetricConfig, num_classes: int
) -> tuple[losses.BaseMetricLossFunction, miners.BaseMiner | None]:
    """The configured loss and, for triplets, the easy-positive/semi-hard-negative miner.

    The loss's parameters are initialised from ``cfg.seed``, so two runs start identically.

    Raises:
        ConfigError: fewer than two classes.
    """
    if num_classes < 2:
        raise ConfigError(f"metric learning needs at least 2 classes, got {num_classes}")
    torch.manual_seed(cfg.seed)
    dist = make_distance(cfg.distance)
    extra: dict[str, Any] = {}
    if cfg.loss == "triplet-epshn":
        if cfg.margin is not None:
            extra["margin"] = cfg.margin
        miner = miners.BatchEasyHardMiner(
            pos_strategy=miners.BatchEasyHardMiner.EASY,
            neg_strategy=miners.BatchEasyHardMiner.SEMIHARD,
            distance=dist,
        )
        return losses.TripletMarginLoss(distance=dist, **extra), miner
    if cfg.loss == "proxynca":
        if cfg.scale is not None:
            extra["softmax_scale"] = cfg.scale
        return losses.ProxyNCALoss(num_classes, cfg.dim, distance=dist, **extra), None
    if cfg.margin is not None:
        extra["margin"] = cfg.margin
    if cfg.scale is not None:
        extra["scale"] = cfg.scale
    if cfg.loss == "arcface":
        return losses.ArcFaceLoss(num_classes, cfg.dim, distance=dist, **extra), None
    loss = losses.SubCenterArcFaceLoss(
        num_classes=num_classes,
        embedding_size=cfg.dim,
        sub_centers=cfg.sub_centers,
        distance=dist,
        **extra,
    )
    return loss, None


class MinedLoss(nn.Module):
    """``loss(embeddings, labels)`` for the training loop: mines, then applies the PML loss.

    The loss (and so its parameters: proxies, class weights) is a submodule, so it is
    trained and saved with the model. It runs in float32 even under autocast: ArcFace's
    arccos and the softmax over proxies are unstable in float16.
    """

    def __init__(self, loss: nn.Module, miner: nn.Module | None = None):
        super().__init__()
        self.loss = loss
        self.miner = miner

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B, dim) raw embeddings, (B,) class indices → scalar loss."""
        with torch.autocast(embeddings.device.type, enabled=False):
            embeddings = embeddings.float()
            pairs = self.miner(embeddings, labels) if self.miner is not None else None
            return self.loss(embeddings, labels, pairs)


def make_sampler(
    labels: Sequence[int] | np.ndarray, m: int, batch_size: int
) -> samplers.MPerClassSampler:
    """Batches of ``batch_size // m`` classes with ``m`` images each; one pass ≈ the data.

    Raises:
        ConfigError: fewer than ``batch_size / m`` classes, or ``m`` does not divide the batch.
    """
    labels = np.asarray(labels)
    n_classes = len(np.unique(labels))
    if batch_size % m:
        raise ConfigError(f"batch size {batch_size} is not a multiple of m_per_class {m}")
    if m * n_classes < batch_size:
        raise ConfigError(
            f"a batch of {batch_size} with {m} per class needs {batch_size // m} classes, "
            f"the data has {n_classes}; lower --batch-size or raise --m-per-class"
        )
    length = max(batch_size, len(labels) - len(labels) % batch_size)
    return samplers.MPerClassSampler(
        labels, m, batch_size=batch_size, length_before_new_iter=length
    )


def make_transforms(
    image_size: int,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    resize: int | None = None,
) -> tuple[T.Compose, T.Compose]:
    """Train and test transforms (PIL → (3, S, S)) as in the reference recipe.

    Train: resize the short side to ``resize`` (default ``S * 8 / 7``, 256 for 224), random
    crop S, horizontal flip. Test: resize, centre crop S; with ``resize`` None the test
    transform is exactly the exported encoder's (resize to S), so the validation metric
    sees what the index will hold.
    """
    tail = [T.ToTensor(), T.Normalize(mean, std)]
    train_side = resize or round(image_size * 8 / 7)
    train = T.Compose(
        [T.Resize(train_side), T.RandomCrop(image_size), T.RandomHorizontalFlip(), *tail]
    )
    test = T.Compose([T.Resize(resize or image_size), T.CenterCrop(image_size), *tail])
    return train, test
