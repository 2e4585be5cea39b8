"""Open the Qdrant backend from its options: a server client, or qdrant-client's embedded
local mode in a folder, chosen once here.

Local mode locks its folder per client, so every collection opened in one process from the
same folder shares one client (counted; closed with the last index using it): a training
reads the active encoder's collection while it writes the model's.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

from embplat.errors import ConfigError, ServiceUnavailableError
from embplat.retrieval.backends import QdrantOptions
from embplat.retrieval.base import VectorIndex


def open_index(*, name: str, dim: int, root: Path, options: QdrantOptions) -> VectorIndex:
    """The collection ``name`` of ``dim``-d vectors (created when missing).

    Args:
        name: collection name.
        dim: vector dimension.
        root: unused (Qdrant keeps its own storage); part of every backend's signature.
        options: server ``url`` (wins) or local-mode ``path``, and upload settings.

    Raises:
        ConfigError: neither ``url`` nor ``path`` is set, or the collection does not fit.
        ServiceUnavailableError: the server does not answer, or another process holds the
            local-mode folder.
    """
    from qdrant_client import QdrantClient
    from qdrant_client.http.exceptions import ResponseHandlingException

    from embplat.retrieval.qdrant_index import QdrantIndex

    if options.url:
        client = QdrantClient(
            url=options.url,
            api_key=options.api_key,
            prefer_grpc=options.prefer_grpc,
            grpc_port=options.grpc_port,
        )
        release = client.close
    elif options.path is not None:
        client, release = _local_client(Path(options.path))
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
            upload_batch=options.upload_batch,
            parallel=options.parallel,
            max_retries=options.max_retries,
            release=release,
        )
    except BaseException as exc:
        release()
        if isinstance(exc, ResponseHandlingException) or _grpc_unavailable(exc):
            port = f" (gRPC port {options.grpc_port})" if options.prefer_grpc else ""
            raise ServiceUnavailableError(
                f"Qdrant at {options.url}{port} did not answer ({exc}); start it or unset "
                "EMBPLAT_QDRANT_URL"
            ) from exc
        raise


_LOCAL_LOCK = threading.Lock()
#: resolved folder -> [its local-mode client, how many open indexes use it]
_LOCAL: dict[str, list[Any]] = {}


def _local_client(path: Path) -> tuple[QdrantClient, Any]:
    """This process's local-mode client of ``path`` and a function releasing one use of it.

    Raises:
        ServiceUnavailableError: another process holds the folder.
    """
    from qdrant_client import QdrantClient

    key = str(path.resolve())
    with _LOCAL_LOCK:
        if key not in _LOCAL:
            path.mkdir(parents=True, exist_ok=True)
            try:
                _LOCAL[key] = [QdrantClient(path=key), 0]
            except RuntimeError as exc:  # the folder is locked by another client
                raise ServiceUnavailableError(
                    f"local Qdrant folder {path} is in use by another process ({exc}); "
                    "stop it or run a Qdrant server"
                ) from exc
        entry = _LOCAL[key]
        entry[1] += 1

    def release() -> None:
        with _LOCAL_LOCK:
            entry[1] -= 1
            if entry[1] == 0 and _LOCAL.get(key) is entry:
                del _LOCAL[key]
                entry[0].close()

    return entry[0], release


def _grpc_unavailable(exc: BaseException) -> bool:
    """True for a gRPC call that found no server (``prefer_grpc`` clients)."""
    import grpc

    return isinstance(exc, grpc.RpcError) and exc.code() == grpc.StatusCode.UNAVAILABLE
