"""Embedding use cases: one batch of a job (here or in a worker), or a list of images here."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from embplat.catalog import repo
from embplat.jobs.runner import EMBED_BATCH, Task

if TYPE_CHECKING:
    from embplat.ingest.embedding import EmbedReport
    from embplat.pipelines.context import Context, Space


def run_embed_batch(
    ctx: Context, job_id: int, seq: int, progress: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Embed batch ``seq`` of job ``job_id`` into its index (in this process, or inside a
    worker): the active encoder's, or the trained model named by the job's ``model``
    parameter. Idempotent: a batch run twice embeds nothing the second time.

    Returns:
        ``job``, ``seq``, ``embedded``, ``failed`` and the job's ``job_state``.
    """
    from embplat.ingest.batches import IMAGES_ALIAS, run_batch

    with ctx.sessions() as session:
        model = (repo.get_job(session=session, job_id=job_id).params or {}).get("model")
    space = ctx.spaces.space(model)
    return run_batch(
        alias=None if model else IMAGES_ALIAS,
        sessions=ctx.sessions,
        job_id=job_id,
        seq=seq,
        encoder=space.encoder,
        index=space.index,
        collection_id=space.collection_id,
        batch_size=ctx.embed.batch_size,
        num_workers=ctx.embed.num_workers,
        max_pixels=ctx.ingest.max_pixels,
        progress=progress,
    )


def embed_batch_task(
    ctx: Context, job_id: int, seq: int, progress: Callable[[int], None] | None = None
) -> Task:
    """Batch ``seq`` of job ``job_id`` as a task for the job runner (``embed_batch`` on a
    worker, :func:`run_embed_batch` here)."""
    return Task(EMBED_BATCH, (job_id, seq), lambda: run_embed_batch(ctx, job_id, seq, progress))


def embed_into(
    ctx: Context,
    space: Space,
    image_ids: Sequence[int],
    progress: Callable[[int], None] | None = None,
) -> EmbedReport:
    """Embed the given cataloged images (those the space lacks) into ``space`` here, in this
    process, with the context's batching and limits."""
    from embplat.ingest.embedding import embed_images

    return embed_images(
        image_ids,
        sessions=ctx.sessions,
        encoder=space.encoder,
        index=space.index,
        collection_id=space.collection_id,
        batch_size=ctx.embed.batch_size,
        num_workers=ctx.embed.num_workers,
        commit_every=ctx.embed.commit_every,
        max_pixels=ctx.ingest.max_pixels,
        progress=progress,
    )
