"""Build the explicit ``Context`` from ``Settings`` (shared by the CLI and Celery workers)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from embplat.catalog.db import ensure_schema, make_engine, session_factory
from embplat.config import Settings
from embplat.models.registry import builtin_key
from embplat.pipelines.context import Context, EmbedOptions, IngestOptions
from embplat.retrieval import VectorIndex, open_index

if TYPE_CHECKING:
    from embplat.models.encoders import TorchImageEncoder


def build_context(settings: Settings, *, dispatch: bool = True) -> Context:
    """Open the catalog (bringing an SQLite schema to head) and wire index and encoder.

    Args:
        settings: the configuration.
        dispatch: in server mode (a broker is configured) send embedding batches to workers;
            False runs them here (what a worker does).

    In local mode, jobs of this host whose process is gone are marked ``interrupted``
    (``embplat.pipelines.jobs.interrupt_dead_jobs``).

    Raises:
        ServiceUnavailableError: the catalog does not answer or needs ``platform db upgrade``.
    """
    engine = make_engine(settings.catalog_url)
    ensure_schema(engine, auto_upgrade=engine.dialect.name == "sqlite")
    backend = settings.index_backend
    index_root = settings.home / "index"

    def opener(name: str, dim: int) -> VectorIndex:
        q, ix = settings.qdrant, settings.index
        return open_index(
            backend,
            name=name,
            dim=dim,
            root=index_root,
            qdrant_url=q.url,
            qdrant_api_key=q.api_key,
            qdrant_path=settings.qdrant_path,
            hnsw_m=ix.hnsw_m,
            ef_construction=ix.ef_construction,
            ef_search=ix.ef_search,
            buffer_limit=ix.buffer_limit,
            lock_timeout=ix.lock_timeout,
            upload_batch=q.upload_batch,
            qdrant_prefer_grpc=q.prefer_grpc,
            qdrant_grpc_port=q.grpc_port,
            qdrant_parallel=q.parallel,
            qdrant_max_retries=q.max_retries,
        )

    @functools.cache
    def encoder() -> TorchImageEncoder:
        from embplat.models.encoders import default_torch_threads, get_encoder

        e = settings.embed
        return get_encoder(
            e.encoder,
            weights=e.weights,
            image_size=e.image_size,
            device=e.device,
            threads=e.threads or default_torch_threads(e.num_workers),
            amp=e.amp,
            jpeg_draft=e.jpeg_draft,
            gpu_decode=e.gpu_decode,
        )

    sessions = session_factory(engine)
    dispatcher = None
    if dispatch and settings.server_mode:
        from embplat.workers.dispatch import CeleryDispatcher

        dispatcher = CeleryDispatcher(settings)
    elif not settings.server_mode:
        # a local job whose process was killed would stay `running` forever: close it
        from embplat.pipelines.jobs import interrupt_dead_jobs

        interrupt_dead_jobs(sessions)
    return Context(
        dispatch=dispatcher,
        sessions=sessions,
        open_index=opener,
        make_encoder=encoder,
        encoder_key=builtin_key(
            settings.embed.encoder, settings.embed.weights, settings.embed.image_size
        ),
        backend=backend,
        home=settings.home,
        index_root=index_root,
        device=settings.embed.device,
        embed=EmbedOptions(
            batch_size=settings.embed.batch_size,
            num_workers=settings.embed.num_workers,
            commit_every=settings.ingest.batch_size,
        ),
        ingest=IngestOptions(
            valid_fraction=settings.ingest.valid_fraction,
            max_pixels=settings.ingest.max_pixels,
            batch_size=settings.ingest.batch_size,
        ),
    )
