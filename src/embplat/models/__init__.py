"""Encoders (registry), heads, losses and training recipes.

The names below are loaded on first use (PEP 562): ``import embplat.models.registry`` and
the CLI's start-up must not pay for torch. ``list_encoders``/``get_encoder`` register the
built-in backbones themselves.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from embplat.models.encoders import TorchImageEncoder, get_encoder, list_encoders
    from embplat.models.registry import ImageEncoder, register_encoder

__all__ = ["ImageEncoder", "TorchImageEncoder", "get_encoder", "list_encoders", "register_encoder"]

_HOMES = {
    "ImageEncoder": "embplat.models.registry",
    "register_encoder": "embplat.models.registry",
    "TorchImageEncoder": "embplat.models.encoders",
    "get_encoder": "embplat.models.encoders",
    "list_encoders": "embplat.models.encoders",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
