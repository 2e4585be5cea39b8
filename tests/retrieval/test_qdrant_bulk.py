"""QdrantIndex's hot paths: searches that never count, the bulk upload, settings wiring.

All against qdrant-client's local mode (no server here). ``count`` is spied on the client,
``QdrantClient`` itself is spied where the factory builds it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from qdrant_client import QdrantClient, models

from embplat.config import load_settings
from embplat.errors import IndexEmptyError
from embplat.pipelines.classify import classify
from embplat.retrieval import point_id
from embplat.retrieval import qdrant_index as qdrant_module
from embplat.retrieval.base import l2_normalize
from embplat.retrieval.helpers import prepare_upsert
from embplat.retrieval.qdrant_index import QdrantIndex
from embplat.workers.context import build_context

DIM, N = 16, 300
MODEL = "test-model"


def _points(n: int = N, seed: int = 7) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
    """Ids, unit vectors and payloads shaped like the platform's (docs/qdrant.md)."""
    rng = np.random.default_rng(seed)
    sha = [f"{i:064x}" for i in range(n)]
    payloads = [
        {
            "image_id": i,
            "class": f"c{i % 5}",
            "split": "train" if i % 3 else "valid",
            "sha256": sha[i],
            "path": f"/data/c{i % 5}/{i}.jpg",
            "kind": "image",
            "model": MODEL,
        }
        for i in range(n)
    ]
    ids = [point_id(s, MODEL) for s in sha]
    return ids, l2_normalize(rng.standard_normal((n, DIM))).astype(np.float32), payloads


class CountSpy:
    """Replaces ``client.count``, recording each call's filter, then delegating."""

    def __init__(self, client: QdrantClient, monkeypatch: pytest.MonkeyPatch) -> None:
        self.filters: list[models.Filter | None] = []
        real = client.count

        def count(name: str, count_filter: models.Filter | None = None, **kw: Any) -> Any:
            self.filters.append(count_filter)
            return real(name, count_filter=count_filter, **kw)

        monkeypatch.setattr(client, "count", count)


@pytest.fixture
def index() -> Iterator[QdrantIndex]:
    idx = QdrantIndex("embplat_test", DIM, QdrantClient(":memory:"), owns_client=True)
    yield idx
    idx.close()


