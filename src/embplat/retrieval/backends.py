"""The index backends: each one's options and the module that opens it.

This module stays light (pydantic only, no numpy or backend library): ``embplat.config``
nests the options classes as settings sections and the CLI builds those at start-up. A
backend module provides ``open_index(*, name, dim, root, options) -> VectorIndex`` and, when
it keeps its points in files under ``root/name`` (``on_disk``), ``salvage(path, dim)``.

Adding a backend: its module, one options class and one :data:`BACKENDS` entry here, and one
parameter of the shared index test suite (``tests/retrieval/test_indexes.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field


class ExactOptions(BaseModel):
    """Options of the brute-force numpy backend (``retrieval/exact.py``)."""

    model_config = ConfigDict(frozen=True)

    lock_timeout: float = Field(
        600.0, ge=0, description="seconds a write waits for another writer of an index folder"
    )


class NmslibOptions(BaseModel):
    """Options of the nmslib HNSW backend (``retrieval/nmslib_index.py``)."""

    model_config = ConfigDict(frozen=True)

    hnsw_m: int = Field(16, ge=2, le=128, description="HNSW M: links per node")
    ef_construction: int = Field(200, ge=8, description="HNSW efConstruction")
    ef_search: int = Field(128, ge=8, description="HNSW efSearch")
    buffer_limit: int = Field(
        4096,
        ge=0,
        description="vectors searched exactly before an HNSW graph is built: below about "
        "4k points exact search is as fast for one query and faster for batches "
        "(benchmarks/exact_vs_graph.py), and the graph's build time is saved",
    )
    lock_timeout: float = Field(
        600.0, ge=0, description="seconds a write waits for another writer of an index folder"
    )


class QdrantOptions(BaseModel):
    """Options of the Qdrant backend (``retrieval/qdrant_index.py``): a server (``url``) or
    qdrant-client's embedded local mode (``path``)."""

    model_config = ConfigDict(frozen=True)

    url: str | None = None
    api_key: str | None = None
    path: Path | None = None
    upload_batch: int = Field(128, ge=1, le=1024, description="points per upsert request")
    prefer_grpc: bool = Field(False, description="talk to the server over gRPC, not REST")
    grpc_port: int = Field(6334, ge=1, le=65535, description="the server's gRPC port")
    parallel: int = Field(
        1, ge=1, le=64, description="upload processes against a server (local mode uses 1)"
    )
    max_retries: int = Field(
        3, ge=0, le=20, description="retries of a failed upload request before it fails"
    )


class Backend(NamedTuple):
    """One registry entry: the module implementing a backend and its options class."""

    module: str
    options: type[BaseModel]
    on_disk: bool  # points live in files under ``root/name`` (quarantine and salvage apply)


#: Backend name -> where it lives and what it takes.
BACKENDS: dict[str, Backend] = {
    "exact": Backend("embplat.retrieval.exact", ExactOptions, on_disk=True),
    "nmslib": Backend("embplat.retrieval.nmslib_index", NmslibOptions, on_disk=True),
    "qdrant": Backend("embplat.retrieval.qdrant_open", QdrantOptions, on_disk=False),
}
