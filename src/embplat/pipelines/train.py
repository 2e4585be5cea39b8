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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.models.encoders import Backbone, get_backbone, resolve_device
from embplat.models.recipes import ClassifierRecipe, TrainConfig, make_config
from embplat.models.training import (
    EpochResult,
    History,
    Phase,
    RecipeNet,
    StatusProgress,
    best_epoch,
    fit,
)
from embplat.models.wordvectors import LabelSpace
from embplat.pipelines.context import Context
from embplat.pipelines.progress import NoProgress, ProgressSink
from embplat.pipelines.semantic import publish_label_vectors
from embplat.pipelines.train_data import (
    Built,
    Catalogued,
    catalog_samples,
    make_datasets,
    model_name,
    recipe_for,
)
from embplat.retrieval import collection_name
from embplat.workers.runner import JobHandle, run_in_process

log = logging.getLogger(__name__)


def train_recipe(
    ctx: Context,
    recipe: str,
    config: TrainConfig | Mapping[str, Any] | None = None,
    progress: ProgressSink | None = None,
    *,
    job_id: int | None = None,
) -> str:
    """Train ``recipe`` (``classifier``, ``devise`` or ``metric``) and register the model.

    Args:
        config: the recipe's frozen config, or its JSON-like dict (unknown keys are refused).
        job_id: the ``train`` job queued for this run (server mode), else a new job.

    Returns:
        The registered model name (``config.name``, else ``<recipe>-<n>``).

    Raises:
        ConfigError: bad config, unknown recipe or encoder, or the name is taken.
        DataError: fewer than two trainable classes, or a label with no word vector.
    """
    cfg = make_config(recipe, config)
    name = model_name(ctx, recipe, cfg.name)
    data = catalog_samples(ctx, cfg)
    built = recipe_for(ctx, recipe, cfg, data.classes)  # fails fast on unknown labels

    def work(job: JobHandle) -> dict[str, Any]:
        sink = _JobProgress(progress or NoProgress(), job)
        return _Run(ctx, recipe, cfg, name, data, built, sink, job).execute()

    run_in_process(
        sessions=ctx.sessions,
        kind="train",
        params={"recipe": recipe, "model": name, "config": cfg.as_dict()},
        work=work,
        job_id=job_id,
    )
    return name