def test_filtered_search_does_not_count(
    index: QdrantIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids, vectors, payloads = _points()
    index.upsert(ids, vectors, payloads)
    spy = CountSpy(index.client, monkeypatch)
    hits = index.search(vectors[:4], k=5, filter={"kind": "image", "split": "train"})
    assert [len(row) for row in hits] == [5] * 4
    assert all(h.payload["split"] == "train" for row in hits for h in row)
    assert index.search(vectors[:2], k=3)[0][0].id == ids[0]
    assert spy.filters == []


def test_filter_matching_nothing_counts_once_unfiltered(
    index: QdrantIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids, vectors, payloads = _points(20)
    index.upsert(ids, vectors, payloads)
    spy = CountSpy(index.client, monkeypatch)
    assert index.search(vectors[:3], k=5, filter={"class": "nope"}) == [[], [], []]
    assert spy.filters == [None]


def test_empty_collection_still_raises(index: QdrantIndex) -> None:
    query = np.ones((1, DIM), np.float32)
    with pytest.raises(IndexEmptyError, match="is empty"):
        index.search(query, k=3)
    with pytest.raises(IndexEmptyError, match="is empty"):
        index.search(query, k=3, filter={"split": "train"})
    ids, vectors, payloads = _points(10)
    index.upsert(ids, vectors, payloads)
    index.delete(ids)
    with pytest.raises(IndexEmptyError):
        index.search(vectors[:1], k=3)


def _old_upsert(
    client: QdrantClient,
    name: str,
    ids: list[str],
    arr: np.ndarray,
    payloads: list[Any],
    batch: int,
) -> None:
    """The previous ``QdrantIndex.upsert``: one waited ``upsert`` of a ``Batch`` per ``batch``
    points, after the same validation and normalisation (``prepare_upsert``)."""
    ids, arr, payloads = prepare_upsert(ids, arr, payloads, DIM)
    for start in range(0, len(ids), batch):
        stop = start + batch
        client.upsert(
            name,
            points=models.Batch(
                ids=ids[start:stop], vectors=arr[start:stop].tolist(), payloads=payloads[start:stop]
            ),
            wait=True,
        )


def _everything(client: QdrantClient, name: str) -> dict[str, tuple[dict[str, Any], list[float]]]:
    records, offset = client.scroll(name, limit=10_000, with_payload=True, with_vectors=True)
    assert offset is None
    return {str(r.id): (r.payload or {}, list(r.vector)) for r in records}  # type: ignore[arg-type]


@pytest.mark.parametrize("location", ["memory", "path"])
def test_bulk_path_writes_what_the_old_path_wrote(tmp_path: Path, location: str) -> None:
    ids, vectors, payloads = _points(130)
    clients = [
        QdrantClient(":memory:") if location == "memory" else QdrantClient(path=str(tmp_path / n))
        for n in ("old", "new")
    ]
    old, new = clients
    try:
        old.create_collection(
            "embplat_x",
            vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE),
        )
        _old_upsert(old, "embplat_x", ids, vectors, payloads, batch=64)
        QdrantIndex("embplat_x", DIM, new, upload_batch=64).upsert(ids, vectors, payloads)
        before, after = _everything(old, "embplat_x"), _everything(new, "embplat_x")
        assert set(after) == set(ids)
        assert after == before
        assert [after[i][0] for i in ids] == payloads
    finally:
        for client in clients:
            client.close()


def test_upsert_nothing_sends_nothing(index: QdrantIndex) -> None:
    index.upsert([], np.empty((0, DIM), np.float32), [])
    assert index.count() == 0


def test_large_local_collection_warns_once(
    index: QdrantIndex, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(qdrant_module, "LOCAL_MODE_LIMIT", 25)
    monkeypatch.setattr(qdrant_module, "_warned_local_size", False)
    ids, vectors, payloads = _points(60)
    with caplog.at_level(logging.WARNING, logger=qdrant_module.__name__):
        index.upsert(ids[:20], vectors[:20], payloads[:20])
        assert not caplog.records
        index.upsert(ids[20:40], vectors[20:40], payloads[20:40])
        index.upsert(ids[40:], vectors[40:], payloads[40:])
        QdrantIndex("embplat_test", DIM, index.client)  # reopening does not warn again
    (record,) = caplog.records
    assert "40 points" in record.getMessage()
    assert "nmslib" in record.getMessage() and "EMBPLAT_QDRANT_URL" in record.getMessage()


class _FakeEncoder:
    """Stands in for the image encoder: a fixed unit vector per image (by mean colour)."""

    dim, image_size = DIM, 16

    def transform(self, image: Image.Image) -> torch.Tensor:
        return torch.from_numpy(np.asarray(image.resize((16, 16)), np.float32).copy())

    def encode_images(self, batch: torch.Tensor) -> np.ndarray:
        seeds = batch.flatten(1).mean(1).round().int().tolist()
        rows = [np.random.default_rng(s).standard_normal(DIM) for s in seeds]
        return l2_normalize(np.asarray(rows, np.float32))


def test_classify_counts_once(
    index: QdrantIndex, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    query = tmp_path / "q.png"
    Image.new("RGB", (16, 16), (120, 30, 200)).save(query)
    space = SimpleNamespace(index=index, encoder=_FakeEncoder())
    ctx: Any = SimpleNamespace(
        spaces=SimpleNamespace(space=lambda model=None: space),
        ingest=SimpleNamespace(max_pixels=10**6),
        embed=SimpleNamespace(batch_size=8, num_workers=0),
    )
    spy = CountSpy(index.client, monkeypatch)
    with pytest.raises(IndexEmptyError, match="no enrolled images"):
        classify(ctx, [query], k=3)
    ids, vectors, payloads = _points(30)
    index.upsert(ids, vectors, payloads)
    spy.filters.clear()
    (pred,) = classify(ctx, [query], k=50)
    assert len(spy.filters) == 1 and spy.filters[0] is not None  # checked_k's, none in search
    assert pred.k == 20 and pred.notes == ["k=50 is larger than the 20 enrolled images; used k=20"]


class _ServerLike:
    """What the spied ``QdrantClient`` returns: a local client that presents as a server."""

    def __init__(self) -> None:
        self.local = QdrantClient(":memory:")
        self.init_options = {"url": "http://qdrant:6333"}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.local, name)

    def create_payload_index(self, *args: Any, **kwargs: Any) -> None:
        """Local mode has no payload indexes; a server would build them."""


def test_settings_reach_the_client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    made: list[dict[str, Any]] = []

    def spy_client(**kwargs: Any) -> _ServerLike:
        made.append(kwargs)
        return _ServerLike()

    monkeypatch.setattr("qdrant_client.QdrantClient", spy_client)
    for var, value in {
        "EMBPLAT_QDRANT_URL": "http://qdrant:6333",
        "EMBPLAT_QDRANT_API_KEY": "k3y",
        "EMBPLAT_QDRANT_PREFER_GRPC": "true",
        "EMBPLAT_QDRANT_GRPC_PORT": "16334",
        "EMBPLAT_QDRANT_PARALLEL": "3",
        "EMBPLAT_QDRANT_MAX_RETRIES": "5",
        "EMBPLAT_INDEX_BACKEND": "auto",
    }.items():
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("EMBPLAT_CATALOG_URL", raising=False)
    monkeypatch.delenv("EMBPLAT_BROKER_URL", raising=False)
    monkeypatch.delenv("EMBPLAT_CELERY_BROKER_URL", raising=False)
    settings = load_settings(home=tmp_path / "home")
    assert (settings.index.qdrant.prefer_grpc, settings.index.qdrant.grpc_port) == (True, 16334)
    ctx = build_context(settings)
    try:
        opened = ctx.spaces.open_index("embplat_w", DIM)
        assert isinstance(opened, QdrantIndex)
        assert (opened.parallel, opened.max_retries, opened.local) == (3, 5, False)
        opened.close()
    finally:
        ctx.close()
    assert made == [
        {"url": "http://qdrant:6333", "api_key": "k3y", "prefer_grpc": True, "grpc_port": 16334}
    ]


def test_grpc_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PREFER_GRPC", "GRPC_PORT", "PARALLEL", "MAX_RETRIES"):
        monkeypatch.delenv(f"EMBPLAT_QDRANT_{name}", raising=False)
    settings = load_settings()
    assert (settings.index.qdrant.prefer_grpc, settings.index.qdrant.grpc_port) == (False, 6334)
    assert (settings.index.qdrant.parallel, settings.index.qdrant.max_retries) == (1, 3)


def test_compose_publishes_grpc_on_loopback() -> None:
    compose = Path(__file__).resolve().parents[2] / "docker-compose.yml"
    ports = yaml.safe_load(compose.read_text(encoding="utf-8"))["services"]["qdrant"]["ports"]
    assert "127.0.0.1:6334:6334" in ports
