"""Single-image classify through ``platform serve`` vs in-process ``Platform.classify`` vs
one ``platform classify`` process per image, on the same query images.

A data home is built from Fashion-MNIST (``--per-class`` images per class, ingested with the
real EfficientNet-Lite0 at ``--image-size``); the service runs as a real uvicorn process on
a free loopback port, warm before timing, next to a warm in-process ``Platform`` on the same
home. On a shared machine the load changes from second to second, so the two are measured in
alternating rounds (in-process loop, then the service, then the other way round) and each
round's ratio compares neighbours in time: every round's ratio is printed, and their median.

Measured: requests/s and p50/p95 latency with 1 client (multipart upload, one image per
request; also JSON base64) and 4 concurrent clients; where one request's time goes (the
client's wall time, the service's own time per request from its ``/metrics``, and the
in-process call); and the CLI's seconds per image.

Usage: ``python benchmarks/serve.py [--per-class 50] [--queries 100] [--rounds 5]
[--cli-queries 3] [--image-size 224] [--device cpu] [--threads N] [--quick]``; the last lines
are a markdown table ``| benchmark | result |``. ``--threads 1`` keeps torch's OpenMP
threads from spinning against other work on a shared machine (both sides get the same).
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

TARGET = 0.8
#: The service's own time of its classify requests, and of its model calls, in /metrics.
_SERVED = re.compile(
    r"^embplat_(request|model)_seconds_(sum|count)"
    r'\{(?:method="POST",route="/classify"|call="classify_many")\} (\S+)$'
)


def _env(home: Path, args: argparse.Namespace) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBPLAT_")}
    env |= {
        "EMBPLAT_HOME": str(home),
        "EMBPLAT_EMBED_NUM_WORKERS": "0",
        "EMBPLAT_EMBED_IMAGE_SIZE": str(args.image_size),
        "EMBPLAT_EMBED_DEVICE": args.device,
        "EMBPLAT_INDEX_BACKEND": "nmslib",
    }
    if args.threads:
        env["EMBPLAT_EMBED_THREADS"] = str(args.threads)
    return env


def _platform(home: Path, args: argparse.Namespace) -> Any:
    from embplat.api import Platform
    from embplat.config import load_settings

    settings = load_settings(
        **{
            "home": home,
            "embed.image_size": args.image_size,
            "embed.device": args.device,
            "embed.num_workers": 0,
            "index.backend": "nmslib",
            "embed.threads": args.threads,
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


def _served(client: Any) -> dict[str, float]:
    """From the service's /metrics: seconds and count of ``POST /classify`` requests so far
    (``request_sum``, ``request_count``) and of its model calls (``model_sum``...)."""
    found: dict[str, float] = {}
    for line in client.get("/metrics").text.splitlines():
        match = _SERVED.match(line)
        if match:
            found[f"{match.group(1)}_{match.group(2)}"] = float(match.group(3))
    return found


def _http(
    client: Any, payloads: list[tuple[str, bytes]], clients: int, as_json: bool = False
) -> tuple[float, list[float]]:
    """Requests/s and latencies of one classify request per image, ``clients`` at a time."""

    def one(item: tuple[str, bytes]) -> float:
        start = time.perf_counter()
        if as_json:
            body = {"images": [base64.b64encode(item[1]).decode()], "names": [item[0]]}
            r = client.post("/classify", params={"k": 10}, json=body)
        else:
            r = client.post("/classify", params={"k": 10}, files={"image": (*item, "image/jpeg")})
        r.raise_for_status()
        return time.perf_counter() - start

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = list(pool.map(one, payloads))
    return len(payloads) / (time.perf_counter() - start), latencies


def _in_process(platform: Any, queries: list[Path]) -> float:
    """Images per second of a warm ``Platform.classify`` loop, one image per call."""
    start = time.perf_counter()
    for q in queries:
        platform.classify(q, k=10)
    return len(queries) / (time.perf_counter() - start)


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def _rounds(platform: Any, url: str, queries: list[Path], rounds: int) -> dict[str, Any]:
    """Alternating rounds of the in-process loop and the service (1 client multipart, 1
    client JSON, 4 clients): per round each rate, and for 1 client the service's own time
    per request and per model call."""
    import httpx

    payloads = [(q.name, q.read_bytes()) for q in queries]
    out: dict[str, Any] = {k: [] for k in ("local", "one", "json", "four", "lat", "app", "model")}
    with httpx.Client(base_url=url, timeout=120) as client:
        _http(client, payloads[:3], 1)  # connection set up
        platform.classify(queries[0], k=10)
        for r in range(rounds):
            steps = ["local", "one", "json", "four"]
            for step in steps if r % 2 == 0 else steps[::-1]:
                if step == "local":
                    out["local"].append(_in_process(platform, queries))
                else:
                    _service_step(client, payloads, step, out)
            done = ", ".join(f"{k} {out[k][-1]:.1f}/s" for k in steps)
            print(f"round {r + 1}: {done}", file=sys.stderr, flush=True)
    return out


def _service_step(
    client: Any, payloads: list[tuple[str, bytes]], step: str, out: dict[str, Any]
) -> None:
    """One round of requests; for ``one`` also the service's own seconds per request
    (``app``) and per model call (``model``), from its /metrics."""
    before = _served(client)
    rate, latencies = _http(client, payloads, 4 if step == "four" else 1, step == "json")
    after = _served(client)
    out[step].append(rate)
    if step == "one":
        out["lat"] += latencies
        for key, part in (("app", "request"), ("model", "model")):
            seconds = after[f"{part}_sum"] - before[f"{part}_sum"]
            out[key].append(seconds / (after[f"{part}_count"] - before[f"{part}_count"]))


def _cli(home: Path, args: argparse.Namespace, queries: list[Path]) -> list[float]:
    seconds = []
    for q in queries[: args.cli_queries]:
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "embplat", "classify", str(q), "--json"],
            env=_env(home, args),
            capture_output=True,
            text=True,
        )
        if done.returncode:
            raise SystemExit(f"platform classify failed: {done.stderr[-1500:]}")
        seconds.append(time.perf_counter() - start)
    return seconds


def _report(m: dict[str, Any], cli: list[float], what: str) -> None:
    def ratios(step: str) -> list[float]:
        return [s / local for s, local in zip(m[step], m["local"], strict=True)]

    def listed(values: list[float]) -> str:
        return " / ".join(f"{v:.2f}" for v in values)

    one, json_, four = ratios("one"), ratios("json"), ratios("four")
    local_ms = [1000 / rate for rate in m["local"]]
    client_ms = [1000 / rate for rate in m["one"]]
    served_ms = [1000 * s for s in m["app"]]
    print("| benchmark | result |")
    print("| --- | --- |")
    print(
        f"| `serve.py` — classify over HTTP, 1 client, multipart ({what}; {len(one)} "
        f"alternating rounds) | {statistics.median(m['one']):.1f} req/s (median round), p50 "
        f"{_pct(m['lat'], 50) * 1000:.0f} ms, p95 {_pct(m['lat'], 95) * 1000:.0f} ms; "
        f"in-process `Platform.classify` {statistics.median(m['local']):.1f}/s; ratio per "
        f"round {listed(one)}: median **{statistics.median(one):.2f}** (target >= {TARGET}) |"
    )
    print(
        f"| `serve.py` — 1 client, JSON base64 | ratio per round {listed(json_)}: median "
        f"**{statistics.median(json_):.2f}** |"
    )
    quiet = max(range(len(local_ms)), key=lambda r: m["local"][r])  # least disturbed round
    print(
        f"| `serve.py` — where a 1-client request's time goes (round {quiet + 1}, the fastest "
        f"in-process round) | client wall {client_ms[quiet]:.1f} ms = HTTP round trip and "
        f"client {client_ms[quiet] - served_ms[quiet]:.1f} ms + the app's own time "
        f"{served_ms[quiet]:.1f} ms, of which the `classify_many` call on the model thread "
        f"{1000 * m['model'][quiet]:.1f} ms (in-process `classify` {local_ms[quiet]:.1f} ms) |"
    )
    print(
        f"| `serve.py` — 4 concurrent clients | {statistics.median(m['four']):.1f} req/s; "
        f"ratio per round {listed(four)}: median **{statistics.median(four):.2f}** |"
    )
    cli_rate = 1 / statistics.mean(cli)
    print(
        f"| `serve.py` — one `platform classify` process per image | "
        f"{statistics.mean(cli):.2f} s per image: the service is "
        f"**{statistics.median(m['one']) / cli_rate:.0f}x** faster |"
    )


def main(argv: list[str] | None = None) -> int:
    """Build the home, run the three ways, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cli-queries", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: the platform's)"
    )
    parser.add_argument("--quick", action="store_true", help="10/class, 20 queries, 64 px")
    args = parser.parse_args(argv)
    if args.quick:
        args.per_class, args.queries, args.cli_queries, args.image_size = 10, 20, 1, 64
        args.rounds = 2
    from embplat.ingest.fashion_mnist import build_fashion_mnist

    work = Path(tempfile.mkdtemp(prefix="embplat-bench-serve-"))
    root = build_fashion_mnist(work / "data", per_class=args.per_class)
    queries_root = build_fashion_mnist(work / "q", per_class=-(-args.queries // 10), source="test")
    queries = sorted(queries_root.rglob("*.jpg"))[: args.queries]
    home = work / "home"
    with _platform(home, args) as platform:
        platform.ingest(root)
    proc, url = _start(home, args, work / "serve.log")
    try:
        with _platform(home, args) as platform:
            platform.warm()
            measured = _rounds(platform, url, queries, args.rounds)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    what = f"{len(queries)} queries, EfficientNet-Lite0 {args.image_size} px, {args.device}"
    what += f", {args.threads} torch threads" if args.threads else ""
    _report(measured, _cli(home, args, queries), what)
    return 0


if __name__ == "__main__":
    sys.exit(main())
