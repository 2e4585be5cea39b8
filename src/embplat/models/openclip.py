"""open_clip CLIP models as image encoders: the image tower's embeddings are the features, and
the same model's text tower (``embplat.models.text.openclip``) embeds prompts and sentences
into that space, so zero-shot classification and text → image search need no training.

Weights come from a local file (an open_clip checkpoint: ``.bin``/``.pt``/``.pth`` state dict
or ``.safetensors``), from a pretrained tag that open_clip downloads where the network allows
(``openai``, ``laion2b_s34b_b79k``...), or ``random`` (seeded, for smoke runs). The built-in
architectures are registered as ``openclip-<arch>`` by ``embplat.models.backbones``
(:data:`embplat.models.registry.OPENCLIP_ARCHS`); :func:`register_openclip` registers any
other open_clip configuration, e.g. one added with ``open_clip.add_model_config``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from embplat.errors import ConfigError
from embplat.models.encoders import Backbone, register_encoder
from embplat.models.registry import openclip_name

log = logging.getLogger(__name__)

#: Suffixes that make a weights string a file rather than a pretrained tag.
WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".safetensors")
#: The tag used when no weights are given: OpenAI's CLIP, which every built-in arch has.
DEFAULT_TAG = "openai"


class ClipImageTower(nn.Module):
    """A CLIP model's image side: (B, 3, S, S) → (B, embed_dim) image embeddings (not
    normalised; the encoder normalises). Holds the whole model so the text tower shares it."""

    def __init__(self, model: nn.Module, arch: str):
        super().__init__()
        self.model, self.arch = model, arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(x)  # type: ignore[operator,no-any-return]


def is_weights_file(weights: str) -> bool:
    """Whether ``weights`` names a file (a path or a checkpoint suffix), not a tag."""
    return weights.endswith(WEIGHT_SUFFIXES) or "/" in weights or Path(weights).is_file()


def load_clip(arch: str, weights: str | None) -> tuple[nn.Module, str]:
    """The open_clip model ``arch`` with ``weights``, and the weights label for its key.

    Args:
        arch: an open_clip architecture (``open_clip.list_models()``), e.g. ``ViT-B-32``.
        weights: a local checkpoint file, a pretrained tag (downloads), ``random``, or None
            for :data:`DEFAULT_TAG`.

    Raises:
        ConfigError: an unknown architecture or tag, a missing or unreadable file (the
            message names it), weights of another architecture, a failed download.
    """
    import open_clip

    if open_clip.get_model_config(arch) is None:
        raise ConfigError(f"unknown open_clip architecture {arch!r}; see open_clip.list_models()")
    label = weights or DEFAULT_TAG
    if label == "random":
        torch.manual_seed(0)
        return open_clip.create_model(arch, pretrained=None, pretrained_text=False), label
    if is_weights_file(label):
        return _from_file(open_clip, arch, Path(label)), label
    cfg = open_clip.get_pretrained_cfg(arch, label)
    if not cfg:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none"
        raise ConfigError(
            f"open_clip has no weights {label!r} for {arch} (tags: {tags}); pass a local "
            "checkpoint file with --weights, or --weights random"
        )
    try:
        # OpenAI's weights were trained with QuickGELU: the tag says so, the arch may not
        model = open_clip.create_model(
            arch,
            pretrained=label,
            pretrained_text=False,
            force_quick_gelu=bool(cfg.get("quick_gelu", False)),
        )
    except Exception as exc:  # download failures surface as RuntimeError/OSError
        raise ConfigError(
            f"could not load open_clip weights {label!r} for {arch} "
            f"({str(exc).splitlines()[0][:200]}); download the checkpoint where the network "
            "allows and pass the file with --weights"
        ) from exc
    return model, label


def _from_file(open_clip: Any, arch: str, path: Path) -> nn.Module:
    """``arch`` with the checkpoint at ``path`` (open_clip converts its known layouts)."""
    if not path.is_file():
        raise ConfigError(
            f"open_clip weights file {path} does not exist; give the path of a checkpoint "
            f"of {arch} (e.g. open_clip_pytorch_model.bin) or a pretrained tag"
        )
    model = open_clip.create_model(arch, pretrained=None, pretrained_text=False)
    try:
        open_clip.load_checkpoint(model, str(path), strict=True, weights_only=True)
    except Exception as exc:
        raise ConfigError(
            f"open_clip weights file {path} cannot be loaded into {arch}: "
            f"{str(exc).splitlines()[0][:300]}"
        ) from exc
    return model  # type: ignore[no-any-return]


def clip_backbone(arch: str, weights: str | None) -> Backbone:
    """The image tower of ``arch`` with ``weights`` (as :func:`load_clip`) as a ``Backbone``
    with CLIP's input size, mean and std (resized bilinearly, where open_clip uses bicubic).
    """
    import open_clip

    model, label = load_clip(arch, weights)
    model.eval()
    cfg = open_clip.get_model_preprocess_cfg(model)
    size = cfg.get("size", 224)
    side = int(size if isinstance(size, int) else size[0])
    mean, std = (
        tuple(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)),
        tuple(cfg.get("std", open_clip.OPENAI_DATASET_STD)),
    )
    return Backbone(
        ClipImageTower(model, arch),
        dim=int(open_clip.get_model_config(arch)["embed_dim"]),
        weights=label,
        default_size=side,
        mean=mean,  # type: ignore[arg-type]
        std=std,  # type: ignore[arg-type]
    )


def register_openclip(arch: str) -> str:
    """Register the open_clip architecture ``arch`` as the image encoder ``openclip-<arch>``
    (lowercase) and return that name; for configurations beyond the built-in ones.

    Raises:
        ConfigError: open_clip knows no such architecture.
    """
    import open_clip

    if open_clip.get_model_config(arch) is None:
        raise ConfigError(f"unknown open_clip architecture {arch!r}; see open_clip.list_models()")
    name = openclip_name(arch)
    register_encoder(name)(lambda weights: clip_backbone(arch, weights))
    return name
