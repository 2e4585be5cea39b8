"""The ``devise`` recipe (Frome et al., 2013): images mapped onto their label's word vector.

The softmax head is replaced by a linear projection to the word-vector dimension, trained so
an image lands near its label's word vector: cosine loss (1 − cos), or DeViSE's hinge rank
loss against the other labels' vectors. A softmax classifier is trained first (stage 1),
as in the paper. Exports backbone + projection, so images and label vectors share one space
(zero-shot); after training, the PCA plot is drawn, the GZSL calibration (calibrated
stacking's gamma, from the seen classes only) is chosen and stored in the lineage, and the
label vectors are published into the model's collection. ``vectors`` may name a built-in
source (``glove``, ``minilm``: MiniLM prompt vectors) or a file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Sampler

from embplat.errors import ConfigError
from embplat.models.encoders import Backbone, check_features, with_features
from embplat.models.heads import Head, HeadSpec
from embplat.models.recipes import Built, RecipeSpec, Stage, register_recipe
from embplat.models.recipes.classifier import ClassifierRecipe, accuracy
from embplat.models.ridge_head import fit_ridge_head
from embplat.models.train_config import Phase, TrainConfig
from embplat.models.wordvectors import LabelSpace, label_matrix, open_vectors, resolve_source

DEVISE_LOSSES = ("cosine", "hinge")
#: How the projection is learnt: SGD epochs on the loss, or ridge regression in closed form.
DEVISE_PROJECTIONS = ("trained", "ridge")


@dataclass(frozen=True)
class DeviseConfig(TrainConfig):
    """The ``devise`` recipe.

    ``vectors``: ``glove``, ``minilm``, a word-vector file, or "" for the active ones.
    ``center``: subtract the mean of the training labels' vectors from every label vector
    (see ``LabelSpace``).
    ``stage1_epochs``: softmax-classifier epochs with the backbone unfrozen (after
    ``freeze_epochs`` cheap head-only epochs) before the projection replaces the softmax.
    ``projection``: ``trained`` (``freeze_epochs`` of SGD on the loss with the backbone
    frozen) or ``ridge`` (the least-squares map from the frozen features onto the label
    vectors, fitted once: ``models.ridge_head``); either is then fine-tuned with the backbone
    for ``unfreeze_epochs``. ``ridge_alpha``: its penalty; None chooses it by
    cross-validation over splits of the seen classes.
    """

    stage1_epochs: int = 1
    freeze_epochs: int = 3
    unfreeze_epochs: int = 2
    loss: str = "cosine"
    margin: float = 0.1
    vectors: str = ""
    center: bool = True
    projection: str = "trained"
    ridge_alpha: float | None = None
    features: str = "last"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.loss not in DEVISE_LOSSES:
            raise ConfigError(f"unknown DeViSE loss {self.loss!r}; choose one of: cosine, hinge")
        if self.projection not in DEVISE_PROJECTIONS:
            raise ConfigError(
                f"unknown DeViSE projection {self.projection!r}; choose one of: "
                + ", ".join(DEVISE_PROJECTIONS)
            )
        check_features(self.features)
        if self.ridge_alpha is not None and self.ridge_alpha < 0:
            raise ConfigError(f"ridge_alpha must be 0 or more, got {self.ridge_alpha}")
        if self.stage1_epochs < 0:
            raise ConfigError(f"stage1_epochs must be 0 or more, got {self.stage1_epochs}")
        if self.projection == "trained":
            self.check_epochs()

    def phases(self) -> list[Phase]:
        """The projection's phases: SGD epochs or the ridge fit (frozen), then unfrozen."""
        if self.projection == "trained":
            return super().phases()
        return [
            Phase("ridge", 1, freeze_backbone=True, closed_form=True),
            Phase("unfrozen", self.unfreeze_epochs, freeze_backbone=False),
        ]


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

    def __init__(
        self,
        label_vectors: np.ndarray,
        *,
        loss: str = "cosine",
        margin: float = 0.1,
        ridge_alpha: float | None = None,
        seed: int = 0,
    ):
        if len(label_vectors) < 2:
            raise ConfigError(f"DeViSE needs at least 2 training labels, got {len(label_vectors)}")
        if loss not in DEVISE_LOSSES:
            raise ConfigError(f"unknown DeViSE loss {loss!r}; choose one of: cosine, hinge")
        self.vectors = F.normalize(torch.as_tensor(np.asarray(label_vectors)).float(), dim=1)
        self.head = HeadSpec(out_dim=int(self.vectors.shape[1]), export=True)
        self.loss, self.margin = loss, margin
        self.ridge_alpha, self.seed = ridge_alpha, seed
        #: how the projection was fitted, filled by ``fit_head`` (the model record keeps it)
        self.projection: dict[str, object] = {"method": "trained"}

    def build_loss(self) -> nn.Module:
        """Cosine or hinge rank loss against the training labels' vectors."""
        if self.loss == "hinge":
            return HingeRankLoss(self.vectors, self.margin)
        return CosineLoss(self.vectors)

    def metric(self, outputs: torch.Tensor, labels: torch.Tensor) -> float:
        """Accuracy of the nearest (cosine) training-label vector; NaN without samples."""
        return accuracy(F.normalize(outputs.float(), dim=1) @ self.vectors.T, labels)

    def sampler(self, labels: Sequence[int]) -> Sampler | None:
        """Plain shuffling."""
        return None

    def fit_head(self, head: Head, features: torch.Tensor, labels: torch.Tensor) -> None:
        """The projection as the ridge map from ``features`` (N, D) onto the label vectors
        of ``labels`` (N,), alpha given or chosen over class splits (``models.ridge_head``)."""
        fitted = fit_ridge_head(
            features.double().numpy(),
            labels.numpy(),
            self.vectors.double().numpy(),
            alpha=self.ridge_alpha,
            seed=self.seed,
        )
        weight, bias = fitted.linear()
        with torch.no_grad():
            head.linear.weight.copy_(torch.from_numpy(weight))
            head.linear.bias.copy_(torch.from_numpy(bias))
        self.projection.clear()
        self.projection.update(fitted.summary())


