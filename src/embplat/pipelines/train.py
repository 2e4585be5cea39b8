"""Use case: train a registered recipe on the catalog's seen classes, register it, embed with it.

``train_recipe(ctx, recipe, config, progress)`` is the one entry point, for every recipe of
the registry (``embplat.models.recipes``). It takes only a recipe name and a
JSON-serialisable config, runs as a recorded ``train`` job, and returns the registered model
name. Steps: load (path, class) samples of the ``train`` / ``valid`` splits of seen classes →
the recipe's stages through ``fit`` → checkpoint per epoch in ``<home>/models/<name>/`` →
the recipe's ``fit`` hooks → best epoch of the last stage by the valid metric → catalog row
(config, data seen, metrics per epoch, collection) → every cataloged image embedded into the
model's own collection ``embplat_<name>`` → the recipe's ``embed`` hooks.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.errors import ConfigError
from embplat.jobs.runner import JobHandle
from embplat.models.encoders import Backbone, get_backbone, resolve_device
from embplat.models.recipes import Built, RecipeSpec, get_recipe, make_config
from embplat.models.train_config import TrainConfig
from embplat.models.training import EpochResult, History, RecipeNet, best_epoch, fit
from embplat.pipelines.context import Context
from embplat.pipelines.embed import embed_into
from embplat.pipelines.train_data import (
    Catalogued,
    catalog_samples,
    finite,
    home_relative,
    make_datasets,
    model_name,
)
from embplat.pipelines.train_hooks import Trained, check_hooks, run_hooks
from embplat.progress import NoProgress, ProgressSink, show_status
from embplat.retrieval import collection_name

log = logging.getLogger(__name__)


def train_recipe(
    ctx: Context,
    recipe: str,
    config: TrainConfig | Mapping[str, Any] | None = None,
    progress: ProgressSink | None = None,
    *,
    job_id: int | None = None,
) -> str:
    """Train the registered ``recipe`` (e.g. ``classifier``, ``devise``, ``metric``) and
    register the model. A recipe that learns from captions is trained under the same
    recorded job by ``pipelines.train_pairs`` (``data = "captions"``: matching) or
    ``pipelines.train_captioner`` (``data = "captioning"``: caption generation).

    Args:
        config: the recipe's frozen config, or its JSON-like dict (unknown keys are refused).
        job_id: the ``train`` job queued for this run (server mode), else a new job.

    Returns:
        The registered model name (``config.name``, else ``<recipe>-<n>``).

    Raises:
        ConfigError: bad config, unknown recipe or encoder, or the name is taken.
        DataError: fewer than two trainable classes, or a label with no word vector.
    """
    spec = get_recipe(recipe)
    check_hooks(spec.hooks)
    cfg = make_config(recipe, config)
    name = model_name(ctx, recipe, cfg.name)
    if spec.data == "captions":  # (image, caption) pairs, not labelled images
        from embplat.pipelines.train_pairs import train_pairs

        return train_pairs(ctx, recipe, cfg, name, progress, job_id=job_id)
    if spec.data == "captioning":  # captioned images, decoded and attended over
        from embplat.pipelines.train_captioner import train_captioner

        return train_captioner(ctx, recipe, cfg, name, progress, job_id=job_id)
    data = catalog_samples(ctx, cfg)
    built = spec.build(cfg, data.classes, home=ctx.home)  # fails fast on unknown labels

    def work(job: JobHandle) -> dict[str, Any]:
        sink = _JobProgress(progress or NoProgress(), job)
        return _Run(ctx, spec, cfg, name, data, built, sink, job).execute()

    return run_training_job(ctx, recipe, cfg, name, work, job_id=job_id)


def run_training_job(
    ctx: Context,
    recipe: str,
    cfg: TrainConfig,
    name: str,
    work: Callable[[JobHandle], dict[str, Any]],
    *,
    job_id: int | None = None,
) -> str:
    """Run ``work`` as the recorded ``train`` job of model ``name`` (the queued ``job_id``,
    else a new job); returns ``name``."""
    ctx.runner.run(
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
    spec: RecipeSpec[Any]
    cfg: TrainConfig
    name: str
    data: Catalogued
    built: Built
    progress: _JobProgress
    job: JobHandle

    def execute(self) -> dict[str, Any]:
        device = str(resolve_device(self.cfg.device))
        backbone = self.spec.backbone(self.cfg, get_backbone(self.cfg.encoder, self.cfg.weights))
        size = self.cfg.image_size or backbone.default_size
        before, main = self._fit(backbone, size, device)
        best = best_epoch(main.epochs)
        fitted = run_hooks(self.spec.hooks, "fit", self._trained(main.epochs))
        if self.cfg.keep_checkpoints == "best":
            prune_checkpoints(before + main.epochs, keep=best)
        config = {**self._lineage(before + main.epochs, main, best, device), **fitted}
        recipe = self.built.recipe
        with transaction(self.ctx.sessions) as session:
            repo.ensure_model(
                session=session,
                name=self.name,
                kind=self.spec.name,
                encoder=self.cfg.encoder,
                weights=config["checkpoint"],
                dim=recipe.head.out_dim if recipe.head.export else backbone.dim,
                image_size=size,
                config=config,
            )
        out = {"model": self.name, "best_epoch": best.epoch, "embedded": 0, "labels": 0}
        if self.cfg.embed:
            out["embedded"] = embed_catalog(self.ctx, self.name, self.progress)
            out.update(run_hooks(self.spec.hooks, "embed", self._trained(main.epochs)))
        return out

    def _fit(self, backbone: Backbone, size: int, device: str) -> tuple[list[EpochResult], History]:
        """The recipe's stages in order; returns the earlier stages' epochs and the last's."""
        cfg, classes = self.cfg, self.data.classes
        stages = self.spec.stages(cfg, self.built, classes)
        if not stages:
            raise ConfigError(f"recipe {self.spec.name!r} declares no training stage")
        tdata = make_datasets(self.ctx, backbone, size, self.data, self.built.transforms)
        epochs = sum(p.epochs for stage in stages for p in stage.phases)
        self.job.set_total(len(self.data.train) * epochs)
        meta = {
            "model": self.name,
            "config": cfg.as_dict(),
            "classes": classes,
            "encoder": _encoder_meta(cfg, backbone, size),
        }
        run = functools.partial(
            fit,
            data=tdata,
            opts=cfg.loop_options(device),
            out_dir=self.ctx.home / "models" / self.name,
            progress=self.progress,
        )
        torch.manual_seed(cfg.seed)
        history: list[EpochResult] = []
        for stage in stages:
            head = {"recipe": stage.kind, "head": stage.recipe.head.__dict__}
            net = RecipeNet(backbone.module, backbone.dim, stage.recipe)
            out = run(
                net,
                stage.recipe,
                phases=stage.phases,
                meta={**meta, **stage.extras, **head},
                first_epoch=len(history) + 1,
            )
            history += out.epochs
        return history[: len(history) - len(out.epochs)], out

    def _trained(self, epochs: list[EpochResult]) -> Trained:
        classes = self.data.classes
        return Trained(self.ctx, self.name, self.cfg, classes, self.built, epochs)

    def _lineage(
        self, epochs: list[EpochResult], main: History, best: EpochResult, device: str
    ) -> dict[str, Any]:
        """What the catalog keeps: config, data seen, metrics per epoch, index, device."""
        return {
            "recipe": self.spec.name,
            "train_config": self.cfg.as_dict(),
            "checkpoint": home_relative(self.ctx, best.checkpoint),
            "best_epoch": best.epoch,
            "metric": self.built.recipe.metric_name,
            "baseline": finite(main.baseline),
            "epochs": [_epoch_row(self.ctx, r) for r in epochs],
            "data": {
                "classes": self.data.classes,
                "train_images": len(self.data.train),
                "valid_images": len(self.data.valid),
                "splits": {"train": "train", "valid": "valid"},
            },
            "collection": collection_name(self.name),
            # every model's record has these keys; a recipe's lineage fills them (DeViSE)
            "vectors": None,
            "label_center": None,
            **self.built.lineage,
            "device": device,
            "plots": [],
            "job_id": self.job.job_id,
        }


def embed_catalog(ctx: Context, model: str, progress: ProgressSink | None = None) -> int:
    """Embed every cataloged image the trained ``model``'s collection lacks; returns how many."""
    space = ctx.spaces.space(model)
    with ctx.sessions() as session:
        pending = repo.pending_image_ids(session=session, collection_id=space.collection_id)
    if not pending:
        return 0
    advance = (progress or NoProgress()).task(f"embedding with {model}", len(pending))
    report = embed_into(ctx, space, pending, progress=advance)
    for path, reason in report.failed:
        log.warning("not embedded %s: %s", path, reason)
    return report.done


def _encoder_meta(cfg: TrainConfig, backbone: Backbone, size: int) -> dict[str, Any]:
    return {
        "name": cfg.encoder,
        "weights": backbone.weights,
        "image_size": size,
        "dim": backbone.dim,
        "features": backbone.features,
        "mean": list(backbone.mean),
        "std": list(backbone.std),
    }


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
        "loss": finite(r.loss),
        "metric": finite(r.metric),
        "images_per_s": round(r.images_per_s, 2),
        "seconds": round(r.seconds, 2),
        "checkpoint": home_relative(ctx, r.checkpoint),
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
        show_status(self.sink, text)
