"""Brute-force numpy index: the reference every other backend is tested against."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embplat.errors import IndexDamagedError
from embplat.retrieval.arrays import SearchArrays
from embplat.retrieval.backends import ExactOptions
from embplat.retrieval.base import Filter, Hit, VectorIndex, exact_top_k
from embplat.retrieval.files import atomic_write, check_stored_dim, npz_bytes, read_npz
from embplat.retrieval.helpers import (
    append_rows,
    filter_mask,
    lookup,
    make_hit_lists,
    prepare_search,
    prepare_upsert,
)
from embplat.retrieval.lock import WriteLock, begin_write

log = logging.getLogger(__name__)

FILE = "exact.npz"
_FORMAT = 2  # 2: a sha256 of the file's arrays is stored inside it


def open_index(*, name: str, dim: int, root: Path, options: ExactOptions) -> ExactIndex:
    """The exact index ``name`` kept in ``root/name`` (the registry's entry point)."""
    return ExactIndex(name, dim, path=Path(root) / name, lock_timeout=options.lock_timeout)


class ExactIndex(VectorIndex):
    """Cosine similarity by one matrix product over every stored vector.

    Scores are exact dot products of unit vectors; ties are broken by insertion order (a
    re-upserted id keeps its original place). With ``path`` set, :meth:`flush` writes the
    whole index to ``path/exact.npz`` atomically (with a checksum inside) and construction
    reloads it. Writers of one ``path`` take turns as for nmslib: the directory's write lock
    is held from a handle's first write until its flush, and a handle reloads the file first
    when another writer replaced it meanwhile. Exact search has nothing to build, so the
    deferred-indexing, rebuild and alias methods keep :class:`VectorIndex`'s no-op defaults.

    Args:
        name: index name (used in messages).
        dim: vector dimension.
        path: optional directory to persist to.
        lock_timeout: seconds a write waits for another process writing ``path``.

    Raises:
        IndexDamagedError: the saved file is truncated, corrupt or fails its checksum.
    """

    def __init__(
        self, name: str, dim: int, path: Path | None = None, lock_timeout: float = 600.0
    ) -> None:
        self.name = name
        self.dim = dim
        self.path = Path(path) if path is not None else None
        self._lock = WriteLock(self.path, lock_timeout) if self.path is not None else None
        self._token: tuple[int, ...] | None = None  # identity of the file last read/written
        self._reset()
        if self._file_token() is not None:
            self._load()

    def _reset(self) -> None:
        self._buf = np.empty((0, self.dim), np.float32)  # rows [0, len(self._ids)) are live
        self._ids: list[str] = []
        self._payloads: list[dict[str, Any]] = []
        self._row: dict[str, int] = {}
        self._dirty = False

    @property
    def _vectors(self) -> np.ndarray:
        return self._buf[: len(self._ids)]

    def upsert(
        self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]
    ) -> None:
        """Insert or replace points. ``vectors`` is (N, dim); rows are L2-normalised."""
        ids, arr, payloads = prepare_upsert(ids, vectors, payloads, self.dim)
        if not ids:
            return
        self._begin_write()
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

        Hit payloads are the stored dicts (read-only, see :class:`~embplat.retrieval.Hit`).

        Raises:
            IndexEmptyError: the index holds no points.
            DataError: bad query shape/values or ``k`` < 1.
        """
        found = self.search_arrays(queries, k, filter)
        return make_hit_lists(self._ids, self._payloads, found.rows, found.scores)

    def search_arrays(
        self, queries: np.ndarray, k: int, filter: Filter | None = None
    ) -> SearchArrays:
        """:meth:`search` as (Q, K) rows into this index's ids, and scores.

        Raises:
            IndexEmptyError: the index holds no points.
            DataError: bad query shape/values or ``k`` < 1.
        """
        q = prepare_search(queries, k, self.dim, name=self.name, size=len(self._ids))
        rows = None if not filter else np.flatnonzero(filter_mask(self._payloads, filter))
        matrix = self._vectors if rows is None else self._vectors[rows]
        cols, scores = exact_top_k(q, matrix, k)
        return SearchArrays(cols if rows is None else rows[cols], scores, self._ids)

    def get(self, ids: Sequence[str]) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Vectors (N, dim) and payloads of ``ids``, in the order asked.

        Raises:
            NotFoundError: some ids are not in the index.
        """
        return lookup(ids, self._row, self._vectors, self._payloads, self.name)

    def delete(self, ids: Sequence[str]) -> int:
        """Remove points; returns how many existed."""
        if not ids:
            return 0
        self._begin_write()
        rows = sorted({self._row[pid] for pid in ids if pid in self._row})
        if not rows:
            self._end_write()
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

    def ids(self) -> list[str]:
        """Every point id, in insertion order."""
        return list(self._ids)

    def flush(self) -> None:
        """Write the index to ``path`` atomically (no-op in memory or when unchanged), then
        let other writers of ``path`` have its lock."""
        if self.path is None or not self._dirty:
            self._end_write()
            return
        self.path.mkdir(parents=True, exist_ok=True)
        meta = {"format": _FORMAT, "name": self.name, "dim": self.dim}
        meta |= {"ids": self._ids, "payloads": self._payloads}
        blob = npz_bytes(self._vectors, meta, with_checksum=True)
        atomic_write(self.path / FILE, lambda fh: fh.write(blob))
        self._dirty = False
        self._token = self._file_token()
        self._end_write()
        log.debug("flushed %d points of %r to %s", len(self._ids), self.name, self.path)

    def close(self) -> None:
        """Flush; the index holds no open files or connections."""
        self.flush()

    def _begin_write(self) -> None:
        """Take ``path``'s write lock; reload first if another writer replaced the file."""
        begin_write(
            self._lock, stale=lambda: self._file_token() != self._token, reload=self._reload
        )

    def _reload(self) -> None:
        self._reset()
        self._load()

    def _end_write(self) -> None:
        if self._lock is not None and not self._dirty:
            self._lock.release()

    def _file_token(self) -> tuple[int, ...] | None:
        """Identity of the saved file (a writer's atomic rename changes it), None if absent."""
        if self.path is None:
            return None
        try:
            st = (self.path / FILE).stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def _load(self) -> None:
        assert self.path is not None
        file = self.path / FILE
        token = self._file_token()
        if token is None:  # removed (moved aside) since: nothing to load
            self._token = None
            return
        vectors, meta, _ = read_npz(file)
        check_stored_dim(meta.get("dim"), self.dim, file)
        self._buf = np.ascontiguousarray(vectors, dtype=np.float32)
        self._ids = list(meta["ids"])
        self._payloads = list(meta["payloads"])
        self._row = {pid: r for r, pid in enumerate(self._ids)}
        self._token = token
        log.debug("loaded %d points of %r from %s", len(self._ids), self.name, file)


def salvage(path: Path, dim: int) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
    """The points of ``path/exact.npz`` if it is readable (its checksum ignored), else none.

    Never raises for damage.

    Returns:
        ids, (N, dim) float32 vectors and payloads, aligned.
    """
    try:
        vectors, meta, _ = read_npz(path / FILE, verify=False)
        ids, payloads = list(meta["ids"]), list(meta["payloads"])
        if vectors.ndim != 2 or vectors.shape[1] != dim:
            raise ValueError(f"vectors of shape {vectors.shape}")
        if not len(ids) == len(payloads) == len(vectors):
            raise ValueError(f"{len(vectors)} vectors but {len(ids)} ids")
    except (IndexDamagedError, KeyError, TypeError, ValueError) as exc:
        log.warning("salvage: nothing readable in %s (%s)", path / FILE, exc)
        return [], np.empty((0, dim), np.float32), []
    return ids, vectors.astype(np.float32), payloads
