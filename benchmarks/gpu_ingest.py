"""End-to-end ingest throughput on a GPU: JPEG files → index points, vs a bare forward loop.

Platform: ``embed_images`` (decode threads, nvJPEG for baseline JPEG batches on CUDA, pinned
uint8 host batches, ``channels_last`` + autocast forward, index upsert/flush, catalog
commit) from cataloged ids to points in an nmslib index. Bare: the same encoder's
``encode_images`` (same memory format and autocast) over float tensors decoded beforehand
and already in host memory — the forward-pass ceiling. Encoders: torchvision ResNet-50
with **random-init weights** (``--weights random``: nothing is downloaded here, and weights
do not change the speed) and EfficientNet-Lite0 (bundled ImageNet weights), both at 224 px,
on Fashion-MNIST JPEGs written at 224 px. Best of ``--rounds`` alternating runs.

Usage: ``python benchmarks/gpu_ingest.py [--device cuda] [--images 2048] [--batch 128]
[--workers 4]``; ``--device cpu --images 64`` runs (slowly) without a GPU.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from ingest_cores import catalog_tree, platform_seconds

logger = logging.getLogger("benchmarks.gpu_ingest")
ENCODERS = (("resnet50", "random"), ("efficientnet_lite0", None))


def bare_ips(encoder: Any, paths: list[str], batch: int, rounds: int) -> float:
    """Images/s of ``encoder.encode_images`` over pre-decoded host tensors."""
    import torch

    from embplat.ingest.images import load_rgb

    tensors = [encoder.transform(load_rgb(p, max_pixels=10**8)) for p in paths]
    batches = [torch.stack(tensors[s : s + batch]) for s in range(0, len(tensors), batch)]
    encoder.encode_images(batches[0])  # warm-up: cuDNN autotune, allocations
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for b in batches:
            encoder.encode_images(b)  # returns numpy: synchronises like the platform does
        best = min(best, time.perf_counter() - start)
    return len(paths) / best


def platform_ips(
    sessions: Any, encoder: Any, ids: list[int], root: Path, batch: int, workers: int, rounds: int
) -> float:
    """Images/s of ``embed_images`` into fresh nmslib collections, best of ``rounds``."""
    best = float("inf")
    for r in range(rounds):
        name = f"{encoder.name}{r}"
        best = min(best, platform_seconds(sessions, encoder, ids, root, name, workers, batch))
    return len(ids) / best


def main(argv: list[str] | None = None) -> None:
    """Run both encoders and print the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--workers", type=int, default=4, help="decode threads")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from embplat.models.encoders import default_torch_threads, get_encoder

    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        sessions, ids, paths = catalog_tree(tmp, args.images, side=224)
        for name, weights in ENCODERS:
            encoder = get_encoder(
                name, weights=weights, image_size=224, device=args.device,
                threads=default_torch_threads(args.workers),
            )  # fmt: skip
            bare = bare_ips(encoder, paths, args.batch, args.rounds)
            plat = platform_ips(sessions, encoder, ids, tmp, args.batch, args.workers, args.rounds)
            label = f"{name} ({'random-init' if weights == 'random' else 'ImageNet'} weights)"
            rows.append(
                (
                    f"{label}, 224 px, {len(ids)} JPEGs on {encoder.device}, batch {args.batch}:"
                    " end-to-end JPEG → index vs bare forward over decoded tensors",
                    f"{plat:.1f} vs {bare:.1f} images/s, ratio **{plat / bare:.2f}**",
                )
            )
    print("\n| benchmark | result |\n|---|---|")
    for bench, result in rows:
        print(f"| {bench} | {result} |")


if __name__ == "__main__":
    main()
