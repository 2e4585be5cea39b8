"""The ``metric`` recipe: deep metric learning with pytorch-metric-learning losses.

Triplet (EPSHN), ProxyNCA, ArcFace or SubCenterArcFace on a linear (+BN) embedding head,
m-per-class batches, the reference recipe's own transforms (``models.metric``); the valid
metric is leave-one-out precision@1 of the valid embeddings (cosine), the quantity kNN
classification through the index depends on. The exported encoder is backbone + head.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Sampler

from embplat.models.heads import HeadSpec
from embplat.models.metric import (
    MetricConfig,
    MinedLoss,
    build_loss,
    make_sampler,
    make_transforms,
)
from embplat.models.recipes import Built, RecipeSpec, register_recipe


class MetricRecipe:
    """Deep metric learning with pytorch-metric-learning losses (see ``MetricConfig``)."""

    name = "metric"
    metric_name = "valid_precision_at_1"

    def __init__(self, cfg: MetricConfig, num_classes: int):
        self.cfg = cfg
        self.num_classes = num_classes
        self.head = HeadSpec(out_dim=cfg.dim, bn=cfg.bn, export=True)
        build_loss(cfg, num_classes)  # fail fast (e.g. one class) before any data is read

    def build_loss(self) -> nn.Module:
        """The configured loss (with its miner), seeded from the config."""
        return MinedLoss(*build_loss(self.cfg, self.num_classes))

    def metric(self, outputs: torch.Tensor, labels: torch.Tensor) -> float:
        """Leave-one-out precision@1 of (N, dim) outputs; NaN with fewer than 2 samples."""
        return precision_at_1(outputs, labels)

    def sampler(self, labels: Sequence[int]) -> Sampler:
        """m images of each of ``batch_size / m`` classes per batch (seeded: the sampler
        draws from NumPy's global generator, so a run repeats exactly)."""
        np.random.seed(self.cfg.seed)
        return make_sampler(labels, self.cfg.m_per_class, self.cfg.batch_size)


def precision_at_1(embeddings: torch.Tensor, labels: torch.Tensor, chunk: int = 1024) -> float:
    """Share of rows whose most cosine-similar other row has the same label.

    Args:
        embeddings: (N, D) vectors, any scale.
        labels: (N,) class indices.
        chunk: rows compared at a time (memory ~ chunk x N floats).
    """
    if len(labels) < 2:
        return math.nan
    x = F.normalize(embeddings.float(), dim=1)
    hits = 0
    for start in range(0, len(x), chunk):
        sims = x[start : start + chunk] @ x.T
        rows = torch.arange(len(sims))
        sims[rows, rows + start] = -math.inf
        hits += int((labels[sims.argmax(dim=1)] == labels[start : start + chunk]).sum())
    return hits / len(labels)


@register_recipe
class Metric(RecipeSpec[MetricConfig]):
    """Registry entry of the ``metric`` recipe."""

    name = "metric"
    config = MetricConfig

    def build(self, cfg: MetricConfig, classes: list[str], *, home: Path) -> Built:
        """The configured loss over ``classes``, with the recipe's own transforms."""
        transforms = functools.partial(make_transforms, resize=cfg.resize)
        return Built(MetricRecipe(cfg, len(classes)), transforms=transforms)
