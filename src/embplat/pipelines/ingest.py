"""Use cases: ingest a tree, enrol a new class from a folder, embed what is pending.

Both keep the index following the folder (``embplat.pipelines.sync``): rewritten files
replace their image, moved files keep theirs under the new path, deleted files leave.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embplat.catalog import repo
from embplat.catalog.db import transaction
from embplat.catalog.models import Collection
from embplat.errors import DataError
from embplat.ingest.batches import (
    batch_failures,
    plan_batches,
)
from embplat.ingest.captioned import NO_CLASS, NO_CLASS_ROLE, scan_dataset, store_captions
from embplat.ingest.embedding import EmbedReport
from embplat.ingest.register import RegisterReport, register_items
from embplat.ingest.scan import ScanItem, scan_folder
from embplat.jobs.runner import JobHandle
from embplat.models.attributes import read_awa_attributes, store_attributes
from embplat.pipelines.context import Context
from embplat.pipelines.doctor_checks import forget_lost_points
from embplat.pipelines.embed import embed_batch_task
from embplat.pipelines.remove import remove_superseded
from embplat.pipelines.sync import apply_moves, prune_vanished
from embplat.progress import NoProgress, ProgressSink, deferred_task

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
    #: cataloged images removed because their file now holds other content (or no image)
    replaced: int = 0
    #: cataloged images found at a new path (their old one gone): path updated, not re-added
    moved: int = 0
    #: cataloged images under the root whose file is gone, and how many of them were removed
    missing: int = 0
    removed: int = 0
    embedded: int = 0
    queued: int = 0
    #: caption rows stored anew, and stored rows whose text the captions file changed
    captions: int = 0
    captions_updated: int = 0
    #: the class attributes stored from an AwA2 predicate matrix (``--vectors attributes``)
    attributes: str = ""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    classes: int = 0
    models: dict[str, dict[str, int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form (for ``--json`` and the job's result)."""
        return dict(self.__dict__)


def ingest_tree(
    ctx: Context,
    root: Path,
    *,
    embed: bool = True,
    models: Sequence[str] | None = None,
    prune: bool | None = None,
    captions: Path | None = None,
    progress: ProgressSink | None = None,
) -> IngestResult:
    """Scan ``root`` (AwA2 layout, class-per-folder, Flickr8k layout, or images named by a
    ``captions`` file), catalog new images and their captions, embed pending images.

    The catalog and every index follow the folder: a cataloged file whose content changed (or
    that no longer decodes) has its previous image removed (``replaced``); content found at a
    new path whose cataloged path is gone keeps its image under the new path (``moved``);
    cataloged images under the root whose file is gone are removed (``missing``,
    ``removed``) — see :func:`embplat.pipelines.sync.prune_vanished` for when that is refused.

    Args:
        models: trained models whose indexes the images enter too (``embed_into_models``;
            None = every trained model with an index).
        prune: vanished files: None removes them unless it looks like an accident, True
            removes them anyway, False only reports them.
        captions: a captions file naming images under ``root`` (formats in
            :mod:`embplat.ingest.captioned`); its split, when given, decides the images'.

    Raises:
        DataError: ``root`` is missing or holds no class folders, or the captions file is
            unusable.
        NotFoundError, ConfigError: a named model is unknown or not a trained model.
    """
    progress = progress or NoProgress()
    # workers must resolve the stored paths
    scan = scan_dataset(root.absolute(), captions.absolute() if captions else None)
    _check_models(ctx, models if embed else None)
    if embed:
        ctx.runner.check()
    with transaction(ctx.sessions) as session:
        roles = {c: "unseen" for c in scan.unseen}
        if scan.captions:  # the neutral class of images that came without one
            roles[NO_CLASS] = NO_CLASS_ROLE
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
    if scan.meta_dir is not None:
        _store_attributes(ctx, scan.meta_dir, result)

    def work(job: JobHandle) -> dict[str, object]:
        reg = _register(ctx, result, scan.items, class_ids, set(scan.unseen), None, prune, progress)
        if scan.captions:
            stored = store_captions(scan.captions, sessions=ctx.sessions)
            result.captions, result.captions_updated = stored.added, stored.updated
            result.warnings.extend(stored.warnings)
        _merge(result, reg, _embed_pending(ctx, progress, job) if embed else None)
        return result.as_dict()

    params = {"root": str(root), "embed": embed, "prune": prune}
    result.job_id, _ = ctx.runner.run(
        kind="ingest",
        params=params | ({"captions": str(captions)} if captions else {}),
        work=work,
    )
    if embed:
        result.models = embed_into_models(ctx, models, progress)
    return result


def _store_attributes(ctx: Context, meta_dir: Path, result: IngestResult) -> None:
    """Keep the AwA2 predicate matrix beside ``classes.txt``, if any, in the data home; a
    malformed one is reported and skipped (the images are ingested all the same)."""
    try:
        table = read_awa_attributes(meta_dir)
    except DataError as exc:
        result.warnings.append(f"class attributes not loaded: {exc}")
        return
    if table is not None:
        result.attributes = store_attributes(table, ctx.home).label


