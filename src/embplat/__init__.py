"""embplat: folders of labelled images → a searchable embedding space.

``from embplat import Platform`` is the Python API (:mod:`embplat.api`). It is imported on
first access, so ``import embplat`` (and the CLI's start-up) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from embplat.lazy import lazy_exports

__version__ = "0.1.0"
__all__ = ["Classification", "Match", "Platform", "SearchResult", "__version__"]

if TYPE_CHECKING:
    from embplat.api import Classification, Match, Platform, SearchResult


__getattr__ = lazy_exports(__name__, {name: "embplat.api" for name in __all__[:-1]})


def __dir__() -> list[str]:
    return sorted(__all__)
