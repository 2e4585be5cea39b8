"""The ``glove`` text encoder: the mean of a text's word vectors (unit vectors averaged, then
renormalised), as label vectors have always been made (``wordvectors.label_vector``), over
the active or bundled word vectors. Fast and untrained; word order does not count."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import numpy as np

from embplat.errors import DataError
from embplat.models.text.registry import TextOptions, register_text_encoder
from embplat.models.text.tokens import count_truncated, describe, text_tokens
from embplat.models.wordvectors import WordVectors, open_vectors

log = logging.getLogger(__name__)


class GloveTextEncoder:
    """Mean of unit word vectors; a hyphenated word without a vector falls back to its parts."""

    name = "glove"
    trainable = False

    def __init__(self, vectors: WordVectors, *, max_tokens: int = 32):
        self.vectors, self.max_tokens = vectors, max_tokens
        self.dim = vectors.dim
        slug = re.sub(r"[^a-z0-9]+", "_", vectors.source.label.lower()).strip("_")
        self.key = f"glove-{slug}"
        self._cache: dict[str, list[np.ndarray]] = {}

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(B, dim) float32 unit rows, one per text.

        Raises:
            DataError: a text has no words, or none with a vector (names text and position).
        """
        truncated = count_truncated(texts, self.max_tokens)
        if truncated:
            log.info("%d text(s) longer than %d words truncated", truncated, self.max_tokens)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            out[i] = self._mean(text, i)
        return out

    def _mean(self, text: str, position: int) -> np.ndarray:
        tokens = text_tokens(text, max_tokens=self.max_tokens, position=position)
        found = [v for token in tokens for v in self._units(token)]
        if not found:
            raise DataError(
                f"{describe(text, position)}: none of its words has a vector in "
                f"{self.vectors.source.label}; rephrase it or load other vectors with "
                "`platform vectors load FILE`"
            )
        mean = np.mean(found, axis=0)
        return mean / max(float(np.linalg.norm(mean)), 1e-12)

    def _units(self, token: str) -> list[np.ndarray]:
        """Unit vector of a token, or its hyphen parts' when it has none (cached)."""
        if token not in self._cache:
            parts = [token] if self.vectors.vector(token) is not None else token.split("-")
            vecs = [v for v in map(self.vectors.vector, parts) if v is not None]
            norms = [max(float(np.linalg.norm(v)), 1e-12) for v in vecs]
            self._cache[token] = [v / n for v, n in zip(vecs, norms, strict=True)]
        return self._cache[token]


@register_text_encoder("glove")
def glove(options: TextOptions) -> GloveTextEncoder:
    """The mean-of-word-vectors encoder over ``options.vectors``."""
    return GloveTextEncoder(open_vectors(options.vectors), max_tokens=options.max_tokens)
