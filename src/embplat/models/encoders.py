"""Image encoders: ``TorchImageEncoder`` (the torch implementation of the ``ImageEncoder``
protocol), backbone lookup (``get_encoder`` / ``get_backbone`` / ``list_encoders``), devices
and torch threads, and the one safe ``torch.load`` of weight and checkpoint files.

The protocol, the registry and model keys live in the torch-free ``embplat.models.registry``
(re-exported here); the built-in backbones in ``embplat.models.backbones``, which registers
them when :func:`list_encoders` first imports it.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from embplat.config import usable_cores
from embplat.errors import ConfigError
from embplat.models.registry import (  # noqa: F401  (re-exported: the torch-free half)
    _REGISTRY,
    Factory,
    ImageEncoder,
    model_key,
    register_encoder,
)

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Backbone:
    """What a registered factory returns: a module mapping (B,3,S,S) to (B,dim) features.

    Attributes:
        spatial: the same network's trunk before pooling, mapping (B, 3, S, S) to the
            (B, spatial_dim, h, w) feature map whose spatial mean is ``module``'s output; it
            shares ``module``'s parameters (training one trains the other). None for a
            backbone without one (the caption recipe needs it).
        spatial_dim: the feature map's channels C.
        hypercolumns: like ``spatial`` (the same parameters, the same h × w grid), but each
            location's feature is the last map's concatenated with the maps of the two
            stages before the last two downsamplings (strides 8 and 16), average-pooled to
            that grid: the earlier stages keep what the last one abstracts away, such as
            colour (hypercolumns, Hariharan et al. 2015). None where not offered.
        hypercolumns_dim: the channels of the ``hypercolumns`` map.
    """

    module: nn.Module
    dim: int
    weights: str
    default_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    spatial: nn.Module | None = None
    spatial_dim: int | None = None
    hypercolumns: nn.Module | None = None
    hypercolumns_dim: int | None = None
    features: str = "last"


#: What a backbone's (B, dim) features are: the last map pooled, or every hypercolumn level's.
FEATURES = ("last", "multilevel")


class PooledMaps(nn.Module):
    """A (B, C, h, w) map module's output averaged over its grid: (B, C)."""

    def __init__(self, maps: nn.Module):
        super().__init__()
        self.maps = maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maps(x).mean(dim=(2, 3))  # type: ignore[no-any-return]


def check_features(features: str) -> str:
    """``features`` if known. Raises ConfigError listing the choices."""
    if features not in FEATURES:
        raise ConfigError(f"unknown features {features!r}; choose one of: {', '.join(FEATURES)}")
    return features


def with_features(backbone: Backbone, features: str) -> Backbone:
    """``backbone`` whose ``module`` gives ``features``: ``last`` (as built) or
    ``multilevel``: its ``hypercolumns`` averaged over the grid, i.e. the last map's pooled
    features beside those of the two earlier stages (strides 8 and 16), which keep shape and
    texture cues the last stage abstracts away.

    Raises:
        ConfigError: an unknown ``features``, or a backbone without hypercolumns.
    """
    if check_features(features) == "last":
        return backbone
    if backbone.hypercolumns is None or backbone.hypercolumns_dim is None:
        raise ConfigError(
            "multilevel features need a backbone with hypercolumns (efficientnet_lite0, "
            "resnet18, resnet50)"
        )
    return dataclasses.replace(
        backbone,
        module=PooledMaps(backbone.hypercolumns),
        dim=backbone.hypercolumns_dim,
        features=features,
    )


#: Pixels per CPU forward pass (4 images at 224 px). EfficientNet-Lite0 on a 2-core CPU, ms
#: per image by batch: 224 px 36 / 34 / 36 / 47 / 64 at 1 / 4 / 8 / 16 / 32 images; 112 px
#: 6.3 at 16, 9.2 at 32; 64 px 2.5 at 32 (activations of larger passes leave the caches).
CPU_FORWARD_PIXELS = 4 * 224 * 224


