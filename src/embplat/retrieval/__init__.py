"""Vector indexes: the ``VectorIndex`` protocol, its backends, and how to open one.

The names below are loaded on first use (PEP 562), so ``embplat.retrieval.backends`` (the
backend options that ``embplat.config`` nests) imports without numpy or a backend library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from embplat.lazy import lazy_exports

if TYPE_CHECKING:
    from embplat.retrieval.arrays import IdPositions, SearchArrays, search_arrays
    from embplat.retrieval.base import Filter, Hit, VectorIndex, point_id
    from embplat.retrieval.factory import collection_name, open_index

__all__ = [
    "Filter",
    "Hit",
    "IdPositions",
    "SearchArrays",
    "VectorIndex",
    "collection_name",
    "open_index",
    "point_id",
    "search_arrays",
]

_HOMES = {
    "IdPositions": "embplat.retrieval.arrays",
    "SearchArrays": "embplat.retrieval.arrays",
    "search_arrays": "embplat.retrieval.arrays",
    "Filter": "embplat.retrieval.base",
    "Hit": "embplat.retrieval.base",
    "VectorIndex": "embplat.retrieval.base",
    "point_id": "embplat.retrieval.base",
    "collection_name": "embplat.retrieval.factory",
    "open_index": "embplat.retrieval.factory",
}


__getattr__ = lazy_exports(__name__, _HOMES)
