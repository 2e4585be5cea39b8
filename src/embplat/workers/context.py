"""Build the explicit ``Context`` from ``Settings`` (shared by the CLI and Celery workers)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from embplat.catalog.db import ensure_schema, make_engine, session_factory
from embplat.config import Settings
from embplat.jobs.runner import InProcessRunner, JobRunner
from embplat.models.registry import builtin_key
from embplat.pipelines.context import Context, EmbedOptions, IngestOptions, Spaces
from embplat.retrieval import VectorIndex, open_index

if TYPE_CHECKING:
    from embplat.models.registry import ImageEncoder


def build_context(settings: Settings, *, in_process: bool = False) -> Context:
    """Open the catalog (bringing an SQLite schema to head) and wire index, encoder and the
    job runner: the one place that decides where jobs run.

    Args:
        settings: the configuration.
        in_process: run every job's tasks here even in server mode (what a worker does);
            otherwise server mode (a broker is configured) sends them to the workers.

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
        options = settings.index_options()
        return open_index(backend, name=name, dim=dim, root=index_root, options=options)

    @functools.cache
    def encoder() -> ImageEncoder:
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
    runner: JobRunner = InProcessRunner(sessions)
    if settings.server_mode and not in_process:
        from embplat.workers.celery_runner import CeleryRunner

        runner = CeleryRunner(sessions, settings)
    elif not settings.server_mode:
        # a local job whose process was killed would stay `running` forever: close it
        from embplat.pipelines.jobs import interrupt_dead_jobs

        interrupt_dead_jobs(sessions)
    spaces = Spaces(
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
    )
    return Context(
        sessions=sessions,
        spaces=spaces,
        runner=runner,
        home=settings.home,
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
