"""Use case behind ``platform doctor``: compare the catalog with every index, and repair.

Checks, for every collection of the configured backend:

- the index opens (files present, checksums match). Damaged: the folder is moved aside (never
  deleted), the points still readable in it are salvaged into a new index, and whatever could
  not be salvaged is re-embedded from the catalog;
- every point the catalog records is in the index. Missing: the catalog forgets the point and
  the image is embedded again;
- every image point in the index is recorded. The image is cataloged (a crash between the
  index flush and the catalog commit): the row is added. The image is unknown: the point is
  deleted;
- every caption point (sentence indexes, matching models; never recorded) has its image and
  its caption still cataloged. Otherwise (a removal that bypassed ``remove_images``, rows
  deleted by hand) the point is deleted;
- vectors are finite unit vectors (else re-embedded) and payloads match the catalog (class,
  split, path, sha256; else rewritten with the stored vector).

Over the catalog: image files gone from disk (removed with ``--repair``, unless most of the
catalog is gone, which looks like an unmounted or moved folder), in-process jobs whose
process died (marked ``interrupted``), and trained models whose checkpoint or label vectors
(a word-vector file, a class-attribute table) are gone from disk: reported, never repaired,
since only the user has them (or re-ingesting the dataset stores the same attribute table).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from embplat.catalog import audit, repo
from embplat.catalog.db import transaction
from embplat.catalog.models import Collection
from embplat.models.wordvectors import NAMED_SOURCES, VectorSource
from embplat.pipelines.context import Context
from embplat.pipelines.doctor_checks import (
    DoctorReport,
    Finding,
    add_finding,
    check_extra,
    check_points,
    open_checked,
)
from embplat.pipelines.embed import embed_into
from embplat.pipelines.sync import mostly_gone

log = logging.getLogger(__name__)


def run_doctor(
    ctx: Context, *, repair: bool = False, stale_after: float | None = None
) -> DoctorReport:
    """Compare the catalog with every index of the configured backend; repair on request.

    Args:
        repair: fix what is found (otherwise only report).
        stale_after: server mode: a job run by workers whose batches have not changed for
            this many seconds is stuck (its messages were lost); ``repair`` resumes it.
            None skips the check.

    Returns:
        The findings; ``healthy`` is True when nothing is left to repair.
    """
    report = DoctorReport(repair=repair)
    _check_jobs(ctx, report)
    if stale_after is not None:
        _check_stale_jobs(ctx, report, repair, stale_after)
    _check_files(ctx, report, repair)
    _check_model_files(ctx, report)
    with ctx.sessions() as session:
        collections = audit.list_collections(session=session)
    for coll in collections:
        if coll.backend != ctx.spaces.backend:
            report.skipped.append(
                f"{coll.name}: stored with backend {coll.backend}, "
                f"this run uses {ctx.spaces.backend}"
            )
            continue
        _check_collection(ctx, coll, report, repair)
    return report


def _check_jobs(ctx: Context, report: DoctorReport) -> None:
    from embplat.pipelines.jobs import interrupt_dead_jobs

    dead = interrupt_dead_jobs(ctx.sessions)
    if dead:
        report.findings.append(
            Finding(
                "dead_jobs",
                "jobs",
                len(dead),
                "jobs whose process died are now `interrupted`; `platform jobs resume ID` "
                "finishes their batches",
                [str(j) for j in dead[:5]],
                repaired=len(dead),
            )
        )


def _check_stale_jobs(ctx: Context, report: DoctorReport, repair: bool, stale_after: float) -> None:
    from embplat.pipelines.jobs import resume_job, stale_worker_jobs

    stale = stale_worker_jobs(ctx.sessions, older_than=stale_after)
    if not stale:
        return
    finding = Finding(
        "stale_jobs",
        "jobs",
        len(stale),
        f"jobs run by workers with no progress for {stale_after:.0f} s (lost broker messages "
        "or no live worker); --repair sends their unfinished batches again",
        [str(j) for j in stale[:5]],
    )
    report.findings.append(finding)
    if repair:
        for job_id in stale:
            resume_job(ctx, job_id)
        finding.repaired = len(stale)


def _check_files(ctx: Context, report: DoctorReport, repair: bool) -> None:
    with ctx.sessions() as session:
        rows = audit.image_paths(session=session)
    gone = [(image_id, path) for image_id, path in rows if not Path(path).is_file()]
    if not gone:
        return
    finding = Finding(
        "missing_files",
        "catalog",
        len(gone),
        "cataloged images whose file is gone; --repair removes them from the catalog and "
        "every index",
        [path for _, path in gone[:5]],
    )
    report.findings.append(finding)
    if not repair:
        return
    if mostly_gone(len(gone), len(rows)):
        finding.message = (
            f"{len(gone)} of {len(rows)} cataloged files are gone, which looks like an "
            "unmounted or moved folder: not removed. Re-ingest from the new place (paths are "
            "updated) or remove them with `platform images delete`"
        )
        return
    from embplat.pipelines.remove import remove_images

    finding.repaired = remove_images(ctx, [image_id for image_id, _ in gone])


def _check_model_files(ctx: Context, report: DoctorReport) -> None:
    """Trained models whose checkpoint, or whose label vectors, are gone from disk."""
    with ctx.sessions() as session:
        models = [(m.name, dict(m.config or {})) for m in repo.list_models(session=session)]
    named = {s.kind for s in NAMED_SOURCES.values()}
    checkpoints, vectors = [], []
    for name, config in models:
        checkpoint = config.get("checkpoint")
        if checkpoint and not (ctx.home / checkpoint).is_file():  # stored home-relative
            checkpoints.append(f"{name}: {checkpoint}")
        source = VectorSource.from_dict(config.get("vectors"))
        if source.kind not in named and source.path and not Path(source.path).exists():
            vectors.append(f"{name}: {source.path} ({source.origin})")
    if checkpoints:
        report.findings.append(
            Finding(
                "missing_checkpoints",
                "models",
                len(checkpoints),
                "trained models whose checkpoint file is gone: their queries and embedding "
                "fail; restore the file or train the model again",
                checkpoints[:5],
            )
        )
    if vectors:
        report.findings.append(
            Finding(
                "missing_vectors",
                "models",
                len(vectors),
                "models whose label vectors are gone: zero-shot classification and text "
                "search fail for them; restore the word-vector file, or ingest the dataset "
                "with its predicate files again (the same table is stored in the same place)",
                vectors[:5],
            )
        )


def _check_collection(ctx: Context, coll: Collection, report: DoctorReport, repair: bool) -> None:
    index = open_checked(ctx, coll, report, repair)
    if index is None:
        return
    with ctx.sessions() as session:
        recorded = audit.recorded_points(session=session, collection_id=coll.id)
    present = set(index.ids())
    missing = [pid for pid in recorded if pid not in present]
    common = [pid for pid in recorded if pid in present]
    todo: dict[str, list[str]] = {}  # finding check -> points to embed again
    if missing:
        add_finding(
            report,
            "missing_points",
            coll,
            missing,
            "recorded in the catalog but not in the index; --repair embeds those images again",
        )
        todo["missing_points"] = missing
    check_extra(ctx, index, coll, sorted(present.difference(recorded)), report, repair)
    bad = check_points(ctx, index, coll, common, recorded, report, repair)
    if bad:
        todo["bad_vectors"] = bad
    if repair and todo:
        _reembed(ctx, coll, [p for pids in todo.values() for p in pids], recorded, report)
        with ctx.sessions() as session:
            now = audit.recorded_points(session=session, collection_id=coll.id)
        present = set(index.ids())
        for f in report.findings:
            if f.where == coll.name and f.check in todo:
                f.repaired = sum(1 for p in todo[f.check] if p in now and p in present)
    with ctx.sessions() as session:
        report.collections[coll.name] = {
            "recorded": repo.count_embeddings(session=session, collection_id=coll.id),
            "points": index.count({"kind": "image"}),
            "pending": len(repo.pending_image_ids(session=session, collection_id=coll.id)),
        }


def _reembed(
    ctx: Context,
    coll: Collection,
    pids: Sequence[str],
    recorded: dict[str, int],
    report: DoctorReport,
) -> None:
    """Forget ``pids`` (index and catalog) and embed their images again with the
    collection's model: the active encoder's, or the trained model's checkpoint."""
    model = coll.model
    if model.kind == "encoder" and ctx.spaces.registered()[2] != coll.id:
        report.findings.append(
            Finding(
                "reembed_failed",
                coll.name,
                len(pids),
                f"made by encoder {model.name!r}, not the active one: run doctor again with "
                "its --encoder/--weights/--image-size to re-embed",
            )
        )
        return
    space = ctx.spaces.space(None if model.kind == "encoder" else model.name)
    space.index.delete(list(pids))
    space.index.flush()
    with transaction(ctx.sessions) as session:
        audit.forget_points(session=session, collection_id=coll.id, point_ids=pids)
    out = embed_into(ctx, space, sorted({recorded[pid] for pid in pids}))
    log.info("re-embedded %d images into %s", out.done, coll.name)
    if out.failed:
        report.findings.append(
            Finding(
                "reembed_failed",
                coll.name,
                len(out.failed),
                "images that could not be read again; fix or remove them "
                "(`platform images delete`)",
                [f"{p}: {r}" for p, r in out.failed[:5]],
            )
        )
