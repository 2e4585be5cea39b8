"""Benchmarks measured in one run, printed as ratios.

Embedding: images/s of the platform's ingest path (decode + transform + forward + index
write + catalog commit) against a bare ``model(x)`` loop over the same batches, decoded
beforehand. Target: platform / bare >= 0.9.

Search: queries/s of the nmslib backend through the platform (``NmslibIndex.search``, a
batch, payload filter off and on) against raw nmslib (``knnQueryBatch``) on the same
vectors, with the same HNSW parameters and threads, plus recall@k of both against exact
numpy search. Target: platform_qps / raw_qps >= 0.9 with the filter off.

Usage: ``python benchmarks/embed_and_search.py [--images 256] [--image-size 224] [--n 100000]
[--dim 512] [--queries 1000] [--skip-embed] [--skip-search] [--quick]``

Ends with a markdown table ``| benchmark | result |`` (what ``benchmarks/run_all.py`` reads).
``--quick``: 64 images at 112 px, 20k x 512 vectors, 500 queries (about a minute).
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
    hits = [len(set(f.tolist()) & set(t.tolist())) / k for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits))


def _best_qps(runs: dict[str, Callable[[], Any]], n_queries: int, rounds: int = 5) -> dict:
    """Queries/s of each run's fastest round, after a warm-up. Runs alternate within a round,
    so load from other processes on the machine hits them alike.
    """
    results = {name: run() for name, run in runs.items()}
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: (n_queries / best[name], results[name]) for name in runs}


def _raw_nmslib(
    data: np.ndarray, m: int, efc: int, efs: int, threads: int, graph_file: Path | None = None
) -> tuple[Any, float]:
    """Raw nmslib HNSW over ``data``: built here, or loaded from ``graph_file``."""
    start = time.perf_counter()
    index = nmslib.init(method="hnsw", space="cosinesimil")
    index.addDataPointBatch(data, np.arange(len(data), dtype=np.int32))
    if graph_file is None:
        params = {"M": m, "efConstruction": efc, "post": 0, "indexThreadQty": threads}
        index.createIndex(params, print_progress=False)
    else:
        index.loadIndex(str(graph_file), load_data=False)
    index.setQueryTimeParams({"efSearch": efs})
    return index, time.perf_counter() - start


def _synthetic(n: int, dim: int, n_queries: int, seed: int, vectors: np.ndarray | None):
    """(data, queries, payloads, train rows): the last ``n_queries`` rows are held out."""
    if vectors is None:
        vectors = clustered_vectors(n + n_queries, dim, seed)
    vectors = l2_normalize(np.asarray(vectors, dtype=np.float32))
    data, queries = vectors[:-n_queries], vectors[-n_queries:]
    splits = np.resize(SPLITS, len(data))
    payloads = [{"split": str(s), "kind": "image"} for s in splits]
    return data, queries, payloads, np.flatnonzero(splits == "train")


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

    Raw nmslib runs twice: on a graph it builds itself, and on the graph file the platform
    saved (two HNSW builds differ by several % in speed, which would blur the ratio).

    Args:
        n: indexed points (ignored when ``vectors`` is given).
        dim: dimension (ignored when ``vectors`` is given).
        k: neighbours per query.
        n_queries: held-out queries (not in the index).
        seed: seed of the synthetic vectors.
        vectors: real embeddings (N, D) to use instead; the last ``n_queries`` rows become
            the queries.
        m, ef_construction, ef_search: HNSW parameters, the same for both.
        threads: build and query threads for both; default all cores.

    Returns:
        Sizes, build times, queries/s, recall@k and the platform/raw ratios.
    """
    threads = threads or os.cpu_count() or 1
    data, queries, payloads, train = _synthetic(n, dim, n_queries, seed, vectors)
    logger.info("exact ground truth for %d queries over %d x %d", n_queries, *data.shape)
    truths = {"all": exact_top_k(queries, data, k)[0]}
    truths["train"] = train[exact_top_k(queries, data[train], k)[0]]
    logger.info("building raw nmslib graph")
    raw, raw_build = _raw_nmslib(data, m, ef_construction, ef_search, threads)
    with tempfile.TemporaryDirectory() as tmp:
        logger.info("building platform NmslibIndex")
        index = NmslibIndex(
            "bench", data.shape[1], Path(tmp), m, ef_construction, ef_search, num_threads=threads
        )
        ids = [point_id(f"{i:064x}", "bench") for i in range(len(data))]
        times = {"raw_build_s": raw_build}
        start = time.perf_counter()
        index.upsert(ids, data, payloads)  # one batch past buffer_limit: one graph build
        times["platform_build_s"] = time.perf_counter() - start
        start = time.perf_counter()
        index.flush()
        times["platform_flush_s"] = time.perf_counter() - start
        graph_file = next(Path(tmp).glob("graph-*.hnsw"))
        same, _ = _raw_nmslib(data, m, ef_construction, ef_search, threads, graph_file)
        timed = _best_qps(
            {
                "raw": lambda: raw.knnQueryBatch(queries, k=k, num_threads=threads),
                "raw_same_graph": lambda: same.knnQueryBatch(queries, k=k, num_threads=threads),
                "platform": lambda: index.search(queries, k),
                "platform_filtered": lambda: index.search(queries, k, {"split": "train"}),
            },
            n_queries,
        )
        index.close()
    sizes = {"n": len(data), "dim": data.shape[1], "k": k, "queries": n_queries}
    return sizes | {"threads": threads} | times | _summarise(timed, ids, truths)


