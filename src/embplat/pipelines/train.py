"""Use case: train a recipe on the catalog's seen classes, register it, embed with it.

``train_recipe(ctx, recipe, config, progress)`` is the one entry point (the CLI calls it in
local mode; a Celery ``train`` task calls it in a worker). It takes only a recipe name and a
JSON-serialisable config, runs as a recorded ``train`` job, and returns the registered model
name. Steps: load (path, class) samples of the ``train`` / ``valid`` splits of seen classes →
``fit`` (DeViSE: a softmax stage 1, then the projection, frozen then unfrozen) → checkpoint
per epoch in ``<home>/models/<name>/`` → best epoch by the valid metric → catalog row (config,
data seen, metrics per epoch, collection) → every cataloged image embedded into the model's
own collection ``embplat_<name>`` (DeViSE: plus one ``label`` point per class).
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.errors import ConfigError, DataError
from embplat.ingest.embedding import embed_images
from embplat.ingest.images import load_rgb
from embplat.models.encoders import Backbone, get_backbone, resolve_device
from embplat.models.recipes import (
    ClassifierRecipe,
    DeviseConfig,
    DeviseRecipe,
    TrainConfig,
    make_config,
)
from embplat.models.training import (
    EpochResult,
    ImageSamples,
    Phase,
    Recipe,
    RecipeNet,
    Sample,
    StatusProgress,
    TrainData,
    best_epoch,
    eval_transform,
    fit,
    train_transform,
)
from embplat.models.wordvectors import label_matrix, open_vectors
from embplat.pipelines.context import Context
from embplat.pipelines.progress import NoProgress, ProgressSink
from embplat.pipelines.semantic import publish_label_vectors, resolve_vectors
from embplat.retrieval import collection_name
from embplat.workers.runner import JobHandle, run_in_process

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Catalogued:
    """The samples a run trains on: class names (index order), train and valid samples."""

    classes: list[str]
    train: list[Sample]
    valid: list[Sample]


def train_recipe(
    ctx: Context,
    recipe: str,
    config: TrainConfig | Mapping[str, Any] | None = None,
    progress: ProgressSink | None = None,
) -> str:
    """Train ``recipe`` (``classifier`` or ``devise``) and register the model.

    Args:
        config: the recipe's frozen config, or its JSON-like dict (unknown keys are refused).

    Returns:
        The registered model name (``config.name``, else ``<recipe>-<n>``).

    Raises:
        ConfigError: bad config, unknown recipe or encoder, or the name is taken.
        DataError: fewer than two trainable classes, or a label with no word vector.
    """
    cfg = make_config(recipe, config)
    name = _model_name(ctx, recipe, cfg.name)
    data = catalog_samples(ctx, cfg)
    built = _recipe_for(ctx, recipe, cfg, data.classes)  # fails fast on unknown labels

    def work(job: JobHandle) -> dict[str, Any]:
        sink = _JobProgress(progress or NoProgress(), job)
        return _train(ctx, recipe, cfg, name, data, built, sink, job)

    run_in_process(
        sessions=ctx.sessions,
        kind="train",
        params={"recipe": recipe, "model": name, "config": cfg.as_dict()},
        work=work,
    )
    return name


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


def _model_name(ctx: Context, recipe: str, wanted: str | None) -> str:
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


def _recipe_for(
    ctx: Context, recipe: str, cfg: TrainConfig, classes: list[str]
) -> tuple[Recipe, dict[str, Any]]:
    """The recipe object and the extras its checkpoints carry."""
    if recipe == "classifier":
        smoothing = float(getattr(cfg, "label_smoothing", 0.0))
        return ClassifierRecipe(len(classes), label_smoothing=smoothing), {}
    if recipe == "devise" and isinstance(cfg, DeviseConfig):
        source = resolve_vectors(ctx, cfg.vectors)
        matrix = label_matrix(open_vectors(source), classes)
        extras = {"vectors": source.as_dict(), "label_vectors": torch.from_numpy(matrix)}
        return DeviseRecipe(matrix, loss=cfg.loss, margin=cfg.margin), extras
    raise ConfigError(f"no training recipe {recipe!r}")


def _datasets(ctx: Context, backbone: Backbone, size: int, data: Catalogued) -> TrainData:
    loader = functools.partial(load_rgb, max_pixels=ctx.ingest.max_pixels)
    plain = eval_transform(size, backbone.mean, backbone.std)
    return TrainData(
        train=ImageSamples(data.train, train_transform(size, backbone.mean, backbone.std), loader),
        train_plain=ImageSamples(data.train, plain, loader),
        valid=ImageSamples(data.valid, plain, loader),
    )


def _train(
    ctx: Context,
    recipe_name: str,
    cfg: TrainConfig,
    name: str,
    data: Catalogued,
    built: tuple[Recipe, dict[str, Any]],
    progress: _JobProgress,
    job: JobHandle,
) -> dict[str, Any]:
    device = str(resolve_device(cfg.device))
    backbone = get_backbone(cfg.encoder, cfg.weights)
    size = cfg.image_size or backbone.default_size
    tdata, opts = _datasets(ctx, backbone, size, data), cfg.loop_options(device)
    out_dir = ctx.home / "models" / name
    stage1 = getattr(cfg, "stage1_epochs", 0) if recipe_name == "devise" else 0
    job.set_total(len(data.train) * (stage1 + cfg.freeze_epochs + cfg.unfreeze_epochs))
    meta = {
        "model": name,
        "config": cfg.as_dict(),
        "classes": data.classes,
        "encoder": _encoder_meta(cfg, backbone, size),
    }
    torch.manual_seed(cfg.seed)
    history: list[EpochResult] = []
    if stage1:
        first = ClassifierRecipe(len(data.classes))
        net1 = RecipeNet(backbone.module, backbone.dim, first)
        phases = [Phase("stage1", stage1, freeze_backbone=False)]
        meta1 = {**meta, "recipe": "classifier", "head": first.head.__dict__}
        run1 = fit(net1, first, tdata, phases, opts, out_dir=out_dir, meta=meta1, progress=progress)
        history += run1.epochs
    recipe, extras = built
    net = RecipeNet(backbone.module, backbone.dim, recipe)
    meta = {**meta, **extras, "recipe": recipe_name, "head": recipe.head.__dict__}
    main = fit(
        net,
        recipe,
        tdata,
        cfg.phases(),
        opts,
        out_dir=out_dir,
        meta=meta,
        progress=progress,
        first_epoch=len(history) + 1,
    )
    best = best_epoch(main.epochs)
    plots = _plots(ctx, name, recipe_name, cfg, data, main.epochs, extras)
    config = {
        "recipe": recipe_name,
        "train_config": cfg.as_dict(),
        "checkpoint": _rel(ctx, best.checkpoint),
        "best_epoch": best.epoch,
        "metric": recipe.metric_name,
        "baseline": _finite(main.baseline),
        "epochs": [_epoch_row(ctx, r) for r in history + main.epochs],
        "data": {
            "classes": data.classes,
            "train_images": len(data.train),
            "valid_images": len(data.valid),
            "splits": {"train": "train", "valid": "valid"},
        },
        "collection": collection_name(name),
        "vectors": extras.get("vectors"),
        "device": device,
        "plots": plots,
        "job_id": job.job_id,
    }
    with transaction(ctx.sessions) as session:
        repo.ensure_model(
            session=session,
            name=name,
            kind=recipe_name,
            encoder=cfg.encoder,
            weights=config["checkpoint"],
            dim=recipe.head.out_dim if recipe.head.export else backbone.dim,
            image_size=size,
            config=config,
        )
    embedded = embed_catalog(ctx, name, progress) if cfg.embed else 0
    labels = publish_label_vectors(ctx, name) if cfg.embed and recipe_name == "devise" else []
    return {"model": name, "best_epoch": best.epoch, "embedded": embedded, "labels": len(labels)}


def embed_catalog(ctx: Context, model: str, progress: ProgressSink | None = None) -> int:
    """Embed every cataloged image the trained ``model``'s collection lacks; returns how many."""
    space = ctx.space(model)
    with ctx.sessions() as session:
        pending = repo.pending_image_ids(session=session, collection_id=space.collection_id)
    advance = (progress or NoProgress()).task(f"embedding with {model}", len(pending))
    report = embed_images(
        pending,
        sessions=ctx.sessions,
        encoder=space.encoder,
        index=space.index,
        collection_id=space.collection_id,
        batch_size=ctx.embed.batch_size,
        num_workers=ctx.embed.num_workers,
        commit_every=ctx.embed.commit_every,
        max_pixels=ctx.ingest.max_pixels,
        progress=advance,
    )
    for path, reason in report.failed:
        log.warning("not embedded %s: %s", path, reason)
    return report.done


