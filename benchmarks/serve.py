"""Single-image classify through ``platform serve`` vs in-process ``Platform.classify`` vs
one ``platform classify`` process per image, on the same query images.

A data home is built from Fashion-MNIST (``--per-class`` images per class, ingested with the
real EfficientNet-Lite0 at ``--image-size``); the service runs as a real uvicorn process on
a free loopback port, warm before timing. Measured: requests/s and p50/p95 latency with 1
and 4 concurrent HTTP clients (multipart upload, one image per request), the in-process
loop's rate, their ratio (target >= 0.8), and the CLI's seconds per image.

Usage: ``python benchmarks/serve.py [--per-class 50] [--queries 100] [--cli-queries 3]
[--image-size 224] [--device cpu] [--quick]``; the last lines are a markdown table
``| benchmark | result |``.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

TARGET = 0.8


def _env(home: Path, args: argparse.Namespace) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBPLAT_")}
    env |= {
        "EMBPLAT_HOME": str(home),
        "EMBPLAT_EMBED_NUM_WORKERS": "0",
        "EMBPLAT_EMBED_IMAGE_SIZE": str(args.image_size),
        "EMBPLAT_EMBED_DEVICE": args.device,
        "EMBPLAT_INDEX_BACKEND": "nmslib",
    }
    return env


def _platform(home: Path, args: argparse.Namespace):
    from embplat.api import Platform
    from embplat.config import load_settings

    settings = load_settings(
        **{
            "home": home,
            "embed.image_size": args.image_size,
            "embed.device": args.device,
            "embed.num_workers": 0,
            "index.backend": "nmslib",
        }
    )
    settings.catalog.url = None
    return Platform(settings=settings)


def _start(home: Path, args: argparse.Namespace, log: Path) -> tuple[subprocess.Popen, str]:
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "embplat", "serve", "--port", str(port), "--log-level", "warning"]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=_env(home, args), stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.5)
        if proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit(f"platform serve did not start: {log.read_text()[-1500:]}")


def _http(url: str, queries: list[Path], clients: int) -> tuple[float, list[float]]:
    import httpx

    payloads = [(q.name, q.read_bytes()) for q in queries]

    def one(client: httpx.Client, item: tuple[str, bytes]) -> float:
        start = time.perf_counter()
        r = client.post("/classify", params={"k": 10}, files={"image": (*item, "image/jpeg")})
        r.raise_for_status()
        return time.perf_counter() - start

    with httpx.Client(base_url=url, timeout=120) as client:
        one(client, payloads[0])  # connection set up
        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            latencies = list(pool.map(lambda p: one(client, p), payloads))
        return len(payloads) / (time.perf_counter() - start), latencies


def _in_process(home: Path, args: argparse.Namespace, queries: list[Path]) -> float:
    """Images per second of a warm ``Platform.classify`` loop, one image per call."""
    with _platform(home, args) as platform:
        platform.warm()
        platform.classify(queries[0], k=10)
        start = time.perf_counter()
        for q in queries:
            platform.classify(q, k=10)
        return len(queries) / (time.perf_counter() - start)


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def main(argv: list[str] | None = None) -> int:
    """Build the home, run the three ways, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--cli-queries", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="10/class, 20 queries, 64 px")
    args = parser.parse_args(argv)
    if args.quick:
        args.per_class, args.queries, args.cli_queries, args.image_size = 10, 20, 1, 64
    from embplat.ingest.fashion_mnist import build_fashion_mnist

    work = Path(tempfile.mkdtemp(prefix="embplat-bench-serve-"))
    root = build_fashion_mnist(work / "data", per_class=args.per_class)
    queries_root = build_fashion_mnist(work / "q", per_class=-(-args.queries // 10), source="test")
    queries = sorted(queries_root.rglob("*.jpg"))[: args.queries]
    home = work / "home"
    with _platform(home, args) as platform:
        platform.ingest(root)
    # the in-process loop runs before and after the service (best kept): a shared machine's
    # load then weighs on both alike
    in_process = _in_process(home, args, queries)
    proc, url = _start(home, args, work / "serve.log")
    try:
        rate1, lat1 = _http(url, queries, 1)
        rate4, lat4 = _http(url, queries, 4)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    in_process = max(in_process, _in_process(home, args, queries))

    cli = []
    for q in queries[: args.cli_queries]:
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "embplat", "classify", str(q), "--json"],
            env=_env(home, args),
            check=True,
            capture_output=True,
        )
        cli.append(time.perf_counter() - start)
    cli_rate = 1 / statistics.mean(cli)

    what = f"{len(queries)} queries, EfficientNet-Lite0 {args.image_size} px, {args.device}"
    print("| benchmark | result |")
    print("| --- | --- |")
    print(
        f"| `serve.py` — classify over HTTP, 1 client ({what}) | {rate1:.1f} req/s, p50 "
        f"{_pct(lat1, 50) * 1000:.0f} ms, p95 {_pct(lat1, 95) * 1000:.0f} ms; in-process "
        f"`Platform.classify` {in_process:.1f}/s: ratio **{rate1 / in_process:.2f}** "
        f"(target >= {TARGET}) |"
    )
    print(
        f"| `serve.py` — 4 concurrent clients | {rate4:.1f} req/s, p50 "
        f"{_pct(lat4, 50) * 1000:.0f} ms, p95 {_pct(lat4, 95) * 1000:.0f} ms; ratio "
        f"**{rate4 / in_process:.2f}** |"
    )
    print(
        f"| `serve.py` — one `platform classify` process per image | "
        f"{statistics.mean(cli):.2f} s per image: the service is "
        f"**{rate1 / cli_rate:.0f}x** faster |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
