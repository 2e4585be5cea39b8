"""Use case: train a captioning recipe (``data = "captioning"``, e.g. ``caption``) on the
catalog's captioned images as a recorded ``train`` job.

Steps: the train/valid images that have captions from files, with every caption of each →
``CaptionTrainer.fit`` (decoder on cached feature maps, then optionally fine-tuning the
encoder too), a checkpoint per epoch in ``<home>/models/<name>/`` → the best epoch by valid
BLEU-4 → the catalog's model row (config, data seen, metrics per epoch, checkpoint).

Images are fed as the encoder sees them at inference (resize, centre crop), never flipped:
a horizontal flip would turn "left of" into a false caption.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.errors import ConfigError, DataError
from embplat.evaluation.bleu import corpus_bleu_scores, top5_accuracy
from embplat.ingest.images import load_rgb
from embplat.jobs.runner import JobHandle
from embplat.models.checkpoints import save_checkpoint
from embplat.models.encoders import Backbone, get_backbone, model_key, resolve_device
from embplat.models.recipes.caption import (
    CaptionConfig,
    CaptionModel,
    CaptionSet,
    CaptionTrainer,
    CaptionVocab,
    EpochReport,
    build_caption_model,
    checkpoint_meta,
)
from embplat.models.samples import eval_transform
from embplat.models.train_config import TrainConfig
from embplat.models.wordvectors import open_vectors, resolve_source
from embplat.pipelines.context import Context
from embplat.pipelines.train import run_training_job
from embplat.pipelines.train_data import best_row, finite, home_relative, prune_rows
from embplat.progress import NoProgress, ProgressSink

log = logging.getLogger(__name__)


def train_captioner(
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
        ConfigError: not a caption config; unknown encoder or word vectors.
        DataError: no captioned train images, or an encoder without a spatial feature map.
    """
    if not isinstance(cfg, CaptionConfig):
        raise ConfigError(f"recipe {recipe!r}: caption training needs a CaptionConfig, got {cfg}")
    caption_cfg = cfg
    train, valid = captioned_split(ctx, "train"), captioned_split(ctx, "valid")
    if len(train.paths) < 2:
        raise DataError(
            "no captioned images in the train split: ingest a caption dataset first (e.g. "
            "`platform datasets scenes --out data/scenes` then `platform ingest data/scenes`)"
        )
    if not valid.paths:  # early stopping needs a valid BLEU: hold out every 10th image
        log.warning("no captioned valid images: every 10th train image is held out instead")
        train, valid = train.part(keep=lambda i: i % 10 != 9), train.part(lambda i: i % 10 == 9)

    def work(job: JobHandle) -> dict[str, Any]:
        run = _CaptionRun(ctx, recipe, caption_cfg, name, progress or NoProgress(), job)
        return run.execute(train, valid)

    return run_training_job(ctx, recipe, cfg, name, work, job_id=job_id)


@dataclass(frozen=True)
class Captioned:
    """Images of one split with their captions from files (rows in image-id order)."""

    image_ids: list[int]
    paths: list[str]
    captions: list[list[str]]

    def part(self, keep: Callable[[int], bool]) -> Captioned:
        """The rows whose position ``keep`` accepts."""
        rows = [i for i in range(len(self.paths)) if keep(i)]
        return Captioned(
            [self.image_ids[i] for i in rows],
            [self.paths[i] for i in rows],
            [self.captions[i] for i in rows],
        )


def captioned_split(ctx: Context, split: str) -> Captioned:
    """The images of ``split`` that have captions from files, with those captions."""
    with ctx.sessions() as session:
        rows = repo.split_captions(session=session, splits=[split])
        by_image: dict[int, list[str]] = defaultdict(list)
        for _, image_id, _, text in rows:
            by_image[image_id].append(text)
        ids = sorted(by_image)
        paths = {i.id: i.path for i in repo.get_images(session=session, ids=ids)}
    return Captioned(ids, [paths[i] for i in ids], [by_image[i] for i in ids])


def image_loader(paths: list[str], backbone: Backbone, size: int, *, max_pixels: int) -> Any:
    """``rows -> (B, 3, S, S)`` normalised images of ``paths``, as the encoder sees them.

    Raises:
        DataError: a file is gone or no longer decodes (naming it).
    """
    transform = eval_transform(size, backbone.mean, backbone.std)

    def load(rows: Any) -> torch.Tensor:
        images = [
            transform(load_rgb(Path(paths[r]), max_pixels=max_pixels, draft_side=size))
            for r in rows
        ]
        return torch.stack(images)

    return load


