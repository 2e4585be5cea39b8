"""The torch-free half of the encoder registry: the ``ImageEncoder`` protocol, the registry
itself, model keys, and what the built-in encoders are (name, dimension, native size, weights
label) without building them.

Importing this module imports neither torch nor PIL, so the CLI can list encoders and find an
encoder's index (``platform encoders``, ``platform status``) without loading a model. The
torch implementation lives in ``embplat.models.encoders``; the built-in factories in
``embplat.models.backbones`` (a test checks they agree with :data:`BUILTIN_ENCODERS`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image

    from embplat.models.encoders import Backbone


@runtime_checkable
class ImageEncoder(Protocol):
    """Maps a batch of preprocessed images to L2-normalised float32 vectors."""

    name: str
    key: str
    dim: int
    image_size: int
    weights: str

    def transform(self, image: Image.Image) -> torch.Tensor:
        """One RGB PIL image → (3, S, S) float tensor ready for ``encode_images``."""

    def encode_images(self, batch: torch.Tensor) -> np.ndarray:
        """(B, 3, S, S) → (B, dim) float32, rows of unit length."""


Factory = Callable[[str | None], "Backbone"]
_REGISTRY: dict[str, Factory] = {}


def register_encoder(name: str) -> Callable[[Factory], Factory]:
    """Decorator registering ``factory(weights) -> Backbone`` under ``name``."""

    def deco(factory: Factory) -> Factory:
        _REGISTRY[name] = factory
        return factory

    return deco


@dataclass(frozen=True)
class EncoderSpec:
    """What a built-in encoder is, known without building it."""

    dim: int
    default_size: int
    #: The weights label the factory gives ``weights`` (None = the backbone's default).
    label: Callable[[str | None], str]


def _efficientnet_label(weights: str | None) -> str:
    if weights in (None, "imagenet", "default"):
        return "imagenet"
    return weights


def _torchvision_label(weights: str | None) -> str:
    if weights == "random" or (weights and weights.endswith((".pth", ".pt"))):
        return weights
    name = weights or "DEFAULT"
    return name if name != "DEFAULT" else "default"


def _tiny_label(weights: str | None) -> str:
    return "random" if weights in (None, "random") else weights


def _openclip_label(weights: str | None) -> str:
    return weights or "openai"


#: open_clip architectures registered as image encoders ``openclip-<arch>`` (lowercase), with
#: their embedding dimension; ``-quickgelu`` for OpenAI's weights read from a local file.
OPENCLIP_ARCHS: dict[str, int] = {
    "RN50": 1024,
    "RN50-quickgelu": 1024,
    "ViT-B-32": 512,
    "ViT-B-32-quickgelu": 512,
    "ViT-B-16": 512,
    "ViT-B-16-quickgelu": 512,
    "ViT-L-14": 768,
    "ViT-L-14-quickgelu": 768,
}


def openclip_name(arch: str) -> str:
    """The image encoder name of open_clip architecture ``arch``: ``openclip-vit-b-32``."""
    return "openclip-" + arch.lower()


#: The encoders ``embplat.models.backbones`` registers, as :class:`EncoderSpec`.
BUILTIN_ENCODERS: dict[str, EncoderSpec] = {
    "efficientnet_lite0": EncoderSpec(1280, 224, _efficientnet_label),
    "resnet18": EncoderSpec(512, 224, _torchvision_label),
    "resnet50": EncoderSpec(2048, 224, _torchvision_label),
    "squeezenet1_1": EncoderSpec(512, 224, _torchvision_label),
    "tiny_cnn": EncoderSpec(64, 32, _tiny_label),
    **{openclip_name(a): EncoderSpec(d, 224, _openclip_label) for a, d in OPENCLIP_ARCHS.items()},
}


def encoder_names() -> list[str]:
    """Names of the built-in encoders and of any registered since, without importing torch
    (``embplat.models.encoders.list_encoders`` loads the built-in factories first)."""
    return sorted(set(BUILTIN_ENCODERS) | set(_REGISTRY))


def builtin_key(name: str, weights: str | None, image_size: int | None) -> str | None:
    """The model key ``get_encoder(name, weights=..., image_size=...)`` would have, computed
    without building it; None when ``name`` is not a built-in encoder (or another factory
    was registered under its name)."""
    spec = BUILTIN_ENCODERS.get(name)
    if spec is None:
        return None
    factory = _REGISTRY.get(name)
    if factory is not None and factory.__module__ != "embplat.models.backbones":
        return None
    size = image_size or spec.default_size
    return model_key(name, spec.label(weights), size, spec.default_size)


def model_key(name: str, weights: str, image_size: int, default_size: int) -> str:
    """Stable identity of (encoder, weights, input size): embeddings differ when any does."""
    key = name
    if image_size != default_size:
        key += f"-{image_size}px"
    if weights not in {"imagenet", "default"}:
        key += "-" + re.sub(r"[^a-z0-9]+", "_", Path(weights).stem.lower()).strip("_")
    return key
