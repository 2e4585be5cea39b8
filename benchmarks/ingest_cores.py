"""Ingest's embed path vs a bare decode + forward loop over the same JPEG files, per core budget.

Platform: ``embplat.ingest.embedding.embed_images`` (what ``ingest`` runs for every job batch)
from cataloged image ids to points flushed in an nmslib index (with its HNSW graph once the
collection passes ``EMBPLAT_INDEX_BUFFER_LIMIT``) and recorded in the catalog,
in a temporary data home, ``commit_every=256`` as ingest's default batches. Bare: for each
batch of 32 files, Pillow decode + the encoder's transform, ``torch.stack``, ``module(x)``.
Both use EfficientNet-Lite0 (bundled ImageNet weights) on Fashion-MNIST JPEGs.

"1 thread" = torch intra-op threads 1 and no decode thread for both. "2 threads" = the
platform's defaults on two cores (``EMBPLAT_EMBED_NUM_WORKERS`` and ``EMBPLAT_EMBED_THREADS``
defaults: no decode thread, 2 torch threads) against the bare loop with torch's 2 intra-op
threads. Runs alternate, best of ``--rounds``.
Target: bare / platform >= 0.9 at N=3200, 64 px.

Usage: ``python benchmarks/ingest_cores.py [--quick] [--images 3200] [--sizes 64,224]
[--rounds 2] [--budgets 1,2]``
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger("benchmarks.ingest_cores")
BATCH = 32


def catalog_tree(tmp: Path, n_images: int, side: int = 28) -> tuple[Any, list[int], list[str]]:
    """Fashion-MNIST JPEGs (``side`` px) in a fresh SQLite catalog: (sessions, ids, paths)."""
    from embplat.catalog import repo
    from embplat.catalog.db import make_engine, session_factory, transaction, upgrade
    from embplat.ingest.fashion_mnist import build_fashion_mnist
    from embplat.ingest.register import register_items
    from embplat.ingest.scan import scan_tree

    scan = scan_tree(build_fashion_mnist(tmp / "data", per_class=-(-n_images // 10), size=side))
    items = scan.items[:n_images]
    engine = make_engine(f"sqlite:///{tmp / 'catalog.sqlite3'}")
    upgrade(engine)
    sessions = session_factory(engine)
    with transaction(sessions) as s:
        class_ids = repo.ensure_classes(session=s, names=scan.classes)
    reg = register_items(
        items, sessions=sessions, class_ids=class_ids, unseen=set(), valid_fraction=0.0,
        max_pixels=10**8,
    )  # fmt: skip
    with sessions() as s:
        paths = [i.path for i in repo.get_images(session=s, ids=reg.added)]
    return sessions, reg.added, paths


def bare_seconds(encoder: Any, paths: list[str]) -> float:
    """Sequential decode + transform + forward, batch by batch."""
    import torch

    from embplat.ingest.images import load_rgb

    start = time.perf_counter()
    with torch.inference_mode():
        for s in range(0, len(paths), BATCH):
            batch = [encoder.transform(load_rgb(p, max_pixels=10**8)) for p in paths[s : s + BATCH]]
            encoder.module(torch.stack(batch))
    return time.perf_counter() - start


def platform_seconds(
    sessions: Any,
    encoder: Any,
    ids: list[int],
    root: Path,
    name: str,
    workers: int,
    batch: int = BATCH,
) -> float:
    """``embed_images`` into a new nmslib collection, flushed and committed."""
    from embplat.catalog import repo
    from embplat.catalog.db import transaction
    from embplat.ingest.embedding import embed_images
    from embplat.retrieval import open_index

    with transaction(sessions) as s:
        model = repo.ensure_model(
            session=s, name=encoder.key, encoder=encoder.name, weights=encoder.weights,
            dim=encoder.dim, image_size=encoder.image_size, config={},
        )  # fmt: skip
        coll = repo.ensure_collection(
            session=s, name=name, model_id=model.id, backend="nmslib", dim=encoder.dim
        )
    index = open_index("nmslib", name=name, dim=encoder.dim, root=root / "index")
    start = time.perf_counter()
    report = embed_images(
        ids, sessions=sessions, encoder=encoder, index=index, collection_id=coll.id,
        batch_size=batch, num_workers=workers, commit_every=256,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    assert report.done == len(ids) == index.count(None), report
    index.close()
    return seconds


def bench(
    n_images: int, size: int, rounds: int, budgets: tuple[int, ...] = (1, 2)
) -> list[tuple[str, str]]:
    """Rows of the result table for one input size and each thread budget (1 and/or 2)."""
    from embplat.config import default_decode_threads
    from embplat.models.encoders import default_torch_threads, get_encoder, set_torch_threads

    rows = []
    encoder = get_encoder("efficientnet_lite0", image_size=size, device="cpu")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        sessions, ids, paths = catalog_tree(tmp, n_images)
        for budget in budgets:
            workers, bare_threads = default_decode_threads(budget), min(budget, 2)
            platform_threads = default_torch_threads(workers, cores=budget)
            set_torch_threads(bare_threads)
            bare_seconds(encoder, paths[:BATCH])  # warm-up
            bare, plat = [], []
            for r in range(rounds):
                set_torch_threads(bare_threads)
                bare.append(bare_seconds(encoder, paths))
                set_torch_threads(platform_threads)
                plat.append(
                    platform_seconds(sessions, encoder, ids, tmp, f"b{budget}r{r}", workers)
                )
                logger.info("%d px, %d threads: bare %.2f s, platform %.2f s", size, budget,
                            bare[-1], plat[-1])  # fmt: skip
            rows.append(
                (
                    f"N={len(ids)}, {size} px, {budget} thread{'s' * (budget > 1)}: "
                    "platform embed_images vs bare decode+forward",
                    f"{min(plat):.2f} vs {min(bare):.2f} s, ratio **{min(bare) / min(plat):.2f}**",
                )
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    """Run and print the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N=200 at 64 px only")
    parser.add_argument("--images", type=int, default=3200)
    parser.add_argument("--sizes", default="64,224")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--budgets", default="1,2", help="thread budgets to measure: 1, 2 or 1,2")
    args = parser.parse_args(argv)
    budgets = tuple(int(b) for b in args.budgets.split(","))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    n, sizes = (200, [64]) if args.quick else (args.images, [int(s) for s in args.sizes.split(",")])
    rows = [row for size in sizes for row in bench(n, size, args.rounds, budgets)]
    print("\n| benchmark | result |\n|---|---|")
    for name, result in rows:
        print(f"| {name} | {result} |")


if __name__ == "__main__":
    main()
