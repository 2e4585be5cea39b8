"""Qdrant backend: one collection per model, cosine distance, keyword payload indexes.

Works against a server (``QdrantClient(url=...)``) or qdrant-client's local mode
(``QdrantClient(path=...)`` / ``":memory:"``), which searches exactly and ignores payload
indexes and optimizer settings; those calls are skipped there. Local mode keeps every point
in Python and filters payloads in a Python loop: it is meant for up to ~10k points, and a
warning is logged once per process past :data:`LOCAL_MODE_LIMIT`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

from embplat.errors import DataError, IndexEmptyError, NotFoundError
from embplat.retrieval.base import Filter, Hit, VectorIndex, check_k, unit_rows
from embplat.retrieval.helpers import prepare_upsert
from embplat.retrieval.qdrant_schema import (
    check_collection,
    check_upload_options,
    ensure_payload_indexes,
    is_canonical_uuid,
)
from embplat.retrieval.qdrant_schema import to_qdrant_filter as to_qdrant_filter

log = logging.getLogger(__name__)

#: Qdrant's documented default for ``optimizers_config.indexing_threshold`` (kB of vectors).
_DEFAULT_INDEXING_THRESHOLD = 10_000
#: Collection metadata key holding the threshold a deferred bulk load replaced, so whichever
#: process ends the load (another worker, after a crash) restores it.
SAVED_THRESHOLD_KEY = "embplat_saved_indexing_threshold"
#: Queries per ``query_batch_points`` request, so a large batch stays a reasonable request.
_QUERY_BATCH = 256
#: Points per ``scroll`` page when listing ids.
_SCROLL_PAGE = 1024
#: Local-mode collection size past which a warning steers users to nmslib or a server.
LOCAL_MODE_LIMIT = 20_000
#: Set once the local-mode size warning was logged (once per process).
_warned_local_size = False


class QdrantIndex(VectorIndex):
    """A Qdrant collection behind the :class:`~embplat.retrieval.base.VectorIndex` protocol.

    Point ids must be canonical UUID strings (as :func:`~embplat.retrieval.base.point_id`
    makes), since Qdrant accepts only UUIDs or integers and echoes UUIDs back canonically.

    Args:
        name: collection name; created with cosine distance when missing.
        dim: vector dimension.
        client: a connected client (server or local mode).
        upload_batch: points per upsert request; Qdrant recommends 64–256 for bulk loads.
        owns_client: close ``client`` in :meth:`close` (set when the index created it).
        release: called by :meth:`close` instead, for a client shared with other indexes
            (local mode: one client per folder, see ``qdrant_open``).
        parallel: upload processes (``upload_collection(parallel=...)``) against a server; local
            mode always uses 1.
        max_retries: times a failed upload request is retried before the error is raised.

    Raises:
        ConfigError: ``upload_batch`` or ``parallel`` < 1, ``max_retries`` < 0, or the
            collection exists with another dimension or distance.
    """

    def __init__(
        self,
        name: str,
        dim: int,
        client: QdrantClient,
        upload_batch: int = 128,
        owns_client: bool = False,
        *,
        parallel: int = 1,
        max_retries: int = 3,
        release: Callable[[], None] | None = None,
    ) -> None:
        check_upload_options(upload_batch, parallel, max_retries)
        self._release = release
        self.name, self.dim, self.client = name, dim, client
        self.upload_batch, self.owns_client = upload_batch, owns_client
        opts = client.init_options
        self.local = opts.get("location") == ":memory:" or opts.get("path") is not None
        if self.local and parallel > 1:
            log.info("local Qdrant writes in-process; ignoring parallel=%d", parallel)
        # local mode ignores parallel, but would still fork workers for nothing: keep it 1
        self.parallel = 1 if self.local else parallel
        self.max_retries = max_retries
        if client.collection_exists(name):
            check_collection(client, name, dim)
        else:
            client.create_collection(
                name, vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE)
            )
            log.info("created Qdrant collection %r (%d-d, cosine)", name, dim)
        if self.local:
            log.debug("local Qdrant ignores payload indexes; not creating them")
        else:
            ensure_payload_indexes(client, name)
        self._warn_if_large_local()

    def upsert(
        self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]
    ) -> None:
        """Insert or replace points (N ids, (N, dim) vectors, N payloads).

        Against a server: qdrant-client's bulk path, ``upload_collection``: requests of
        ``upload_batch`` points, ``parallel`` processes, each retried up to ``max_retries``
        times and waited for, so a point is stored when this returns. Local mode writes
        in-process: one waited ``upsert`` of a column batch per ``upload_batch`` points.

        Raises:
            DataError: bad shapes or values, or ids that are not canonical UUID strings.
        """
        ids, arr, payloads = prepare_upsert(ids, vectors, payloads, self.dim)
        bad = [pid for pid in ids if not is_canonical_uuid(pid)]
        if bad:
            raise DataError(
                f"Qdrant point ids must be canonical UUID strings (see point_id()); got {bad[:3]}"
            )
        if not ids:
            return
        if self.local:
            # in-process writes: upload_collection's generator layer only costs (0.78x)
            for start in range(0, len(ids), self.upload_batch):
                stop = start + self.upload_batch
                batch = models.Batch(
                    ids=list(ids[start:stop]),
                    vectors=arr[start:stop].tolist(),
                    payloads=payloads[start:stop],
                )
                self.client.upsert(self.name, points=batch, wait=True)
        else:
            # columns, not PointStructs: no per-point pydantic model is built on this side
            self.client.upload_collection(
                self.name,
                vectors=arr,
                payload=payloads,
                ids=ids,
                batch_size=self.upload_batch,
                parallel=self.parallel,
                max_retries=self.max_retries,
                wait=True,
            )
        self._warn_if_large_local()

    def search(self, queries: np.ndarray, k: int, filter: Filter | None = None) -> list[list[Hit]]:
        """For each row of ``queries`` (Q, dim), up to ``k`` hits, best first.

        Nothing is counted on the way: only when a query finds no hit is the collection's
        size asked (one unfiltered count) to tell an empty collection from a filter that
        matches nothing, which gives empty hit lists.

        Raises:
            IndexEmptyError: the collection holds no points.
            DataError: bad query shape/values, ``k`` < 1, or an unsupported filter value.
        """
        check_k(k)
        q = unit_rows(queries, self.dim)
        qfilter = to_qdrant_filter(filter)
        hits: list[list[Hit]] = []
        for start in range(0, len(q), _QUERY_BATCH):
            requests = [
                models.QueryRequest(query=row.tolist(), limit=k, filter=qfilter, with_payload=True)
                for row in q[start : start + _QUERY_BATCH]
            ]
            responses = self.client.query_batch_points(self.name, requests=requests)
            hits.extend(
                [Hit(id=str(p.id), score=float(p.score), payload=p.payload or {}) for p in r.points]
                for r in responses
            )
        if (not hits or not all(hits)) and self.client.count(self.name, exact=True).count == 0:
            raise IndexEmptyError(
                f"Qdrant collection {self.name!r} is empty; upsert vectors before searching"
            )
        return hits

    def get(self, ids: Sequence[str]) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Vectors (N, dim) and payloads of ``ids``, in the order asked.

        Raises:
            NotFoundError: some ids are not in the collection.
        """
        records = self._retrieve(ids, with_vectors=True)
        missing = [pid for pid in ids if pid not in records]
        if missing:
            raise NotFoundError(
                f"{len(missing)} ids not in collection {self.name!r}: {missing[:5]}"
            )
        vectors = np.asarray([records[pid].vector for pid in ids], dtype=np.float32)
        return vectors.reshape(len(ids), self.dim), [dict(records[p].payload or {}) for p in ids]

    def delete(self, ids: Sequence[str]) -> int:
        """Remove points; returns how many existed."""
        existing = list(self._retrieve(ids, with_vectors=False))
        if existing:
            selector = models.PointIdsList(points=list(existing))
            self.client.delete(self.name, points_selector=selector, wait=True)
        return len(existing)

    def count(self, filter: Filter | None = None) -> int:
        """Number of points (matching ``filter`` when given), counted exactly."""
        flt = to_qdrant_filter(filter)
        return self.client.count(self.name, count_filter=flt, exact=True).count

    def ids(self) -> list[str]:
        """Every point id, paging through the collection (``scroll``, without vectors)."""
        out: list[str] = []
        offset: Any = None
        while True:
            records, offset = self.client.scroll(
                self.name,
                limit=_SCROLL_PAGE,
                offset=offset,
                with_payload=False,
                with_vectors=False,
            )
            out.extend(str(r.id) for r in records)
            if offset is None:
                return out

    def flush(self) -> None:
        """Nothing to do: every upsert already waited for Qdrant to apply it.

        :meth:`rebuild` keeps the protocol's no-op: Qdrant's optimizer maintains the HNSW.
        """

    def close(self) -> None:
        """Close the client when this index owns it (or release its share of it)."""
        if self._release is not None:
            release, self._release = self._release, None
            release()
        elif self.owns_client:
            self.client.close()

    def set_alias(self, alias: str) -> None:
        """Point ``alias`` at this collection, atomically replacing where it pointed before."""
        ops: list[Any] = []
        if any(a.alias_name == alias for a in self.client.get_aliases().aliases):
            ops.append(
                models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))
            )
        create = models.CreateAlias(collection_name=self.name, alias_name=alias)
        ops.append(models.CreateAliasOperation(create_alias=create))
        self.client.update_collection_aliases(change_aliases_operations=ops)
        log.info("alias %r now points at collection %r", alias, self.name)

    def defer_indexing(self) -> None:
        """Stop HNSW indexing (``indexing_threshold=0``) for a bulk load, as Qdrant advises.

        The threshold it replaces is saved in the collection's metadata, where any process's
        :meth:`restore_indexing` finds it; a load already deferred keeps the saved value.
        """
        if self.local:
            log.debug("local Qdrant has no HNSW optimizer; defer_indexing is a no-op")
            return
        current = self.client.get_collection(self.name).config.optimizer_config
        if current.indexing_threshold:
            saved = {SAVED_THRESHOLD_KEY: current.indexing_threshold}
            self.client.update_collection(self.name, metadata=saved)
        self._set_indexing_threshold(0)

    def restore_indexing(self) -> None:
        """Re-enable indexing with the threshold saved in the collection's metadata by
        :meth:`defer_indexing` (of this handle or any other).

        Falls back to Qdrant's default (10000 kB) when nothing was saved, e.g. a collection
        whose threshold was set to 0 by hand.
        """
        if self.local:
            log.debug("local Qdrant has no HNSW optimizer; restore_indexing is a no-op")
            return
        metadata = self.client.get_collection(self.name).config.metadata or {}
        saved = metadata.get(SAVED_THRESHOLD_KEY)
        self._set_indexing_threshold(int(saved) if saved else _DEFAULT_INDEXING_THRESHOLD)

    @contextmanager
    def bulk_load(self) -> Iterator[QdrantIndex]:
        """Defer indexing for the ``with`` block and restore it afterwards, even on error.

        Searches stay correct meanwhile: Qdrant scans the unindexed segments exactly.
        """
        self.defer_indexing()
        try:
            yield self
        finally:
            self.restore_indexing()

    def _warn_if_large_local(self) -> None:
        """Log once per process when a local-mode collection passes :data:`LOCAL_MODE_LIMIT`."""
        global _warned_local_size
        if not self.local or _warned_local_size:
            return
        size = self.client.count(self.name, exact=True).count  # unfiltered: cheap locally
        if size <= LOCAL_MODE_LIMIT:
            return
        _warned_local_size = True
        log.warning(
            "local Qdrant collection %r holds %d points; local mode keeps every point in "
            "Python and filters in a Python loop (slow to open and to search past ~10k "
            "points): use the nmslib backend locally (EMBPLAT_INDEX_BACKEND=nmslib) or a "
            "Qdrant server (EMBPLAT_QDRANT_URL) at this size",
            self.name,
            size,
        )

    def _set_indexing_threshold(self, value: int) -> None:
        diff = models.OptimizersConfigDiff(indexing_threshold=value)
        self.client.update_collection(self.name, optimizers_config=diff)
        log.info("collection %r: indexing_threshold=%d", self.name, value)

    def _retrieve(self, ids: Sequence[str], *, with_vectors: bool) -> dict[str, Any]:
        wanted = [pid for pid in dict.fromkeys(ids) if is_canonical_uuid(pid)]
        if not wanted:
            return {}
        records = self.client.retrieve(
            self.name, ids=wanted, with_payload=True, with_vectors=with_vectors
        )
        return {str(r.id): r for r in records}
