"""Ingest throughput through Celery workers vs in-process, on the same images, in one run.

Needs PostgreSQL and Redis on 127.0.0.1 (``scripts/services.sh up``). Both runs ingest the same
Fashion-MNIST tree (registration + embedding, wall clock until every image is embedded):

* in-process: local mode (SQLite catalog, Qdrant local mode), jobs run in the CLI process;
* Celery: PostgreSQL catalog, Redis broker, ``--workers`` `platform worker` processes.

Qdrant's local mode is single-process, so the Celery run uses one worker unless
``EMBPLAT_QDRANT_URL`` points at a Qdrant server. Prints images/s of both and the ratio.

    python benchmarks/server_ingest.py --per-class 40 --image-size 112
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text

PG_ADMIN = os.environ.get(
    "EMBPLAT_TEST_PG_ADMIN", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS = os.environ.get("EMBPLAT_TEST_REDIS", "redis://127.0.0.1:6379/13")


def _env(tmp: Path, size: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBPLAT_")}
    env.update(
        {
            "EMBPLAT_HOME": str(tmp / "home"),
            "EMBPLAT_INDEX_BACKEND": "qdrant",
            "EMBPLAT_QDRANT_PATH": str(tmp / "qdrant"),
            "EMBPLAT_EMBED_IMAGE_SIZE": str(size),
            **extra,
        }
    )
    return env


def _platform(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "embplat", *args], env=env, capture_output=True, text=True
    )
    if proc.returncode:
        raise SystemExit(f"platform {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def run_local(tree: Path, tmp: Path, size: int) -> float:
    env = _env(tmp / "local", size)
    start = time.perf_counter()
    _platform(env, "ingest", str(tree), "--json")
    return time.perf_counter() - start


def run_celery(tree: Path, tmp: Path, size: int, workers: int) -> float:
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    db = f"embplat_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{db}"'))
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{db}"
    env = _env(tmp / "celery", size, EMBPLAT_CATALOG_URL=url, EMBPLAT_BROKER_URL=REDIS)
    procs = []
    try:
        subprocess.run(["redis-cli", "-u", REDIS, "flushdb"], check=True, capture_output=True)
        _platform(env, "db", "upgrade")
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "embplat",
                    "worker",
                    "--concurrency",
                    "1",
                    "--loglevel",
                    "warning",
                ],
                env=env,
            )
            for _ in range(workers)
        ]
        time.sleep(8)  # workers import torch and load the encoder before the clock starts
        start = time.perf_counter()
        _platform(env, "ingest", str(tree), "--wait", "--json")
        return time.perf_counter() - start
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=60)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    from embplat.ingest.fashion_mnist import build_fashion_mnist

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        tree = build_fashion_mnist(tmp / "data", per_class=args.per_class)
        n = sum(1 for _ in tree.rglob("*.jpg"))
        local = run_local(tree, tmp, args.image_size)
        celery = run_celery(tree, tmp, args.image_size, args.workers)
    print(f"{n} images at {args.image_size}px")
    print(f"in-process : {n / local:7.1f} images/s ({local:.1f} s)")
    print(f"celery x{args.workers} : {n / celery:7.1f} images/s ({celery:.1f} s)")
    print(f"ratio celery / in-process: {local / celery:.2f}")


if __name__ == "__main__":
    main()
