"""Benchmarks measured in one run, printed as ratios.

Search: queries/s of the nmslib backend through the platform (``NmslibIndex.search``, a
batch, payload filter off and on) against raw nmslib (``knnQueryBatch``) on the same
vectors, with the same HNSW parameters and threads, plus recall@k of both against exact
numpy search. Target: platform_qps / raw_qps >= 0.9 with the filter off.

Usage: ``python benchmarks/embed_and_search.py [--n 100000] [--dim 512] [--queries 1000]``
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nmslib
import numpy as np

from embplat.retrieval.base import exact_top_k, l2_normalize, point_id
from embplat.retrieval.nmslib_index import NmslibIndex

logger = logging.getLogger("benchmarks.embed_and_search")

SPLITS = np.array(["train", "train", "train", "train", "test"])  # 80% train


def clustered_vectors(n: int, dim: int, seed: int, n_clusters: int = 1000) -> np.ndarray:
    """(n, dim) unit vectors around ``n_clusters`` random centres, like class-structured
    embeddings (uniform random vectors have no neighbourhoods, so HNSW recall means nothing).
    """
    rng = np.random.default_rng(seed)
    centres = l2_normalize(rng.standard_normal((n_clusters, dim)).astype(np.float32))
    labels = rng.integers(0, n_clusters, n)
    noise = rng.standard_normal((n, dim)).astype(np.float32) * (0.8 / np.sqrt(dim))
    return l2_normalize(centres[labels] + noise)


def _recall(found: list[np.ndarray], truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(
        np.mean([len(set(f.tolist()) & set(t.tolist())) / k for f, t in zip(found, truth, strict=False)])
    )


def _best_qps(run: Callable[[], Any], n_queries: int, repeats: int = 3) -> tuple[float, Any]:
    """Queries/s of the fastest of ``repeats`` runs (after one warm-up), and its result."""
    result = run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return n_queries / best, result


def _raw_nmslib(data: np.ndarray, m: int, efc: int, efs: int, threads: int) -> tuple[Any, float]:
    start = time.perf_counter()
    index = nmslib.init(method="hnsw", space="cosinesimil")
    index.addDataPointBatch(data, np.arange(len(data), dtype=np.int32))
    params = {"M": m, "efConstruction": efc, "post": 0, "indexThreadQty": threads}
    index.createIndex(params, print_progress=False)
    index.setQueryTimeParams({"efSearch": efs})
    return index, time.perf_counter() - start


def bench_search(
    n: int = 100_000,
    dim: int = 512,
    k: int = 10,
    n_queries: int = 1000,
    seed: int = 0,
    vectors: np.ndarray | None = None,
    m: int = 16,
    ef_construction: int = 200,
    ef_search: int = 128,
    threads: int | None = None,
) -> dict[str, Any]:
    """Platform vs raw nmslib search throughput and recall on the same vectors.

    Args:
        n: indexed points (ignored when ``vectors`` is given).
        dim: dimension (ignored when ``vectors`` is given).
        k: neighbours per query.
        n_queries: held-out queries (not in the index).
        seed: seed of the synthetic vectors and payloads.
        vectors: real embeddings (N, D) to use instead; the last ``n_queries`` rows become
            the queries.
        m, ef_construction, ef_search: HNSW parameters, the same for both.
        threads: query/build threads for both; default all cores.

    Returns:
        Sizes, build times, queries/s, recall@k and the platform/raw ratio.
    """
    threads = threads or os.cpu_count() or 1
    if vectors is None:
        vectors = clustered_vectors(n + n_queries, dim, seed)
    vectors = l2_normalize(np.asarray(vectors, dtype=np.float32))
    data, queries = vectors[:-n_queries], vectors[-n_queries:]
    n, dim = data.shape
    payloads = [{"split": str(s), "kind": "image"} for s in np.resize(SPLITS, n)]
    train = np.flatnonzero(np.resize(SPLITS, n) == "train")

    logger.info("exact ground truth for %d queries over %d x %d", n_queries, n, dim)
    truth = exact_top_k(queries, data, k)[0]
    truth_train = train[exact_top_k(queries, data[train], k)[0]]

    logger.info("building raw nmslib graph")
    raw, raw_build = _raw_nmslib(data, m, ef_construction, ef_search, threads)
    raw_qps, raw_res = _best_qps(
        lambda: raw.knnQueryBatch(queries, k=k, num_threads=threads), n_queries
    )

    logger.info("building platform NmslibIndex")
    with tempfile.TemporaryDirectory() as tmp:
        index = NmslibIndex(
            "bench", dim, Path(tmp) / "bench", m, ef_construction, ef_search, num_threads=threads
        )
        ids = [point_id(f"{i:064x}", "bench") for i in range(n)]
        start = time.perf_counter()
        index.upsert(ids, data, payloads)  # one batch past buffer_limit: one graph build
        plat_build = time.perf_counter() - start
        start = time.perf_counter()
        index.flush()
        flush_s = time.perf_counter() - start
        row = {pid: i for i, pid in enumerate(ids)}

        def found(results: list[list[Any]]) -> list[np.ndarray]:
            return [np.array([row[h.id] for h in hits]) for hits in results]

        plat_qps, plat_res = _best_qps(lambda: index.search(queries, k), n_queries)
        flt_qps, flt_res = _best_qps(
            lambda: index.search(queries, k, {"split": "train"}), n_queries
        )
        index.close()

    return {
        "n": n,
        "dim": dim,
        "k": k,
        "queries": n_queries,
        "threads": threads,
        "raw_build_s": raw_build,
        "platform_build_s": plat_build,
        "platform_flush_s": flush_s,
        "raw_qps": raw_qps,
        "platform_qps": plat_qps,
        "platform_filtered_qps": flt_qps,
        "raw_recall": _recall([ids_ for ids_, _ in raw_res], truth),
        "platform_recall": _recall(found(plat_res), truth),
        "platform_filtered_recall": _recall(found(flt_res), truth_train),
        "ratio": plat_qps / raw_qps,
        "filtered_ratio": flt_qps / raw_qps,
    }


def print_search(result: dict[str, Any]) -> None:
    """Print one ``bench_search`` result as a small table."""
    print(
        f"\nsearch: {result['n']} x {result['dim']}, {result['queries']} queries, "
        f"k={result['k']}, {result['threads']} threads"
    )
    print(f"{'':28}{'queries/s':>12}{'recall@k':>10}{'build s':>10}")
    rows = [
        ("raw nmslib", "raw_qps", "raw_recall", "raw_build_s"),
        ("platform, no filter", "platform_qps", "platform_recall", "platform_build_s"),
        ("platform, split=train", "platform_filtered_qps", "platform_filtered_recall", None),
    ]
    for label, qps, recall, build in rows:
        build_s = f"{result[build]:10.1f}" if build else f"{'':>10}"
        print(f"{label:28}{result[qps]:12.0f}{result[recall]:10.4f}{build_s}")
    print(f"platform flush (snapshot): {result['platform_flush_s']:.1f} s")
    print(f"ratio platform/raw qps: {result['ratio']:.3f} (target >= 0.9)")
    print(f"ratio filtered/raw qps: {result['filtered_ratio']:.3f}")


def main(argv: list[str] | None = None) -> None:
    """Run the benchmarks named by the command line and print their tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="indexed vectors")
    parser.add_argument("--dim", type=int, default=512, help="vector dimension")
    parser.add_argument("--queries", type=int, default=1000, help="search queries")
    parser.add_argument("--skip-embed", action="store_true", help="skip the embedding benchmark")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    # the embedding benchmark (bench_embed) runs here unless --skip-embed
    print_search(bench_search(n=args.n, dim=args.dim, n_queries=args.queries))


if __name__ == "__main__":
    main()
