"""Encoders (registry), heads, losses and training recipes (registry).

The names below are loaded on first use (PEP 562): ``import embplat.models.registry`` and
the CLI's start-up must not pay for torch. ``list_encoders``/``get_encoder`` register the
built-in backbones themselves, ``list_recipes``/``get_recipe`` the built-in recipes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from embplat.lazy import lazy_exports

if TYPE_CHECKING:
    from embplat.models.encoders import TorchImageEncoder, get_encoder, list_encoders
    from embplat.models.recipes import get_recipe, list_recipes, register_recipe
    from embplat.models.registry import ImageEncoder, register_encoder

__all__ = [
    "ImageEncoder",
    "TorchImageEncoder",
    "get_encoder",
    "get_recipe",
    "list_encoders",
    "list_recipes",
    "register_encoder",
    "register_recipe",
]

_HOMES = {
    "ImageEncoder": "embplat.models.registry",
    "register_encoder": "embplat.models.registry",
    "TorchImageEncoder": "embplat.models.encoders",
    "get_encoder": "embplat.models.encoders",
    "list_encoders": "embplat.models.encoders",
    "get_recipe": "embplat.models.recipes",
    "list_recipes": "embplat.models.recipes",
    "register_recipe": "embplat.models.recipes",
}


__getattr__ = lazy_exports(__name__, _HOMES)
