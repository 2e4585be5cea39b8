"""The ``VectorIndex`` protocol every backend implements, and helpers they share.

Scores are cosine similarities (higher = more similar) on every backend, so results from
exact, nmslib and Qdrant compare directly. Ids are UUID strings derived deterministically
from (content hash, model), so writing the same image twice never duplicates a point.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from embplat.errors import DataError

#: Payload filter: field -> value, or field -> list of values (any of them matches).
Filter = Mapping[str, Any]

log = logging.getLogger(__name__)

_NAMESPACE = uuid.UUID("5b7f3d0e-8a51-4c2e-9a55-1f0e6d2b9c41")


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result: point id, cosine similarity, and the point's payload.

    In-process backends hand out their stored payload dict, not a copy: treat it as
    read-only (``dict(hit.payload)`` before changing it).
    """

    id: str
    score: float
    payload: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class VectorIndex(Protocol):
    """A collection of L2-normalised vectors with payloads, searchable by cosine similarity.

    Backends subclass it explicitly: the lifecycle methods at the end (deferred indexing,
    rebuild, aliases) have defaults for a backend with nothing to do there, so callers call
    them on any index and a backend overrides only what it implements.
    """

    name: str
    dim: int

    def upsert(
        self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]
    ) -> None:
        """Insert or replace points. ``vectors`` is (N, dim) float32."""

    def search(self, queries: np.ndarray, k: int, filter: Filter | None = None) -> list[list[Hit]]:
        """For each row of ``queries`` (Q, dim), up to ``k`` hits, best first."""

    def get(self, ids: Sequence[str]) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Vectors (N, dim) and payloads of existing points, in the order asked."""

    def delete(self, ids: Sequence[str]) -> int:
        """Remove points; returns how many existed."""

    def count(self, filter: Filter | None = None) -> int:
        """Number of points (matching ``filter`` when given)."""

    def ids(self) -> list[str]:
        """Every point id in the index (order unspecified)."""

    def flush(self) -> None:
        """Make every write so far durable (persist files, finish pending builds)."""

    def close(self) -> None:
        """Release files and connections."""

    def defer_indexing(self) -> None:
        """Start a bulk load: hold back building the search structure (a graph, an
        optimizer) until :meth:`restore_indexing`; points stay searchable meanwhile.

        Default: nothing to hold back.
        """
        log.debug("index %r builds nothing in the background; nothing to defer", self.name)

    def restore_indexing(self) -> None:
        """End a bulk load: build what was held back and make it durable.

        Any handle may end a load another handle (or process) began: what a backend needs to
        restore is kept with the index, not in the handle. Default: nothing to restore.
        """
        log.debug("index %r deferred nothing; nothing to restore", self.name)

    def rebuild(self) -> None:
        """Rebuild the search structure from the stored points (e.g. to drop tombstones).

        Default: the backend keeps it current by itself (exact search, Qdrant's optimizer).
        """
        log.debug("index %r has no search structure to rebuild", self.name)

    def set_alias(self, alias: str) -> None:
        """Point ``alias`` at this index, atomically replacing where it pointed before.

        Default: the backend has no aliases (indexes are named folders); nothing to do.
        """
        log.debug("index %r has no aliases; not pointing %r at it", self.name, alias)


def point_id(sha256: str, model: str, kind: str = "image") -> str:
    """Deterministic point id for one item embedded by one model."""
    return str(uuid.uuid5(_NAMESPACE, f"{kind}:{model}:{sha256}"))


def matches(payload: Mapping[str, Any], flt: Filter | None) -> bool:
    """True when ``payload`` satisfies every condition of ``flt``."""
    if not flt:
        return True
    for key, want in flt.items():
        have = payload.get(key)
        if isinstance(want, list | tuple | set | frozenset):
            if have not in want:
                return False
        elif have != want:
            return False
    return True


def as_matrix(vectors: np.ndarray | Sequence[Sequence[float]], dim: int) -> np.ndarray:
    """Validate and convert to a C-contiguous (N, dim) float32 array.

    Raises:
        DataError: wrong shape or non-finite values.
    """
    arr = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise DataError(f"vectors have shape {arr.shape}, expected (N, {dim})")
    if not np.isfinite(arr).all():
        raise DataError("vectors contain NaN or infinity")
    return arr


def l2_normalize(arr: np.ndarray) -> np.ndarray:
    """Row-normalise (N, D) to unit length; zero rows stay zero."""
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    return (arr / np.maximum(norms, 1e-12)).astype(np.float32)


# --- helpers shared by the backends -------------------------------------------------------

#: Upper bound on the (queries x points) score matrix one exact-search chunk materialises.
_SCORE_CHUNK_ELEMS = 1 << 24


def unit_rows(vectors: np.ndarray | Sequence[Sequence[float]], dim: int) -> np.ndarray:
    """Validate like :func:`as_matrix`, reject zero rows, and L2-normalise.

    Raises:
        DataError: wrong shape, non-finite values, or an all-zero row (no direction, so no
            cosine similarity).
    """
    arr = as_matrix(vectors, dim)
    zero = np.flatnonzero(~arr.any(axis=1))
    if zero.size:
        raise DataError(f"row {int(zero[0])} is an all-zero vector; cosine needs a direction")
    return l2_normalize(arr)


def check_k(k: int) -> None:
    """Raise DataError unless ``k`` is a positive integer."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise DataError(f"k must be a positive integer, got {k!r}")


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` columns of each row, by score descending, then column index ascending.

    Args:
        scores: (Q, M) similarities.
        k: how many to keep; more than M keeps all M.

    Returns:
        (Q, min(k, M)) column indices and their scores, best first. Ties are broken by the
        lower column index, also at the k-th place, so results are deterministic.
    """
    n_q, m = scores.shape
    k = min(k, m)
    if k == 0:
        return np.empty((n_q, 0), np.int64), np.empty((n_q, 0), scores.dtype)
    if k < m:
        cols = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        cols = np.broadcast_to(np.arange(m), (n_q, m))
    vals = np.take_along_axis(scores, cols, axis=1)
    order = np.lexsort((cols, -vals), axis=1)
    cols, vals = np.take_along_axis(cols, order, 1), np.take_along_axis(vals, order, 1)
    if k < m:
        # argpartition picks arbitrarily among scores tied with the k-th one: redo those rows
        crowded = np.flatnonzero((scores >= vals[:, -1:]).sum(axis=1) > k)
        for r in crowded:
            row_order = np.lexsort((np.arange(m), -scores[r]))[:k]
            cols[r], vals[r] = row_order, scores[r, row_order]
    return cols, vals


def exact_top_k(queries: np.ndarray, matrix: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force cosine top-k of (Q, D) unit ``queries`` against (M, D) unit ``matrix``.

    Queries are processed in chunks so the score matrix stays bounded in memory.

    Returns:
        (Q, min(k, M)) row indices into ``matrix`` and scores, as :func:`top_k`.
    """
    step = max(1, _SCORE_CHUNK_ELEMS // max(1, matrix.shape[0]))
    parts = [top_k(queries[s : s + step] @ matrix.T, k) for s in range(0, len(queries), step)]
    if not parts:
        width = min(k, matrix.shape[0])
        return np.empty((0, width), np.int64), np.empty((0, width), np.float32)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
