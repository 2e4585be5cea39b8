"""A trained classifier used as a classifier: backbone → softmax head → class probabilities.

The ``classifier`` recipe exports the backbone's features (its index serves kNN votes and
search), but its checkpoint also holds the trained linear head (``head.*`` tensors). This
module rebuilds ``backbone → head`` from such a checkpoint as a :class:`SoftmaxEncoder`, a
``TorchImageEncoder`` whose :meth:`~SoftmaxEncoder.encode_images` answers (B, C) class
probabilities instead of unit vectors, so query images reach it through the same decoding
and batching code as any encoder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from embplat.models.checkpoints import load_checkpoint, trained_module
from embplat.models.encoders import Backbone, TorchImageEncoder
from embplat.models.heads import Head, HeadSpec


def has_softmax_head(ckpt: dict[str, Any]) -> bool:
    """Whether a checkpoint's head is a softmax over its classes (trained, not exported)."""
    head = ckpt.get("head")
    if not isinstance(head, dict) or head.get("export", True):
        return False
    classes = ckpt.get("classes") or []
    return len(classes) >= 2 and int(head.get("out_dim", 0)) == len(classes)


class SoftmaxEncoder(TorchImageEncoder):
    """``backbone → head → softmax``: images → (B, C) probabilities over ``classes``.

    Not an ``ImageEncoder`` for an index (its rows sum to 1 rather than having unit length):
    it only answers classifications.

    Attributes:
        classes: class index → name, as trained.
        model: the trained model's name.
    """

    def __init__(
        self, name: str, backbone: Backbone, classes: list[str], *, image_size: int, device: str
    ):
        super().__init__(name, backbone, image_size=image_size, device=device)
        self.classes = list(classes)
        self.model = name
        self.key = name

    @torch.inference_mode()
    def encode_images(self, batch: torch.Tensor) -> np.ndarray:
        """(B, 3, S, S) normalised images → (B, C) float32 probabilities (rows sum to 1)."""
        probs = torch.softmax(self.forward(batch), dim=1)  # the logits of backbone → head
        return probs.cpu().numpy().astype(np.float32, copy=False)


def load_softmax_encoder(
    path: str | Path, *, name: str | None = None, device: str = "auto"
) -> SoftmaxEncoder | None:
    """The checkpoint's ``backbone → softmax head``, or None when its head is no softmax
    over its classes (a projection, an embedding, a captioner...).

    Raises:
        ConfigError: the checkpoint is missing or unreadable.
    """
    ckpt = load_checkpoint(path)
    if not has_softmax_head(ckpt):
        return None
    backbone, dim = trained_module(ckpt)
    head = Head(dim, HeadSpec(**ckpt["head"]))
    prefix = "head."
    head.load_state_dict(
        {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    )
    enc = ckpt["encoder"]
    classes = [str(c) for c in ckpt["classes"]]
    module = Backbone(
        nn.Sequential(backbone, head),
        dim=len(classes),
        weights=str(path),
        default_size=int(enc["image_size"]),
        mean=tuple(enc["mean"]),  # type: ignore[arg-type]
        std=tuple(enc["std"]),  # type: ignore[arg-type]
    )
    model = name or str(ckpt["model"])
    return SoftmaxEncoder(model, module, classes, image_size=int(enc["image_size"]), device=device)
