"""docs/qdrant.md's caption-points example runs against a matching model's collection that the
platform filled (a matching model trained on a few scenes, its points in a local-mode Qdrant
collection), and finds what the platform's own points say it should."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient

from embplat.config import load_settings
from embplat.ingest.scenes import build_scenes
from embplat.pipelines.crossmodal import caption_point_id
from embplat.pipelines.ingest import ingest_tree
from embplat.pipelines.train import train_recipe
from embplat.retrieval import collection_name
from embplat.retrieval.qdrant_index import QdrantIndex
from embplat.workers.context import build_context

DOC = Path(__file__).resolve().parents[2] / "docs" / "qdrant.md"


def _caption_example() -> str:
    text = DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"^```python caption-points\n(.*?)^```", text, re.M | re.S)
    assert len(blocks) == 1, "docs/qdrant.md should hold one caption-points example"
    code, n = re.subn(r"^client = QdrantClient\(.*\n", "", blocks[0], flags=re.M)
    assert n == 1, "the example should create `client` on one line, to be replaced here"
    return code


@pytest.fixture
def platform_qdrant(tmp_path: Path) -> Path:
    """A local Qdrant folder holding ``embplat_matching_1``: a matching model trained by the
    platform on a few scenes, its points (ids, vectors, payloads) copied through
    ``QdrantIndex``. (Trained on the exact backend: local mode opens one collection per
    process, and training reads the active encoder's collection while writing the model's.)"""
    settings = load_settings(
        home=tmp_path / "home",
        **{"index.backend": "exact", "embed.encoder": "tiny_cnn", "embed.num_workers": 0},
    )
    settings.catalog.url = None
    ctx = build_context(settings)
    try:
        ingest_tree(ctx, build_scenes(tmp_path / "scenes", images=20, size=64))
        config = {"text_encoder": "glove", "loss": "infonce", "freeze_epochs": 2}
        train_recipe(ctx, "matching", {**config, "embed_dim": 16, "batch_size": 16})
        index = ctx.spaces.index(collection_name("matching-1"), 16)
        ids = index.ids()
        vectors, payloads = index.get(ids)
    finally:
        ctx.close()
    client = QdrantClient(path=str(tmp_path / "qdrant"))
    try:
        QdrantIndex(collection_name("matching-1"), 16, client).upsert(ids, vectors, payloads)
    finally:
        client.close()
    return tmp_path / "qdrant"


def test_caption_example_runs_against_a_platform_collection(
    platform_qdrant: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client = QdrantClient(path=str(platform_qdrant))
    try:
        namespace: dict[str, Any] = {"client": client, "__name__": "qdrant_caption_example"}
        exec(compile(_caption_example(), str(DOC), "exec"), namespace)
        everything, _ = client.scroll("embplat_matching_1", limit=1000, with_vectors=True)
    finally:
        client.close()
    image, captions, images = namespace["image"], namespace["captions"], namespace["images"]
    assert image.payload["kind"] == "image" and image.payload["split"] == "test"
    assert len(captions) == 5 and all(h.payload["kind"] == "caption" for h in captions)
    first = captions[0].payload
    assert set(first) == {
        "kind", "image_id", "class", "caption_id", "text", "ordinal", "split", "path", "sha256",
        "model",
    }  # fmt: skip
    assert str(captions[0].id) == caption_point_id(first["sha256"], first["ordinal"], "matching-1")
    # the same top captions as exact cosine search over the platform's caption points
    stored = [p for p in everything if p.payload["kind"] == "caption"]
    vectors = np.asarray([p.vector for p in stored])
    best = np.argsort(-(vectors @ np.asarray(image.vector)))[:5]
    assert [str(captions[i].id) for i in range(5)] == [str(stored[i].id) for i in best]
    assert len(images) == 5 and all(h.payload["kind"] == "image" for h in images)
    assert len(everything) == 20 + 100  # image points and caption points
    assert "(image " in capsys.readouterr().out
