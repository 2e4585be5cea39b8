"""The ``gru`` text encoder (the reference system's sentence encoder): word embeddings
initialised from word vectors, a GRU over them, its last hidden state as the sentence vector.

Trained end-to-end with the matching model; untrained it is a random function of the words.
Its vocabulary comes from the training captions (``Vocabulary.from_texts``) and travels with
its checkpoint. Sequences are packed, so padding never enters the GRU.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence

from embplat.errors import ConfigError
from embplat.models.encoders import resolve_device
from embplat.models.text.registry import TextOptions, register_text_encoder
from embplat.models.text.tokens import Vocabulary, count_truncated
from embplat.models.wordvectors import WordVectors, open_vectors

log = logging.getLogger(__name__)


class GruTextEncoder(nn.Module):
    """GRU over word embeddings; a :class:`~embplat.models.text.registry.TrainableTextEncoder`.

    Args:
        vocabulary: the words, in id order.
        vectors: initial embeddings of the words they know (others: random of the same
            scale); None leaves every row random (a checkpoint's weights replace them).
        word_dim: embedding size when ``vectors`` is None (else the vectors' dimension).
    """

    name = "gru"
    trainable = True

    def __init__(
        self,
        vocabulary: Vocabulary,
        vectors: WordVectors | None,
        *,
        hidden: int = 512,
        word_dim: int = 50,
        max_tokens: int = 32,
        batch_size: int = 256,
    ):
        super().__init__()
        self.vocabulary, self.max_tokens, self.batch_size = vocabulary, max_tokens, batch_size
        self.dim = hidden
        self.key = f"gru-{len(vocabulary)}w-{hidden}h"
        dim = vectors.dim if vectors is not None else word_dim
        self.embedding = nn.Embedding(len(vocabulary), dim, padding_idx=0)
        self.gru = nn.GRU(dim, hidden, batch_first=True)
        if vectors is not None:
            self._init_from(vectors)

    @torch.no_grad()
    def _init_from(self, vectors: WordVectors) -> None:
        rows = {i: vectors.vector(w) for i, w in enumerate(self.vocabulary.words) if i >= 2}
        known = {i: v for i, v in rows.items() if v is not None}
        if known:
            matrix = torch.from_numpy(np.stack(list(known.values())))
            nn.init.normal_(self.embedding.weight, std=float(matrix.std()))
            self.embedding.weight[list(known)] = matrix
        self.embedding.weight[0] = 0.0
        log.info(
            "gru: %d of %d words start from %s vectors",
            len(known),
            len(rows),
            vectors.source.label,
        )

    def token_ids(self, texts: Sequence[str]) -> torch.Tensor:
        """(B, L) int64 ids, 0-padded; unknown words are ``<unk>``.

        Raises:
            DataError: a text has no words (names the text and its position).
        """
        return torch.from_numpy(self.vocabulary.encode(texts, max_tokens=self.max_tokens))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, L) ids → (B, hidden) last hidden states (not normalised)."""
        lengths = (ids != 0).sum(dim=1).clamp(min=1).cpu()
        packed = pack_padded_sequence(
            self.embedding(ids), lengths, batch_first=True, enforce_sorted=False
        )
        _, last = self.gru(packed)
        return last[-1]

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(B, hidden) float32 unit rows, in batches of ``batch_size``.

        Raises:
            DataError: a text has no words, or none the vocabulary knows (a query in a
                language the training captions never used); names the text and position.
        """
        truncated = count_truncated(texts, self.max_tokens)
        if truncated:
            log.info("%d text(s) longer than %d words truncated", truncated, self.max_tokens)
        ids = self.vocabulary.encode(texts, max_tokens=self.max_tokens, strict=True)
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        out = [
            F.normalize(self(torch.from_numpy(ids[i : i + self.batch_size]).to(device)), dim=1)
            for i in range(0, len(ids), self.batch_size)
        ]
        self.train(was_training)
        if not out:
            return np.empty((0, self.dim), dtype=np.float32)
        return torch.cat(out).float().cpu().numpy()


@register_text_encoder("gru")
def gru(options: TextOptions) -> GruTextEncoder:
    """A fresh GRU over ``options.vocabulary``, embeddings from ``options.vectors``.

    Raises:
        ConfigError: no vocabulary was given.
    """
    if not options.vocabulary:
        raise ConfigError(
            "the gru text encoder needs a vocabulary: build one from the training captions "
            "(Vocabulary.from_texts) and pass its words as TextOptions.vocabulary"
        )
    encoder = GruTextEncoder(
        Vocabulary(options.vocabulary),
        open_vectors(options.vectors),
        hidden=options.hidden,
        max_tokens=options.max_tokens,
        batch_size=options.batch_size,
    )
    return encoder.to(resolve_device(options.device))
