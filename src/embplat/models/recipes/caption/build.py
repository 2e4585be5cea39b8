"""Building a captioner: the trunk it attends over, the decoder, and word embeddings started
from word vectors where the vocabulary has them."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from embplat.errors import ConfigError
from embplat.models.encoders import Backbone
from embplat.models.recipes.caption.config import NO_VECTORS, CaptionConfig
from embplat.models.recipes.caption.model import (
    INIT_RANGE,
    AttentionDecoder,
    CaptionModel,
    SpatialEncoder,
)
from embplat.models.recipes.caption.vocab import CaptionVocab
from embplat.models.wordvectors import WordVectors, open_vectors, resolve_source

log = logging.getLogger(__name__)


def build_caption_model(
    cfg: CaptionConfig, backbone: Backbone, vocab: CaptionVocab, *, vectors: WordVectors | None
) -> CaptionModel:
    """A captioner over ``backbone``'s spatial trunk (its parameters shared, not copied).

    Args:
        vectors: word vectors initialising the embeddings of the words they know; None = all
            random.

    Raises:
        ConfigError: the backbone has no spatial feature map.
    """
    if backbone.spatial is None or backbone.spatial_dim is None:
        raise ConfigError(
            "this image encoder has no spatial feature map, which captioning attends over; "
            "choose efficientnet_lite0, resnet18, resnet50, squeezenet1_1 or tiny_cnn"
        )
    trunk, dim = backbone.spatial, backbone.spatial_dim
    if cfg.hypercolumns:
        if backbone.hypercolumns is None or backbone.hypercolumns_dim is None:
            raise ConfigError(
                "hypercolumns: this image encoder offers no hypercolumn map; choose "
                "efficientnet_lite0, resnet18 or resnet50, or train without --hypercolumns"
            )
        trunk, dim = backbone.hypercolumns, backbone.hypercolumns_dim
    decoder = AttentionDecoder(
        len(vocab),
        dim,
        attention_dim=cfg.attention_dim,
        decoder_dim=cfg.decoder_dim,
        embed_dim=cfg.embed_dim,
        dropout=cfg.dropout,
        positions=cfg.positions,
        coverage=cfg.coverage,
    )
    model = CaptionModel(SpatialEncoder(trunk, dim), decoder)
    if vectors is not None:
        known = init_embeddings(decoder.embedding.weight, vocab, vectors)
        model.embedding_init = {"vectors": vectors.source.label, "known": known}
        log.info("caption embeddings: %d of %d words from %s", known, len(vocab), vectors.source)
    return model


@torch.no_grad()
def init_embeddings(weight: torch.Tensor, vocab: CaptionVocab, vectors: WordVectors) -> int:
    """Start the rows of words ``vectors`` knows from their vectors; the others stay random.

    A word's unit vector is mapped to the embedding size by a fixed projection with
    orthonormal rows or columns (seed 0, the same for every run, the identity when the sizes
    match), then scaled to the expected norm of a random row, so known and unknown words
    start on one scale.

    Args:
        weight: (V, E) embedding matrix, changed in place.

    Returns:
        How many words were initialised from vectors.
    """
    rows, found = [], []
    for i, word in enumerate(vocab.words[4:], start=4):
        vec = vectors.vector(word)
        if vec is not None and float((vec**2).sum()) > 0:
            rows.append(i)
            # a copy: the vectors may be a read-only memory map
            found.append(torch.from_numpy(np.array(vec, dtype=np.float32)))
    if not rows:
        return 0
    known = F.normalize(torch.stack(found), dim=1) @ _projection(vectors.dim, weight.shape[1])
    target = INIT_RANGE / 3**0.5 * weight.shape[1] ** 0.5  # E(norm) of uniform(-r, r) rows
    weight[rows] = (F.normalize(known, dim=1) * target).to(weight.dtype)
    return len(rows)


def _projection(dim: int, out: int) -> torch.Tensor:
    """(dim, out): the identity when equal, else orthonormal rows/columns (seed 0)."""
    if dim == out:
        return torch.eye(dim)
    gen = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(max(dim, out), min(dim, out), generator=gen))
    return q.T if dim < out else q


def caption_vectors(spec: str, home: Path) -> WordVectors | None:
    """The word vectors a config's ``vectors`` names: ``none`` → None (random embeddings),
    "" → the active vectors of ``home``, else a file.

    Raises:
        DataError: the file does not exist or cannot be parsed.
        ConfigError: the vectors cannot be opened.
    """
    if spec.strip().lower() == NO_VECTORS:
        return None
    return open_vectors(resolve_source(spec, home))
