"""HNSW graphs and search helpers of :class:`~embplat.retrieval.nmslib_index.NmslibIndex`.

Every search function returns dense (Q, K) slot and score arrays: a query always gets
``min(k, allowed points)`` results (the graph's answer completed by exact search when HNSW
returns too few), so results are built with a few numpy calls per batch rather than per
query.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from embplat.retrieval.base import exact_top_k

# nmslib logs ~70 INFO lines while importing (factory registrations) and more per index;
# quieten its logger before the import so they never reach the application's handlers.
logging.getLogger("nmslib").setLevel(logging.WARNING)
import nmslib  # noqa: E402

#: (Q, K) slots and their (Q, K) cosine similarities.
Found = tuple[np.ndarray, np.ndarray]


def new_graph() -> Any:
    """An empty nmslib HNSW index in cosine space (``cosinesimil``)."""
    return nmslib.init(method="hnsw", space="cosinesimil")


def build_graph(
    vectors: np.ndarray, m: int, ef_construction: int, ef_search: int, *, threads: int = 0
) -> Any:
    """An HNSW graph over (N, D) unit ``vectors``, their ids being slots ``0..N-1``.

    Args:
        vectors: (N, D) float32 unit vectors.
        m: HNSW ``M``.
        ef_construction: HNSW ``efConstruction``.
        ef_search: HNSW ``efSearch`` set for queries.
        threads: build threads; 0 lets nmslib use every core.
    """
    graph = new_graph()
    graph.addDataPointBatch(vectors, np.arange(len(vectors), dtype=np.int32))
    params: dict[str, int] = {"M": m, "efConstruction": ef_construction, "post": 0}
    if threads:
        params["indexThreadQty"] = threads
    graph.createIndex(params, print_progress=False)
    graph.setQueryTimeParams({"efSearch": ef_search})
    return graph


def exact_slots(q: np.ndarray, vectors: np.ndarray, slots: np.ndarray, k: int) -> Found:
    """Exact top ``k`` of (Q, D) ``q`` among ``vectors[slots]``, as slots and scores.

    ``slots`` covering a contiguous range is searched through a view, not a copy.
    """
    if slots.size and slots[-1] - slots[0] + 1 == slots.size:
        cols, scores = exact_top_k(q, vectors[slots[0] : slots[-1] + 1], k)
        return cols + slots[0], scores
    cols, scores = exact_top_k(q, vectors[slots], k)
    return slots[cols], scores


def graph_top_k(
    graph: Any,
    vectors: np.ndarray,
    q: np.ndarray,
    k: int,
    allowed: np.ndarray,
    n_graph: int,
    built: int,
    threads: int,
) -> Found:
    """Top ``min(k, n_graph)`` allowed graph slots per query, over-fetching (doubling) past
    the rest.

    Args:
        graph: nmslib HNSW over ``vectors[:built]``, its ids being slots.
        vectors: (N, D) unit vectors of every slot.
        q: (Q, D) unit queries.
        allowed: (N,) bool, slots that may be returned.
        n_graph: allowed slots below ``built`` (at least 1).
        built: slots in the graph (``[0, built)``).
        threads: nmslib query threads (0 = all cores).
    """
    want = min(k, n_graph)
    share = n_graph / built
    fetch = want if share == 1 else min(built, math.ceil(2 * want / share))
    slots = np.empty((len(q), want), np.int64)
    dists = np.empty((len(q), want), np.float32)
    todo, short = np.arange(len(q)), list[int]()
    while todo.size:
        batch = q if todo.size == len(q) else q[todo]
        raw = graph.knnQueryBatch(batch, k=fetch, num_threads=threads)
        retry = _take_allowed(raw, todo, allowed if share < 1 else None, want, slots, dists)
        if fetch >= built:  # HNSW may return fewer than all points even when asked for all
            short += retry
            retry = []
        todo, fetch = np.asarray(retry, np.int64), min(built, fetch * 2)
    scores = 1.0 - dists
    if short:
        graph_slots = np.flatnonzero(allowed[:built])
        slots[short], scores[short] = exact_slots(q[short], vectors, graph_slots, want)
    return slots, scores


def _take_allowed(
    raw: list[tuple[np.ndarray, np.ndarray]],
    todo: np.ndarray,
    allowed: np.ndarray | None,
    want: int,
    slots: np.ndarray,
    dists: np.ndarray,
) -> list[int]:
    """Write the first ``want`` allowed results of each ``raw`` answer at its row ``todo[i]``
    of ``slots``/``dists``; returns the rows that got fewer."""
    width = len(raw[0][0]) if raw else 0
    if not all(len(ids) == width for ids, _ in raw):  # ragged: query by query
        retry = []
        for qi, (ids, ds) in zip(todo.tolist(), raw, strict=True):
            keep = np.flatnonzero(allowed[ids])[:want] if allowed is not None else slice(want)
            if len(ids[keep]) < want:
                retry.append(qi)
            else:
                slots[qi], dists[qi] = ids[keep], ds[keep]
        return retry
    ids = np.vstack([r[0] for r in raw]).reshape(len(raw), width)
    ds = np.vstack([r[1] for r in raw]).reshape(len(raw), width)
    if allowed is None:
        if width < want:
            return todo.tolist()
        slots[todo], dists[todo] = ids[:, :want], ds[:, :want]
        return []
    keep = allowed[ids]
    enough = keep.sum(axis=1) >= want
    # a stable sort of "not allowed" brings each row's allowed results first, in order
    first = np.argsort(~keep[enough], axis=1, kind="stable")[:, :want]
    rows = todo[enough]
    slots[rows] = np.take_along_axis(ids[enough], first, axis=1)
    dists[rows] = np.take_along_axis(ds[enough], first, axis=1)
    return todo[~enough].tolist()


def merge(graph: Found, buffer: Found, k: int) -> Found:
    """Best ``k`` of two (Q, *) results per query, by score then slot (insertion order)."""
    slots = np.concatenate([graph[0], buffer[0]], axis=1)
    scores = np.concatenate([graph[1], buffer[1]], axis=1)
    order = np.lexsort((slots, -scores), axis=1)[:, :k]
    return np.take_along_axis(slots, order, axis=1), np.take_along_axis(scores, order, axis=1)


def pipelined(q: np.ndarray, search: Callable[[np.ndarray], Found], chunk: int) -> Iterator[Found]:
    """``search`` over ``q`` in chunks of ``chunk`` queries, chunk i+1 searched in a thread
    (nmslib releases the GIL) while the caller consumes chunk i, which hides most of the
    cost of building results on machines with spare cores."""
    if len(q) <= chunk:
        yield search(q)
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(search, q[:chunk])
        for start in range(chunk, len(q) + chunk, chunk):
            found = pending.result()
            if start < len(q):
                pending = pool.submit(search, q[start : start + chunk])
            yield found
