"""Where an HNSW graph starts to pay: exact search vs the graph, through ``NmslibIndex``.

For each collection size N, the same clustered unit vectors are held twice: in an index whose
points all sit in the exact buffer (``buffer_limit`` above N: one matrix product per query
batch) and in one whose points are all in the HNSW graph (``rebuild()``, M=16, efC=200,
efS=128, the defaults). Printed: the graph's build time, and latencies of single queries
(the service and ``classify``) and of a batch of 200 (``evaluate``), as ratios exact / graph
(below 1: exact search is the faster one, and it is exact). The default
``EMBPLAT_INDEX_BUFFER_LIMIT`` (8192) comes from this crossover.

Usage: ``python benchmarks/exact_vs_graph.py [--quick] [--sizes 2048,4096,8192,16384]
[--dim 1280] [--queries 200]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from embplat.retrieval.nmslib_index import NmslibIndex


def clustered(n: int, dim: int, seed: int = 0, n_clusters: int = 50) -> np.ndarray:
    """(n, dim) unit vectors around ``n_clusters`` centres (class-structured embeddings)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, dim)).astype(np.float32)
    x = centres[rng.integers(0, n_clusters, n)] + rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _latency(index: NmslibIndex, queries: np.ndarray, rounds: int = 3) -> tuple[float, float]:
    """Best-of-``rounds`` seconds per single query and for the whole batch at once."""
    single, batch = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        for q in queries:
            index.search(q[None], 10)
        single.append((time.perf_counter() - start) / len(queries))
        start = time.perf_counter()
        index.search(queries, 10)
        batch.append(time.perf_counter() - start)
    return min(single), min(batch)


def bench(n: int, dim: int, n_queries: int, root: Path) -> tuple[str, str]:
    """One table row for collection size ``n``."""
    vectors = clustered(n + n_queries, dim)
    data, queries = vectors[:n], vectors[n:]
    ids = [f"p{i}" for i in range(n)]
    payloads = [{"i": i} for i in range(n)]
    exact = NmslibIndex("exact", dim, root / f"exact{n}", buffer_limit=n + 1)
    exact.upsert(ids, data, payloads)
    graph = NmslibIndex("graph", dim, root / f"graph{n}", buffer_limit=n + 1)
    graph.upsert(ids, data, payloads)
    start = time.perf_counter()
    graph.rebuild()
    build = time.perf_counter() - start
    e_single, e_batch = _latency(exact, queries)
    g_single, g_batch = _latency(graph, queries)
    return (
        f"N={n}, dim {dim}: exact search vs HNSW graph through `NmslibIndex.search`",
        f"graph build {build:.2f} s; single query {e_single * 1e3:.2f} vs {g_single * 1e3:.2f} ms, "
        f"ratio **{e_single / g_single:.2f}**; batch of {n_queries} {e_batch * 1e3:.1f} vs "
        f"{g_batch * 1e3:.1f} ms, ratio **{e_batch / g_batch:.2f}**",
    )


def main(argv: list[str] | None = None) -> None:
    """Run and print the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 2048 and 8192 only")
    parser.add_argument("--sizes", default="2048,4096,8192,16384")
    parser.add_argument("--dim", type=int, default=1280, help="EfficientNet-Lite0's 1280")
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args(argv)
    sizes = [2048, 8192] if args.quick else [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as d:
        rows = [bench(n, args.dim, args.queries, Path(d)) for n in sizes]
    print("\n| benchmark | result |\n|---|---|")
    for name, result in rows:
        print(f"| {name} | {result} |")


if __name__ == "__main__":
    main()
