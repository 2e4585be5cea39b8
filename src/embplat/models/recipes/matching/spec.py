"""The ``matching`` entry of the recipe registry (torch-free).

Matching trains on (image, caption) pairs rather than labelled images, so it declares
``data = "captions"``: the training use case hands it to ``pipelines.train_pairs``, and the
class-based ``build``/``stages`` of :class:`RecipeSpec` are never called.
"""

from __future__ import annotations

from pathlib import Path

from embplat.errors import ConfigError
from embplat.models.recipes import Built, RecipeSpec, register_recipe
from embplat.models.recipes.matching.config import MatchingConfig


@register_recipe
class MatchingRecipe(RecipeSpec[MatchingConfig]):
    """Image–caption matching: an image tower over the active encoder's cached features and
    a text tower, trained on the catalog's captions (``platform train matching``)."""

    name = "matching"
    config = MatchingConfig
    data = "captions"

    def build(self, cfg: MatchingConfig, classes: list[str], *, home: Path) -> Built:
        """Not a class-based recipe: trained by ``pipelines.train_pairs``.

        Raises:
            ConfigError: always.
        """
        raise ConfigError("the matching recipe trains on captions, not classes")
