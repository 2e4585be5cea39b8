"""Training recipes: ``classifier`` (transfer learning) and ``devise`` (visual-semantic).

Each recipe has a frozen config dataclass (saved in every checkpoint and in the catalog) and a
``Recipe`` object for ``embplat.models.training.fit``:

- ``classifier``: backbone + new linear head, cross-entropy; frozen backbone, then unfrozen.
  Exports the backbone's features (kNN search in the fine-tuned feature space).
- ``devise`` (Frome et al., 2013): the softmax head is replaced by a linear projection to the
  word-vector dimension, trained so an image lands near its label's word vector: cosine
  loss (1 − cos), or DeViSE's hinge rank loss against the other labels' vectors. Exports
  backbone + projection, so images and label vectors share one space (zero-shot).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Sampler

from embplat.errors import ConfigError
from embplat.models.training import HeadSpec, LoopOptions, Phase

DEVISE_LOSSES = ("cosine", "hinge")
#: ``all``: every epoch's checkpoint stays; ``best``: only the registered epoch's.
KEEP_CHECKPOINTS = ("all", "best")
C = TypeVar("C", bound="TrainConfig")


@dataclass(frozen=True)
class TrainConfig:
    """What every recipe shares. ``classes`` empty = every seen class of the catalog;
    ``keep_checkpoints`` (``KEEP_CHECKPOINTS``): which epoch files stay after training."""

    name: str | None = None
    encoder: str = "efficientnet_lite0"
    weights: str | None = None
    image_size: int | None = None
    classes: tuple[str, ...] = ()
    max_per_class: int | None = None
    freeze_epochs: int = 2
    unfreeze_epochs: int = 2
    batch_size: int = 32
    lr: float = 1e-3
    backbone_lr_mult: float = 0.1
    weight_decay: float = 1e-4
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    num_workers: int = 0
    cache_frozen: bool = True
    embed: bool = True
    plots: bool = True
    keep_checkpoints: str = "all"

    def __post_init__(self) -> None:
        if self.keep_checkpoints not in KEEP_CHECKPOINTS:
            raise ConfigError(
                f"keep_checkpoints must be one of {', '.join(KEEP_CHECKPOINTS)}, "
                f"got {self.keep_checkpoints!r}"
            )
        for key in ("freeze_epochs", "unfreeze_epochs", "num_workers"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key} must be 0 or more, got {getattr(self, key)}")
        if self.batch_size < 1 or self.lr <= 0:
            raise ConfigError(f"batch size ({self.batch_size}) and lr ({self.lr}) must be positive")
        if self.max_per_class is not None and self.max_per_class < 1:
            raise ConfigError(f"max_per_class must be at least 1, got {self.max_per_class}")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, as stored in checkpoints, jobs and the catalog."""
        out = asdict(self)
        out["classes"] = list(self.classes)
        return out

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
        """Rebuild from :meth:`as_dict` output (or a user's dict).

        Raises:
            ConfigError: an unknown key; the message lists the known ones.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} keys {unknown}; known: {sorted(known)}")
        values = dict(data)
        if "classes" in values:
            values["classes"] = tuple(values["classes"] or ())
        return cls(**values)

    def loop_options(self, device: str) -> LoopOptions:
        """The training-loop settings of this config on a resolved device."""
        return LoopOptions(
            batch_size=self.batch_size,
            lr=self.lr,
            backbone_lr_mult=self.backbone_lr_mult,
            weight_decay=self.weight_decay,
            device=device,
            amp=self.amp,
            num_workers=self.num_workers,
            cache_frozen=self.cache_frozen,
            seed=self.seed,
        )

    def phases(self) -> list[Phase]:
        """Frozen backbone (head only), then unfrozen (everything, backbone at a lower LR)."""
        return [
            Phase("frozen", self.freeze_epochs, freeze_backbone=True),
            Phase("unfrozen", self.unfreeze_epochs, freeze_backbone=False),
        ]


@dataclass(frozen=True)
class ClassifierConfig(TrainConfig):
    """The ``classifier`` recipe."""

    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.freeze_epochs + self.unfreeze_epochs < 1:
            raise ConfigError("train for at least one epoch (--freeze-epochs/--unfreeze-epochs)")


@dataclass(frozen=True)
class DeviseConfig(TrainConfig):
    """The ``devise`` recipe.

    ``vectors``: a word-vector file, or "" for the active ones. ``center``: subtract the mean
    of the training labels' vectors from every label vector (see ``LabelSpace``).
    ``stage1_epochs``: softmax-classifier epochs with the backbone unfrozen (after
    ``freeze_epochs`` cheap head-only epochs) before the projection replaces the softmax.
    """

    stage1_epochs: int = 1
    freeze_epochs: int = 3
    unfreeze_epochs: int = 2
    loss: str = "cosine"
    margin: float = 0.1
    vectors: str = ""
    center: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.loss not in DEVISE_LOSSES:
            raise ConfigError(f"unknown DeViSE loss {self.loss!r}; choose one of: cosine, hinge")
        if self.stage1_epochs < 0 or self.freeze_epochs + self.unfreeze_epochs < 1:
            raise ConfigError("DeViSE needs at least one --freeze-epochs or --unfreeze-epochs")


class ClassifierRecipe:
    """Softmax classifier over the training classes; metric: valid top-1 accuracy."""

    name = "classifier"
    metric_name = "valid_accuracy"

    def __init__(self, num_classes: int, *, label_smoothing: float = 0.0):
        if num_classes < 2:
            raise ConfigError(f"a classifier needs at least 2 classes, got {num_classes}")
        self.head = HeadSpec(out_dim=num_classes, export=False)
        self.label_smoothing = label_smoothing

    def build_loss(self) -> nn.Module:
        """Cross-entropy on the logits."""
        return nn.CrossEntropyLoss(label_smoothing=self.label_smoothing)

    def metric(self, outputs: torch.Tensor, labels: torch.Tensor) -> float:
        """Top-1 accuracy of (N, C) logits; NaN without samples."""
        return _accuracy(outputs, labels)

    def sampler(self, labels: Sequence[int]) -> Sampler | None:
        """Plain shuffling."""
        return None


class CosineLoss(nn.Module):
    """Mean of ``1 - cos(projection, label vector)``: pulls each image onto its label."""

    def __init__(self, label_vectors: torch.Tensor):
        super().__init__()
        self.targets: torch.Tensor
        self.register_buffer("targets", F.normalize(label_vectors.float(), dim=1))

    def forward(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B, D) projections, (B,) class indices → scalar."""
        return (1 - F.cosine_similarity(outputs, self.targets[labels], dim=1)).mean()


