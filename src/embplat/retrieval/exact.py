"""Brute-force numpy index: the reference every other backend is tested against."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embplat.retrieval.base import (
    Filter,
    Hit,
    append_rows,
    exact_top_k,
    filter_mask,
    lookup,
    make_hits,
    prepare_search,
    prepare_upsert,
)
from embplat.retrieval.files import atomic_write, check_stored_dim, read_npz, write_npz

logger = logging.getLogger(__name__)

_FILE = "exact.npz"
_FORMAT = 1


class ExactIndex:
    """Cosine similarity by one matrix product over every stored vector.

    Scores are exact dot products of unit vectors; ties are broken by insertion order (a
    re-upserted id keeps its original place). With ``path`` set, :meth:`flush` writes the
    whole index to ``path/exact.npz`` atomically and construction reloads it.

    Args:
        name: index name (used in messages).
        dim: vector dimension.
        path: optional directory to persist to.
    """

    def __init__(self, name: str, dim: int, path: Path | None = None) -> None:
        self.name = name
        self.dim = dim
        self.path = Path(path) if path is not None else None
        self._buf = np.empty((0, dim), np.float32)  # rows [0, len(self._ids)) are live
        self._ids: list[str] = []
        self._payloads: list[dict[str, Any]] = []
        self._row: dict[str, int] = {}
        self._dirty = False
        if self.path is not None and (self.path / _FILE).exists():
            self._load(self.path / _FILE)

    @property
    def _vectors(self) -> np.ndarray:
        return self._buf[: len(self._ids)]

    def upsert(
        self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]
    ) -> None:
        """Insert or replace points. ``vectors`` is (N, dim); rows are L2-normalised."""
        ids, arr, payloads = prepare_upsert(ids, vectors, payloads, self.dim)
        new_rows = []
        for i, pid in enumerate(ids):
            row = self._row.get(pid)
            if row is None:
                new_rows.append(i)
                continue
            self._vectors[row] = arr[i]
            self._payloads[row] = payloads[i]
        for i in new_rows:
            self._row[ids[i]] = len(self._ids)
            self._ids.append(ids[i])
            self._payloads.append(payloads[i])
        if new_rows:
            self._buf = append_rows(self._buf, len(self._ids) - len(new_rows), arr[new_rows])
        self._dirty = self._dirty or bool(ids)

    def search(self, queries: np.ndarray, k: int, filter: Filter | None = None) -> list[list[Hit]]:
        """For each row of ``queries`` (Q, dim), up to ``k`` hits, best first.

        Raises:
            IndexEmptyError: the index holds no points.
            DataError: bad query shape/values or ``k`` < 1.
        """
        q = prepare_search(queries, k, self.dim, name=self.name, size=len(self._ids))
        rows = None if not filter else np.flatnonzero(filter_mask(self._payloads, filter))
        matrix = self._vectors if rows is None else self._vectors[rows]
        cols, scores = exact_top_k(q, matrix, k)
        if rows is not None:
            cols = rows[cols]
        return [
            make_hits(self._ids, self._payloads, row_cols, row_scores)
            for row_cols, row_scores in zip(cols, scores, strict=True)
        ]

    def get(self, ids: Sequence[str]) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Vectors (N, dim) and payloads of ``ids``, in the order asked.

        Raises:
            NotFoundError: some ids are not in the index.
        """
        return lookup(ids, self._row, self._vectors, self._payloads, self.name)

    def delete(self, ids: Sequence[str]) -> int:
        """Remove points; returns how many existed."""
        rows = sorted({self._row[pid] for pid in ids if pid in self._row})
        if not rows:
            return 0
        gone = set(rows)
        self._buf = np.delete(self._vectors, rows, axis=0)
        self._ids = [pid for r, pid in enumerate(self._ids) if r not in gone]
        self._payloads = [p for r, p in enumerate(self._payloads) if r not in gone]
        self._row = {pid: r for r, pid in enumerate(self._ids)}
        self._dirty = True
        return len(rows)

    def count(self, filter: Filter | None = None) -> int:
        """Number of points (matching ``filter`` when given)."""
        if not filter:
            return len(self._ids)
        return int(filter_mask(self._payloads, filter).sum())

    def flush(self) -> None:
        """Write the index to ``path`` atomically (no-op in memory or when unchanged)."""
        if self.path is None or not self._dirty:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        meta = {"format": _FORMAT, "name": self.name, "dim": self.dim}
        meta |= {"ids": self._ids, "payloads": self._payloads}
        atomic_write(self.path / _FILE, lambda fh: write_npz(fh, self._vectors, meta))
        self._dirty = False
        logger.debug("flushed %d points of %r to %s", len(self._ids), self.name, self.path)

    def close(self) -> None:
        """Flush; the index holds no open files or connections."""
        self.flush()

    def _load(self, file: Path) -> None:
        vectors, meta, _ = read_npz(file)
        check_stored_dim(meta.get("dim"), self.dim, file)
        self._buf = np.ascontiguousarray(vectors, dtype=np.float32)
        self._ids = list(meta["ids"])
        self._payloads = list(meta["payloads"])
        self._row = {pid: r for r, pid in enumerate(self._ids)}
        logger.debug("loaded %d points of %r from %s", len(self._ids), self.name, file)
