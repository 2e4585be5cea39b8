"""Use cases: ingest a tree, enrol a new class from a folder, embed what is pending."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.errors import DataError
from embplat.ingest.batches import batch_failures, plan_batches
from embplat.ingest.embedding import EmbedReport
from embplat.ingest.register import RegisterReport, register_items
from embplat.ingest.scan import IMAGE_EXTENSIONS, ScanItem, scan_tree
from embplat.pipelines.context import Context
from embplat.pipelines.progress import NoProgress, ProgressSink
from embplat.workers.runner import JobHandle, run_in_process

log = logging.getLogger(__name__)


@dataclass
class IngestResult:
    """Summary of one ingest run, as printed by the CLI and stored in the job row."""

    root: str
    layout: str
    job_id: int = 0
    scanned: int = 0
    added: int = 0
    already: int = 0
    embedded: int = 0
    queued: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    classes: int = 0

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form (for ``--json`` and the job's result)."""
        return dict(self.__dict__)


def ingest_tree(
    ctx: Context, root: Path, *, embed: bool = True, progress: ProgressSink | None = None
) -> IngestResult:
    """Scan ``root`` (AwA2 layout or class-per-folder), catalog new images, embed pending ones.

    Raises:
        DataError: ``root`` is missing or holds no class folders.
    """
    progress = progress or NoProgress()
    scan = scan_tree(root.absolute())  # workers must resolve the stored paths
    if embed and ctx.dispatch is not None:
        ctx.dispatch.check()
    with transaction(ctx.sessions) as session:
        roles = {c: "unseen" for c in scan.unseen}
        class_ids = repo.ensure_classes(
            session=session, names=scan.classes, roles=roles, source=str(scan.root)
        )
    result = IngestResult(
        root=str(scan.root),
        layout=scan.layout,
        scanned=len(scan.items),
        warnings=list(scan.warnings),
        classes=len(scan.classes),
    )

    def work(job: JobHandle) -> dict[str, object]:
        reg = _register(ctx, scan.items, class_ids, set(scan.unseen), None, progress)
        _merge(result, reg, _embed_pending(ctx, progress, job, result) if embed else None)
        return result.as_dict()

    result.job_id, _ = run_in_process(
        sessions=ctx.sessions,
        kind="ingest",
        params={"root": str(root), "embed": embed},
        work=work,
    )
    return result


def enrol_class(
    ctx: Context, name: str, folder: Path, *, progress: ProgressSink | None = None
) -> IngestResult:
    """Register class ``name`` and enrol every image in ``folder`` (train split), no retraining.

    Raises:
        DataError: the folder is missing or holds no images.
    """
    progress = progress or NoProgress()
    items = _folder_items(name, folder.absolute())
    if ctx.dispatch is not None:
        ctx.dispatch.check()
    with transaction(ctx.sessions) as session:
        class_ids = repo.ensure_classes(session=session, names=[name], source=str(folder))
    result = IngestResult(root=str(folder), layout="class", scanned=len(items), classes=1)

    def work(job: JobHandle) -> dict[str, object]:
        reg = _register(ctx, items, class_ids, set(), "train", progress)
        _merge(result, reg, _embed_pending(ctx, progress, job, result))
        return result.as_dict()

    result.job_id, _ = run_in_process(
        sessions=ctx.sessions,
        kind="enrol",
        params={"class": name, "folder": str(folder)},
        work=work,
    )
    return result


def _folder_items(name: str, folder: Path) -> list[ScanItem]:
    """Image files directly inside ``folder``, all labelled ``name``."""
    if not folder.is_dir():
        raise DataError(f"folder {folder} does not exist")
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    if not files:
        raise DataError(f"folder {folder} holds no image files")
    return [ScanItem(path=p, class_name=name) for p in files]


def _register(
    ctx: Context,
    items: Sequence[ScanItem],
    class_ids: dict[str, int],
    unseen: set[str],
    force_split: str | None,
    progress: ProgressSink,
) -> RegisterReport:
    return register_items(
        items,
        sessions=ctx.sessions,
        class_ids=class_ids,
        unseen=unseen,
        valid_fraction=ctx.ingest.valid_fraction,
        max_pixels=ctx.ingest.max_pixels,
        batch_size=ctx.ingest.batch_size,
        force_split=force_split,
        progress=progress.task("validating images", len(items)),
    )


def _embed_pending(
    ctx: Context, progress: ProgressSink, job: JobHandle, result: IngestResult
) -> EmbedReport:
    """Embed every cataloged image the active index lacks (also heals an interrupted run).

    The images are cut into the job's batches; local mode runs them here, server mode hands
    them to workers and leaves the job running (``platform jobs`` follows it).
    """
    encoder, _, collection_id = ctx.registered()
    with ctx.sessions() as session:
        pending = repo.pending_image_ids(session=session, collection_id=collection_id)
    seqs = plan_batches(
        sessions=ctx.sessions,
        job_id=job.job_id,
        image_ids=pending,
        batch_size=ctx.ingest.batch_size,
    )
    if ctx.dispatch is not None and seqs:
        ctx.dispatch.send(job.job_id, seqs)
        job.detach()
        result.queued = len(pending)
        return EmbedReport()
    bar = progress.task(f"embedding with {encoder.key}", len(pending))

    def advance(n: int) -> None:
        bar(n)
        job.advance(n)

    report = EmbedReport()
    for seq in seqs:
        out = ctx.run_embed_batch(job.job_id, seq, progress=advance)
        report.done += out["embedded"]
    report.failed = batch_failures(sessions=ctx.sessions, job_id=job.job_id)
    job.failed = len(report.failed)
    return report


def _merge(result: IngestResult, reg: RegisterReport, emb: EmbedReport | None) -> None:
    result.added = len(reg.added)
    result.already = reg.already
    result.skipped = reg.skipped + (emb.failed if emb else [])
    result.embedded = emb.done if emb else 0
