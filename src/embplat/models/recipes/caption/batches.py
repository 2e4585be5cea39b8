"""Caption training data as (image, caption) pairs, sortish batches of them, padding.

Every caption of every image is one pair, and every pair is seen once per epoch. Batches
hold captions of similar length, so little of a batch is padding: pairs are shuffled, cut
into chunks of :data:`CHUNK_BATCHES` batches, sorted by length inside each chunk, cut into
batches, and the batches are shuffled (the "sortish" sampler of fastai).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from embplat.models.recipes.caption.vocab import PAD_ID, CaptionVocab

#: Batches per chunk sorted by length: larger = less padding but less random batches.
CHUNK_BATCHES = 50


@dataclass(frozen=True)
class CaptionPairs:
    """Encoded captions with their images.

    Attributes:
        images: (N,) int64 image row of each caption.
        tokens: N id lists, ``<start> ... <end>``.
        lengths: (N,) int64 tokens of each, ``<start>``/``<end>`` included.
    """

    images: np.ndarray
    tokens: list[list[int]]
    lengths: np.ndarray

    def __len__(self) -> int:
        return len(self.tokens)


def caption_pairs(
    captions: Sequence[Sequence[str]], vocab: CaptionVocab, max_len: int
) -> CaptionPairs:
    """Every caption of every image row, encoded with at most ``max_len`` words."""
    images, tokens = [], []
    for row, texts in enumerate(captions):
        for text in texts:
            images.append(row)
            tokens.append(vocab.encode(text, max_len=max_len))
    lengths = np.array([len(t) for t in tokens], dtype=np.int64)
    return CaptionPairs(np.array(images, dtype=np.int64), tokens, lengths)


def sortish_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """One epoch of batches (arrays of pair indices) covering every pair once.

    Args:
        lengths: (N,) caption lengths.
        rng: the run's seeded generator (each call draws a new order).
    """
    order = rng.permutation(len(lengths))
    batches: list[np.ndarray] = []
    chunk = batch_size * CHUNK_BATCHES
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        part = part[np.argsort(-lengths[part], kind="stable")]
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def image_batches(
    images: np.ndarray, batch_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """One epoch of batches (arrays of pair indices) where every image comes with all its
    captions: about ``batch_size`` pairs, each image encoded once per batch. Fine-tuning
    uses these, so an epoch encodes each image once instead of once per caption.

    Args:
        images: (N,) the image row of each pair.
        rng: the run's seeded generator (each call draws a new order).
    """
    by_image = np.argsort(images, kind="stable")
    rows, starts = np.unique(images[by_image], return_index=True)
    groups = np.split(by_image, starts[1:])  # the pairs of each image row, in row order
    per_batch = max(1, round(batch_size * len(rows) / max(len(images), 1)))
    order = rng.permutation(len(rows))
    return [
        np.concatenate([groups[g] for g in order[i : i + per_batch]])
        for i in range(0, len(order), per_batch)
    ]


def pad_batch(rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) int64 ids padded with ``<pad>`` to the longest row, and (B,) lengths."""
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    out = torch.full((len(rows), int(lengths.max()) if len(rows) else 0), PAD_ID, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
    return out, lengths


def pad_captions(
    vocab: CaptionVocab, texts: Sequence[str], *, max_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) int64 ``<start> ... <end>`` ids of ``texts`` (at most ``max_len`` words each),
    padded, and their (B,) lengths: what ``AttentionDecoder.forward`` takes."""
    return pad_batch([vocab.encode(t, max_len=max_len) for t in texts])