@register_recipe
class Devise(RecipeSpec[DeviseConfig]):
    """Registry entry of the ``devise`` recipe."""

    name = "devise"
    config = DeviseConfig
    hooks = ("pca_plot", "gzsl_calibration", "label_vectors")

    def build(self, cfg: DeviseConfig, classes: list[str], *, home: Path) -> Built:
        """The projection onto ``classes``' label vectors (centred or not).

        Raises:
            DataError: a class name has no word vector (the message names it).
        """
        source = resolve_source(cfg.vectors, home)
        vectors = open_vectors(source)
        raw = label_matrix(vectors, classes)
        labels = LabelSpace(vectors, raw.mean(axis=0) if cfg.center else None)
        targets = labels.matrix(classes)
        center = labels.center
        extras = {
            "vectors": source.as_dict(),
            "label_vectors": torch.from_numpy(targets),
            "label_center": None if center is None else torch.from_numpy(center),
        }
        recipe = DeviseRecipe(
            targets, loss=cfg.loss, margin=cfg.margin, ridge_alpha=cfg.ridge_alpha, seed=cfg.seed
        )
        lineage = {
            "vectors": source.as_dict(),
            "label_center": None if center is None else [float(x) for x in center],
            "projection": recipe.projection,  # filled in when a ridge fit runs
        }
        return Built(recipe, extras, lineage, labels)

    def backbone(self, cfg: DeviseConfig, backbone: Backbone) -> Backbone:
        """The backbone with the features ``cfg.features`` asks for."""
        return with_features(backbone, cfg.features)

    def stages(self, cfg: DeviseConfig, built: Built, classes: list[str]) -> list[Stage]:
        """A softmax classifier first (``stage1_epochs`` > 0), then the projection."""
        main = super().stages(cfg, built, classes)
        if not cfg.stage1_epochs:
            return main
        first = ClassifierRecipe(len(classes))
        phases = [
            Phase("stage1-frozen", cfg.freeze_epochs, freeze_backbone=True),
            Phase("stage1", cfg.stage1_epochs, freeze_backbone=False),
        ]
        return [Stage("classifier", first, phases), *main]