class HingeRankLoss(nn.Module):
    """DeViSE's rank loss: ``Σ_j≠y max(0, margin − s_y + s_j)`` with cosine scores ``s``."""

    def __init__(self, label_vectors: torch.Tensor, margin: float = 0.1):
        super().__init__()
        self.targets: torch.Tensor
        self.register_buffer("targets", F.normalize(label_vectors.float(), dim=1))
        self.margin = margin

    def forward(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B, D) projections, (B,) class indices → scalar."""
        scores = F.normalize(outputs, dim=1) @ self.targets.T
        true = scores.gather(1, labels[:, None])
        hinge = (self.margin - true + scores).clamp(min=0)
        hinge = hinge.masked_fill(F.one_hot(labels, scores.shape[1]).bool(), 0.0)
        return hinge.sum(dim=1).mean()


class DeviseRecipe:
    """Projection onto word vectors; metric: valid accuracy of the nearest label vector."""

    name = "devise"
    metric_name = "valid_label_accuracy"

    def __init__(self, label_vectors: np.ndarray, *, loss: str = "cosine", margin: float = 0.1):
        if len(label_vectors) < 2:
            raise ConfigError(f"DeViSE needs at least 2 training labels, got {len(label_vectors)}")
        if loss not in DEVISE_LOSSES:
            raise ConfigError(f"unknown DeViSE loss {loss!r}; choose one of: cosine, hinge")
        self.vectors = F.normalize(torch.as_tensor(np.asarray(label_vectors)).float(), dim=1)
        self.head = HeadSpec(out_dim=int(self.vectors.shape[1]), export=True)
        self.loss, self.margin = loss, margin

    def build_loss(self) -> nn.Module:
        """Cosine or hinge rank loss against the training labels' vectors."""
        if self.loss == "hinge":
            return HingeRankLoss(self.vectors, self.margin)
        return CosineLoss(self.vectors)

    def metric(self, outputs: torch.Tensor, labels: torch.Tensor) -> float:
        """Accuracy of the nearest (cosine) training-label vector; NaN without samples."""
        return _accuracy(F.normalize(outputs.float(), dim=1) @ self.vectors.T, labels)

    def sampler(self, labels: Sequence[int]) -> Sampler | None:
        """Plain shuffling."""
        return None


def _accuracy(scores: torch.Tensor, labels: torch.Tensor) -> float:
    if len(labels) == 0:
        return math.nan
    return float((scores.argmax(dim=1) == labels).float().mean())


#: Recipe name → its config class (``pipelines.train`` builds the recipe objects).
CONFIGS: dict[str, type[TrainConfig]] = {"classifier": ClassifierConfig, "devise": DeviseConfig}


def make_config(recipe: str, config: TrainConfig | Mapping[str, Any] | None) -> TrainConfig:
    """A frozen config for ``recipe`` from a dataclass, a JSON-like dict, or None (defaults).

    Raises:
        ConfigError: unknown recipe, a config of another recipe, or unknown keys.
    """
    cls = CONFIGS.get(recipe)
    if cls is None:
        raise ConfigError(f"unknown recipe {recipe!r}; choose one of: {', '.join(CONFIGS)}")
    if config is None:
        return cls()
    if isinstance(config, TrainConfig):
        if not isinstance(config, cls):
            raise ConfigError(f"recipe {recipe!r} needs a {cls.__name__}, got {type(config)}")
        return config
    return cls.from_dict(config)
