"""The ``VectorIndex`` protocol every backend implements, and helpers they share.

Scores are cosine similarities (higher = more similar) on every backend, so results from
exact, nmslib and Qdrant compare directly. Ids are UUID strings derived deterministically
from (content hash, model), so writing the same image twice never duplicates a point.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from embplat.errors import DataError, IndexEmptyError, NotFoundError

#: Payload filter: field -> value, or field -> list of values (any of them matches).
Filter = Mapping[str, Any]

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
    """A collection of L2-normalised vectors with payloads, searchable by cosine similarity."""

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


def prepare_search(
    queries: np.ndarray | Sequence[Sequence[float]], k: int, dim: int, *, name: str, size: int
) -> np.ndarray:
    """Validate a search of the in-process index ``name`` holding ``size`` points.

    Returns:
        (Q, dim) unit float32 queries.

    Raises:
        DataError: ``k`` < 1 or bad query shape/values.
        IndexEmptyError: the index holds no points.
    """
    check_k(k)
    q = unit_rows(queries, dim)
    if not size:
        raise IndexEmptyError(f"index {name!r} is empty; upsert vectors before searching")
    return q


def prepare_upsert(
    ids: Sequence[str],
    vectors: np.ndarray | Sequence[Sequence[float]],
    payloads: Sequence[Mapping[str, Any]],
    dim: int,
) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
    """Validate an upsert batch and keep only the last occurrence of a repeated id.

    Returns:
        ids, (N, dim) unit float32 vectors and JSON-compatible payload copies, aligned.

    Raises:
        DataError: lengths disagree, an id is not a non-empty string, a vector is invalid,
            or a payload is not a JSON-serialisable mapping.
    """
    arr = unit_rows(vectors, dim) if np.size(vectors) else np.empty((0, dim), np.float32)
    if not (len(ids) == arr.shape[0] == len(payloads)):
        raise DataError(
            f"upsert got {len(ids)} ids, {arr.shape[0]} vectors and {len(payloads)} payloads; "
            "pass one of each per point"
        )
    last: dict[str, int] = {}
    for i, pid in enumerate(ids):
        if not isinstance(pid, str) or not pid:
            raise DataError(f"point id at position {i} is {pid!r}; ids must be non-empty strings")
        last[pid] = i
    keep = sorted(last.values())
    out_payloads = []
    for i in keep:
        payload = payloads[i]
        if not isinstance(payload, Mapping):
            raise DataError(f"payload for id {ids[i]!r} is {type(payload).__name__}, not a dict")
        try:
            json.dumps(payload)
        except (TypeError, ValueError) as exc:
            raise DataError(f"payload for id {ids[i]!r} is not JSON-serialisable: {exc}") from exc
        out_payloads.append(dict(payload))
    return [ids[i] for i in keep], arr[keep], out_payloads


def filter_mask(payloads: Sequence[Mapping[str, Any]], flt: Filter | None) -> np.ndarray:
    """Boolean (N,) array: which payloads satisfy ``flt``."""
    if not flt:
        return np.ones(len(payloads), dtype=bool)
    return np.fromiter((matches(p, flt) for p in payloads), dtype=bool, count=len(payloads))


_new_object = object.__new__
# the slot descriptors set fields without the frozen class's __setattr__
_set_id, _set_score, _set_payload = (vars(Hit)[f].__set__ for f in ("id", "score", "payload"))


def _hit(pid: str, score: float, payload: dict[str, Any]) -> Hit:
    """``Hit(pid, score, payload)`` without the frozen dataclass's slow ``__init__``."""
    hit = _new_object(Hit)
    _set_id(hit, pid)
    _set_score(hit, score)
    _set_payload(hit, payload)
    return hit


def make_hit_lists(
    ids: Sequence[str], payloads: Sequence[dict[str, Any]], rows: np.ndarray, scores: np.ndarray
) -> list[list[Hit]]:
    """Hits of Q queries: (Q, K) ``rows`` into ``ids``/``payloads`` (-1 = none) and scores."""
    # one tolist() per batch and no per-hit copies: this loop is most of the per-query cost
    return [
        [_hit(ids[r], v, payloads[r]) for r, v in zip(row, vals, strict=True) if r >= 0]
        for row, vals in zip(rows.tolist(), scores.tolist(), strict=True)
    ]


def lookup(
    ids: Sequence[str],
    row_of: Mapping[str, int],
    vectors: np.ndarray,
    payloads: Sequence[dict[str, Any]],
    name: str,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Copies of the (N, D) vectors and the payloads of ``ids``, in the order asked.

    Raises:
        NotFoundError: some ids are not in ``row_of`` (the index ``name``).
    """
    missing = [pid for pid in ids if pid not in row_of]
    if missing:
        raise NotFoundError(f"{len(missing)} ids not in index {name!r}: {missing[:5]}")
    rows = [row_of[pid] for pid in ids]
    return vectors[rows].copy(), [dict(payloads[r]) for r in rows]


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


def append_rows(buf: np.ndarray, n: int, rows: np.ndarray) -> np.ndarray:
    """Write ``rows`` at ``buf[n:]``, growing ``buf`` geometrically when full.

    Returns:
        The buffer to keep (``buf`` itself, or a larger copy holding its first ``n`` rows).
    """
    need = n + len(rows)
    if need > len(buf):
        grown = np.empty((max(need, 2 * len(buf), 1024), *buf.shape[1:]), dtype=buf.dtype)
        grown[:n] = buf[:n]
        buf = grown
    buf[n:need] = rows
    return buf


def filter_key(flt: Filter) -> Any:
    """Hashable form of a filter for the mask cache, or None when a value is unhashable."""
    try:
        key = frozenset(
            (k, frozenset(v) if isinstance(v, list | tuple | set | frozenset) else v)
            for k, v in flt.items()
        )
        hash(key)
    except TypeError:
        return None
    return key
