"""The text tower of an open_clip image encoder (``openclip-<arch>``): sentences and label
prompts embedded into the space of that encoder's image vectors, with open_clip's own
tokenizer (byte-pair encoding, so no word is unknown; texts beyond the model's context
length, 77 tokens for CLIP, are truncated).

It is not built by name from the text registry: it is the same model as the active image
encoder, so :func:`text_tower` takes that encoder and shares its weights and device.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from embplat.errors import ConfigError
from embplat.models.text.tokens import require_texts

if TYPE_CHECKING:
    from embplat.models.registry import ImageEncoder


class OpenClipTextEncoder:
    """CLIP text embeddings (the end-of-text token's projected feature), unit length.

    Attributes:
        key: the image encoder's key + ``-text``: the vectors belong to that space.
    """

    name = "openclip"
    trainable = False

    def __init__(self, model: Any, arch: str, *, key: str, batch_size: int = 256):
        import open_clip

        self.model, self.arch, self.key, self.batch_size = model, arch, key, batch_size
        self.tokenizer = open_clip.get_tokenizer(arch)
        self.dim = int(open_clip.get_model_config(arch)["embed_dim"])

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(B, dim) float32 unit rows, one per text.

        Raises:
            DataError: a text is empty or blank (names the text and its position).
        """
        require_texts(texts)
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        device = next(self.model.parameters()).device
        parts = []
        for start in range(0, len(texts), self.batch_size):
            ids = self.tokenizer(list(texts[start : start + self.batch_size])).to(device)
            feats = self.model.encode_text(ids).float()
            parts.append(torch.nn.functional.normalize(feats, dim=1).cpu().numpy())
        return np.concatenate(parts).astype(np.float32, copy=False)


def text_tower(encoder: ImageEncoder) -> OpenClipTextEncoder:
    """The text tower of an open_clip image ``encoder`` (the same model and device).

    Raises:
        ConfigError: ``encoder`` is no open_clip encoder (the message says how to use one).
    """
    from embplat.models.openclip import ClipImageTower

    tower = getattr(encoder, "module", None)
    if not isinstance(tower, ClipImageTower):
        raise ConfigError(
            f"encoder {encoder.name} has no text tower: --space clip needs an open_clip "
            "encoder, e.g. `platform --encoder openclip-vit-b-32 --weights FILE ...` "
            "(`platform encoders` lists them)"
        )
    if encoder not in _TOWERS:
        _TOWERS[encoder] = OpenClipTextEncoder(tower.model, tower.arch, key=f"{encoder.key}-text")
    return _TOWERS[encoder]


#: The text tower of each live image encoder (built once: the tokenizer reads its vocabulary).
_TOWERS: weakref.WeakKeyDictionary[Any, OpenClipTextEncoder] = weakref.WeakKeyDictionary()
