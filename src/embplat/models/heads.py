"""What a recipe trains: the head on the backbone, the ``Recipe`` interface, the whole net.

``HeadSpec`` is enough to rebuild the head from a checkpoint (``models.checkpoints``);
``RecipeNet`` holds backbone, head and loss in one module so one ``state_dict`` has
everything trained (proxies and class weights included). ``models.training.fit`` trains it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import nn
from torch.utils.data import Sampler


@dataclass(frozen=True)
class HeadSpec:
    """The layer on top of the backbone, enough to rebuild it from a checkpoint."""

    out_dim: int
    bn: bool = False
    export: bool = False


class Head(nn.Module):
    """Linear (+ optional BatchNorm1d): (B, in_dim) → (B, out_dim)."""

    def __init__(self, in_dim: int, spec: HeadSpec):
        super().__init__()
        self.linear = nn.Linear(in_dim, spec.out_dim)
        self.bn: nn.Module = nn.BatchNorm1d(spec.out_dim) if spec.bn else nn.Identity()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, in_dim) → (B, out_dim)."""
        return self.bn(self.linear(features))


@runtime_checkable
class Recipe(Protocol):
    """What ``fit`` needs from a recipe (see the module docstring)."""

    name: str
    metric_name: str
    head: HeadSpec

    def build_loss(self) -> nn.Module:
        """Module computing ``loss(outputs (B, out_dim), labels (B,)) -> scalar``."""

    def metric(self, outputs: torch.Tensor, labels: torch.Tensor) -> float:
        """Validation metric over (N, out_dim) outputs; higher is better."""

    def sampler(self, labels: Sequence[int]) -> Sampler | None:
        """Batch sampler over the training labels, or None to shuffle."""


class RecipeNet(nn.Module):
    """Backbone + head + loss in one module, so one ``state_dict`` holds everything trained."""

    def __init__(self, backbone: nn.Module, in_dim: int, recipe: Recipe):
        super().__init__()
        self.backbone = backbone
        self.head = Head(in_dim, recipe.head)
        self.loss = recipe.build_loss()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) → (B, out_dim)."""
        return self.head(self.backbone(images))
