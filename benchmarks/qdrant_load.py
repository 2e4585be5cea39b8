"""Qdrant local mode: bulk upload vs the previous upsert loop, searches with and without counts.

Everything runs against qdrant-client's local mode (``QdrantClient(path=...)``, as
``EMBPLAT_QDRANT_PATH`` uses it, or ``--storage memory``) in one run, on the same seeded
unit vectors with the platform's payloads:

* load, previous: ``client.upsert`` of one ``Batch`` per ``upload_batch`` points, waited
  (the old ``QdrantIndex.upsert``, reimplemented here as the baseline);
* load, now: ``QdrantIndex.upsert`` (``upload_collection`` with ``batch_size``/``parallel``/
  ``max_retries``/``wait``);
* search, filtered on ``kind``/``split`` one query at a time: the old search (an unfiltered
  ``count`` before each), the old classify call (``checked_k``'s filtered count, then that
  search), the new search (no count) and the new classify call (one filtered count).

A server changes what is measured here (parallel uploads, gRPC, payload indexes); it cannot
be measured without one. Prints a markdown table ``| benchmark | result |`` with ratios.

    python benchmarks/qdrant_load.py --quick
    python benchmarks/qdrant_load.py            # 20k x 128
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

from embplat.retrieval import point_id
from embplat.retrieval.base import l2_normalize
from embplat.retrieval.helpers import prepare_upsert
from embplat.retrieval.qdrant_index import QdrantIndex, to_qdrant_filter

FILTER: dict[str, Any] = {"kind": "image", "split": "train"}
MODEL = "bench-model"


def make_points(n: int, dim: int, seed: int = 0) -> tuple[list[str], np.ndarray, list[dict]]:
    """``n`` ids, (n, dim) unit float32 vectors and platform-shaped payloads."""
    rng = np.random.default_rng(seed)
    vectors = l2_normalize(rng.standard_normal((n, dim))).astype(np.float32)
    sha = [f"{i:064x}" for i in range(n)]
    payloads = [
        {
            "image_id": i,
            "class": f"c{i % 10}",
            "split": ("train", "train", "valid", "test")[i % 4],
            "sha256": sha[i],
            "path": f"/data/c{i % 10}/{i}.jpg",
            "kind": "image",
            "model": MODEL,
        }
        for i in range(n)
    ]
    return [point_id(s, MODEL) for s in sha], vectors, payloads


def _client(storage: str, folder: Path) -> QdrantClient:
    return QdrantClient(":memory:") if storage == "memory" else QdrantClient(path=str(folder))


def old_upsert(
    client: QdrantClient,
    name: str,
    ids: list[str],
    vectors: np.ndarray,
    payloads: list[dict],
    batch: int,
) -> None:
    """The previous ``QdrantIndex.upsert``: one waited ``upsert`` per ``batch`` points."""
    ids, arr, payloads = prepare_upsert(ids, vectors, payloads, vectors.shape[1])
    for start in range(0, len(ids), batch):
        stop = start + batch
        points = models.Batch(
            ids=ids[start:stop], vectors=arr[start:stop].tolist(), payloads=payloads[start:stop]
        )
        client.upsert(name, points=points, wait=True)


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_load(
    storage: str, tmp: Path, data: tuple[list[str], np.ndarray, list[dict]], batch: int
) -> tuple[float, float, QdrantIndex]:
    """Seconds of the old and the new load of ``data``; the new index stays open."""
    ids, vectors, payloads = data
    dim = vectors.shape[1]
    old = _client(storage, tmp / "old")
    old.create_collection(
        "embplat_bench",
        vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE),
    )
    t_old = _timed(lambda: old_upsert(old, "embplat_bench", ids, vectors, payloads, batch))
    old.close()
    index = QdrantIndex(
        "embplat_bench", dim, _client(storage, tmp / "new"), upload_batch=batch, owns_client=True
    )
    t_new = _timed(lambda: index.upsert(ids, vectors, payloads))
    assert index.count() == len(ids)
    return t_old, t_new, index


def bench_search(index: QdrantIndex, queries: np.ndarray, k: int) -> dict[str, float]:
    """Queries per second of four ways to answer one filtered query at a time."""
    qfilter = to_qdrant_filter(FILTER)

    def old_search(q: np.ndarray) -> None:  # the old search: an unfiltered count first
        index.client.count(index.name, exact=True)
        index.search(q, k, FILTER)

    def old_classify(q: np.ndarray) -> None:  # old: checked_k's count, then old search
        index.client.count(index.name, count_filter=qfilter, exact=True)
        old_search(q)

    def new_classify(q: np.ndarray) -> None:  # now: checked_k's count, then search
        index.count(FILTER)
        index.search(q, k, FILTER)

    ways: dict[str, Callable[[np.ndarray], None]] = {
        "old search (count + search)": old_search,
        "new search (no count)": lambda q: index.search(q, k, FILTER),
        "old classify call (2 counts + search)": old_classify,
        "new classify call (1 count + search)": new_classify,
    }
    out = {}
    for name, way in ways.items():
        seconds = _timed(lambda way=way: [way(q[None, :]) for q in queries])
        out[name] = len(queries) / seconds
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2000 x 64, a smoke run")
    parser.add_argument("--n", type=int, default=20_000, help="points to load")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--batch", type=int, default=128, help="upload_batch")
    parser.add_argument("--queries", type=int, default=20, help="filtered queries per way")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument(
        "--storage",
        choices=["memory", "path"],
        default="memory",
        help="path commits to SQLite once per point (slow on most disks)",
    )
    args = parser.parse_args()
    if args.quick:
        args.n, args.dim, args.queries = 2000, 64, 10
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", message="Local mode is not recommended")

    data = make_points(args.n, args.dim)
    queries = make_points(args.queries, args.dim, seed=1)[1]
    with tempfile.TemporaryDirectory() as tmp:
        t_old, t_new, index = bench_load(args.storage, Path(tmp), data, args.batch)
        try:
            qps = bench_search(index, queries, args.k)
        finally:
            index.close()

    n = args.n
    what = f"{n} x {args.dim}, local mode ({args.storage}), upload_batch={args.batch}"
    rows = [
        ("setup", what),
        ("load: old upsert loop", f"{n / t_old:,.0f} points/s ({t_old:.1f} s)"),
        (
            "load: upload_collection (QdrantIndex.upsert)",
            f"{n / t_new:,.0f} points/s ({t_new:.1f} s)",
        ),
        ("load: new / old", f"{t_old / t_new:.2f}x"),
    ]
    rows += [(f"filtered {name}", f"{v:,.2f} q/s") for name, v in qps.items()]
    old_s, new_s = qps["old search (count + search)"], qps["new search (no count)"]
    old_c, new_c = (
        qps["old classify call (2 counts + search)"],
        qps["new classify call (1 count + search)"],
    )
    rows += [
        ("search: new / old", f"{new_s / old_s:.2f}x"),
        ("classify call: new / old", f"{new_c / old_c:.2f}x"),
    ]
    print("| benchmark | result |\n| --- | --- |")
    for name, result in rows:
        print(f"| {name} | {result} |")


if __name__ == "__main__":
    main()
