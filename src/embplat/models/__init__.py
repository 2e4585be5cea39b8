"""Encoders (registry), heads, losses and training recipes."""

from embplat.models import backbones as _backbones  # noqa: F401  (registers built-ins)
from embplat.models.encoders import (
    ImageEncoder,
    TorchImageEncoder,
    get_encoder,
    list_encoders,
    register_encoder,
)

__all__ = ["ImageEncoder", "TorchImageEncoder", "get_encoder", "list_encoders", "register_encoder"]
