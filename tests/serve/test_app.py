"""``platform serve`` as a real process answered over real HTTP: the same answers as the
Python API and the CLI, a 4xx JSON error for every bad request, concurrency, the API key."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from PIL import Image
from servers import FLAGS, home_env, start_server, stop

pytestmark = pytest.mark.slow


def _queries(fmnist_queries: Path, n: int = 6) -> list[Path]:
    """``n`` never-ingested query images of different classes."""
    return [sorted(folder.iterdir())[0] for folder in sorted(fmnist_queries.iterdir())[:n]]


def _essence(answer: dict) -> tuple:
    """What must agree between doors: the vote and the neighbours (id, score)."""
    neighbours = [(n["image_id"], round(n["score"], 5)) for n in answer["neighbours"]]
    return answer["label"], answer["confidence"], answer["tallies"], neighbours


def _classify_http(client: httpx.Client, path: Path, **params: object) -> httpx.Response:
    files = {"image": (path.name, path.read_bytes(), "image/jpeg")}
    return client.post("/classify", params={"k": 5, **params}, files=files)


def test_classify_equals_the_python_api_and_the_cli(server, platform_api, fmnist_queries):
    queries = _queries(fmnist_queries)
    with server.client() as client:
        files = [("image", (p.name, p.read_bytes(), "image/jpeg")) for p in queries]
        served = client.post("/classify", params={"k": 5}, files=files).json()["results"]
        as_json = {"images": [base64.b64encode(p.read_bytes()).decode() for p in queries[:2]]}
        by_base64 = client.post("/classify", params={"k": 5}, json=as_json).json()["results"]
    in_process = [a.to_dict() for a in platform_api.classify_many(queries, k=5)]
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "embplat",
            *FLAGS,
            "classify",
            *map(str, queries),
            "--k",
            "5",
            "--json",
        ],
        env=home_env(server.home),
        capture_output=True,
        text=True,
        check=True,
    )
    by_cli = json.loads(cli.stdout)
    assert [a["source"] for a in served] == [p.name for p in queries]
    assert [_essence(a) for a in served] == [_essence(a) for a in in_process]
    assert [_essence(a) for a in served] == [_essence(a) for a in by_cli]
    assert [_essence(a) for a in by_base64] == [_essence(a) for a in served[:2]]
    # every input type of the Python API gives the same answer as the path
    image = Image.open(queries[0])
    for same in (queries[0].read_bytes(), image, io.BytesIO(queries[0].read_bytes())):
        assert _essence(platform_api.classify(same, k=5).to_dict()) == _essence(in_process[0])


def test_search_by_image_text_vector_and_point(server, platform_api, fmnist_queries):
    query = _queries(fmnist_queries, 1)[0]
    with server.client() as client:
        files = {"image": (query.name, query.read_bytes(), "image/jpeg")}
        served = client.post("/search", params={"k": 4, "split": "train"}, files=files).json()
        vector = [1.0] + [0.0] * 63  # the tiny encoder's dimension
        by_vector = client.post("/search", params={"k": 3}, json={"vector": vector}).json()
        no_devise = client.get("/search", params={"text": "red circle"})
    expected = platform_api.search(image=query, k=4, split="train").to_dict()
    assert served["matches"] == expected["matches"] and len(served["matches"]) == 4
    assert by_vector["matches"] == platform_api.search(vector=vector, k=3).to_dict()["matches"]
    assert no_devise.status_code == 404 and "train one with" in no_devise.json()["detail"]

    from embplat.retrieval import point_id

    space = platform_api.context.spaces.space()
    with platform_api.context.sessions() as session:
        from embplat.catalog import repo

        first = repo.get_images(session=session, ids=[served["matches"][0]["image_id"]])[0]
    pid = point_id(first.sha256, space.key)
    with server.client() as client:
        by_point = client.get("/search", params={"point_id": pid, "k": 2}).json()
    assert by_point["matches"][0]["image_id"] == first.id
    assert by_point["matches"][0]["score"] == pytest.approx(1.0, abs=1e-5)


def test_catalog_routes_probes_and_metrics(server, platform_api):
    with server.client() as client:
        classes = client.get("/classes").json()
        models = client.get("/models").json()
        jobs = client.get("/jobs", params={"limit": 5}).json()
        job = client.get(f"/jobs/{jobs[0]['id']}").json()
        ready = client.get("/readyz").json()
        thumb = client.get("/images/1/thumbnail", params={"size": 32})
        original = client.get("/images/1")
        page = client.get("/")
        docs = client.get("/openapi.json").json()
        metrics = client.get("/metrics").text
    assert classes == [c.to_dict() for c in platform_api.classes()]
    assert [m["name"] for m in models] == ["tiny_cnn-random"]
    assert job == jobs[0] and job["state"] == "succeeded"
    assert ready["status"] == "ready" and ready["points"] > 0
    assert Image.open(io.BytesIO(thumb.content)).size[0] <= 32
    assert original.content == Path(platform_api.image(1).path).read_bytes()
    assert "<title>embplat search</title>" in page.text
    assert {"/classify", "/search", "/classes/{name}", "/jobs/{job_id}"} <= set(docs["paths"])
    assert 'embplat_requests_total{method="GET",route="/classes",status="200"}' in metrics
    assert "embplat_request_seconds_bucket" in metrics
    assert 'embplat_model_seconds_count{call="ready"}' in metrics  # /readyz on the model thread
    load = next(line for line in metrics.splitlines() if line.startswith("embplat_model_load"))
    assert float(load.split()[-1]) > 0


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 20, 20)).save(buffer, format="PNG")
    return buffer.getvalue()


def _bomb() -> bytes:
    """A valid 1-bit 30000x30000 PNG (900 Mpx) of a few hundred kilobytes."""
    from struct import pack

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return pack(">I", len(payload)) + kind + payload + pack(">I", zlib.crc32(kind + payload))

    side = 30_000
    rows = zlib.compress(bytes((1 + side // 8) * side), 9)
    header = pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


GOOD = _png(28, 28)
UP = {"files": {"image": ("q.png", GOOD, "image/png")}}
BAD_REQUESTS = {
    "text/plain body": (
        "POST",
        "/classify",
        {"content": b"hello", "headers": {"content-type": "text/plain"}},
    ),
    "no content type": ("POST", "/classify", {"content": b"hello"}),
    "multipart without image": ("POST", "/classify", {"files": {"other": ("a.txt", b"x")}}),
    "image field as text": (
        "POST",
        "/classify",
        {"data": {"image": "/etc/passwd"}, "files": {"x": ("x", b"1")}},
    ),
    "truncated image": (
        "POST",
        "/classify",
        {"files": {"image": ("t.png", GOOD[: len(GOOD) // 2])}},
    ),
    "empty file": ("POST", "/classify", {"files": {"image": ("e.jpg", b"")}}),
    "text file as jpg": ("POST", "/classify", {"files": {"image": ("a.jpg", b"not an image")}}),
    "decompression bomb": ("POST", "/classify", {"files": {"image": ("bomb.png", _bomb())}}),
    "huge upload": (
        "POST",
        "/classify",
        {"files": {"image": ("big.png", b"\x89PNG" + bytes(3 * 2**20))}},
    ),
    "too many images": (
        "POST",
        "/classify",
        {"files": [("image", ("q.png", GOOD, "image/png"))] * 9},
    ),
    "too elongated": ("POST", "/classify", {"files": {"image": ("wide.png", _png(2000, 10))}}),
    "invalid JSON": (
        "POST",
        "/classify",
        {"content": b"{", "headers": {"content-type": "application/json"}},
    ),
    "JSON without images": ("POST", "/classify", {"json": {"paths": ["/etc/passwd"]}}),
    "JSON path instead of base64": (
        "POST",
        "/classify",
        {"json": {"images": ["../../etc/passwd"]}},
    ),
    "JSON number as image": ("POST", "/classify", {"json": {"images": [42]}}),
    "unknown model": ("POST", "/classify?model=nope", UP),
    "pretrained encoder as model": ("POST", "/classify?model=tiny_cnn-random", UP),
    "k zero": ("POST", "/classify?k=0", UP),
    "k over the limit": ("POST", "/classify?k=100000", UP),
    "k not a number": ("GET", "/search?text=a&k=ten", {}),
    "reject_below over 1": ("POST", "/classify?reject_below=7", UP),
    "unknown split": ("GET", "/search?text=a&split=holdout", {}),
    "unknown kind": ("GET", "/search?point_id=x&kind=secret", {}),
    "no query": ("GET", "/search", {}),
    "captions without a model": ("POST", "/search?kind=caption", UP),
    "labels of a text": ("GET", "/search?text=a&kind=label", {}),
    "bad point id": ("GET", "/search?point_id=../../etc/passwd", {}),
    "vector of wrong dimension": ("POST", "/search", {"json": {"vector": [1.0, 2.0]}}),
    "path traversal in image id": ("GET", "/images/..%2F..%2Fetc%2Fpasswd", {}),
    "path traversal in static": ("GET", "/static/..%2F..%2F..%2Fetc%2Fpasswd", {}),
    "unknown image id": ("GET", "/images/999999", {}),
    "unknown job": ("GET", "/jobs/999999", {}),
    "class name with a slash": ("POST", "/classes/..%2Fevil", UP),
    "wrong method": ("DELETE", "/classes", {}),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS), ids=str)
def test_bad_requests_are_4xx_json(server, case):
    method, url, options = BAD_REQUESTS[case]
    with server.client() as client:
        response = client.request(method, url, **options)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    body = response.json()
    assert body["error"] and body["detail"] and "Traceback" not in response.text


@pytest.fixture(scope="module")
def keyed(served_home: Path, tmp_path_factory: pytest.TempPathFactory):
    """A server on a copy of the home, with an API key."""
    home = tmp_path_factory.mktemp("keyed") / "home"
    shutil.copytree(served_home, home)
    env = {"EMBPLAT_SERVE_API_KEY": "s3cret"}
    running = start_server(home, home.parent / "serve.log", **env)
    yield running
    stop(running)


def test_the_api_key_is_enforced(keyed):
    with keyed.client() as client:
        missing = client.get("/classes")
        wrong = client.get("/classes", headers={"X-API-Key": "nope"})
        right = client.get("/classes", headers={"X-API-Key": "s3cret"})
        public = [client.get(p).status_code for p in ("/", "/healthz", "/readyz")]
        thumb = client.get("/images/1/thumbnail")
    assert missing.status_code == wrong.status_code == thumb.status_code == 401
    assert "X-API-Key" in missing.json()["detail"]
    assert right.status_code == 200 and public == [200, 200, 200]


def test_add_class_from_uploads_is_a_job_and_classifiable_at_once(keyed, fmnist_queries):
    bags = sorted((fmnist_queries / "bag").iterdir())
    headers = {"X-API-Key": "s3cret"}
    with keyed.client(headers=headers) as client:
        files = [("image", (p.name, p.read_bytes(), "image/jpeg")) for p in bags]
        added = client.post("/classes/new+bag", files=files)
        job = client.get(f"/jobs/{added.json()['job_id']}").json()
        classes = {c["name"]: c for c in client.get("/classes").json()}
        answer = _classify_http(client, bags[0], k=1).json()["results"][0]
    assert added.status_code == 201, added.text
    assert job["kind"] == "enrol" and job["state"] == "succeeded"
    assert classes["new+bag"]["images"]["train"] == len(bags)
    assert answer["label"] == "new+bag" and answer["neighbours"][0]["score"] == pytest.approx(1.0)


def test_twenty_concurrent_classify_requests_are_all_answered_correctly(
    server, platform_api, fmnist_queries
):
    queries = _queries(fmnist_queries, 10) * 2
    expected = [_essence(platform_api.classify(q, k=5).to_dict()) for q in queries]
    with server.client() as client, ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(lambda q: _classify_http(client, q), queries))
    assert [r.status_code for r in responses] == [200] * 20
    assert [_essence(r.json()["results"][0]) for r in responses] == expected


def test_serve_refuses_a_public_address_without_a_key(served_home):
    proc = subprocess.run(
        [sys.executable, "-m", "embplat", *FLAGS, "serve", "--host", "0.0.0.0"],
        env=home_env(served_home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "without an API key" in proc.stderr
