"""What a training run is built from: catalog samples, the model name, the recipe object.

Adding a recipe (e.g. the metric-learning ones): a config class in ``models.recipes.CONFIGS``
and a branch in :func:`recipe_for` returning its ``Recipe`` object.
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from embplat.catalog import repo
from embplat.errors import ConfigError, DataError
from embplat.ingest.images import load_rgb
from embplat.models.encoders import Backbone
from embplat.models.metric import MetricConfig, make_transforms
from embplat.models.metric_recipe import MetricRecipe
from embplat.models.recipes import ClassifierRecipe, DeviseConfig, DeviseRecipe, TrainConfig
from embplat.models.samples import (
    ImageSamples,
    Sample,
    TrainData,
    eval_transform,
    train_transform,
)
from embplat.models.training import Recipe
from embplat.models.wordvectors import LabelSpace, label_matrix, open_vectors
from embplat.pipelines.context import Context
from embplat.pipelines.semantic import resolve_vectors


@dataclass(frozen=True)
class Catalogued:
    """The samples a run trains on: class names (index order), train and valid samples."""

    classes: list[str]
    train: list[Sample]
    valid: list[Sample]


#: ``(size, mean=, std=) -> (train, test)`` PIL → (3, S, S) transforms of a recipe.
Transforms = Callable[..., tuple[Callable[[Any], torch.Tensor], Callable[[Any], torch.Tensor]]]


@dataclass(frozen=True)
class Built:
    """A recipe object, the extras its checkpoints carry, and its label space (DeViSE).

    ``transforms``: the recipe's own train/test transforms; None = the loop's defaults.
    """

    recipe: Recipe
    extras: dict[str, Any]
    labels: LabelSpace | None = None
    transforms: Transforms | None = None


def catalog_samples(ctx: Context, cfg: TrainConfig) -> Catalogued:
    """Train/valid samples of the configured seen classes (first ``max_per_class`` by id).

    Raises:
        DataError: a requested class is unknown, unseen or has no train images; < 2 classes.
    """
    with ctx.sessions() as session:
        rows = repo.labelled_images(session=session, splits=["train"], roles=["seen"])
        valid_rows = repo.labelled_images(session=session, splits=["valid"], roles=["seen"])
    by_class: dict[str, list[str]] = defaultdict(list)
    for _, path, cls, _ in rows:
        by_class[cls].append(path)
    classes = list(cfg.classes) or sorted(by_class)
    missing = [c for c in classes if c not in by_class]
    if missing:
        raise DataError(
            f"classes {missing} have no train images among seen classes (unseen classes, "
            "from testclasses.txt, are never trained on); see `platform classes list`"
        )
    if len(classes) < 2:
        raise DataError(f"training needs at least 2 classes with train images, got {classes}")
    index = {c: i for i, c in enumerate(classes)}
    cap = cfg.max_per_class
    train = [Sample(p, index[c]) for c in classes for p in by_class[c][:cap]]
    valid = [Sample(p, index[c]) for _, p, c, _ in valid_rows if c in index]
    return Catalogued(classes, train, valid)


def model_name(ctx: Context, recipe: str, wanted: str | None) -> str:
    """``wanted`` checked to be free and well-formed, or ``<recipe>-<next number>``.

    Raises:
        ConfigError: the name is taken or has characters other than letters, digits, ``._-``.
    """
    with ctx.sessions() as session:
        taken = {m.name for m in repo.list_models(session=session)}
    if wanted:
        if wanted in taken:
            raise ConfigError(f"a model named {wanted!r} exists already; choose another --name")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", wanted):
            raise ConfigError(f"model name {wanted!r}: use letters, digits, '.', '_' and '-'")
        return wanted
    numbers = [int(m.group(1)) for t in taken if (m := re.fullmatch(rf"{recipe}-(\d+)", t))]
    return f"{recipe}-{max(numbers, default=0) + 1}"


def recipe_for(ctx: Context, recipe: str, cfg: TrainConfig, classes: list[str]) -> Built:
    """The recipe object for ``classes`` (DeViSE: their label vectors, centred or not).

    Raises:
        DataError: a class name has no word vector (the message names it).
        ConfigError: an unknown recipe.
    """
    if recipe == "classifier":
        smoothing = float(getattr(cfg, "label_smoothing", 0.0))
        return Built(ClassifierRecipe(len(classes), label_smoothing=smoothing), {})
    if recipe == "devise" and isinstance(cfg, DeviseConfig):
        source = resolve_vectors(ctx, cfg.vectors)
        vectors = open_vectors(source)
        raw = label_matrix(vectors, classes)
        labels = LabelSpace(vectors, raw.mean(axis=0) if cfg.center else None)
        targets = labels.matrix(classes)
        extras = {
            "vectors": source.as_dict(),
            "label_vectors": torch.from_numpy(targets),
            "label_center": None if labels.center is None else torch.from_numpy(labels.center),
        }
        return Built(DeviseRecipe(targets, loss=cfg.loss, margin=cfg.margin), extras, labels)
    if recipe == "metric" and isinstance(cfg, MetricConfig):
        transforms = functools.partial(make_transforms, resize=cfg.resize)
        return Built(MetricRecipe(cfg, len(classes)), {}, transforms=transforms)
    raise ConfigError(f"no training recipe {recipe!r}")


def make_datasets(
    ctx: Context,
    backbone: Backbone,
    size: int,
    data: Catalogued,
    transforms: Transforms | None = None,
) -> TrainData:
    """Augmented and plain train images, plain valid images, all at ``size`` pixels.

    ``transforms``: the recipe's (train, test) transforms factory; default the loop's own.
    """
    loader = functools.partial(load_rgb, max_pixels=ctx.ingest.max_pixels)
    mean: Sequence[float] = backbone.mean
    std: Sequence[float] = backbone.std
    if transforms is not None:
        augment, plain = transforms(size, mean=mean, std=std)
    else:
        augment, plain = train_transform(size, mean, std), eval_transform(size, mean, std)
    return TrainData(
        train=ImageSamples(data.train, augment, loader),
        train_plain=ImageSamples(data.train, plain, loader),
        valid=ImageSamples(data.valid, plain, loader),
    )
