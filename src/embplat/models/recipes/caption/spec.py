"""The ``caption`` entry of the recipe registry (torch-free).

Captioning trains on captioned images rather than labelled ones, so it declares
``data = "captioning"``: the training use case hands it to the caption pipeline, and the
class-based ``build``/``stages`` of :class:`RecipeSpec` are never called.
"""

from __future__ import annotations

from pathlib import Path

from embplat.errors import ConfigError
from embplat.models.recipes import Built, RecipeSpec, register_recipe
from embplat.models.recipes.caption.config import CaptionConfig


@register_recipe
class CaptionRecipe(RecipeSpec[CaptionConfig]):
    """Show-attend-tell image captioning: an attention LSTM decoder over a registered image
    encoder's spatial feature map, trained on the catalog's captions (``platform train
    caption``)."""

    name = "caption"
    config = CaptionConfig
    data = "captioning"

    def build(self, cfg: CaptionConfig, classes: list[str], *, home: Path) -> Built:
        """Not a class-based recipe: trained by the caption pipeline.

        Raises:
            ConfigError: always.
        """
        raise ConfigError("the caption recipe trains on captioned images, not classes")
