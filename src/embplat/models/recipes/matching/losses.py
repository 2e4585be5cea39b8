"""The three matching losses, each symmetric (images → captions and captions → images), over
a batch of (image, caption) pairs labelled by image id, so two captions of one image in a
batch are both positives and never each other's negatives.

- ``order``: order embeddings (Vendrov et al., 2016), the reference system's loss. Images
  and captions are points of the positive orthant; a caption is *more general* than its
  image, and the order-violation penalty ``E(c, i) = ||max(0, c - i)||²`` is the distance.
  pytorch-metric-learning's ``TripletMarginLoss`` over all triplets of the batch with that
  distance is the reference's contrastive hinge (sum of violations, margin 0.05).
- ``vse``: VSE++ (Faghri et al., 2018): ``TripletMarginLoss`` on cosine similarity with
  ``BatchHardMiner``, the hardest negative in the batch per anchor.
- ``infonce``: pytorch-metric-learning's ``NTXentLoss`` with its temperature learnt (as
  CLIP's logit scale), both directions averaged.
"""

from __future__ import annotations

import math

import torch
from pytorch_metric_learning import distances, losses, miners, reducers
from torch import nn

from embplat.errors import ConfigError
from embplat.models.recipes.matching.config import MATCHING_LOSSES

#: The smallest temperature ``infonce`` may learn (CLIP caps its logit scale at 100).
MIN_TEMPERATURE = 0.01


def order_violation(captions: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """``E(c, i) = ||max(0, c - i)||²`` of every caption against every image.

    Args:
        captions: (C, D) non-negative caption embeddings.
        images: (I, D) non-negative image embeddings.

    Returns:
        (C, I) penalties; 0 where the image lies above its caption in every coordinate.
    """
    return (captions[:, None, :] - images[None, :, :]).clamp(min=0).pow(2).sum(dim=2)


class OrderViolation(distances.BaseDistance):
    """The order-violation penalty as a pytorch-metric-learning distance (lower = closer).

    It is not symmetric: ``images_are_queries`` says which side of ``(query, ref)`` holds
    the images. Embeddings are used as given (already unit length and non-negative).
    """

    def __init__(self, *, images_are_queries: bool):
        super().__init__(normalize_embeddings=False, is_inverted=False)
        self.images_are_queries = images_are_queries

    def compute_mat(self, query_emb: torch.Tensor, ref_emb: torch.Tensor) -> torch.Tensor:
        """(Q, D), (R, D) → (Q, R) penalties."""
        if self.images_are_queries:
            return order_violation(ref_emb, query_emb).T
        return order_violation(query_emb, ref_emb)

    def pairwise_distance(self, query_emb: torch.Tensor, ref_emb: torch.Tensor) -> torch.Tensor:
        """(N, D), (N, D) → (N,) penalties of row pairs."""
        images, captions = (query_emb, ref_emb) if self.images_are_queries else (ref_emb, query_emb)
        return (captions - images).clamp(min=0).pow(2).sum(dim=1)


class LearnedTemperatureNTXent(losses.NTXentLoss):
    """``NTXentLoss`` whose temperature is a parameter (stored as its log, floored at
    :data:`MIN_TEMPERATURE`)."""

    def __init__(self, temperature: float = 0.07):
        super().__init__(temperature=temperature)

    @property  # type: ignore[override]
    def temperature(self) -> torch.Tensor:
        """The current temperature (a differentiable scalar)."""
        return self.log_temperature.exp().clamp(min=MIN_TEMPERATURE)

    @temperature.setter
    def temperature(self, value: float) -> None:
        self.log_temperature = nn.Parameter(torch.tensor(math.log(value)))


class MatchingLoss(nn.Module):
    """A loss applied in both directions and averaged.

    Args:
        i2t: the loss with images as anchors and captions as references.
        t2i: the loss with captions as anchors and images as references.
        miner: picks the pairs each direction uses (VSE++: hardest negative); None = all.
    """

    def __init__(
        self, i2t: nn.Module, t2i: nn.Module, miners_: tuple[nn.Module, nn.Module] | None = None
    ):
        super().__init__()
        self.i2t, self.t2i = i2t, t2i
        self.miners = nn.ModuleList(miners_ or ())

    def forward(
        self, images: torch.Tensor, texts: torch.Tensor, image_ids: torch.Tensor
    ) -> torch.Tensor:
        """(B, D) image and (B, D) caption embeddings of B pairs, (B,) image ids → scalar."""
        sides = ((self.i2t, images, texts), (self.t2i, texts, images))
        # a distinct tensor: pytorch-metric-learning drops the diagonal (the true pairs) as
        # "self-matches" when the reference labels *are* the query labels object
        ref_ids = image_ids.clone()
        total = images.new_zeros(())
        for n, (loss, anchors, refs) in enumerate(sides):
            mined = self.miners[n](anchors, image_ids, refs, ref_ids) if self.miners else None
            total = total + loss(anchors, image_ids, mined, refs, ref_ids)
        return total / 2


def build_matching_loss(name: str, *, margin: float, temperature: float = 0.07) -> MatchingLoss:
    """The symmetric loss ``name`` (one of ``MATCHING_LOSSES``).

    Raises:
        ConfigError: an unknown name; the message lists the known ones.
    """
    if name == "order":
        return MatchingLoss(
            *(
                losses.TripletMarginLoss(
                    margin=margin,
                    distance=OrderViolation(images_are_queries=images_first),
                    reducer=reducers.MeanReducer(),
                )
                for images_first in (True, False)
            )
        )
    if name == "vse":
        pair = [
            losses.TripletMarginLoss(
                margin=margin, distance=distances.CosineSimilarity(), reducer=reducers.MeanReducer()
            )
            for _ in range(2)
        ]
        hardest = tuple(
            miners.BatchHardMiner(distance=distances.CosineSimilarity()) for _ in range(2)
        )
        return MatchingLoss(pair[0], pair[1], hardest)  # type: ignore[arg-type]
    if name == "infonce":
        shared = LearnedTemperatureNTXent(temperature)
        return MatchingLoss(shared, shared)
    raise ConfigError(
        f"unknown matching loss {name!r}; choose one of: {', '.join(MATCHING_LOSSES)}"
    )


def pair_scores(
    kind: str, images: torch.Tensor, texts: torch.Tensor, chunk: int = 64
) -> torch.Tensor:
    """(I, C) similarity of every image to every caption, higher = closer: ``-E(c, i)`` for
    order embeddings, the cosine (dot product of unit vectors) otherwise.

    Args:
        kind: the loss the embeddings were trained with.
        images: (I, D) image embeddings; texts: (C, D) caption embeddings.
        chunk: images per step of the order penalty, which needs (chunk, C, D) memory.
    """
    if kind != "order":
        return images @ texts.T
    rows = [-order_violation(texts, images[i : i + chunk]).T for i in range(0, len(images), chunk)]
    return torch.cat(rows) if rows else images.new_empty((0, len(texts)))