@dataclass
class _CaptionRun:
    ctx: Context
    recipe: str
    cfg: CaptionConfig
    name: str
    progress: ProgressSink
    job: JobHandle

    def execute(self, train: Captioned, valid: Captioned) -> dict[str, Any]:
        device = str(resolve_device(self.cfg.device))
        backbone = get_backbone(self.cfg.encoder, self.cfg.weights)
        if backbone.spatial is None:
            raise DataError(
                f"encoder {self.cfg.encoder!r} has no spatial feature map to attend over; "
                "choose another with --encoder (see `platform encoders`)"
            )
        size = self.cfg.image_size or backbone.default_size
        torch.manual_seed(self.cfg.seed)
        vocab = CaptionVocab.build(
            [c for caps in train.captions for c in caps], min_count=self.cfg.min_word_count
        )
        vectors = None
        if self.cfg.vectors != "none":
            vectors = open_vectors(resolve_source(self.cfg.vectors, self.ctx.home))
        model = build_caption_model(self.cfg, backbone, vocab, vectors=vectors)
        max_pixels = self.ctx.ingest.max_pixels
        sets = [
            CaptionSet(image_loader(s.paths, backbone, size, max_pixels=max_pixels), s.captions)
            for s in (train, valid)
        ]
        key = model_key(self.cfg.encoder, backbone.weights, size, backbone.default_size)
        encoder = {
            "name": self.cfg.encoder,
            "weights": backbone.weights,
            "image_size": size,
            "key": key,
        }
        rows = self._fit(model, vocab, sets[0], sets[1], encoder, device)
        best = best_row(rows)
        if self.cfg.keep_checkpoints == "best":
            prune_rows(self.ctx, rows, keep=best)
        lineage = self._lineage(rows, best, train, valid, vocab, key, device)
        with transaction(self.ctx.sessions) as session:
            repo.ensure_model(
                session=session,
                name=self.name,
                kind=self.recipe,
                encoder=self.cfg.encoder,
                weights=best["checkpoint"],
                dim=model.decoder.encoder_dim,  # the channels attended over
                image_size=size,
                config=lineage,
            )
        return {"model": self.name, "best_epoch": best["epoch"], "bleu4": best["metric"]}

    def _fit(
        self,
        model: CaptionModel,
        vocab: CaptionVocab,
        train: CaptionSet,
        valid: CaptionSet,
        encoder: dict[str, Any],
        device: str,
    ) -> list[dict[str, Any]]:
        pairs = sum(len(c) for c in train.captions)
        self.job.set_total(pairs * self.cfg.epochs)
        bar = self.progress.task(f"training {self.name}", pairs * self.cfg.epochs)
        out_dir = self.ctx.home / "models" / self.name
        rows: list[dict[str, Any]] = []
        started = time.perf_counter()

        def on_epoch(report: EpochReport, net: CaptionModel) -> None:
            path = out_dir / f"epoch_{report.epoch}.pt"
            meta = checkpoint_meta(
                net, vocab, self.cfg, name=self.name, encoder=encoder, epoch=report.epoch,
                metrics={**report.bleu, "top5": report.top5},
            )  # fmt: skip
            save_checkpoint(path, net, meta)
            rows.append(_epoch_row(self.ctx, report, path))
            log.info(
                "%s epoch %d (%s) loss %.4f valid BLEU-4 %.4f",
                self.name, report.epoch, report.phase, report.loss, report.bleu.get("bleu4", 0),
            )  # fmt: skip

        def advance(n: int) -> None:
            bar(n)
            self.job.advance(n)

        trainer = CaptionTrainer(
            model, vocab, self.cfg, device=device, bleu=corpus_bleu_scores, top5=top5_accuracy
        )
        trainer.fit(train, valid, on_epoch=on_epoch, progress=advance)
        log.info("%s trained in %.1f s", self.name, time.perf_counter() - started)
        return rows

    def _lineage(
        self,
        rows: list[dict[str, Any]],
        best: dict[str, Any],
        train: Captioned,
        valid: Captioned,
        vocab: CaptionVocab,
        encoder_key: str,
        device: str,
    ) -> dict[str, Any]:
        return {
            "recipe": self.recipe,
            "train_config": self.cfg.as_dict(),
            "checkpoint": best["checkpoint"],
            "best_epoch": best["epoch"],
            "metric": "bleu4",
            "epochs": rows,
            "data": {
                "classes": [],
                "train_images": len(train.paths),
                "train_captions": sum(len(c) for c in train.captions),
                "valid_images": len(valid.paths),
                "valid_captions": sum(len(c) for c in valid.captions),
                "splits": {"train": "train", "valid": "valid"},
            },
            "image_encoder": encoder_key,
            "vocabulary": len(vocab.words),
            "collection": None,
            "vectors": None,
            "label_center": None,
            "device": device,
            "plots": [],
            "job_id": self.job.job_id,
        }


def _epoch_row(ctx: Context, report: EpochReport, path: Path) -> dict[str, Any]:
    return {
        "epoch": report.epoch,
        "phase": report.phase,
        "loss": finite(report.loss),
        "metric": finite(report.bleu.get("bleu4", math.nan)),
        "images_per_s": round(report.images_per_s, 2),
        "seconds": round(report.seconds, 2),
        "checkpoint": home_relative(ctx, str(path)),
        "valid": {**{k: finite(v) for k, v in report.bleu.items()}, "top5": finite(report.top5)},
        "stopped_early": report.stopped_early,
    }