def _summarise(
    timed: dict[str, tuple[float, Any]], ids: list[str], truths: dict[str, np.ndarray]
) -> dict[str, float]:
    """Queries/s and recall@k of each run, and the platform/raw ratios."""
    row = {pid: i for i, pid in enumerate(ids)}
    out: dict[str, float] = {}
    for name, (qps, results) in timed.items():
        if name.startswith("raw"):
            found = [neighbours for neighbours, _ in results]
        else:
            found = [np.array([row[h.id] for h in hits]) for hits in results]
        out[f"{name}_qps"] = qps
        out[f"{name}_recall"] = _recall(found, truths["train" if "filtered" in name else "all"])
    out["ratio"] = out["platform_qps"] / out["raw_same_graph_qps"]
    out["ratio_own_build"] = out["platform_qps"] / out["raw_qps"]
    out["filtered_ratio"] = out["platform_filtered_qps"] / out["raw_same_graph_qps"]
    return out


def print_search(result: dict[str, Any]) -> None:
    """Print one ``bench_search`` result as a small table."""
    print(
        f"\nsearch: {result['n']} x {result['dim']}, {result['queries']} queries, "
        f"k={result['k']}, {result['threads']} threads"
    )
    print(f"{'':34}{'queries/s':>10}{'recall@k':>10}{'build s':>9}")
    rows = [
        ("raw nmslib, own build", "raw", "raw_build_s"),
        ("raw nmslib, platform's graph file", "raw_same_graph", None),
        ("platform, no filter", "platform", "platform_build_s"),
        ("platform, filter split=train", "platform_filtered", None),
    ]
    for label, name, build in rows:
        build_s = f"{result[build]:9.1f}" if build else ""
        print(f"{label:34}{result[name + '_qps']:10.0f}{result[name + '_recall']:10.4f}{build_s}")
    print(f"platform flush (snapshot write): {result['platform_flush_s']:.1f} s")
    print(f"platform / raw qps, same graph:  {result['ratio']:.3f}  (target >= 0.9)")
    print(f"platform / raw qps, own build:   {result['ratio_own_build']:.3f}")
    print(f"filtered platform / raw qps:     {result['filtered_ratio']:.3f}")


def bench_embed(
    n_images: int = 256,
    image_size: int = 224,
    batch_size: int = 32,
    num_workers: int = 1,
    backend: str = "nmslib",
    rounds: int = 3,
) -> dict[str, Any]:
    """Platform ingest path vs a bare ``model(x)`` loop over the same decoded batches.

    The platform side is timed from cataloged image ids to vectors durable in the index:
    decode (Pillow) + transform + forward + normalise + index upsert/flush + catalog commit.
    The bare side only runs the encoder's module over tensors decoded beforehand. The two
    alternate for ``rounds`` rounds (each platform round into a fresh index) and the best
    time of each counts, so load from other processes hits both alike.
    """
    from embplat.models import get_encoder

    encoder = get_encoder("efficientnet_lite0", image_size=image_size, device="auto")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        sessions, items, image_ids = _cataloged_images(tmp, n_images)
        batches = _decoded_batches(encoder, items, batch_size)
        _bare_seconds(encoder, batches[:1])  # warm-up: allocations, kernel choice
        bare, platform = [], []
        for r in range(rounds):
            bare.append(_bare_seconds(encoder, batches))
            platform.append(
                _platform_seconds(
                    sessions, encoder, image_ids, tmp, f"bench{r}", backend, batch_size, num_workers
                )
            )
    n = len(image_ids)
    return {
        "images": n,
        "image_size": image_size,
        "device": str(encoder.device),
        "bare_ips": n / min(bare),
        "platform_ips": n / min(platform),
        "ratio": min(bare) / min(platform),
    }


