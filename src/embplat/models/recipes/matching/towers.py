"""The two towers of a matching model and the model holding both.

- Image tower: a linear projection of image-encoder features — cached features of any
  registered image encoder, (B, F), or images, (B, 3, S, S), through an optional backbone
  being fine-tuned.
- Text tower: a text encoder plus a linear projection. A trainable encoder (``gru``) is part
  of the tower and learns with it; a frozen one (``glove``, ``minilm``) is run once per
  caption and its features cached, like frozen image features.

Both towers end in unit vectors; for order embeddings also in the positive orthant
(absolute values after normalising, as the reference system).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from embplat.models.recipes.matching.config import MatchingConfig
from embplat.models.recipes.matching.losses import pair_scores
from embplat.models.text.registry import TextEncoder, get_text_encoder
from embplat.models.text.tokens import Vocabulary
from embplat.models.wordvectors import VectorSource, resolve_source


def to_space(x: torch.Tensor, kind: str) -> torch.Tensor:
    """Unit rows; non-negative too for order embeddings."""
    x = F.normalize(x.float(), dim=1)
    return x.abs() if kind == "order" else x


class ImageTower(nn.Module):
    """Projection of image features; images go through ``backbone`` first when given."""

    def __init__(self, in_dim: int, embed_dim: int, backbone: nn.Module | None = None):
        super().__init__()
        self.backbone = backbone
        self.proj = nn.Linear(in_dim, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, F) features or (B, 3, S, S) images → (B, embed_dim), not normalised."""
        if x.dim() != 2:
            if self.backbone is None:
                raise ValueError(f"images {tuple(x.shape)} need a backbone; pass (B, F) features")
            x = self.backbone(x)
        return self.proj(x)


class TextTower(nn.Module):
    """A text encoder and a projection; trains the encoder too when it is trainable."""

    def __init__(self, encoder: TextEncoder, embed_dim: int):
        super().__init__()
        self.encoder = encoder  # a submodule (in the state dict) when it is an nn.Module
        self.trainable = bool(encoder.trainable)
        self.proj = nn.Linear(encoder.dim, embed_dim)

    def prepare(self, texts: Sequence[str]) -> torch.Tensor:
        """What :meth:`forward` takes for ``texts``, computed once per caption: (N, L) token
        ids for a trainable encoder, (N, D) cached features for a frozen one.

        Raises:
            DataError: a caption has no words (or, frozen ``glove``, no known word).
        """
        if self.trainable:
            return self.encoder.token_ids(texts)  # type: ignore[attr-defined]
        return torch.from_numpy(self.encoder.encode_texts(texts))

    def forward(self, prepared: torch.Tensor) -> torch.Tensor:
        """(B, L) ids or (B, D) features (from :meth:`prepare`) → (B, embed_dim)."""
        feats = self.encoder(prepared) if self.trainable else prepared  # type: ignore[operator]
        return self.proj(feats)


class MatchingModel(nn.Module):
    """Image tower + text tower into one space; ``kind`` is the loss (it shapes the space).

    ``spec`` is what a checkpoint needs besides the state dict to rebuild the model: the
    config, the image-feature dimension and (``gru``) the vocabulary.
    """

    def __init__(self, image: ImageTower, text: TextTower, kind: str, spec: dict[str, Any]):
        super().__init__()
        self.image, self.text, self.kind, self.spec = image, text, kind, spec

    def embed_images(self, x: torch.Tensor) -> torch.Tensor:
        """(B, F) features or (B, 3, S, S) images → (B, embed_dim) points of the space."""
        return to_space(self.image(x), self.kind)

    def embed_texts(self, prepared: torch.Tensor) -> torch.Tensor:
        """(B, …) prepared captions (``text.prepare``) → (B, embed_dim) points."""
        return to_space(self.text(prepared), self.kind)

    def scores(self, images: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        """(I, C) similarities of embedded images and captions (higher = better match)."""
        return pair_scores(self.kind, images, texts)


def build_matching_model(
    cfg: MatchingConfig,
    *,
    image_dim: int,
    train_texts: Sequence[str] = (),
    vocabulary: Sequence[str] = (),
    home: Path,
    vectors: VectorSource | None = None,
    device: str = "cpu",
    backbone: nn.Module | None = None,
) -> MatchingModel:
    """A fresh (or, given ``vocabulary``, rebuildable) matching model for ``cfg``.

    Args:
        image_dim: the image encoder's feature dimension F.
        train_texts: the training captions, for a ``gru`` vocabulary (unused otherwise).
        vocabulary: a vocabulary's words (from a checkpoint's spec); wins over train_texts.
        home: the data home, where the active word vectors are recorded.
        vectors: the word vectors to use (a checkpoint's spec); None = ``cfg.vectors``.
        backbone: the image encoder's module, to fine-tune it (images as input).

    Raises:
        ConfigError: the text encoder cannot be built (e.g. ``gru`` with neither
            ``train_texts`` nor ``vocabulary``).
    """
    if not vocabulary and cfg.text_encoder == "gru" and train_texts:
        words = Vocabulary.from_texts(train_texts, min_count=cfg.min_word_count).words
    else:
        words = tuple(vocabulary)
    source = vectors or resolve_source(cfg.vectors, home)
    encoder = get_text_encoder(cfg.text_encoder, cfg.text_options(source, words, device))
    spec = {
        "config": cfg.as_dict(),
        "image_dim": image_dim,
        "vocabulary": list(words),
        "vectors": source.as_dict(),
        "text_key": encoder.key,
    }
    model = MatchingModel(
        ImageTower(image_dim, cfg.embed_dim, backbone),
        TextTower(encoder, cfg.embed_dim),
        cfg.loss,
        spec,
    )
    return model.to(device)
