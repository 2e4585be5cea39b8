"""Training a matching model on in-memory (image features, caption) pairs.

:class:`PairTrainer` runs optimisation steps over the captions of a :class:`PairSet` (each
caption with its image; the image encoder's features cached) and embeds/scores a held-out
set; :func:`fit_pairs` is the whole run for N steps with its validation metrics. The
metric function is passed in (``embplat.evaluation.crossmodal.crossmodal_metrics``), so this
layer computes no evaluation of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from embplat.errors import DataError
from embplat.models.encoders import resolve_device
from embplat.models.recipes.matching.config import MatchingConfig
from embplat.models.recipes.matching.losses import build_matching_loss
from embplat.models.recipes.matching.towers import MatchingModel, build_matching_model

log = logging.getLogger(__name__)

#: ``evaluate(scores (I, C), image_of_text (C,)) -> metrics``; higher scores = better match.
Evaluate = Callable[[np.ndarray, np.ndarray], Mapping[str, float]]


@dataclass(frozen=True)
class PairSet:
    """Images and their captions.

    Attributes:
        features: (I, F) float32 image-encoder features, one row per image.
        texts: the C captions.
        image_of_text: (C,) int, the row of ``features`` each caption describes.
    """

    features: np.ndarray
    texts: Sequence[str]
    image_of_text: np.ndarray

    def __post_init__(self) -> None:
        owners = np.asarray(self.image_of_text)
        if self.features.ndim != 2 or len(owners) != len(self.texts) or not len(owners):
            raise DataError(
                f"pairs need (I, F) features and one image per caption: got features "
                f"{self.features.shape}, {len(self.texts)} captions, {len(owners)} image ids"
            )
        if owners.min() < 0 or owners.max() >= len(self.features):
            raise DataError(
                f"image ids {owners.min()}..{owners.max()} outside 0..{len(self.features) - 1}"
            )


class PairTrainer:
    """Adam(W) steps of a model and its loss over shuffled captions, each with its image.

    Frozen text features or token ids are prepared once; the caption order is reshuffled
    (seeded) each time it runs out; a last batch smaller than ``batch_size`` is skipped.
    """

    def __init__(
        self,
        model: MatchingModel,
        loss: nn.Module,
        train: PairSet,
        *,
        cfg: MatchingConfig,
        device: str = "cpu",
    ):
        self.model, self.loss, self.cfg = model, loss.to(device), cfg
        self.device = torch.device(device)
        self.features = torch.as_tensor(train.features, dtype=torch.float32)
        self.texts = model.text.prepare(train.texts)
        self.owners = torch.as_tensor(np.asarray(train.image_of_text), dtype=torch.long)
        self.params = [p for p in (*model.parameters(), *self.loss.parameters()) if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.batch = min(cfg.batch_size, len(self.owners))
        self._queue: list[torch.Tensor] = []

    @property
    def steps_per_epoch(self) -> int:
        """Steps that see every training caption once."""
        return max(len(self.owners) // self.batch, 1)

    def _next_batch(self) -> torch.Tensor:
        if not self._queue:
            order = torch.randperm(len(self.owners), generator=self.generator)
            self._queue = list(order[: self.steps_per_epoch * self.batch].split(self.batch))
        return self._queue.pop(0)

    def train(self, steps: int) -> list[float]:
        """Run ``steps`` optimisation steps; the loss of each."""
        self.model.train()
        out = []
        for _ in range(steps):
            idx = self._next_batch()
            owners = self.owners[idx].to(self.device)
            images = self.model.embed_images(self.features[self.owners[idx]].to(self.device))
            texts = self.model.embed_texts(self.texts[idx].to(self.device))
            loss = self.loss(images, texts, owners)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.cfg.grad_clip:
                nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
            self.optimizer.step()
            out.append(float(loss.detach()))
        return out

    @torch.no_grad()
    def embed(self, pairs: PairSet, chunk: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
        """(I, E) image and (C, E) caption embeddings of ``pairs``, on the CPU."""
        self.model.eval()
        feats = torch.as_tensor(pairs.features, dtype=torch.float32)
        prepared = self.model.text.prepare(pairs.texts)
        images = [
            self.model.embed_images(feats[i : i + chunk].to(self.device)).cpu()
            for i in range(0, len(feats), chunk)
        ]
        texts = [
            self.model.embed_texts(prepared[i : i + chunk].to(self.device)).cpu()
            for i in range(0, len(prepared), chunk)
        ]
        return torch.cat(images), torch.cat(texts)

    @torch.no_grad()
    def scores(self, pairs: PairSet) -> np.ndarray:
        """(I, C) float32 similarity of each image of ``pairs`` to each caption of it."""
        images, texts = self.embed(pairs)
        return self.model.scores(images, texts).numpy()


@dataclass
class PairFit:
    """A finished run: the model, each step's loss, valid metrics before and after."""

    model: MatchingModel
    losses: list[float]
    baseline: dict[str, float]
    metrics: dict[str, float]
    evaluations: list[tuple[int, dict[str, float]]] = field(default_factory=list)


def fit_pairs(
    cfg: MatchingConfig,
    train: PairSet,
    valid: PairSet,
    *,
    steps: int,
    evaluate: Evaluate,
    home: Path,
    device: str = "cpu",
    eval_every: int | None = None,
) -> PairFit:
    """Build a model for ``cfg`` and train it ``steps`` steps on ``train``'s pairs.

    Args:
        evaluate: the metric function over ``valid``'s scores (e.g. cross-modal R@K).
        home: the data home (active word vectors).
        eval_every: also evaluate every this many steps (``PairFit.evaluations``).

    Raises:
        DataError: a caption cannot be encoded (no words; ``glove``: no known word).
        ConfigError: the config cannot be built (e.g. ``minilm`` not installed).
    """
    torch.manual_seed(cfg.seed)
    dev = str(resolve_device(device))
    model = build_matching_model(
        cfg, image_dim=train.features.shape[1], train_texts=train.texts, home=home, device=dev
    )
    loss = build_matching_loss(cfg.loss, margin=cfg.loss_margin, temperature=cfg.temperature)
    trainer = PairTrainer(model, loss, train, cfg=cfg, device=dev)
    owners = np.asarray(valid.image_of_text)
    baseline = dict(evaluate(trainer.scores(valid), owners))
    losses: list[float] = []
    evaluations = []
    every = eval_every or steps
    while len(losses) < steps:
        losses += trainer.train(min(every, steps - len(losses)))
        evaluations.append((len(losses), dict(evaluate(trainer.scores(valid), owners))))
        log.info("matching step %d loss %.4f %s", len(losses), losses[-1], evaluations[-1][1])
    return PairFit(
        model, losses, baseline, evaluations[-1][1] if evaluations else baseline, evaluations
    )