def _plots(
    ctx: Context,
    name: str,
    recipe: str,
    cfg: TrainConfig,
    data: Catalogued,
    epochs: list[EpochResult],
    extras: dict[str, Any],
) -> list[str]:
    if not cfg.plots or recipe != "devise":
        return []
    from embplat.pipelines.train_plots import devise_pca_plot

    try:
        out = devise_pca_plot(ctx, name, epochs, data.classes, extras["vectors"])
    except Exception as exc:  # a plot must never lose a finished training run
        log.warning("PCA plot of %s failed: %s", name, exc)
        return []
    return [_rel(ctx, str(out))] if out else []


def _encoder_meta(cfg: TrainConfig, backbone: Backbone, size: int) -> dict[str, Any]:
    return {
        "name": cfg.encoder,
        "weights": backbone.weights,
        "image_size": size,
        "dim": backbone.dim,
        "mean": list(backbone.mean),
        "std": list(backbone.std),
    }


def _rel(ctx: Context, path: str) -> str:
    """A path inside the data home stored relative to it (the home may move)."""
    try:
        return str(Path(path).resolve().relative_to(ctx.home.resolve()))
    except ValueError:
        return str(Path(path).resolve())


def _finite(x: float) -> float | None:
    return None if math.isnan(x) or math.isinf(x) else round(x, 6)


def _epoch_row(ctx: Context, r: EpochResult) -> dict[str, Any]:
    return {
        "epoch": r.epoch,
        "phase": r.phase,
        "loss": _finite(r.loss),
        "metric": _finite(r.metric),
        "images_per_s": round(r.images_per_s, 2),
        "seconds": round(r.seconds, 2),
        "checkpoint": _rel(ctx, r.checkpoint),
    }


class _JobProgress:
    """Forwards progress to the user's sink and counts trained images on the job row."""

    def __init__(self, sink: ProgressSink, job: JobHandle):
        self.sink, self.job = sink, job

    def task(self, description: str, total: int) -> Callable[[int], None]:
        """A bar of the user's sink that also advances the job."""
        bar = self.sink.task(description, total)

        def advance(n: int) -> None:
            bar(n)
            self.job.advance(n)

        return advance

    def status(self, text: str) -> None:
        """Show a live status (loss, images/s) when the user's sink can."""
        if isinstance(self.sink, StatusProgress):
            self.sink.status(text)
