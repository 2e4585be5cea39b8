"""A matching model's checkpoints: written once per epoch, rebuilt as towers or as an encoder.

A matching checkpoint is a regular one (``models.checkpoints``, ``format`` 1, loadable with
``weights_only=True``) with the recipe ``matching`` and these fields::

    encoder: dict      the image encoder whose cached features the image tower projects:
                       name, weights, image_size, dim, key
    matching: dict     the model's ``spec`` (config, image_dim, vocabulary, vectors, text_key)
    state_dict: dict   the ``MatchingModel``'s tensors (``image.proj.*``, ``text.*``)

The image encoder's own weights are not saved: they are rebuilt from its name and weights
label (the encoder was frozen).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from embplat.errors import ConfigError
from embplat.models.encoders import Backbone, TorchImageEncoder, get_backbone
from embplat.models.recipes.matching.config import MatchingConfig
from embplat.models.recipes.matching.towers import MatchingModel, build_matching_model, to_space
from embplat.models.wordvectors import VectorSource

RECIPE = "matching"


def is_matching(ckpt: dict[str, Any]) -> bool:
    """Whether a loaded checkpoint is a matching model's."""
    return ckpt.get("recipe") == RECIPE and "matching" in ckpt


def checkpoint_meta(
    model: MatchingModel,
    *,
    name: str,
    encoder: dict[str, Any],
    epoch: int,
    metrics: dict[str, float],
) -> dict[str, Any]:
    """The fields of epoch ``epoch``'s checkpoint besides the state dict."""
    return {
        "model": name,
        "recipe": RECIPE,
        "config": model.spec["config"],
        "encoder": encoder,
        "matching": model.spec,
        "epoch": epoch,
        "metrics": metrics,
    }


def load_matching_model(ckpt: dict[str, Any], *, home: Path, device: str = "cpu") -> MatchingModel:
    """The matching model of a loaded checkpoint, in eval mode.

    Raises:
        ConfigError: not a matching checkpoint, or its text encoder cannot be built.
    """
    if not is_matching(ckpt):
        raise ConfigError(f"checkpoint of {ckpt.get('model')!r} is not a matching model's")
    spec = ckpt["matching"]
    model = build_matching_model(
        MatchingConfig.from_dict(spec["config"]),
        image_dim=int(spec["image_dim"]),
        vocabulary=spec["vocabulary"],
        vectors=VectorSource.from_dict(spec["vectors"]),
        home=home,
        device=device,
    )
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


class ProjectedBackbone(nn.Module):
    """Images → the frozen image encoder's unit features → the image tower's points."""

    def __init__(self, backbone: nn.Module, proj: nn.Linear, kind: str):
        super().__init__()
        self.backbone, self.proj, self.kind = backbone, proj, kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) → (B, embed_dim), as ``MatchingModel.embed_images`` of the features."""
        feats = nn.functional.normalize(self.backbone(x).float(), dim=1)
        return to_space(self.proj(feats), self.kind)


def matching_image_encoder(
    ckpt: dict[str, Any], *, path: str | Path, name: str | None = None, device: str = "auto"
) -> TorchImageEncoder:
    """A matching checkpoint's image side as an ``ImageEncoder`` keyed by the model name:
    the image encoder it was trained on, then its image tower. New images embedded with it
    land where the training's cached features put the catalog's images (up to float error).
    """
    enc, spec = ckpt["encoder"], ckpt["matching"]
    cfg = spec["config"]
    with torch.random.fork_rng(devices=[]):  # "random" weights reseed; keep the caller's RNG
        base = get_backbone(str(enc["name"]), enc.get("weights"))
    proj = nn.Linear(int(spec["image_dim"]), int(cfg["embed_dim"]))
    prefix = "image.proj."
    proj.load_state_dict(
        {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    )
    backbone = Backbone(
        ProjectedBackbone(base.module, proj, str(cfg["loss"])),
        dim=int(cfg["embed_dim"]),
        weights=str(path),
        default_size=int(enc["image_size"]),
        mean=base.mean,
        std=base.std,
    )
    model = name or str(ckpt["model"])
    encoder = TorchImageEncoder(model, backbone, image_size=int(enc["image_size"]), device=device)
    encoder.key = model
    return encoder
