"""Training a captioner: the decoder on cached feature maps, then encoder and decoder together.

:class:`CaptionTrainer` runs the two phases of a :class:`CaptionConfig`:

1. ``frozen`` (``freeze_epochs``): the encoder's feature maps of every train and valid image
   are computed once (no gradients, in batches; kept as float16 on the training device) and
   only the decoder trains on them.
2. ``fine-tune`` (``unfreeze_epochs``): starting from the best frozen epoch's weights, images
   are loaded and encoded per batch and the encoder trains too, at ``encoder_lr``.

Each phase has its own AdamW + one-cycle schedule over its steps, trains on sortish batches
of (image, caption) pairs (teacher forcing, gradient clipping), and scores the valid images
after every epoch: BLEU-1..4 of their beam-decoded captions against all their references,
and teacher-forced top-5 token accuracy. A phase ends early when valid BLEU-4 has not beaten
the best so far for ``patience`` epochs; the best epoch's weights are restored before the
next phase and at the end.

The metric functions are passed in (``embplat.evaluation.bleu``), so this layer computes no
evaluation of its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from embplat.errors import DataError, NotFoundError
from embplat.models.encoders import resolve_device
from embplat.models.recipes.caption.batches import (
    CaptionPairs,
    caption_pairs,
    image_batches,
    pad_batch,
    sortish_batches,
)
from embplat.models.recipes.caption.beam import beam_search
from embplat.models.recipes.caption.config import CaptionConfig
from embplat.models.recipes.caption.features import (
    CaptionSet,
    Features,
    autocast,
    cached_features,
    image_features,
)
from embplat.models.recipes.caption.model import CaptionModel, caption_loss
from embplat.models.recipes.caption.vocab import CaptionVocab

log = logging.getLogger(__name__)

#: ``bleu(hypotheses, references) -> {"bleu1": .., "bleu4": ..}`` (corpus BLEU).
BleuFn = Callable[[Sequence[str], Sequence[Sequence[str]]], dict[str, float]]
#: ``top5(scores (B, T, V), targets (B, T), mask (B, T)) -> accuracy``.
Top5Fn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], float]


@dataclass(frozen=True)
class EpochReport:
    """One epoch's results.

    Attributes:
        epoch: 1-based, counted over both phases.
        phase: ``frozen`` or ``fine-tune``.
        loss: mean training loss (cross-entropy + attention penalty) over its pairs.
        bleu: valid ``bleu1``..``bleu4`` (beam ``valid_beam``).
        top5: valid teacher-forced top-5 token accuracy.
        seconds: the whole epoch, validation included.
        images_per_s: training (image, caption) pairs per second.
        stopped_early: this epoch ended its phase by early stopping.
    """

    epoch: int
    phase: str
    loss: float
    bleu: dict[str, float]
    top5: float
    seconds: float
    images_per_s: float
    stopped_early: bool = False

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, with the BLEU scores flattened beside the other fields."""
        out = asdict(self)
        out.update(out.pop("bleu"))
        return out


