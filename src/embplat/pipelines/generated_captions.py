"""Use case: caption cataloged images with a captioning model, as a recorded ``caption`` job
of batches (run here, or by the workers), resumable like embedding.

Each batch decodes its images, generates the best caption by beam search, stores it in the
catalog (``source="generated"``, ordinal 0, ``model`` the captioner; a newer generated
caption replaces an older one), writes its caption point into the sentence index
(``pipelines.sentences``, the point id derived from the caption's row), and only then records
the batch done. An interrupted batch stays unfinished for ``platform jobs resume``; a batch
run twice writes the same rows and points again under the same keys and ids.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.errors import DataError
from embplat.jobs.runner import CAPTION_BATCH, JobHandle, Task
from embplat.models.recipes.caption.config import check_beam
from embplat.pipelines.captioning import CHUNK, load_captioner
from embplat.pipelines.context import Context
from embplat.pipelines.sentences import DEFAULT_TEXT_ENCODER, index_captions, text_encoder
from embplat.progress import NoProgress, ProgressSink, deferred_task

log = logging.getLogger(__name__)

#: images per batch of a caption job
BATCH_SIZE = 64
SOURCE = "generated"


def caption_images(
    ctx: Context,
    image_ids: Sequence[int] | None = None,
    *,
    model: str | None = None,
    beam: int = 3,
    text_encoder_name: str = DEFAULT_TEXT_ENCODER,
    uncaptioned_only: bool = True,
    progress: ProgressSink | None = None,
) -> dict[str, Any]:
    """Caption ``image_ids`` (None: every cataloged image) with ``model`` (default: the
    newest captioner) as a recorded ``caption`` job.

    Args:
        uncaptioned_only: skip images that already have a caption (from a file, or
            generated); False captions them again (a generated caption is replaced).

    Returns:
        ``job_id``, ``model``, ``captioned``, ``failed`` (path, reason) pairs and ``queued``
        (images handed to workers).

    Raises:
        ConfigError: not a captioning model, a bad beam, an unknown text encoder.
    """
    from embplat.ingest.batches import batch_failures, plan_batches

    check_beam(beam, "--beam")
    name = load_captioner(ctx, model).name  # fails fast here, not in every batch
    text_encoder(text_encoder_name, ctx)  # an unknown text encoder fails before the job
    with ctx.sessions() as session:
        ids = list(image_ids) if image_ids is not None else repo.all_image_ids(session=session)
        if uncaptioned_only:
            have = set(repo.captioned_image_ids(session=session, image_ids=ids))
            ids = [i for i in ids if i not in have]
    params = {"model": name, "beam": beam, "text_encoder": text_encoder_name}
    sink = progress or NoProgress()

    def work(job: JobHandle) -> dict[str, Any]:
        seqs = plan_batches(
            sessions=ctx.sessions, job_id=job.job_id, image_ids=ids, batch_size=BATCH_SIZE
        )
        bar = deferred_task(sink, f"captioning with {name}", len(ids))

        def advance(n: int) -> None:
            bar(n)
            job.advance(n)

        done = job.submit([caption_batch_task(ctx, job.job_id, seq, advance) for seq in seqs])
        failed = batch_failures(sessions=ctx.sessions, job_id=job.job_id)
        job.failed = len(failed)
        return {
            "captioned": sum(int(r["captioned"]) for r in done.results),
            "failed": [list(f) for f in failed],
            "queued": len(ids) if done.queued else 0,
        }

    job_id, summary = ctx.runner.run(kind="caption", params=params, work=work)
    return {"job_id": job_id, "model": name, **summary}


def caption_folder(
    ctx: Context,
    root: Path,
    *,
    model: str,
    beam: int = 3,
    text_encoder_name: str = DEFAULT_TEXT_ENCODER,
    progress: ProgressSink | None = None,
) -> dict[str, Any]:
    """Caption the cataloged images under ``root`` that have no caption yet (``platform
    ingest ROOT --caption-with MODEL``); as :func:`caption_images`."""
    base = str(root.absolute())
    prefix = base if base.endswith(os.sep) else base + os.sep
    with ctx.sessions() as session:
        ids = [r.image_id for r in repo.images_with_prefix(session=session, prefix=prefix)]
    return caption_images(
        ctx, ids, model=model, beam=beam, text_encoder_name=text_encoder_name, progress=progress
    )


def caption_batch_task(
    ctx: Context, job_id: int, seq: int, progress: Callable[[int], None] | None = None
) -> Task:
    """Batch ``seq`` of caption job ``job_id`` for the job runner (``caption_batch`` on a
    worker, :func:`run_caption_batch` here)."""
    return Task(CAPTION_BATCH, (job_id, seq), lambda: run_caption_batch(ctx, job_id, seq, progress))


def run_caption_batch(
    ctx: Context, job_id: int, seq: int, progress: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Caption batch ``seq`` of job ``job_id`` (here, or inside a worker); idempotent.

    Returns:
        ``job``, ``seq``, ``captioned``, ``failed`` and the job's ``job_state``.
    """
    from embplat.ingest.batches import refresh_job
    from embplat.ingest.images import load_rgb

    with transaction(ctx.sessions) as session:
        params = repo.get_job(session=session, job_id=job_id).params or {}
        ids = repo.start_batch(session=session, job_id=job_id, seq=seq)
        paths = {i.id: i.path for i in repo.get_images(session=session, ids=ids)}
    captioner = load_captioner(ctx, params["model"])
    beam = int(params.get("beam", 3))
    failed: list[tuple[str, str]] = []
    decoded: list[tuple[int, Any]] = []
    for image_id, path in paths.items():
        try:
            decoded.append((image_id, load_rgb(Path(path), max_pixels=ctx.ingest.max_pixels)))
        except DataError as exc:
            failed.append((path, str(exc).removeprefix(f"{path}: ")))
    rows: list[dict[str, Any]] = []
    for start in range(0, len(decoded), CHUNK):  # one forward pass and beam search a chunk
        part = decoded[start : start + CHUNK]
        found = captioner.caption([image for _, image in part], beam=beam, n=1)
        rows += [
            {"image_id": image_id, "text": best[0][0], "ordinal": 0, "source": SOURCE,
             "model": captioner.name}
            for (image_id, _), best in zip(part, found, strict=True)
        ]  # fmt: skip
        if progress:
            progress(len(part))
    with transaction(ctx.sessions) as session:
        repo.add_captions(session=session, rows=rows)
    encoder = params.get("text_encoder", DEFAULT_TEXT_ENCODER)
    index_captions(ctx, image_ids=[r["image_id"] for r in rows], text_encoder_name=encoder)
    with transaction(ctx.sessions) as session:
        repo.finish_batch(session=session, job_id=job_id, seq=seq, done=len(rows), failed=failed)
    state = refresh_job(sessions=ctx.sessions, job_id=job_id)
    return {"job": job_id, "seq": seq, "captioned": len(rows), "failed": len(failed),
            "job_state": state}  # fmt: skip