def _cataloged_images(tmp: Path, n_images: int) -> tuple[Any, list[Any], list[int]]:
    from embplat.catalog import repo
    from embplat.catalog.db import make_engine, session_factory, transaction, upgrade
    from embplat.ingest.fashion_mnist import build_fashion_mnist
    from embplat.ingest.register import register_items
    from embplat.ingest.scan import scan_tree

    scan = scan_tree(build_fashion_mnist(tmp / "data", per_class=-(-n_images // 10)))
    items = scan.items[:n_images]
    engine = make_engine(f"sqlite:///{tmp / 'catalog.sqlite3'}")
    upgrade(engine)
    sessions = session_factory(engine)
    with transaction(sessions) as s:
        class_ids = repo.ensure_classes(session=s, names=scan.classes)
    reg = register_items(
        items,
        sessions=sessions,
        class_ids=class_ids,
        unseen=set(),
        valid_fraction=0.0,
        max_pixels=10**8,
    )
    return sessions, items, reg.added


def _decoded_batches(encoder: Any, items: list[Any], batch_size: int) -> list[Any]:
    import torch

    from embplat.ingest.images import load_rgb

    tensors = [encoder.transform(load_rgb(i.path, max_pixels=10**8)) for i in items]
    return [torch.stack(tensors[s : s + batch_size]) for s in range(0, len(tensors), batch_size)]


def _bare_seconds(encoder: Any, batches: list[Any]) -> float:
    import torch

    start = time.perf_counter()
    with torch.inference_mode():
        for batch in batches:
            encoder.module(batch.to(encoder.device))
    if encoder.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _platform_seconds(
    sessions: Any,
    encoder: Any,
    image_ids: list[int],
    tmp: Path,
    name: str,
    backend: str,
    batch_size: int,
    num_workers: int,
) -> float:
    from embplat.catalog import repo
    from embplat.catalog.db import transaction
    from embplat.ingest.embedding import embed_images
    from embplat.retrieval import open_index

    with transaction(sessions) as s:
        model = repo.ensure_model(
            session=s,
            name=encoder.key,
            encoder=encoder.name,
            weights=encoder.weights,
            dim=encoder.dim,
            image_size=encoder.image_size,
            config={},
        )
        coll = repo.ensure_collection(
            session=s, name=name, model_id=model.id, backend=backend, dim=encoder.dim
        )
    index = open_index(backend, name=name, dim=encoder.dim, root=tmp / "index")
    start = time.perf_counter()
    report = embed_images(
        image_ids,
        sessions=sessions,
        encoder=encoder,
        index=index,
        collection_id=coll.id,
        batch_size=batch_size,
        num_workers=num_workers,
        commit_every=len(image_ids),
    )
    seconds = time.perf_counter() - start
    assert report.done == len(image_ids) == index.count(None)
    index.close()
    return seconds


def print_embed(result: dict[str, Any]) -> None:
    """Print the embedding benchmark as a small table."""
    print(
        f"\nembedding: {result['images']} Fashion-MNIST JPEGs at {result['image_size']} px "
        f"on {result['device']}"
    )
    print(f"  bare model(x) over decoded batches : {result['bare_ips']:8.1f} images/s")
    print(f"  platform ingest path               : {result['platform_ips']:8.1f} images/s")
    print(f"  ratio platform / bare              : {result['ratio']:8.2f}  (target >= 0.9)")


def table_rows(embed: dict[str, Any] | None, search: dict[str, Any] | None) -> list[str]:
    """The final ``| benchmark | result |`` rows of this run."""
    rows = []
    if embed is not None:
        rows.append(
            f"| embed: ingest path vs bare model(x), {embed['images']} images at "
            f"{embed['image_size']} px | {embed['platform_ips']:.1f} vs {embed['bare_ips']:.1f} "
            f"images/s, ratio **{embed['ratio']:.2f}** (target >= 0.9) |"
        )
    if search is not None:
        size = f"{search['n']} x {search['dim']}, k={search['k']}"
        rows += [
            f"| search: platform vs raw nmslib, same graph, {size} | "
            f"{search['platform_qps']:.0f} vs {search['raw_same_graph_qps']:.0f} q/s, ratio "
            f"**{search['ratio']:.2f}** (target >= 0.9) |",
            f"| search: platform filtered (split=train) vs raw nmslib, {size} | "
            f"{search['platform_filtered_qps']:.0f} vs {search['raw_same_graph_qps']:.0f} q/s, "
            f"ratio **{search['filtered_ratio']:.2f}** (target >= 0.9) |",
            f"| search: recall@{search['k']} platform / filtered / raw | "
            f"{search['platform_recall']:.3f} / {search['platform_filtered_recall']:.3f} / "
            f"{search['raw_same_graph_recall']:.3f} |",
        ]
    return rows


def main(argv: list[str] | None = None) -> None:
    """Run the benchmarks named by the command line and print their tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="indexed vectors")
    parser.add_argument("--dim", type=int, default=512, help="vector dimension")
    parser.add_argument("--queries", type=int, default=1000, help="search queries")
    parser.add_argument("--skip-embed", action="store_true", help="skip the embedding benchmark")
    parser.add_argument("--skip-search", action="store_true", help="skip the search benchmark")
    parser.add_argument("--images", type=int, default=256, help="images to embed")
    parser.add_argument("--image-size", type=int, default=224, help="encoder input side")
    parser.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.image_size, args.n, args.queries = 64, 112, 20_000, 500
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    embed = search = None
    if not args.skip_embed:
        embed = bench_embed(n_images=args.images, image_size=args.image_size)
        print_embed(embed)
    if not args.skip_search:
        search = bench_search(n=args.n, dim=args.dim, n_queries=args.queries)
        print_search(search)
    print("\n| benchmark | result |\n| --- | --- |")
    print("\n".join(table_rows(embed, search)))


if __name__ == "__main__":
    main()
