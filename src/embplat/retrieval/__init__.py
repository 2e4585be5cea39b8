"""Vector indexes: the ``VectorIndex`` protocol, its backends, and how to open one."""

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
