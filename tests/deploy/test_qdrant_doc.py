"""docs/qdrant.md works: its Python example runs against a collection built by the platform.

The collection is written through ``QdrantIndex`` with the payloads ``payload_for`` makes,
in qdrant-client's local mode; the doc's example runs with its ``client = QdrantClient(...)``
line replaced by that local client. The curl bodies are validated against qdrant-client's
request models (which forbid unknown fields).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from embplat.ingest.embedding import payload_for
from embplat.retrieval import collection_name, point_id
from embplat.retrieval.base import l2_normalize
from embplat.retrieval.qdrant_index import QdrantIndex

DOC = Path(__file__).resolve().parents[2] / "docs" / "qdrant.md"
ALIAS = "embplat_images"
MODEL, DIM = "tiny_cnn", 16
#: class -> splits of its images (the doc's examples ask for class "coat")
CLASSES = {
    "coat": ["train", "train", "train", "valid"],
    "sneaker": ["train", "train", "train", "valid"],
    "sandal": ["test", "test", "test"],
}


def _build(client: QdrantClient, model: str, seed: int) -> tuple[QdrantIndex, list[str]]:
    """A small platform collection for ``model``: clustered vectors, real payloads."""
    rng = np.random.default_rng(seed)
    images, vectors = [], []
    for c, (name, splits) in enumerate(CLASSES.items()):
        center = rng.standard_normal(DIM)
        for i, split in enumerate(splits):
            sha = hashlib.sha256(f"{name}-{i}".encode()).hexdigest()
            images.append(
                SimpleNamespace(
                    id=100 * c + i,
                    label=SimpleNamespace(name=name),
                    split=split,
                    sha256=sha,
                    path=f"/srv/embplat/data/JPEGImages/{name}/{name}_{i:05d}.jpg",
                )
            )
            vectors.append(center + 0.2 * rng.standard_normal(DIM))
    index = QdrantIndex(collection_name(model), DIM, client, upload_batch=4)
    ids = [point_id(img.sha256, model) for img in images]
    with index.bulk_load():
        index.upsert(
            ids, l2_normalize(np.asarray(vectors)), [payload_for(img, model) for img in images]
        )
    return index, ids


@pytest.fixture
def client() -> Iterator[QdrantClient]:
    client = QdrantClient(":memory:")
    yield client
    client.close()


def _python_example() -> str:
    blocks = re.findall(r"^```python\n(.*?)^```", DOC.read_text(encoding="utf-8"), re.M | re.S)
    assert len(blocks) == 1, "docs/qdrant.md should hold exactly one Python example"
    code, n = re.subn(r"^client = QdrantClient\(.*\n", "", blocks[0], flags=re.M)
    assert n == 1, "the example should create `client` on one line, to be replaced here"
    return code


def test_python_example_runs_against_platform_collection(
    client: QdrantClient, capsys: pytest.CaptureFixture[str]
) -> None:
    index, ids = _build(client, MODEL, seed=0)
    index.set_alias(ALIAS)
    namespace: dict[str, Any] = {"client": client, "__name__": "qdrant_doc_example"}
    exec(compile(_python_example(), str(DOC), "exec"), namespace)

    payloads = index.get(ids)[1]
    train_coats = {
        pid
        for pid, p in zip(ids, payloads, strict=True)
        if (p["class"], p["split"]) == ("coat", "train")
    }
    # (c) scroll: exactly the training coats, with the platform's payload fields
    assert {str(r.id) for r in namespace["coats"]} == train_coats
    assert set(namespace["coats"][0].payload) == {
        "image_id", "class", "split", "sha256", "path", "kind", "model",
    }  # fmt: skip
    # the doc's point_id is the platform's
    anchor = namespace["anchor"]
    assert namespace["anchor_id"] == point_id(anchor["sha256"], MODEL) in train_coats
    # (a) search by vector with a class filter: only coats (all 4), the anchor itself first
    hits = namespace["hits"]
    assert len(hits) == len(CLASSES["coat"])
    assert all(h.payload["class"] == "coat" for h in hits)
    assert str(hits[0].id) == namespace["anchor_id"] and hits[0].score == pytest.approx(1.0)
    # (b) recommend by point id: results, never the example point itself
    similar = namespace["similar"]
    assert len(similar) == 5
    assert namespace["anchor_id"] not in {str(h.id) for h in similar}
    assert similar[0].payload["class"] == "coat"  # its own cluster comes first
    assert "training coats" in capsys.readouterr().out


def test_alias_repoints_to_new_current_collection(client: QdrantClient) -> None:
    old, old_ids = _build(client, MODEL, seed=0)
    new, new_ids = _build(client, "tiny_cnn-v2", seed=1)
    old.set_alias(ALIAS)
    assert {str(r.id) for r in client.scroll(ALIAS, limit=100)[0]} == set(old_ids)
    new.set_alias(ALIAS)
    aliases = {a.alias_name: a.collection_name for a in client.get_aliases().aliases}
    assert aliases == {ALIAS: "embplat_tiny_cnn_v2"}
    assert {str(r.id) for r in client.scroll(ALIAS, limit=100)[0]} == set(new_ids)
    assert set(old_ids).isdisjoint(new_ids)  # the model is part of the point id
    assert client.count(old.name).count == len(old_ids)  # the old collection is left alone


_REQUESTS = {
    ("POST", "/points/query"): models.QueryRequest,
    ("POST", "/points/scroll"): models.ScrollRequest,
    ("PATCH", ""): models.UpdateCollection,
}


def test_curl_bodies_are_valid_qdrant_requests() -> None:
    text = DOC.read_text(encoding="utf-8")
    calls = re.findall(
        r"curl -s -X (\w+) \"http://localhost:6333/collections/(\w+)(/points/\w+)?\".*?-d '(.*?)'",
        text,
        re.S,
    )
    assert len(calls) == 4
    readers = [(method, coll) for method, coll, path, _ in calls if path]
    assert readers == [("POST", ALIAS)] * 3, "reader examples should use the alias"
    for method, _, path, body in calls:
        _REQUESTS[(method, path)].model_validate(json.loads(body))
