"""Image encoders: the ``ImageEncoder`` protocol, a torch implementation, and a registry.

The registry mirrors torchvision's ``register_model`` / ``get_model`` / ``list_models``.
Backbones live in their own modules (``efficientnet``, ``torchvision_backbones``, ``tiny``)
and register themselves when ``embplat.models`` is imported.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision import transforms as T

from embplat.errors import ConfigError

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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


@dataclass(frozen=True)
class Backbone:
    """What a registered factory returns: a module mapping (B,3,S,S) to (B,dim) features."""

    module: nn.Module
    dim: int
    weights: str
    default_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


class TorchImageEncoder:
    """An ``ImageEncoder`` over any feature-extracting torch module."""

    def __init__(self, name: str, backbone: Backbone, *, image_size: int | None, device: str):
        self.name = name
        self.dim = backbone.dim
        self.weights = backbone.weights
        self.image_size = image_size or backbone.default_size
        self.device = resolve_device(device)
        self.module = backbone.module.to(self.device).eval()
        self.key = model_key(name, self.weights, self.image_size, backbone.default_size)
        self._transform = T.Compose(
            [
                T.Resize(self.image_size),
                T.CenterCrop(self.image_size),
                T.ToTensor(),
                T.Normalize(backbone.mean, backbone.std),
            ]
        )

    def transform(self, image: Image.Image) -> torch.Tensor:
        """One RGB PIL image → (3, S, S) normalised tensor."""
        return self._transform(image)

    @torch.inference_mode()
    def encode_images(self, batch: torch.Tensor) -> np.ndarray:
        """(B, 3, S, S) → (B, dim) float32 unit vectors."""
        feats = self.module(batch.to(self.device, non_blocking=True))
        feats = torch.nn.functional.normalize(feats.float(), dim=1)
        return feats.cpu().numpy().astype(np.float32, copy=False)


Factory = Callable[[str | None], Backbone]
_REGISTRY: dict[str, Factory] = {}


def register_encoder(name: str) -> Callable[[Factory], Factory]:
    """Decorator registering ``factory(weights) -> Backbone`` under ``name``."""

    def deco(factory: Factory) -> Factory:
        _REGISTRY[name] = factory
        return factory

    return deco


def list_encoders() -> list[str]:
    """Names of all registered encoders."""
    import embplat.models  # noqa: F401  (registers the built-in backbones)

    return sorted(_REGISTRY)


def get_encoder(
    name: str, *, weights: str | None = None, image_size: int | None = None, device: str = "auto"
) -> TorchImageEncoder:
    """Build a registered encoder.

    Args:
        name: registry name, e.g. ``efficientnet_lite0``.
        weights: backbone-specific weights: a torchvision weights name, a local ``.pth``
            state dict, ``random`` (seeded), or None for the backbone's default.
        image_size: square input side; None uses the backbone's native size.
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:1``...

    Raises:
        ConfigError: unknown name or unusable weights; the message lists the choices.
    """
    return TorchImageEncoder(
        name, get_backbone(name, weights), image_size=image_size, device=device
    )


def get_backbone(name: str, weights: str | None = None) -> Backbone:
    """The registered backbone ``name`` with ``weights`` (as for :func:`get_encoder`).

    Raises:
        ConfigError: unknown name or unusable weights; the message lists the choices.
    """
    names = list_encoders()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown encoder {name!r}; choose one of: {', '.join(names)}")
    return _REGISTRY[name](weights)


def resolve_device(device: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; anything else is validated."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"invalid device {device!r}: use auto, cpu or cuda[:N]") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available here")
    return dev


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a local ``.pth`` state dict safely (``weights_only=True``).

    Raises:
        ConfigError: the file is missing or is not a tensor state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"weights file {path} is not a loadable state dict: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ConfigError(f"weights file {path} holds a {type(state).__name__}, not a state dict")
    return state


def model_key(name: str, weights: str, image_size: int, default_size: int) -> str:
    """Stable identity of (encoder, weights, input size): embeddings differ when any does."""
    key = name
    if image_size != default_size:
        key += f"-{image_size}px"
    if weights not in {"imagenet", "default"}:
        key += "-" + re.sub(r"[^a-z0-9]+", "_", Path(weights).stem.lower()).strip("_")
    return key
