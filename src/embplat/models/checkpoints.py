"""Training checkpoints: one ``epoch_N.pt`` per epoch, and a trained model rebuilt as an encoder.

A checkpoint is a plain dict, loadable with ``torch.load(weights_only=True)``::

    format: 1
    model, recipe: str           the registered model name and the recipe that trained it
    config: dict                 the frozen training config (``dataclasses.asdict``)
    encoder: dict                name, weights, image_size, dim, mean, std of the backbone
    head: dict                   ``HeadSpec`` fields (out_dim, bn, export)
    classes: list[str]           class index → name, as trained
    epoch: int, metrics: dict    this epoch's ``EpochResult``
    state_dict: dict             ``backbone.*``, ``head.*``, ``loss.*`` tensors
    ...                          recipe extras (DeViSE: ``vectors``, ``label_vectors``)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from embplat.errors import ConfigError
from embplat.models.encoders import (
    Backbone,
    TorchImageEncoder,
    get_backbone,
    load_tensors,
    with_features,
)
from embplat.models.heads import Head, HeadSpec

FORMAT = 1


def save_checkpoint(path: Path, net: nn.Module, meta: dict[str, Any]) -> None:
    """Write ``meta`` + the CPU ``state_dict`` of ``net`` to ``path`` (atomic rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"format": FORMAT, **meta, "state_dict": state}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint safely (``weights_only=True``).

    Raises:
        ConfigError: the file is missing or is not an embplat checkpoint.
    """
    hint = "; was the data home moved?"
    ckpt = load_tensors(path, what="checkpoint", missing_hint=hint)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "state_dict" not in ckpt:
        raise ConfigError(f"{path} is not an embplat training checkpoint (format {FORMAT})")
    return ckpt


def _part(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def trained_module(ckpt: dict[str, Any]) -> tuple[nn.Module, int]:
    """The exported network of a checkpoint and its output dimension.

    The backbone gives the features it was trained on (``encoder.features``: ``last``, or
    ``multilevel`` pooled hypercolumns).

    ``backbone`` alone (features) when the head is not exported, else ``backbone → head``.
    """
    enc, spec = ckpt["encoder"], HeadSpec(**ckpt["head"])
    with torch.random.fork_rng(devices=[]):  # "random" init reseeds; keep the caller's RNG
        built = get_backbone(enc["name"], "random")
    backbone = with_features(built, enc.get("features", "last")).module
    backbone.load_state_dict(_part(ckpt["state_dict"], "backbone."))
    if not spec.export:
        return backbone, int(enc["dim"])
    head = Head(int(enc["dim"]), spec)
    head.load_state_dict(_part(ckpt["state_dict"], "head."))
    return nn.Sequential(backbone, head), spec.out_dim


def load_trained_encoder(
    path: str | Path, *, name: str | None = None, device: str = "auto"
) -> TorchImageEncoder:
    """Rebuild a trained model as an ``ImageEncoder`` whose key is the model name.

    Its embeddings go to the model's own collection (``embplat_<name>``) through the same
    embedding code as any encoder.

    A matching model (image–caption) gives its image side: the image encoder it was
    trained on, then its image tower.

    Raises:
        ConfigError: the checkpoint is missing or unreadable.
    """
    ckpt = load_checkpoint(path)
    if ckpt.get("recipe") == "matching":
        from embplat.models.recipes.matching.saved import matching_image_encoder

        return matching_image_encoder(ckpt, path=path, name=name, device=device)
    module, dim = trained_module(ckpt)
    enc = ckpt["encoder"]
    backbone = Backbone(
        module,
        dim=dim,
        weights=str(path),
        default_size=int(enc["image_size"]),
        mean=tuple(enc["mean"]),  # type: ignore[arg-type]
        std=tuple(enc["std"]),  # type: ignore[arg-type]
    )
    model = name or str(ckpt["model"])
    encoder = TorchImageEncoder(model, backbone, image_size=int(enc["image_size"]), device=device)
    encoder.key = model  # payloads, point ids and the collection name follow the model name
    return encoder
