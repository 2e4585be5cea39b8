"""Search results as arrays, for callers that need thousands of neighbours per query.

:func:`search_arrays` answers like ``VectorIndex.search`` but returns (Q, K) row numbers and
scores instead of :class:`~embplat.retrieval.base.Hit` objects: evaluation asks for up to
one neighbour per reference image, and a Python object per (query, neighbour) pair grows
quadratically with the dataset. In-process backends (exact, nmslib) answer with their own
slot numbers; other backends fall back to ``search``. :class:`IdPositions` turns rows into
positions in a list of ids (e.g. the reference images) with one table lookup.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from embplat.retrieval.base import Filter, VectorIndex


@dataclass(frozen=True)
class SearchArrays:
    """Neighbours of Q queries, best first.

    Attributes:
        rows: (Q, K) int64 row numbers into ``ids``; -1 pads a query with fewer hits.
        scores: (Q, K) float32 cosine similarities; 0.0 where ``rows`` is -1.
        ids: the point id of each row number. For an in-process backend this is its own
            slot list (no copy): valid until the index's next write, never to be modified.
    """

    rows: np.ndarray
    scores: np.ndarray
    ids: Sequence[str]


@runtime_checkable
class ArraySearch(Protocol):
    """A backend with a fast path for :func:`search_arrays`."""

    def search_arrays(
        self, queries: np.ndarray, k: int, filter: Filter | None = None
    ) -> SearchArrays:
        """As :func:`search_arrays`."""


def search_arrays(
    index: VectorIndex, queries: np.ndarray, k: int, filter: Filter | None = None
) -> SearchArrays:
    """``index.search`` as arrays: up to ``k`` neighbours of each row of ``queries`` (Q, dim).

    Same neighbours, order and scores as ``index.search``.

    Raises:
        IndexEmptyError: the index holds no points.
        DataError: bad query shape/values or ``k`` < 1.
    """
    if isinstance(index, ArraySearch):
        return index.search_arrays(queries, k, filter)
    results = index.search(queries, k, filter)
    width = max((len(hits) for hits in results), default=0)
    rows = np.full((len(results), width), -1, np.int64)
    scores = np.zeros((len(results), width), np.float32)
    ids: list[str] = []
    for q, hits in enumerate(results):
        rows[q, : len(hits)] = np.arange(len(ids), len(ids) + len(hits))
        scores[q, : len(hits)] = [h.score for h in hits]
        ids.extend(h.id for h in hits)
    return SearchArrays(rows, scores, ids)


class IdPositions:
    """Maps :class:`SearchArrays` rows to positions in a list of ids.

    The row -> position table is built once per id list a backend answers with (an
    in-process index's slot list stays the same object between writes) and reused.

    Args:
        ids: the ids whose positions are wanted (e.g. the reference images); an id that
            occurs twice maps to its last position.
        extra: more ids, given positions ``len(ids) + j`` when not among ``ids`` (e.g. the
            queries, to recognise a query's own point among its hits).
    """

    def __init__(self, ids: Sequence[str], extra: Sequence[str] = ()) -> None:
        self.size = len(ids)
        self._pos = {pid: i for i, pid in enumerate(ids)}
        for j, pid in enumerate(extra):
            self._pos.setdefault(pid, self.size + j)
        self._universe: Sequence[str] | None = None
        self._table = np.full(1, -1, np.int64)

    def of(self, ids: Sequence[str]) -> np.ndarray:
        """(N,) positions of ``ids`` (-1 for an id not known)."""
        return np.fromiter((self._pos.get(p, -1) for p in ids), np.int64, len(ids))

    def __call__(self, result: SearchArrays) -> np.ndarray:
        """(Q, K) positions of the hits of ``result``; -1 for padding and unknown ids."""
        if result.ids is not self._universe or len(self._table) != len(result.ids) + 1:
            # the trailing -1 is what row -1 (padding) looks up
            self._table = np.append(self.of(result.ids), -1)
            self._universe = result.ids
        return self._table[result.rows]