@dataclass
class _Run:
    """One training run, from samples to a registered, embedded model."""

    ctx: Context
    recipe_name: str
    cfg: TrainConfig
    name: str
    data: Catalogued
    built: Built
    progress: _JobProgress
    job: JobHandle

    def execute(self) -> dict[str, Any]:
        device = str(resolve_device(self.cfg.device))
        backbone = get_backbone(self.cfg.encoder, self.cfg.weights)
        size = self.cfg.image_size or backbone.default_size
        stage1, main = self._fit(backbone, size, device)
        best = best_epoch(main.epochs)
        plots = self._plots(main.epochs)
        if self.cfg.keep_checkpoints == "best":
            prune_checkpoints(stage1 + main.epochs, keep=best)
        config = self._lineage(stage1 + main.epochs, main, best, device, plots)
        recipe = self.built.recipe
        with transaction(self.ctx.sessions) as session:
            repo.ensure_model(
                session=session,
                name=self.name,
                kind=self.recipe_name,
                encoder=self.cfg.encoder,
                weights=config["checkpoint"],
                dim=recipe.head.out_dim if recipe.head.export else backbone.dim,
                image_size=size,
                config=config,
            )
        embedded = embed_catalog(self.ctx, self.name, self.progress) if self.cfg.embed else 0
        semantic = self.cfg.embed and self.built.labels is not None
        labels = publish_label_vectors(self.ctx, self.name) if semantic else []
        return {
            "model": self.name,
            "best_epoch": best.epoch,
            "embedded": embedded,
            "labels": len(labels),
        }

    def _fit(self, backbone: Backbone, size: int, device: str) -> tuple[list[EpochResult], History]:
        """DeViSE's softmax stage 1 (when asked), then the recipe's frozen/unfrozen phases."""
        cfg, classes = self.cfg, self.data.classes
        tdata = make_datasets(self.ctx, backbone, size, self.data, self.built.transforms)
        opts = cfg.loop_options(device)
        stage1 = int(getattr(cfg, "stage1_epochs", 0))
        epochs = (
            cfg.freeze_epochs + cfg.unfreeze_epochs + (stage1 + cfg.freeze_epochs if stage1 else 0)
        )
        self.job.set_total(len(self.data.train) * epochs)
        out_dir = self.ctx.home / "models" / self.name
        meta = {
            "model": self.name,
            "config": cfg.as_dict(),
            "classes": classes,
            "encoder": _encoder_meta(cfg, backbone, size),
        }
        run = functools.partial(fit, data=tdata, opts=opts, out_dir=out_dir, progress=self.progress)
        torch.manual_seed(cfg.seed)
        history: list[EpochResult] = []
        if stage1:
            first = ClassifierRecipe(len(classes))
            phases = [
                Phase("stage1-frozen", cfg.freeze_epochs, freeze_backbone=True),
                Phase("stage1", stage1, freeze_backbone=False),
            ]
            meta1 = {**meta, "recipe": "classifier", "head": first.head.__dict__}
            net1 = RecipeNet(backbone.module, backbone.dim, first)
            history = run(net1, first, phases=phases, meta=meta1).epochs
        recipe = self.built.recipe
        meta = {
            **meta,
            **self.built.extras,
            "recipe": self.recipe_name,
            "head": recipe.head.__dict__,
        }
        net = RecipeNet(backbone.module, backbone.dim, recipe)
        main = run(net, recipe, phases=cfg.phases(), meta=meta, first_epoch=len(history) + 1)
        return history, main

    def _lineage(
        self,
        epochs: list[EpochResult],
        main: History,
        best: EpochResult,
        device: str,
        plots: list[str],
    ) -> dict[str, Any]:
        """What the catalog keeps: config, data seen, metrics per epoch, index, plots."""
        return {
            "recipe": self.recipe_name,
            "train_config": self.cfg.as_dict(),
            "checkpoint": _rel(self.ctx, best.checkpoint),
            "best_epoch": best.epoch,
            "metric": self.built.recipe.metric_name,
            "baseline": _finite(main.baseline),
            "epochs": [_epoch_row(self.ctx, r) for r in epochs],
            "data": {
                "classes": self.data.classes,
                "train_images": len(self.data.train),
                "valid_images": len(self.data.valid),
                "splits": {"train": "train", "valid": "valid"},
            },
            "collection": collection_name(self.name),
            "vectors": self.built.extras.get("vectors"),
            "label_center": _center(self.built.labels),
            "device": device,
            "plots": plots,
            "job_id": self.job.job_id,
        }

    def _plots(self, epochs: list[EpochResult]) -> list[str]:
        labels = self.built.labels
        if not self.cfg.plots or labels is None:
            return []
        from embplat.pipelines.train_plots import devise_pca_plot

        try:
            out = devise_pca_plot(self.ctx, self.name, epochs, self.data.classes, labels)
        except Exception as exc:  # a plot must never lose a finished training run
            log.warning("PCA plot of %s failed: %s", self.name, exc)
            return []
        return [_rel(self.ctx, str(out))] if out else []


def embed_catalog(ctx: Context, model: str, progress: ProgressSink | None = None) -> int:
    """Embed every cataloged image the trained ``model``'s collection lacks; returns how many."""
    space = ctx.space(model)
    with ctx.sessions() as session:
        pending = repo.pending_image_ids(session=session, collection_id=space.collection_id)
    if not pending:
        return 0
    advance = (progress or NoProgress()).task(f"embedding with {model}", len(pending))
    report = ctx.embed_into(space, pending, progress=advance)
    for path, reason in report.failed:
        log.warning("not embedded %s: %s", path, reason)
    return report.done


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
    """A path inside the data home stored relative to it (the home may move); "" stays."""
    if not path:
        return ""
    try:
        return str(Path(path).resolve().relative_to(ctx.home.resolve()))
    except ValueError:
        return str(Path(path).resolve())


def _center(labels: LabelSpace | None) -> list[float] | None:
    if labels is None or labels.center is None:
        return None
    return [float(x) for x in labels.center]


def _finite(x: float) -> float | None:
    return None if math.isnan(x) or math.isinf(x) else round(x, 6)


def prune_checkpoints(epochs: list[EpochResult], *, keep: EpochResult) -> int:
    """Delete every epoch's checkpoint file but ``keep``'s; their rows say "" from then on.

    Returns:
        How many files were deleted.
    """
    removed = 0
    for r in epochs:
        if r.checkpoint and r.checkpoint != keep.checkpoint:
            Path(r.checkpoint).unlink(missing_ok=True)
            r.checkpoint, removed = "", removed + 1
    log.info("kept the checkpoint of epoch %d, deleted %d others", keep.epoch, removed)
    return removed


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
