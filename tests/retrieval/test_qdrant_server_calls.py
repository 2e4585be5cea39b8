"""The calls QdrantIndex makes only against a server: payload indexes, indexing switches.

No Qdrant server runs here, and local mode skips these calls, so a local-mode client that
presents itself as a server records them and keeps the state a server would report.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from embplat.errors import ConfigError
from embplat.retrieval import point_id
from embplat.retrieval.base import l2_normalize
from embplat.retrieval.qdrant_index import SAVED_THRESHOLD_KEY, QdrantIndex

DIM = 8


class ServerLikeClient:
    """Delegates to a local-mode client; records server-only calls and their effect."""

    def __init__(self, threshold: int | None = 20_000) -> None:
        self.init_options: dict[str, Any] = {"url": "http://qdrant:6333"}
        self.local = QdrantClient(":memory:")
        self.calls: list[tuple[str, Any]] = []
        self.schema: dict[str, models.PayloadIndexInfo] = {}
        self.threshold = threshold
        self.upload_options: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.local, name)

    def get_collection(self, name: str) -> models.CollectionInfo:
        info = self.local.get_collection(name)
        opt = info.config.optimizer_config.model_copy(update={"indexing_threshold": self.threshold})
        config = info.config.model_copy(update={"optimizer_config": opt})
        return info.model_copy(update={"payload_schema": dict(self.schema), "config": config})

    def create_payload_index(
        self, name: str, field: str, field_schema: models.PayloadSchemaType, wait: bool
    ) -> None:
        self.calls.append(("payload_index", field))
        self.schema[field] = models.PayloadIndexInfo(data_type=field_schema, points=0)

    def update_collection(
        self,
        name: str,
        optimizers_config: models.OptimizersConfigDiff | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if metadata is not None:  # local mode keeps collection metadata as a server does
            self.local.update_collection(name, metadata=metadata)
            self.calls.append(("metadata", metadata))
        if optimizers_config is not None:
            self.threshold = optimizers_config.indexing_threshold
            self.calls.append(("indexing_threshold", self.threshold))

    def upload_collection(
        self,
        name: str,
        vectors: np.ndarray,
        payload: list[dict[str, Any]],
        ids: list[str],
        **options: Any,
    ) -> None:
        """Split into requests of ``batch_size`` as the server-side uploader does."""
        self.upload_options.append(options)
        size = options["batch_size"]
        for start in range(0, len(ids), size):
            stop = start + size
            self.calls.append(("upsert", len(ids[start:stop])))
            batch = models.Batch(
                ids=ids[start:stop],
                vectors=vectors[start:stop].tolist(),
                payloads=payload[start:stop],
            )
            self.local.upsert(name, points=batch, wait=options["wait"])

    def update_collection_aliases(self, change_aliases_operations: list[Any]) -> Any:
        self.calls.append(("aliases", [type(op).__name__ for op in change_aliases_operations]))
        return self.local.update_collection_aliases(
            change_aliases_operations=change_aliases_operations
        )


@pytest.fixture
def server() -> Iterator[ServerLikeClient]:
    client = ServerLikeClient()
    yield client
    client.local.close()


def _open(client: ServerLikeClient, name: str = "embplat_s", batch: int = 64) -> QdrantIndex:
    return QdrantIndex(name, DIM, client, upload_batch=batch)  # type: ignore[arg-type]


def test_keyword_payload_indexes_created_once(server: ServerLikeClient) -> None:
    index = _open(server)
    assert not index.local
    assert server.calls == [("payload_index", f) for f in ("class", "split", "kind")]
    assert all(i.data_type == models.PayloadSchemaType.KEYWORD for i in server.schema.values())
    server.calls.clear()
    _open(server)  # another process opening the same collection
    assert server.calls == []


def test_upsert_in_batches_of_upload_batch(server: ServerLikeClient) -> None:
    index = _open(server, batch=64)
    server.calls.clear()
    n = 150
    ids = [point_id(f"{i:064x}", "m") for i in range(n)]
    vectors = l2_normalize(np.random.default_rng(0).standard_normal((n, DIM)))
    index.upsert(ids, vectors, [{"class": "c", "split": "train", "kind": "image"}] * n)
    assert server.calls == [("upsert", 64), ("upsert", 64), ("upsert", 22)]
    assert server.upload_options == [
        {"batch_size": 64, "parallel": 1, "max_retries": 3, "wait": True}
    ]
    assert index.count() == n


def test_parallel_and_retries_reach_the_upload(server: ServerLikeClient) -> None:
    index = QdrantIndex("embplat_p", DIM, server, parallel=4, max_retries=5)  # type: ignore[arg-type]
    ids = [point_id(f"{i:064x}", "m") for i in range(3)]
    vectors = l2_normalize(np.random.default_rng(1).standard_normal((3, DIM)))
    index.upsert(ids, vectors, [{"kind": "image"}] * 3)
    assert server.upload_options[-1] == {
        "batch_size": 128,
        "parallel": 4,
        "max_retries": 5,
        "wait": True,
    }


def test_local_mode_uploads_in_process() -> None:
    index = QdrantIndex("embplat_l", DIM, QdrantClient(":memory:"), parallel=8)
    assert index.local and index.parallel == 1


def test_bulk_load_defers_and_restores_indexing(server: ServerLikeClient) -> None:
    index = _open(server)
    server.calls.clear()
    with index.bulk_load():
        assert server.threshold == 0
    assert server.calls == [
        ("metadata", {SAVED_THRESHOLD_KEY: 20_000}),
        ("indexing_threshold", 0),
        ("indexing_threshold", 20_000),
    ]
    with pytest.raises(RuntimeError), index.bulk_load():
        raise RuntimeError("load failed")
    assert server.threshold == 20_000  # restored on error too


def test_restore_after_crashed_load_uses_default(server: ServerLikeClient) -> None:
    server.threshold = 0  # a previous load died before restoring
    index = _open(server)
    index.defer_indexing()
    index.restore_indexing()
    assert server.threshold == 10_000


def test_another_handle_restores_the_saved_threshold(server: ServerLikeClient) -> None:
    """Workers share no memory: the worker that ends a load (its own handle, opened after
    the load began) restores the threshold the first batch's worker replaced."""
    first = _open(server)
    first.defer_indexing()
    first.defer_indexing()  # the next batch: already 0, the saved value is kept
    assert server.threshold == 0
    assert server.local.get_collection("embplat_s").config.metadata == {SAVED_THRESHOLD_KEY: 20_000}
    other_worker = _open(server)
    other_worker.restore_indexing()
    assert server.threshold == 20_000


def test_alias_switch_is_one_call(server: ServerLikeClient) -> None:
    first, second = _open(server, "embplat_a"), _open(server, "embplat_b")
    server.calls.clear()
    first.set_alias("embplat_images")
    second.set_alias("embplat_images")
    assert server.calls == [
        ("aliases", ["CreateAliasOperation"]),
        ("aliases", ["DeleteAliasOperation", "CreateAliasOperation"]),
    ]


def test_upload_batch_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="upload_batch"):
        QdrantIndex("embplat_x", DIM, QdrantClient(":memory:"), upload_batch=0)


@pytest.mark.parametrize(
    ("option", "value"), [("parallel", 0), ("max_retries", -1)], ids=["parallel", "retries"]
)
def test_upload_options_are_checked(option: str, value: int) -> None:
    with pytest.raises(ConfigError, match=option):
        QdrantIndex("embplat_x", DIM, QdrantClient(":memory:"), **{option: value})
