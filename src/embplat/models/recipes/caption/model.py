"""The show-attend-tell captioner: a spatial image encoder and a soft-attention LSTM decoder.

- :class:`SpatialEncoder`: a registered backbone's ``spatial`` trunk, images → (B, P, C)
  feature vectors, one per location of its h x w map (P = h * w).
- :class:`AttentionDecoder`: location features first get a learned projection of their
  (x, y) grid coordinates added (``positions``: the attended context then says *where* the
  decoder looked, which "left of" and "above" need); at each step, soft attention over the
  P locations from the previous hidden state, the attended context gated by a sigmoid
  scalar per channel (``f_beta``), an ``LSTMCell`` over [word embedding, gated context],
  and dropout before the vocabulary layer; h0/c0 come from the mean feature vector.
- :func:`caption_loss`: cross-entropy of the real (unpadded) tokens plus the doubly
  stochastic attention penalty.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from embplat.errors import ConfigError
from embplat.models.recipes.caption.config import NO_VECTORS
from embplat.models.recipes.caption.vocab import PAD_ID

#: Random embedding rows are uniform in (-INIT_RANGE, INIT_RANGE), as the reference system.
INIT_RANGE = 0.1


@dataclass(frozen=True)
class DecoderOutput:
    """Teacher-forced decoder output for a batch of captions of T tokens.

    Attributes:
        scores: (B, T-1, V) logits predicting ``tokens[:, 1:]``.
        alphas: (B, T-1, P) attention weights of each step over the P locations.
        mask: (B, T-1) bool, True where the predicted token is a real one (not padding).
    """

    scores: torch.Tensor
    alphas: torch.Tensor
    mask: torch.Tensor


class SpatialEncoder(nn.Module):
    """(B, 3, S, S) images → (B, P, C) location features of a backbone's spatial trunk.

    ``grid`` is the (h, w) of the last map it produced (P = h * w), so an attention vector
    can be drawn back over the image.
    """

    def __init__(self, trunk: nn.Module, dim: int):
        super().__init__()
        self.trunk, self.dim = trunk, dim
        self.grid: tuple[int, int] | None = None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) → (B, h * w, C)."""
        maps = self.trunk(images)
        self.grid = (int(maps.shape[2]), int(maps.shape[3]))
        return maps.flatten(2).transpose(1, 2)


