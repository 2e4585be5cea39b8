"""Open a vector index by backend name; backends (and their optional deps) load lazily."""

from __future__ import annotations

import logging
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from embplat.errors import ConfigError, ServiceUnavailableError
from embplat.retrieval.base import VectorIndex
from embplat.retrieval.lock import WriteLock

logger = logging.getLogger(__name__)

BACKENDS = ("exact", "nmslib", "qdrant")


def collection_name(model_key: str) -> str:
    """Index/collection name for a model: ``embplat_`` + the key lowercased, runs of
    characters outside ``[a-z0-9_]`` replaced by one underscore.

    Raises:
        ConfigError: nothing usable is left of ``model_key``.
    """
    slug = re.sub(r"[^a-z0-9_]+", "_", model_key.lower()).strip("_")
    if not slug:
        raise ConfigError(f"model key {model_key!r} has no letters or digits to name an index")
    return f"embplat_{slug}"


def open_index(
    backend: str,
    *,
    name: str,
    dim: int,
    root: Path,
    qdrant_url: str | None = None,
    qdrant_api_key: str | None = None,
    qdrant_path: Path | None = None,
    hnsw_m: int = 16,
    ef_construction: int = 200,
    ef_search: int = 128,
    buffer_limit: int = 2048,
    upload_batch: int = 128,
    lock_timeout: float = 600.0,
    qdrant_prefer_grpc: bool = False,
    qdrant_grpc_port: int = 6334,
    qdrant_parallel: int = 1,
    qdrant_max_retries: int = 3,
) -> VectorIndex:
    """Open (creating when missing) the index ``name`` of ``dim``-d vectors.

    Args:
        backend: ``exact`` or ``nmslib`` (stored under ``root/name``), or ``qdrant``
            (server at ``qdrant_url``, else local mode in ``qdrant_path``).
        name: index / collection name, e.g. from :func:`collection_name`.
        dim: vector dimension.
        root: folder holding the file-based indexes.
        qdrant_url: Qdrant server URL; wins over ``qdrant_path``.
        qdrant_api_key: API key for the server.
        qdrant_path: folder for qdrant-client's embedded local mode.
        hnsw_m: nmslib HNSW ``M``.
        ef_construction: nmslib HNSW ``efConstruction``.
        ef_search: nmslib HNSW ``efSearch``.
        buffer_limit: nmslib exact-buffer size that triggers a graph rebuild.
        upload_batch: Qdrant points per upsert request.
        lock_timeout: exact/nmslib: seconds a write waits for another process writing the
            same index (then BusyError); 0 fails at once.
        qdrant_prefer_grpc: talk to the server over gRPC (faster uploads) instead of REST.
        qdrant_grpc_port: the server's gRPC port.
        qdrant_parallel: upload processes against a server (local mode uses 1).
        qdrant_max_retries: retries of a failed upload request.

    Raises:
        ConfigError: unknown backend, or ``qdrant`` with neither URL nor path.
    """
    if backend == "exact":
        from embplat.retrieval.exact import ExactIndex

        return ExactIndex(name, dim, path=Path(root) / name, lock_timeout=lock_timeout)
    if backend == "nmslib":
        from embplat.retrieval.nmslib_index import NmslibIndex

        return NmslibIndex(
            name,
            dim,
            Path(root) / name,
            m=hnsw_m,
            ef_construction=ef_construction,
            ef_search=ef_search,
            buffer_limit=buffer_limit,
            lock_timeout=lock_timeout,
        )
    if backend == "qdrant":
        remote = _QdrantRemote(qdrant_url, qdrant_api_key, qdrant_prefer_grpc, qdrant_grpc_port)
        return _open_qdrant(
            name,
            dim,
            remote,
            qdrant_path,
            upload_batch=upload_batch,
            parallel=qdrant_parallel,
            max_retries=qdrant_max_retries,
        )
    raise ConfigError(f"unknown index backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def quarantine_index(backend: str, *, name: str, root: Path) -> Path | None:
    """Move the file-based index ``root/name`` aside, to ``root/<name>.damaged-<UTC time>``.

    Nothing is deleted; :func:`salvage_points` reads what is left in the moved directory.

    Returns:
        The new path, or None for ``qdrant`` or when there is no such directory.

    Raises:
        ConfigError: unknown backend.
        BusyError: a process is writing the index (it holds the directory's write lock).
    """
    _check_backend(backend)
    source = Path(root) / name
    if backend == "qdrant" or not source.is_dir():
        return None
    lock = WriteLock(source, timeout=0)
    lock.acquire()
    try:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        target, n = source.with_name(f"{name}.damaged-{stamp}"), 1
        while target.exists():
            target, n = source.with_name(f"{name}.damaged-{stamp}-{n}"), n + 1
        os.rename(source, target)
    finally:
        lock.release()
    logger.warning("moved index %s aside to %s", source, target)
    return target


def salvage_points(
    backend: str, *, path: Path, dim: int
) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
    """Every point still readable in a (quarantined) index directory, checksums ignored.

    nmslib: the base file's live slots if readable, then the segments in order up to the
    first unreadable one; exact: its ``exact.npz`` if readable. Never raises for damage.

    Returns:
        ids, (N, dim) float32 vectors and payloads, aligned; empty when nothing is readable
        (and always for ``qdrant``).

    Raises:
        ConfigError: unknown backend.
    """
    _check_backend(backend)
    path = Path(path)
    if backend == "exact":
        from embplat.retrieval import exact

        return exact.salvage(path, dim)
    if backend == "nmslib":
        from embplat.retrieval import nmslib_store

        return nmslib_store.salvage(path, dim)
    return [], np.empty((0, dim), np.float32), []


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ConfigError(f"unknown index backend {backend!r}; choose one of {', '.join(BACKENDS)}")


class _QdrantRemote(NamedTuple):
    """How to reach a Qdrant server (``url`` None: use local mode)."""

    url: str | None
    api_key: str | None
    prefer_grpc: bool
    grpc_port: int


def _open_qdrant(
    name: str,
    dim: int,
    remote: _QdrantRemote,
    path: Path | None,
    *,
    upload_batch: int,
    parallel: int,
    max_retries: int,
) -> VectorIndex:
    from qdrant_client import QdrantClient
    from qdrant_client.http.exceptions import ResponseHandlingException

    from embplat.retrieval.qdrant_index import QdrantIndex

    url = remote.url
    if url:
        client = QdrantClient(
            url=url,
            api_key=remote.api_key,
            prefer_grpc=remote.prefer_grpc,
            grpc_port=remote.grpc_port,
        )
    elif path is not None:
        Path(path).mkdir(parents=True, exist_ok=True)
        try:
            client = QdrantClient(path=str(path))
        except RuntimeError as exc:  # the folder is locked by another client
            raise ServiceUnavailableError(
                f"local Qdrant folder {path} is in use by another process ({exc}); "
                "stop it or run a Qdrant server"
            ) from exc
    else:
        raise ConfigError(
            "the qdrant backend needs a server URL (EMBPLAT_QDRANT_URL) or a local folder "
            "(EMBPLAT_QDRANT_PATH)"
        )
    try:
        return QdrantIndex(
            name,
            dim,
            client,
            upload_batch=upload_batch,
            owns_client=True,
            parallel=parallel,
            max_retries=max_retries,
        )
    except BaseException as exc:
        client.close()
        if isinstance(exc, ResponseHandlingException) or _grpc_unavailable(exc):
            port = f" (gRPC port {remote.grpc_port})" if remote.prefer_grpc else ""
            raise ServiceUnavailableError(
                f"Qdrant at {url}{port} did not answer ({exc}); start it or unset "
                "EMBPLAT_QDRANT_URL"
            ) from exc
        raise


def _grpc_unavailable(exc: BaseException) -> bool:
    """True for a gRPC call that found no server (``prefer_grpc`` clients)."""
    import grpc

    return isinstance(exc, grpc.RpcError) and exc.code() == grpc.StatusCode.UNAVAILABLE
