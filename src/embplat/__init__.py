"""embplat: folders of labelled images → a searchable embedding space.

``from embplat import Platform`` is the Python API (:mod:`embplat.api`). It is imported on
first access, so ``import embplat`` (and the CLI's start-up) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Classification", "Match", "Platform", "SearchResult", "__version__"]

if TYPE_CHECKING:
    from embplat.api import Classification, Match, Platform, SearchResult


def __getattr__(name: str) -> Any:
    if name in __all__ and name != "__version__":
        from embplat import api

        return getattr(api, name)
    raise AttributeError(f"module 'embplat' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
