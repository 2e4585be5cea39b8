"""Deep metric learning pieces for the ``metric`` recipe, independent of the training loop.

Losses, miners, distances and the sampler come from pytorch-metric-learning, configured
through their constructors. Losses that own parameters (ProxyNCA's proxies, ArcFace's class
weights) are ``nn.Module``s: they get their own optimiser parameter group and their
``state_dict`` is saved next to the model's.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from pytorch_metric_learning import distances, losses, miners, samplers
from torch import nn
from torchvision import transforms as T

from embplat.errors import ConfigError
from embplat.models.recipes import CONFIGS, TrainConfig
from embplat.models.training import LoopOptions

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
        if self.freeze_epochs + self.unfreeze_epochs < 1:
            raise ConfigError("train for at least one epoch (--freeze-epochs/--unfreeze-epochs)")

    def loop_options(self, device: str) -> LoopOptions:
        """The loop settings, with the loss parameters' own learning rate and the optimiser
        (``sgd``: SGD with ``momentum``; ``adam``: the loop's AdamW, decoupled weight decay)."""
        return replace(
            super().loop_options(device),
            loss_lr=self.loss_lr,
            optimizer="sgd" if self.optimizer == "sgd" else "adamw",
            momentum=self.momentum,
        )


CONFIGS["metric"] = MetricConfig  # ``train_recipe(ctx, "metric", ...)``


class EmbeddingHead(nn.Module):
    """Linear projection (+ optional BatchNorm) from backbone features to the embedding.

    In training mode the raw output goes to the loss (pytorch-metric-learning's distances
    normalise internally); in eval mode the output is L2-normalised, as the index expects.
    """

    def __init__(self, in_dim: int, dim: int, *, bn: bool = False):
        super().__init__()
        self.linear = nn.Linear(in_dim, dim)
        self.bn = nn.BatchNorm1d(dim) if bn else nn.Identity()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, in_dim) → (B, dim); unit rows in eval mode."""
        out = self.bn(self.linear(features))
        return out if self.training else nn.functional.normalize(out, dim=1)


class EmbeddingModel(nn.Module):
    """Backbone followed by an :class:`EmbeddingHead`: (B, 3, S, S) → (B, dim)."""

    def __init__(self, trunk: nn.Module, head: EmbeddingHead):
        super().__init__()
        self.trunk = trunk
        self.head = head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) → (B, dim)."""
        return self.head(self.trunk(images))


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy (MPerClassSampler draws from ``np.random``) and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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


def build_optimizer(
    cfg: MetricConfig, model_params: Iterable[nn.Parameter], loss: nn.Module
) -> torch.optim.Optimizer:
    """One optimiser: the model's parameters, and the loss's (if any) in their own group.

    The loss group uses ``cfg.loss_lr`` (default ``cfg.lr``) and no weight decay, so proxies
    and class weights keep their scale. ``models.training.fit`` builds its own optimiser;
    this one is for loops that honour ``cfg.optimizer`` (SGD with momentum, or Adam).
    """
    groups: list[dict[str, Any]] = [
        {"params": [p for p in model_params if p.requires_grad], "lr": cfg.lr},
    ]
    loss_params = [p for p in loss.parameters() if p.requires_grad]
    if loss_params:
        groups.append({"params": loss_params, "lr": cfg.loss_lr or cfg.lr, "weight_decay": 0.0})
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(groups, weight_decay=cfg.weight_decay)


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
