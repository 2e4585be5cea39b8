"""The ``matching`` recipe's model: image–caption matching (the reference system trains it
on Flickr8k: image features through a linear layer, a GRU sentence encoder, order
embeddings, Adam).

- :mod:`.config`: :class:`MatchingConfig` (text encoder, loss, margin, embedding size...).
- :mod:`.towers`: the image tower (projection of cached image-encoder features, or of a
  backbone being fine-tuned), the text tower (a registered text encoder + projection) and
  :class:`MatchingModel` holding both; :func:`build_matching_model`.
- :mod:`.losses`: ``order``, ``vse`` and ``infonce``, symmetric, from pytorch-metric-learning;
  :func:`pair_scores`, the similarity each space ranks by.
- :mod:`.fit`: :class:`PairTrainer` / :func:`fit_pairs`, training on in-memory pairs.
- :mod:`.spec`: the registry entry (``data = "captions"``: ``pipelines.train_pairs`` trains
  it from the catalog's captions).
- :mod:`.saved`: checkpoints, and a saved model rebuilt (its towers, or its image side as an
  ``ImageEncoder``).

The names below load on first use (PEP 562), so ``.config`` can be checked without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from embplat.models.recipes.matching.spec import MatchingRecipe

if TYPE_CHECKING:
    from embplat.models.recipes.matching.config import (
        DEFAULT_MARGINS,
        MATCHING_LOSSES,
        MatchingConfig,
    )
    from embplat.models.recipes.matching.fit import PairFit, PairSet, PairTrainer, fit_pairs
    from embplat.models.recipes.matching.losses import (
        build_matching_loss,
        order_violation,
        pair_scores,
    )
    from embplat.models.recipes.matching.towers import (
        ImageTower,
        MatchingModel,
        TextTower,
        build_matching_model,
    )

_HOMES = {
    "DEFAULT_MARGINS": "config",
    "MATCHING_LOSSES": "config",
    "MatchingConfig": "config",
    "PairFit": "fit",
    "PairSet": "fit",
    "PairTrainer": "fit",
    "fit_pairs": "fit",
    "build_matching_loss": "losses",
    "order_violation": "losses",
    "pair_scores": "losses",
    "ImageTower": "towers",
    "MatchingModel": "towers",
    "TextTower": "towers",
    "build_matching_model": "towers",
}
__all__ = [
    "DEFAULT_MARGINS",
    "MATCHING_LOSSES",
    "ImageTower",
    "MatchingConfig",
    "MatchingModel",
    "MatchingRecipe",
    "PairFit",
    "PairSet",
    "PairTrainer",
    "TextTower",
    "build_matching_loss",
    "build_matching_model",
    "fit_pairs",
    "order_violation",
    "pair_scores",
]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
