"""Open the Qdrant backend from its options: a server client, or qdrant-client's embedded
local mode in a folder, chosen once here."""

from __future__ import annotations

from pathlib import Path

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
    elif options.path is not None:
        Path(options.path).mkdir(parents=True, exist_ok=True)
        try:
            client = QdrantClient(path=str(options.path))
        except RuntimeError as exc:  # the folder is locked by another client
            raise ServiceUnavailableError(
                f"local Qdrant folder {options.path} is in use by another process ({exc}); "
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
            upload_batch=options.upload_batch,
            owns_client=True,
            parallel=options.parallel,
            max_retries=options.max_retries,
        )
    except BaseException as exc:
        client.close()
        if isinstance(exc, ResponseHandlingException) or _grpc_unavailable(exc):
            port = f" (gRPC port {options.grpc_port})" if options.prefer_grpc else ""
            raise ServiceUnavailableError(
                f"Qdrant at {options.url}{port} did not answer ({exc}); start it or unset "
                "EMBPLAT_QDRANT_URL"
            ) from exc
        raise


def _grpc_unavailable(exc: BaseException) -> bool:
    """True for a gRPC call that found no server (``prefer_grpc`` clients)."""
    import grpc

    return isinstance(exc, grpc.RpcError) and exc.code() == grpc.StatusCode.UNAVAILABLE