class CaptionTrainer:
    """Runs a config's phases on a model and keeps every epoch's report."""

    def __init__(
        self,
        model: CaptionModel,
        vocab: CaptionVocab,
        cfg: CaptionConfig,
        *,
        device: str,
        bleu: BleuFn,
        top5: Top5Fn,
    ):
        self.device = resolve_device(device)
        self.model, self.vocab, self.cfg = model.to(self.device), vocab, cfg
        self.bleu, self.top5 = bleu, top5
        self.reports: list[EpochReport] = []
        self._best: tuple[EpochReport, dict[str, torch.Tensor]] | None = None
        self._rng = np.random.default_rng(cfg.seed)
        self._amp = cfg.amp and self.device.type == "cuda"

    def best(self) -> EpochReport:
        """The epoch with the highest valid BLEU-4 over all phases (ties: the earlier).

        Raises:
            NotFoundError: no epoch has been trained.
        """
        if self._best is None:
            raise NotFoundError("no caption epoch has been trained yet")
        return self._best[0]

    def fit(
        self,
        train: CaptionSet,
        valid: CaptionSet,
        *,
        on_epoch: Callable[[EpochReport, CaptionModel], None],
        progress: Callable[[int], None] | None = None,
    ) -> list[EpochReport]:
        """Train both phases; the model ends with the best epoch's weights.

        Args:
            train, valid: the splits (valid scores every epoch and picks the best).
            on_epoch: called after every epoch with its report and the model (at that
                epoch's weights), e.g. to save a checkpoint.
            progress: called with the number of training pairs of each step done.

        Returns:
            Every epoch's report, in order.

        Raises:
            DataError: an empty split.
        """
        if not len(train) or not len(valid):
            raise DataError(
                f"captioning needs train and valid images: got {len(train)} and {len(valid)}"
            )
        torch.manual_seed(self.cfg.seed)
        pairs = caption_pairs(train.captions, self.vocab, self.cfg.max_len)
        report = progress or (lambda n: None)
        phases = (("frozen", self.cfg.freeze_epochs), ("fine-tune", self.cfg.unfreeze_epochs))
        for phase, epochs in phases:
            if epochs:
                self._set_encoder(trainable=phase == "fine-tune")
                sources = self._sources(phase, train, valid)
                self._phase(phase, epochs, pairs, sources, valid, on_epoch, report)
                del sources  # frees the cached feature maps
                self._restore_best()
        self._set_encoder(trainable=True)
        return list(self.reports)

    def _sources(
        self, phase: str, train: CaptionSet, valid: CaptionSet
    ) -> tuple[Features, Features]:
        """Train and valid features: cached while frozen, encoded per batch when fine-tuning."""
        enc, dev, amp, size = self.model.encoder, self.device, self._amp, self.cfg.batch_size

        def source(split: CaptionSet) -> Features:
            if phase == "fine-tune":
                return image_features(enc, split, device=dev, amp=amp)
            return cached_features(enc, split, batch_size=size, device=dev, amp=amp)

        return source(train), source(valid)

    def _set_encoder(self, *, trainable: bool) -> None:
        for p in self.model.encoder.parameters():
            p.requires_grad_(trainable)

    def _restore_best(self) -> None:
        if self._best is not None:
            self.model.load_state_dict(self._best[1])

    def _autocast(self) -> torch.autocast:
        return autocast(self.device, self._amp)

    def _phase(
        self,
        phase: str,
        epochs: int,
        pairs: CaptionPairs,
        sources: tuple[Features, Features],
        valid: CaptionSet,
        on_epoch: Callable[[EpochReport, CaptionModel], None],
        progress: Callable[[int], None],
    ) -> None:
        steps = -(-len(pairs) // self.cfg.batch_size)  # sortish batches an epoch
        if phase == "fine-tune":  # batches of whole images: their count differs
            steps = len(image_batches(pairs.images, self.cfg.batch_size, np.random.default_rng()))
        optimizer, schedule = self._optimizer(phase, steps * epochs)
        stale = 0
        for e in range(epochs):
            start = time.perf_counter()
            loss, rate = self._train_epoch(pairs, sources[0], optimizer, schedule, progress)
            bleu, top5 = self._validate(sources[1], valid)
            best = self._best[0].bleu["bleu4"] if self._best is not None else None
            stale = 0 if best is None or bleu["bleu4"] > best else stale + 1
            stop = stale >= self.cfg.patience and e < epochs - 1
            seconds = time.perf_counter() - start
            epoch = len(self.reports) + 1
            result = EpochReport(epoch, phase, loss, bleu, top5, seconds, rate, stop)
            if stale == 0:
                state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                self._best = (result, state)
            self.reports.append(result)
            log.info("caption epoch %d (%s): %s", epoch, phase, result.as_dict())
            on_epoch(result, self.model)
            if stop:
                log.info("caption %s phase stopped early: BLEU-4 flat for %d epochs", phase, stale)
                break

    def _optimizer(
        self, phase: str, steps: int
    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.OneCycleLR]:
        groups: list[dict[str, Any]] = [
            {"params": list(self.model.decoder.parameters()), "lr": self.cfg.lr}
        ]
        if phase == "fine-tune":
            groups.append(
                {"params": list(self.model.encoder.parameters()), "lr": self.cfg.encoder_lr}
            )
        optimizer = torch.optim.AdamW(groups, weight_decay=self.cfg.weight_decay)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[g["lr"] for g in groups], total_steps=max(steps, 1), pct_start=0.3
        )
        return optimizer, schedule

    def _train_epoch(
        self,
        pairs: CaptionPairs,
        features: Features,
        optimizer: torch.optim.Optimizer,
        schedule: torch.optim.lr_scheduler.OneCycleLR,
        progress: Callable[[int], None],
    ) -> tuple[float, float]:
        """One pass over every pair; (mean loss, pairs per second)."""
        frozen = not any(p.requires_grad for p in self.model.encoder.parameters())
        self.model.train()
        for module in self.model.encoder.modules():
            # batch norm keeps its pretrained statistics: fine-tuning batches hold few images
            if frozen or isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        scaler = torch.amp.GradScaler("cuda", enabled=self._amp)
        params = [p for g in optimizer.param_groups for p in g["params"]]
        total, seen, start = 0.0, 0, time.perf_counter()
        if frozen:
            batches = sortish_batches(pairs.lengths, self.cfg.batch_size, self._rng)
        else:  # fine-tuning: each image encoded once an epoch, with all its captions
            batches = image_batches(pairs.images, self.cfg.batch_size, self._rng)
        for batch in batches:
            tokens, lengths = (
                t.to(self.device) for t in pad_batch([pairs.tokens[i] for i in batch])
            )
            with self._autocast():
                out = self.model.decoder(features(pairs.images[batch], True), tokens, lengths)
                loss = caption_loss(out, tokens, alpha_c=self.cfg.alpha_c)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if self.cfg.grad_clip:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            schedule.step()
            total, seen = total + float(loss.detach()) * len(batch), seen + len(batch)
            progress(len(batch))
        return total / max(seen, 1), seen / max(time.perf_counter() - start, 1e-9)

    @torch.inference_mode()
    def _validate(self, features: Features, valid: CaptionSet) -> tuple[dict[str, float], float]:
        """Valid BLEU-1..4 of beam-decoded captions, and teacher-forced top-5 accuracy."""
        self.model.eval()
        texts: list[str] = []
        correct = counted = 0.0
        for start in range(0, len(valid), self.cfg.batch_size):
            rows = np.arange(start, min(start + self.cfg.batch_size, len(valid)))
            with self._autocast():
                feats = features(rows, False)
            hyps = beam_search(
                self.model.decoder,
                feats,
                beam=self.cfg.valid_beam,
                max_len=self.cfg.max_len,
                end=self.vocab.end,
                start=self.vocab.start,
            )
            texts += [self.vocab.decode(h[0].tokens) if h else "" for h in hyps]
            pairs = caption_pairs([valid.captions[r] for r in rows], self.vocab, self.cfg.max_len)
            tokens, lengths = (t.to(self.device) for t in pad_batch(pairs.tokens))
            with self._autocast():
                out = self.model.decoder(
                    feats[torch.as_tensor(pairs.images, device=self.device)], tokens, lengths
                )
            n = float(out.mask.sum())
            correct += self.top5(out.scores.float(), tokens[:, 1:], out.mask) * n
            counted += n
        return self.bleu(texts, valid.captions), correct / max(counted, 1.0)
