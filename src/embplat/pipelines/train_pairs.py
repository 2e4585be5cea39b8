"""Use case: train a recipe that learns from captions (``data = "captions"``, e.g.
``matching``) as a recorded ``train`` job.

Steps: embed the catalog's pending images with the active encoder → its stored vectors of
the train/valid images and their captions (``caption_pairs``) → epochs of the pair trainer,
a checkpoint per epoch in ``<home>/models/<name>/`` → the best epoch by the valid R-sum →
catalog row (config, data seen, metrics per epoch, checkpoint) → the model's collection
filled with image and caption points (``pipelines.crossmodal``).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.errors import ConfigError
from embplat.evaluation.crossmodal import crossmodal_metrics
from embplat.jobs.runner import JobHandle
from embplat.models.checkpoints import load_checkpoint, save_checkpoint
from embplat.models.encoders import resolve_device
from embplat.models.recipes.matching import MatchingConfig, PairSet, PairTrainer
from embplat.models.recipes.matching.losses import build_matching_loss
from embplat.models.recipes.matching.saved import checkpoint_meta
from embplat.models.recipes.matching.towers import build_matching_model
from embplat.models.train_config import TrainConfig
from embplat.pipelines.caption_pairs import CaptionPairs, caption_pairs, require_pairs
from embplat.pipelines.context import Context, Space
from embplat.pipelines.crossmodal import write_points
from embplat.pipelines.embed import embed_into
from embplat.pipelines.train import run_training_job
from embplat.pipelines.train_data import best_row, finite, home_relative, prune_rows
from embplat.progress import NoProgress, ProgressSink
from embplat.retrieval import collection_name

log = logging.getLogger(__name__)


def train_pairs(
    ctx: Context,
    recipe: str,
    cfg: TrainConfig,
    name: str,
    progress: ProgressSink | None = None,
    *,
    job_id: int | None = None,
) -> str:
    """Train ``cfg`` on the catalog's captioned images as job ``job_id`` (or a new job) and
    register the model ``name``.

    Raises:
        ConfigError: fine-tuning asked for (``unfreeze_epochs``); the image side is always
            the active encoder (its stored vectors), whatever ``cfg.encoder`` says.
        DataError: no captioned images in the train split.
    """
    if not isinstance(cfg, MatchingConfig):
        raise ConfigError(f"recipe {recipe!r}: pair training needs a MatchingConfig, got {cfg}")
    if cfg.unfreeze_epochs:
        raise ConfigError(
            f"matching trains on cached image features only: unfreeze_epochs must be 0, got "
            f"{cfg.unfreeze_epochs}"
        )

    matching = cfg

    def work(job: JobHandle) -> dict[str, Any]:
        return _PairRun(ctx, recipe, matching, name, progress or NoProgress(), job).execute()

    return run_training_job(ctx, recipe, cfg, name, work, job_id=job_id)


@dataclass
class _PairRun:
    ctx: Context
    recipe: str
    cfg: MatchingConfig
    name: str
    progress: ProgressSink
    job: JobHandle

    def execute(self) -> dict[str, Any]:
        space = self._active_space()
        train, valid = self._pairs(space)
        device = str(resolve_device(self.cfg.device))
        torch.manual_seed(self.cfg.seed)
        model = build_matching_model(
            self.cfg, image_dim=train.features.shape[1], train_texts=train.texts,
            home=self.ctx.home, device=device,
        )  # fmt: skip
        loss = build_matching_loss(
            self.cfg.loss, margin=self.cfg.loss_margin, temperature=self.cfg.temperature
        )
        trainer = PairTrainer(model, loss, _pairset(train), cfg=self.cfg, device=device)
        encoder = _encoder_meta(space)
        rows, baseline = self._epochs(trainer, valid, encoder)
        best = best_row(rows)
        model.load_state_dict(load_checkpoint(self.ctx.home / best["checkpoint"])["state_dict"])
        if self.cfg.keep_checkpoints == "best":
            prune_rows(self.ctx, rows, keep=best)
        lineage = self._lineage(rows, best, baseline, train, valid, space, device)
        with transaction(self.ctx.sessions) as session:
            repo.ensure_model(
                session=session,
                name=self.name,
                kind=self.recipe,
                encoder=space.encoder.name,
                weights=best["checkpoint"],
                dim=self.cfg.embed_dim,
                image_size=space.encoder.image_size,
                config=lineage,
            )
        out = {"model": self.name, "best_epoch": best["epoch"], "embedded": 0, "captions": 0}
        if self.cfg.embed:
            out["embedded"], out["captions"] = write_points(self.ctx, self.name, model, space)
        return out

    def _active_space(self) -> Space:
        space = self.ctx.spaces.space()
        if self.cfg.encoder != space.encoder.name:  # the config's default names another one
            log.info("%s trains on the active encoder %s's vectors", self.name, space.key)
        with self.ctx.sessions() as session:
            pending = repo.pending_image_ids(session=session, collection_id=space.collection_id)
        if pending:
            advance = self.progress.task(f"embedding with {space.key}", len(pending))
            embed_into(self.ctx, space, pending, progress=advance)
        return space

    def _pairs(self, space: Space) -> tuple[CaptionPairs, CaptionPairs]:
        index, coll = space.index, space.collection_id
        train = caption_pairs(self.ctx, index=index, collection_id=coll, splits=["train"])
        require_pairs(train, "train")
        valid = caption_pairs(self.ctx, index=index, collection_id=coll, splits=["valid"])
        if not len(valid):
            log.warning("no captioned valid images: the last epoch is kept")
        return train, valid

    def _epochs(
        self, trainer: PairTrainer, valid: CaptionPairs, encoder: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], dict[str, float]]:
        """Train epoch by epoch, each checkpointed and scored on ``valid``."""
        steps, epochs = trainer.steps_per_epoch, self.cfg.epochs
        self.job.set_total(steps * trainer.batch * epochs)
        bar = self.progress.task(f"training {self.name}", steps * epochs)
        out_dir = self.ctx.home / "models" / self.name
        baseline = _valid_metrics(trainer, valid)
        rows = []
        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            losses = trainer.train(steps)
            seconds = time.perf_counter() - start
            metrics = _valid_metrics(trainer, valid)
            path = out_dir / f"epoch_{epoch}.pt"
            meta = checkpoint_meta(
                trainer.model, name=self.name, encoder=encoder, epoch=epoch, metrics=metrics
            )
            save_checkpoint(path, trainer.model, meta)
            bar(steps)
            self.job.advance(steps * trainer.batch)
            rows.append(
                {
                    "epoch": epoch,
                    "phase": "frozen",
                    "loss": finite(float(np.mean(losses))),
                    "metric": finite(metrics.get("rsum", math.nan)),
                    "images_per_s": round(steps * trainer.batch / max(seconds, 1e-9), 2),
                    "seconds": round(seconds, 2),
                    "checkpoint": home_relative(self.ctx, str(path)),
                    "valid": {k: finite(v) for k, v in metrics.items()},
                }
            )
            log.info("%s epoch %d loss %.4f valid %s", self.name, epoch, rows[-1]["loss"], metrics)
        return rows, baseline

    def _lineage(
        self,
        rows: list[dict[str, Any]],
        best: dict[str, Any],
        baseline: dict[str, float],
        train: CaptionPairs,
        valid: CaptionPairs,
        space: Space,
        device: str,
    ) -> dict[str, Any]:
        return {
            "recipe": self.recipe,
            "train_config": self.cfg.as_dict(),
            "checkpoint": best["checkpoint"],
            "best_epoch": best["epoch"],
            "metric": "rsum",
            "baseline": finite(baseline.get("rsum", math.nan)),
            "epochs": rows,
            "data": {
                "classes": [],
                "train_images": len(train.image_ids),
                "train_captions": len(train),
                "valid_images": len(valid.image_ids),
                "valid_captions": len(valid),
                "splits": {"train": "train", "valid": "valid"},
            },
            "image_encoder": space.key,
            "text_encoder": self.cfg.text_encoder,
            "loss": self.cfg.loss,
            "collection": collection_name(self.name),
            "vectors": None,
            "label_center": None,
            "device": device,
            "plots": [],
            "job_id": self.job.job_id,
        }


def _pairset(pairs: CaptionPairs) -> PairSet:
    return PairSet(pairs.features, pairs.texts, pairs.image_of_text)


def _valid_metrics(trainer: PairTrainer, valid: CaptionPairs) -> dict[str, float]:
    if not len(valid):
        return {}
    return crossmodal_metrics(trainer.scores(_pairset(valid)), valid.image_of_text)


def _encoder_meta(space: Space) -> dict[str, Any]:
    enc = space.encoder
    return {
        "name": enc.name,
        "weights": enc.weights,
        "image_size": enc.image_size,
        "dim": enc.dim,
        "key": enc.key,
    }
