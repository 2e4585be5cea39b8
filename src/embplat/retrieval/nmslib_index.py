"""nmslib HNSW index: the local default backend.

Points live in *slots*. Slots ``[0, built)`` are in the HNSW graph; later slots form an exact
buffer searched by brute force and merged with the graph's results, so writes are searchable
at once. Replacing or deleting a point marks its slot dead (a tombstone); :meth:`rebuild`
compacts the live slots into a new graph. The files in ``path`` are kept by
:class:`~embplat.retrieval.nmslib_store.NmslibStore`, which also holds the directory's write
lock from a handle's first write until its :meth:`NmslibIndex.flush`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embplat.retrieval.arrays import SearchArrays
from embplat.retrieval.backends import NmslibOptions
from embplat.retrieval.base import Filter, Hit, VectorIndex
from embplat.retrieval.columns import PayloadColumns
from embplat.retrieval.files import Snapshot
from embplat.retrieval.helpers import (
    append_rows,
    filter_key,
    lookup,
    make_hit_lists,
    prepare_search,
    prepare_upsert,
)
from embplat.retrieval.lock import begin_write
from embplat.retrieval.nmslib_salvage import salvage as salvage
from embplat.retrieval.nmslib_search import (
    Found,
    build_graph,
    exact_slots,
    graph_top_k,
    merge,
    new_graph,
    pipelined,
)
from embplat.retrieval.nmslib_store import NmslibStore

log = logging.getLogger(__name__)

_MAX_CACHED_MASKS = 32
#: Queries per nmslib call when a large batch is pipelined with building the results.
_PIPELINE_CHUNK = 256
#: Below this share of graph slots matching a filter, search the matching subset exactly.
_SELECTIVE_FRACTION = 0.1
#: Auto-rebuild once the buffer outgrows max(buffer_limit, this share of the graph): a bulk
#: load in small batches then costs about three graph builds, not n / buffer_limit of them.
_BUFFER_GROWTH = 0.5
#: Rebuild once this share of the graph's slots are tombstones.
_TOMBSTONE_FRACTION = 0.5


def open_index(*, name: str, dim: int, root: Path, options: NmslibOptions) -> NmslibIndex:
    """The nmslib index ``name`` kept in ``root/name`` (the registry's entry point)."""
    return NmslibIndex(
        name,
        dim,
        Path(root) / name,
        m=options.hnsw_m,
        ef_construction=options.ef_construction,
        ef_search=options.ef_search,
        buffer_limit=options.buffer_limit,
        lock_timeout=options.lock_timeout,
    )


class NmslibIndex(VectorIndex):
    """HNSW (nmslib, space ``cosinesimil``) with an exact write buffer and tombstones.

    Not thread-safe. Several processes may write one directory: each write waits for the
    directory's lock (held until the writer's :meth:`flush`) and first reloads what other
    writers committed meanwhile.

    Args:
        name: index name (used in messages).
        dim: vector dimension.
        path: directory holding the index; reloaded when it already has one.
        m: HNSW ``M`` (links per node).
        ef_construction: HNSW ``efConstruction``.
        ef_search: HNSW ``efSearch``.
        buffer_limit: rebuild the graph once more slots than this (or than half the graph,
            whichever is larger) wait in the exact buffer. A collection of at most this
            many points has no graph: below about 4k points an exact scan answers one query
            as fast as HNSW and a batch several times faster, and is exact.
        num_threads: threads for building and batch queries; 0 means all cores.
        lock_timeout: seconds a write waits for another process writing ``path``.

    Raises:
        IndexDamagedError: a file of the saved index is missing, truncated or corrupt.
    """

    def __init__(
        self,
        name: str,
        dim: int,
        path: Path,
        m: int = 16,
        ef_construction: int = 200,
        ef_search: int = 128,
        buffer_limit: int = 4096,
        num_threads: int = 0,
        lock_timeout: float = 600.0,
    ) -> None:
        self.name, self.dim, self.path = name, dim, Path(path)
        self.m, self.ef_construction, self.ef_search = m, ef_construction, ef_search
        self.buffer_limit, self.num_threads = buffer_limit, num_threads
        self._deferred = False  # automatic rebuilds held by defer_indexing()
        self._masks: dict[Any, np.ndarray] = {}
        self._columns = PayloadColumns()  # coded payload fields, for vectorised filters
        self._store = NmslibStore(self.path, name, dim, m, ef_construction, lock_timeout)
        self._buf, self._alive = np.empty((0, dim), np.float32), np.empty(0, bool)
        self._n = self._built = 0
        self._slot_ids: list[str] = []
        self._slot_payloads: list[dict[str, Any]] = []
        self._slot_of: dict[str, int] = {}
        self._graph: Any = None
        if self._store.exists():
            self._load()

    # --- writes -------------------------------------------------------------------------

    def upsert(
        self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]
    ) -> None:
        """Insert or replace points (searchable at once). ``vectors`` is (N, dim)."""
        ids, arr, payloads = prepare_upsert(ids, vectors, payloads, self.dim)
        if not ids:
            return
        self._begin_write()
        self._apply_upsert(ids, arr, payloads)
        self._store.record(("u", ids, arr, payloads))
        self._maybe_rebuild()

    def delete(self, ids: Sequence[str]) -> int:
        """Remove points; returns how many existed."""
        if not ids:
            return 0
        self._begin_write()
        existing = [pid for pid in dict.fromkeys(ids) if pid in self._slot_of]
        if existing:
            self._apply_delete(existing)
            self._store.record(("d", existing, np.empty((0, self.dim), np.float32), []))
            self._maybe_rebuild()
        self._store.end_write()
        return len(existing)

    def rebuild(self) -> None:
        """Compact live points into a fresh HNSW graph; the buffer and tombstones empty."""
        self._begin_write()
        start = time.perf_counter()
        live = np.flatnonzero(self._alive[: self._n])
        self._buf = np.ascontiguousarray(self._buf[live])
        self._slot_ids = [self._slot_ids[i] for i in live]
        self._slot_payloads = [self._slot_payloads[i] for i in live]
        self._n = self._built = len(live)
        self._alive = np.ones(self._n, bool)
        self._slot_of = {pid: i for i, pid in enumerate(self._slot_ids)}
        self._graph = self._build_graph(self._buf) if self._n else None
        self._store.renumbered()
        self._masks.clear()
        self._columns.clear()
        elapsed = time.perf_counter() - start
        log.info("built HNSW graph of %r over %d points in %.1fs", self.name, self._n, elapsed)

    def defer_indexing(self) -> None:
        """Hold automatic rebuilds during a bulk load; new points wait in the exact buffer."""
        self._deferred = True

    def restore_indexing(self) -> None:
        """End a bulk load: rebuild now if more than ``buffer_limit`` points are buffered,
        and flush, so an idle process never keeps the directory's write lock."""
        self._deferred = False
        if self._n - self._built > self.buffer_limit:
            self.rebuild()
        else:
            self._maybe_rebuild()
        self.flush()

    # --- reads --------------------------------------------------------------------------

    def search(self, queries: np.ndarray, k: int, filter: Filter | None = None) -> list[list[Hit]]:
        """For each row of ``queries`` (Q, dim), up to ``k`` hits, best first.

        Hit payloads are the stored dicts (read-only, see :class:`~embplat.retrieval.Hit`).

        Raises:
            IndexEmptyError: the index holds no points.
            DataError: bad query shape/values or ``k`` < 1.
        """
        q = prepare_search(queries, k, self.dim, name=self.name, size=len(self._slot_of))
        hits: list[list[Hit]] = []
        for slots, scores in pipelined(q, self._searcher(k, filter), _PIPELINE_CHUNK):
            hits += make_hit_lists(self._slot_ids, self._slot_payloads, slots, scores)
        return hits

    def search_arrays(
        self, queries: np.ndarray, k: int, filter: Filter | None = None
    ) -> SearchArrays:
        """:meth:`search` as (Q, K) slots into :meth:`ids`-like slot ids, and scores.

        Raises:
            IndexEmptyError: the index holds no points.
            DataError: bad query shape/values or ``k`` < 1.
        """
        q = prepare_search(queries, k, self.dim, name=self.name, size=len(self._slot_of))
        slots, scores = self._searcher(k, filter)(q)
        return SearchArrays(slots, scores, self._slot_ids)

    def get(self, ids: Sequence[str]) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Vectors (N, dim) and payloads of ``ids``, in the order asked.

        Raises:
            NotFoundError: some ids are not in the index.
        """
        return lookup(ids, self._slot_of, self._buf, self._slot_payloads, self.name)

    def count(self, filter: Filter | None = None) -> int:
        """Number of points (matching ``filter`` when given)."""
        return len(self._slot_of) if not filter else int(self._allowed(filter).sum())

    def ids(self) -> list[str]:
        """Every live point id, in slot order."""
        return [self._slot_ids[i] for i in np.flatnonzero(self._alive[: self._n]).tolist()]

    # --- persistence --------------------------------------------------------------------

    def flush(self) -> None:
        """Make every write so far durable (a segment file, or a new base after a rebuild),
        then let other writers of the directory have its lock."""
        n = self._n
        snapshot = Snapshot(
            self._buf[:n], self._alive[:n], self._slot_ids, self._slot_payloads, self._built
        )
        self._store.flush(snapshot, self._graph)

    def close(self) -> None:
        """Flush, then drop the graph."""
        self.flush()
        self._graph = None

    # --- internals ----------------------------------------------------------------------

    def _begin_write(self) -> None:
        """Take the directory's write lock; reload first if another writer committed."""
        begin_write(self._store.lock, stale=self._store.changed_on_disk, reload=self._reload)

    def _reload(self) -> None:
        self._restore(Snapshot.empty(self.dim))
        if self._store.exists():
            self._load()

    def _apply_upsert(
        self, ids: list[str], arr: np.ndarray, payloads: list[dict[str, Any]]
    ) -> None:
        for offset, pid in enumerate(ids):
            old = self._slot_of.get(pid)
            if old is not None:
                self._alive[old] = False
            self._slot_of[pid] = self._n + offset
        self._buf = append_rows(self._buf, self._n, arr)
        self._alive = append_rows(self._alive, self._n, np.ones(len(ids), bool))
        self._slot_ids.extend(ids)
        self._slot_payloads.extend(payloads)
        self._n += len(ids)
        self._masks.clear()

    def _apply_delete(self, ids: list[str]) -> None:
        for pid in ids:
            slot = self._slot_of.pop(pid, None)
            if slot is not None:
                self._alive[slot] = False
        self._masks.clear()

    def _maybe_rebuild(self) -> None:
        if self._deferred:
            return
        limit = max(self.buffer_limit, _BUFFER_GROWTH * self._built)
        dead = self._built - int(self._alive[: self._built].sum())
        if self._n - self._built > limit or dead > _TOMBSTONE_FRACTION * self._built:
            self.rebuild()

    def _build_graph(self, vectors: np.ndarray) -> Any:
        return build_graph(
            vectors, self.m, self.ef_construction, self.ef_search, threads=self.num_threads
        )

    def _allowed(self, flt: Filter | None) -> np.ndarray:
        """(n,) bool: live slots whose payload matches ``flt`` (cached until the next write)."""
        if not flt:
            return self._alive[: self._n]
        key = filter_key(flt)
        mask = self._masks.get(key) if key is not None else None
        if mask is None:
            mask = self._alive[: self._n] & self._columns.mask(self._slot_payloads, flt)
            if key is not None:
                if len(self._masks) >= _MAX_CACHED_MASKS:
                    self._masks.clear()
                self._masks[key] = mask
        return mask

    def _searcher(self, k: int, flt: Filter | None) -> Callable[[np.ndarray], Found]:
        """A function of (Q, dim) unit queries returning their (Q, K) slots and scores."""
        allowed = self._allowed(flt)
        built = self._built
        n_graph = int(allowed[:built].sum())
        n_allowed = n_graph + int(allowed[built:].sum())
        if self._graph is None or n_allowed <= k or n_graph < _SELECTIVE_FRACTION * built:
            slots = np.flatnonzero(allowed)
            return lambda q: exact_slots(q, self._buf, slots, k)
        buffer = np.flatnonzero(allowed[built:]) + built
        graph, threads = self._graph, self.num_threads

        def graph_and_buffer(q: np.ndarray) -> Found:
            found = graph_top_k(graph, self._buf, q, k, allowed, n_graph, built, threads)
            return merge(found, exact_slots(q, self._buf, buffer, k), k) if buffer.size else found

        return graph_and_buffer

    def _restore(self, base: Snapshot) -> None:
        """Take the slots of a base file as they are (tombstones included)."""
        self._buf = np.ascontiguousarray(base.vectors, dtype=np.float32)
        self._alive = np.array(base.alive, dtype=bool)
        self._slot_ids, self._slot_payloads = list(base.ids), list(base.payloads)
        self._n, self._built, self._graph = len(self._slot_ids), base.built, None
        self._slot_of = {}
        for slot in np.flatnonzero(self._alive).tolist():
            old = self._slot_of.get(self._slot_ids[slot])
            if old is not None:  # only a damaged file repeats a live id: the later one wins
                self._alive[old] = False
            self._slot_of[self._slot_ids[slot]] = slot
        self._masks.clear()
        self._columns.clear()

    def _load(self) -> None:
        base, ops = self._store.load()
        self._restore(base)
        if self._built and not (self._store.graph_file and self._load_graph()):
            # the vectors are all in the base file; only the graph was lost
            self._graph = self._build_graph(self._buf[: self._built])
            self._store.graph_lost()
        for kind, ids, arr, payloads in ops:
            if kind == "u":
                self._apply_upsert(ids, arr, payloads)
            else:
                self._apply_delete(ids)
        log.debug("loaded %d points of %r from %s", len(self._slot_of), self.name, self.path)

    def _load_graph(self) -> bool:
        """Load the saved HNSW graph over slots ``[0, built)``; False when it is unreadable."""
        graph = new_graph()
        graph.addDataPointBatch(self._buf[: self._built], np.arange(self._built, dtype=np.int32))
        if not self._store.load_graph(graph):
            return False
        graph.setQueryTimeParams({"efSearch": self.ef_search})
        self._graph = graph
        return True