class SoftAttention(nn.Module):
    """Additive attention: ``alpha = softmax(w . relu(W_e f + W_d h [+ w_c cov]))`` over
    locations.

    With ``coverage``, each location's energy also sees how much attention it has had over
    the steps so far (``cov``, the sum of the earlier alphas; Tu et al. 2016, See et al.
    2017), so the decoder can tell which part of the image it has described already instead
    of describing it again ("a red square beneath a red square"). ``w_c`` starts at zero.
    """

    def __init__(
        self, encoder_dim: int, decoder_dim: int, attention_dim: int, coverage: bool = False
    ):
        super().__init__()
        self.keys = nn.Linear(encoder_dim, attention_dim)
        self.query = nn.Linear(decoder_dim, attention_dim)
        self.score = nn.Linear(attention_dim, 1)
        self.coverage: nn.Linear | None = None
        if coverage:  # made without drawing random numbers: the others start as without it
            self.coverage = nn.utils.skip_init(nn.Linear, 1, attention_dim, bias=False)
            with torch.no_grad():
                self.coverage.weight.zero_()

    def forward(
        self,
        features: torch.Tensor,
        keys: torch.Tensor,
        h: torch.Tensor,
        coverage: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Context (N, C) and weights (N, P) for features (N, P, C), ``keys(features)``
        (N, P, A), hidden states (N, D) and the (N, P) attention summed over earlier steps
        (used only when built with ``coverage``)."""
        hidden = keys + self.query(h).unsqueeze(1)
        if self.coverage is not None and coverage is not None:
            hidden = hidden + self.coverage(coverage.unsqueeze(2).to(hidden.dtype))
        energy = self.score(torch.relu(hidden)).squeeze(2)
        alpha = torch.softmax(energy.float(), dim=1).to(features.dtype)
        return torch.bmm(alpha.unsqueeze(1), features).squeeze(1), alpha


class AttentionDecoder(nn.Module):
    """The LSTM decoder with soft attention over P location features of C channels."""

    def __init__(
        self,
        vocab_size: int,
        encoder_dim: int,
        *,
        attention_dim: int,
        decoder_dim: int,
        embed_dim: int,
        dropout: float,
        positions: bool = False,
        coverage: bool = False,
    ):
        super().__init__()
        self.vocab_size, self.encoder_dim = vocab_size, encoder_dim
        self.attention = SoftAttention(encoder_dim, decoder_dim, attention_dim, coverage)
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        self.lstm = nn.LSTMCell(embed_dim + encoder_dim, decoder_dim)
        self.init_h = nn.Linear(encoder_dim, decoder_dim)
        self.init_c = nn.Linear(encoder_dim, decoder_dim)
        self.f_beta = nn.Linear(decoder_dim, encoder_dim)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(decoder_dim, vocab_size)
        with torch.no_grad():
            self.embedding.weight.uniform_(-INIT_RANGE, INIT_RANGE)
            self.embedding.weight[PAD_ID].zero_()
            self.fc.weight.uniform_(-INIT_RANGE, INIT_RANGE)
            self.fc.bias.zero_()
        # zeros at first (no offset: learned only where it helps), made without drawing
        # random numbers, so the other weights start as they would without it
        self.position: nn.Linear | None = None
        if positions:
            self.position = nn.utils.skip_init(nn.Linear, 2, encoder_dim)
            with torch.no_grad():
                self.position.weight.zero_()
                self.position.bias.zero_()

    def locate(self, features: torch.Tensor) -> torch.Tensor:
        """(N, P, C) features of a square h x h map (row-major, as ``SpatialEncoder`` gives
        them) plus the learned projection of each location's (x, y) in [-1, 1]; unchanged
        without ``positions``. Every decoding path calls it once per image.

        Raises:
            ConfigError: P is not a square number (no square grid to place the locations on).
        """
        if self.position is None:
            return features
        side = math.isqrt(features.shape[1])
        if side * side != features.shape[1]:
            raise ConfigError(
                f"{features.shape[1]} locations make no square feature map; position "
                "encoding needs square input images"
            )
        axis = torch.linspace(-1.0, 1.0, side, device=features.device) if side > 1 else None
        if axis is None:
            axis = torch.zeros(1, device=features.device)
        y, x = torch.meshgrid(axis, axis, indexing="ij")
        coords = torch.stack([x.flatten(), y.flatten()], dim=1).to(features.dtype)  # (P, 2)
        return features + self.position(coords).unsqueeze(0)

    def init_state(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """LSTM (h0, c0), each (N, D), from the mean of features (N, P, C)."""
        mean = features.mean(dim=1)
        return self.init_h(mean), self.init_c(mean)

    def keys(self, features: torch.Tensor) -> torch.Tensor:
        """(N, P, A) attention keys of features (N, P, C), computed once per image."""
        return self.attention.keys(features)

    def step(
        self,
        features: torch.Tensor,
        keys: torch.Tensor,
        words: torch.Tensor,
        h: torch.Tensor,
        c: torch.Tensor,
        coverage: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One decoding step.

        Args:
            features: (N, P, C) location features; keys: their (N, P, A) attention keys.
            words: (N,) ids of the previous tokens; h, c: (N, D) LSTM state.
            coverage: (N, P) attention summed over the earlier steps (None: none yet);
                read only by a decoder built with ``coverage``.

        Returns:
            logits (N, V) of the next token, attention (N, P), and the new h, c (N, D).
        """
        context, alpha = self.attention(features, keys, h, coverage)
        gated = torch.sigmoid(self.f_beta(h)) * context
        h, c = self.lstm(torch.cat([self.embedding(words), gated], dim=1), (h, c))
        return self.fc(self.dropout(h)), alpha, h, c

    def forward(
        self, features: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor
    ) -> DecoderOutput:
        """Teacher forcing: every step is fed the true previous token.

        Args:
            features: (B, P, C) location features.
            tokens: (B, T) ids, ``<start>`` first, padded with ``<pad>``.
            lengths: (B,) real tokens per row, ``<start>`` and ``<end>`` included.

        Returns:
            :class:`DecoderOutput` with (B, T-1, V) scores, (B, T-1, P) alphas, (B, T-1) mask.
        """
        features = self.locate(features)
        keys = self.keys(features)
        h, c = self.init_state(features)
        scores, alphas = [], []
        coverage = None  # attention summed so far, kept only for a decoder that reads it
        if self.attention.coverage is not None:
            coverage = features.new_zeros(features.shape[:2])
        for t in range(tokens.shape[1] - 1):
            logits, alpha, h, c = self.step(features, keys, tokens[:, t], h, c, coverage)
            scores.append(logits)
            alphas.append(alpha)
            if coverage is not None:
                coverage = coverage + alpha
        steps = torch.arange(tokens.shape[1] - 1, device=tokens.device)
        mask = steps.unsqueeze(0) < (lengths.to(tokens.device) - 1).unsqueeze(1)
        return DecoderOutput(torch.stack(scores, 1), torch.stack(alphas, 1), mask)


class CaptionModel(nn.Module):
    """Encoder + decoder; ``embedding_init`` records where the word embeddings started."""

    def __init__(self, encoder: SpatialEncoder, decoder: AttentionDecoder):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.embedding_init: dict[str, Any] = {"vectors": NO_VECTORS, "known": 0}

    def grid(self) -> tuple[int, int]:
        """(h, w) of the feature map of the last images encoded (P = h * w): what a
        hypothesis's (L, P) attention rows reshape to.

        Raises:
            ConfigError: no image has been encoded yet.
        """
        if self.encoder.grid is None:
            raise ConfigError("the caption model has encoded no image yet, so its grid is unknown")
        return self.encoder.grid

    def forward(
        self, images: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor
    ) -> DecoderOutput:
        """Teacher forcing end to end: images (B, 3, S, S), tokens (B, T), lengths (B,)."""
        return self.decoder(self.encoder(images), tokens, lengths)


def caption_loss(out: DecoderOutput, tokens: torch.Tensor, *, alpha_c: float) -> torch.Tensor:
    """Mean cross-entropy over the real target tokens + ``alpha_c * ((1 - sum_t alpha)^2)``
    averaged over images and locations (the doubly stochastic attention penalty: each
    location should be attended about once over the caption).

    Args:
        out: the decoder's output for ``tokens`` (B, T).
    """
    targets = tokens[:, 1 : 1 + out.scores.shape[1]]
    loss = F.cross_entropy(out.scores[out.mask].float(), targets[out.mask])
    if alpha_c:
        attended = (out.alphas.float() * out.mask.unsqueeze(2)).sum(dim=1)
        loss = loss + alpha_c * ((1.0 - attended) ** 2).mean()
    return loss