def cpu_forward_batch(pixels_per_image: int) -> int:
    """Images per CPU forward pass for images of ``pixels_per_image`` pixels (at least 1)."""
    return max(1, CPU_FORWARD_PIXELS // max(1, pixels_per_image))


def resize_crop(image: Image.Image, side: int) -> Image.Image:
    """torchvision's ``Resize(side)`` then ``CenterCrop(side)`` on a PIL image, pixel for
    pixel (bilinear, shorter side to ``side``, centred square), without importing
    torchvision: its import pulls in ``torch._dynamo``, seconds that a one-image command
    would spend before its forward pass."""
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(side * long / short)
    new_w, new_h = (side, new_long) if w <= h else (new_long, side)
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = round((new_w - side) / 2.0), round((new_h - side) / 2.0)
    return image.crop((left, top, left + side, top + side))


class TorchImageEncoder:
    """An ``ImageEncoder`` over any feature-extracting torch module.

    On CUDA the module runs in ``channels_last`` memory format under autocast (``amp``:
    bfloat16 where supported, else float16), and batches travel host→device as uint8 from
    pinned memory; on CPU it runs exactly as built, in float32.

    ``jpeg_draft`` and ``gpu_decode`` say how files are fed to it (read by
    ``embplat.ingest.decode``): JPEGs much larger than the input side decoded at reduced DCT
    scale, and baseline JPEGs decoded by nvJPEG when the device is CUDA.
    """

    def __init__(
        self,
        name: str,
        backbone: Backbone,
        *,
        image_size: int | None,
        device: str,
        amp: bool = True,
        jpeg_draft: bool = True,
        gpu_decode: bool = True,
    ):
        self.name = name
        self.dim = backbone.dim
        self.weights = backbone.weights
        self.image_size = image_size or backbone.default_size
        self.device = resolve_device(device)
        self.module = backbone.module.to(self.device).eval()
        self.amp_dtype: torch.dtype | None = None
        self.jpeg_draft, self.gpu_decode = jpeg_draft, gpu_decode
        if self.device.type == "cuda":
            self.module = self.module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            if amp:
                bf16 = torch.cuda.is_bf16_supported()
                self.amp_dtype = torch.bfloat16 if bf16 else torch.float16
        self.key = model_key(name, self.weights, self.image_size, backbone.default_size)
        self._mean = torch.tensor(backbone.mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(backbone.std, dtype=torch.float32).view(1, 3, 1, 1)

    def transform(self, image: Image.Image) -> torch.Tensor:
        """One RGB PIL image → (3, S, S) normalised tensor, as torchvision's ``Resize``,
        ``CenterCrop``, ``ToTensor`` and ``Normalize`` give it."""
        x = self.prepare(image).to(torch.float32).div(255)
        return x.sub_(self._mean[0]).div_(self._std[0])

    def prepare(self, image: Image.Image) -> torch.Tensor:
        """One RGB PIL image → (3, S, S) uint8 tensor: resized and cropped, not normalised.

        ``encode_uint8(torch.stack(...))`` of these gives the same vectors as
        ``encode_images`` of :meth:`transform`'s output, with a quarter of the memory and
        no per-image torch arithmetic (which a decode thread would run on the intra-op pool).
        """
        pixels = np.asarray(resize_crop(image, self.image_size), dtype=np.uint8)
        return torch.from_numpy(pixels.copy()).permute(2, 0, 1)

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) uint8 → float32 on the encoder's device, normalised exactly as
        ``ToTensor`` + ``Normalize`` do (same operations in the same order)."""
        x = batch.to(self.device, non_blocking=True).to(torch.float32).div(255)
        return x.sub_(self._mean.to(x.device)).div_(self._std.to(x.device))

    @torch.inference_mode()
    def encode_uint8(self, batch: torch.Tensor) -> np.ndarray:
        """(B, 3, S, S) uint8 from :meth:`prepare` → (B, dim) float32 unit vectors."""
        return self.encode_images(self.normalize(batch))

    @torch.inference_mode()
    def encode_images(self, batch: torch.Tensor) -> np.ndarray:
        """(B, 3, S, S) → (B, dim) float32 unit vectors."""
        feats = torch.nn.functional.normalize(self.forward(batch), dim=1)
        return feats.cpu().numpy().astype(np.float32, copy=False)

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) → the module's (B, dim) float32 output on the encoder's device: on a
        CPU in cache-sized pieces, on CUDA in ``channels_last`` under autocast."""
        x = batch.to(self.device, non_blocking=True)
        if self.device.type != "cuda":
            # the CPU runs a batch fastest in pieces that keep activations in its caches
            step = cpu_forward_batch(x.shape[-1] * x.shape[-2])
            parts = x.split(step) if len(x) > step else [x]
            feats = torch.cat([self.module(part) for part in parts])
        else:
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(
                "cuda", dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None
            ):
                feats = self.module(x)
        return feats.float()


def list_encoders() -> list[str]:
    """Names of all registered encoders."""
    import embplat.models.backbones  # noqa: F401  (registers the built-in backbones)

    return sorted(_REGISTRY)


def get_encoder(
    name: str,
    *,
    weights: str | None = None,
    image_size: int | None = None,
    device: str = "auto",
    threads: int | None = None,
    amp: bool = True,
    jpeg_draft: bool = True,
    gpu_decode: bool = True,
) -> TorchImageEncoder:
    """Build a registered encoder.

    Args:
        name: registry name, e.g. ``efficientnet_lite0``.
        weights: backbone-specific weights: a torchvision weights name, a local ``.pth``
            state dict, ``random`` (seeded), or None for the backbone's default.
        image_size: square input side; None uses the backbone's native size.
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:1``...
        threads: torch intra-op threads for this process (see :func:`set_torch_threads`);
            None leaves torch's setting alone.
        amp: on CUDA, run the forward under autocast (bfloat16/float16); ignored on CPU.
        jpeg_draft: decode JPEGs at least twice the input side at reduced DCT scale.
        gpu_decode: on CUDA, decode batches of baseline JPEGs with nvJPEG.

    Raises:
        ConfigError: unknown name or unusable weights; the message lists the choices.
    """
    if threads is not None:
        set_torch_threads(threads)
    return TorchImageEncoder(
        name,
        get_backbone(name, weights),
        image_size=image_size,
        device=device,
        amp=amp,
        jpeg_draft=jpeg_draft,
        gpu_decode=gpu_decode,
    )


def default_torch_threads(decode_threads: int, cores: int | None = None) -> int:
    """Intra-op threads: one core left per decode thread (``cores - decode_threads``), but
    never fewer than two where two cores exist. The forward pass is the bottleneck: on a
    2-core machine ingesting 800 images at 64 px took 4.8 s with 1 decode + 1 torch thread,
    3.5 s with 1 decode + 2 torch threads and 3.0 s for the bare loop with 2 threads, so the
    decode thread shares a core rather than take half the forward pass's."""
    n = cores or usable_cores()
    return max(n - max(0, decode_threads), min(n, 2))


def set_torch_threads(threads: int) -> None:
    """Set torch's intra-op thread count for the whole process (once; later calls with
    the same value do nothing, so building several encoders is free)."""
    threads = max(1, int(threads))
    if torch.get_num_threads() != threads:
        log.debug("torch intra-op threads: %d → %d", torch.get_num_threads(), threads)
        torch.set_num_threads(threads)


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


def load_tensors(path: str | Path, *, what: str, missing_hint: str = "") -> Any:
    """``torch.load`` of a local file, safely (``weights_only=True``) onto the CPU.

    Args:
        what: what the file should be, for messages (``weights file``, ``checkpoint``).
        missing_hint: appended to the message when the file does not exist.

    Raises:
        ConfigError: the file is missing or cannot be read as tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist{missing_hint}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"{what} {path} cannot be read: {exc}") from exc


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a local ``.pth`` state dict (or a checkpoint dict holding one) safely.

    Raises:
        ConfigError: the file is missing or is not a tensor state dict.
    """
    state = load_tensors(path, what="weights file")
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ConfigError(f"weights file {path} holds a {type(state).__name__}, not a state dict")
    return state
