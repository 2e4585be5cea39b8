"""Argument checks and bookkeeping shared by the backends: upsert and search validation,
payload filter masks, hit lists, lookups and growing row buffers."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from embplat.errors import DataError, IndexEmptyError, NotFoundError
from embplat.retrieval.base import Filter, Hit, check_k, matches, unit_rows


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
