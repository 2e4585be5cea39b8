"""What a training run is built from: catalog samples, the model name, the datasets.

The recipe object itself comes from the recipe's registry entry (``models.recipes``).
"""

from __future__ import annotations

import functools
import math
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embplat.catalog import repo
from embplat.errors import ConfigError, DataError
from embplat.ingest.images import load_rgb
from embplat.models.encoders import Backbone
from embplat.models.recipes import Transforms
from embplat.models.samples import (
    ImageSamples,
    Sample,
    TrainData,
    eval_transform,
    train_transform,
)
from embplat.models.train_config import TrainConfig
from embplat.pipelines.context import Context


@dataclass(frozen=True)
class Catalogued:
    """The samples a run trains on: class names (index order), train and valid samples."""

    classes: list[str]
    train: list[Sample]
    valid: list[Sample]


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


def home_relative(ctx: Context, path: str) -> str:
    """A path inside the data home stored relative to it (the home may move); "" stays."""
    if not path:
        return ""
    try:
        return str(Path(path).resolve().relative_to(ctx.home.resolve()))
    except ValueError:
        return str(Path(path).resolve())


def finite(x: float) -> float | None:
    """A metric as stored in lineage: rounded, None for NaN or an infinity."""
    return None if math.isnan(x) or math.isinf(x) else round(x, 6)


def best_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The epoch row with the highest ``metric`` (None counts lowest; ties: the earlier)."""
    return max(rows, key=lambda r: (-math.inf if r["metric"] is None else r["metric"], -r["epoch"]))


def prune_rows(ctx: Context, rows: list[dict[str, Any]], *, keep: dict[str, Any]) -> None:
    """Delete every epoch row's checkpoint but ``keep``'s; their rows say "" from then on."""
    for row in rows:
        if row["checkpoint"] and row is not keep:
            (ctx.home / row["checkpoint"]).unlink(missing_ok=True)
            row["checkpoint"] = ""