def enrol_class(
    ctx: Context,
    name: str,
    folder: Path,
    *,
    models: Sequence[str] | None = None,
    prune: bool | None = None,
    progress: ProgressSink | None = None,
) -> IngestResult:
    """Register class ``name`` and enrol every image in ``folder`` (train split), no retraining.

    The images enter the active index and, by default (``models`` None), the index of every
    trained model that has one, so ``classify --model`` knows the class at once. The folder
    is the scanned root: cataloged images under it whose file is gone are handled as by
    :func:`ingest_tree` (``prune``).

    Raises:
        DataError: the folder is missing or holds no images.
        NotFoundError, ConfigError: a named model is unknown or not a trained model.
    """
    progress = progress or NoProgress()
    scan = scan_folder(folder.absolute(), name)
    items = scan.items
    _check_models(ctx, models)
    ctx.runner.check()
    with transaction(ctx.sessions) as session:
        class_ids = repo.ensure_classes(session=session, names=[name], source=str(folder))
    root = folder.absolute()
    result = IngestResult(
        root=str(root),
        layout="class",
        scanned=len(items),
        classes=1,
        warnings=list(scan.warnings),
    )

    def work(job: JobHandle) -> dict[str, object]:
        reg = _register(ctx, result, items, class_ids, set(), "train", prune, progress)
        _merge(result, reg, _embed_pending(ctx, progress, job))
        return result.as_dict()

    result.job_id, _ = ctx.runner.run(
        kind="enrol",
        params={"class": name, "folder": str(folder), "prune": prune},
        work=work,
    )
    result.models = embed_into_models(ctx, models, progress)
    return result


def embed_into_models(
    ctx: Context, models: Sequence[str] | None, progress: ProgressSink | None = None
) -> dict[str, dict[str, int]]:
    """Embed the cataloged images each trained model's index lacks, one ``embed`` job each
    (run here in local mode, by workers in server mode, like an ingest's batches).

    Args:
        models: model names; None = every trained model whose index holds images.

    Returns:
        model -> {job_id, embedded, queued, failed}.

    Raises:
        NotFoundError, ConfigError: a named model is unknown or not a trained model.
    """
    progress = progress or NoProgress()
    if models is None:
        with ctx.sessions() as session:
            models = repo.embedded_trained_models(session=session)
    _check_models(ctx, models)
    out: dict[str, dict[str, int]] = {}
    for model in models:

        def work(job: JobHandle, model: str = model) -> dict[str, Any]:
            report = _embed_pending(ctx, progress, job, model=model)
            return {"embedded": report.done, "queued": report.queued, "failed": len(report.failed)}

        job_id, summary = ctx.runner.run(kind="embed", params={"model": model}, work=work)
        out[model] = {"job_id": job_id, **summary}
    return out


def _register(
    ctx: Context,
    result: IngestResult,
    items: Sequence[ScanItem],
    class_ids: dict[str, int],
    unseen: set[str],
    force_split: str | None,
    prune: bool | None,
    progress: ProgressSink,
) -> RegisterReport:
    """Catalog the items, move the images whose file moved, remove those their files no
    longer hold, then those whose file under the root is gone (counts go into ``result``).

    Moves come before the search for vanished files: a moved file's old path is gone too.
    """
    report = register_items(
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
    result.moved = apply_moves(ctx, report.moved)
    result.replaced = remove_superseded(ctx, report.replaced)
    fresh = {*report.added, *(m.image_id for m in report.moved)}
    vanished = prune_vanished(ctx, Path(result.root), prune=prune, fresh=fresh)
    result.missing, result.removed = vanished.missing, vanished.removed
    result.warnings.extend(vanished.warnings)
    return report


def _check_models(ctx: Context, models: Sequence[str] | None) -> None:
    """Every named model exists and is a trained one (before any work is done)."""
    for model in models or ():
        ctx.spaces.collection_id(model)


def _embed_pending(
    ctx: Context,
    progress: ProgressSink,
    job: JobHandle,
    *,
    model: str | None = None,
) -> EmbedReport:
    """Embed every cataloged image a space lacks (also heals an interrupted run): the active
    index, or the trained ``model``'s (the job's ``model`` parameter says which).

    The images are cut into the job's batches, submitted to the job runner: run here, or
    handed to workers, leaving the job running (``platform jobs`` follows it).
    """
    collection_id = ctx.spaces.collection_id(model)
    if ctx.runner.in_process:  # else the workers own the index (`doctor` checks it there)
        with ctx.sessions() as session:
            coll = session.get(Collection, collection_id)
        assert coll is not None
        forget_lost_points(ctx, coll)  # a deleted or reverted index folder is embedded again
    with ctx.sessions() as session:
        pending = repo.pending_image_ids(session=session, collection_id=collection_id)
    seqs = plan_batches(
        sessions=ctx.sessions,
        job_id=job.job_id,
        image_ids=pending,
        batch_size=ctx.ingest.batch_size,
    )
    # the bar (and the encoder key it names) only where the batches run here
    label = lambda: f"embedding with {model or ctx.spaces.registered()[0].key}"  # noqa: E731
    bar = deferred_task(progress, label, len(pending))

    def advance(n: int) -> None:
        bar(n)
        job.advance(n)

    done = job.submit([embed_batch_task(ctx, job.job_id, seq, advance) for seq in seqs])
    if done.queued:
        return EmbedReport(queued=len(pending))
    report = EmbedReport(done=sum(int(r["embedded"]) for r in done.results))
    report.failed = batch_failures(sessions=ctx.sessions, job_id=job.job_id)
    job.failed = len(report.failed)
    return report


def _merge(result: IngestResult, reg: RegisterReport, emb: EmbedReport | None) -> None:
    result.added = len(reg.added)
    result.already = reg.already
    result.skipped = reg.skipped + (emb.failed if emb else [])
    result.embedded = emb.done if emb else 0
    result.queued = emb.queued if emb else 0
