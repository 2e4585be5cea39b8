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
- vectors are finite unit vectors (else re-embedded) and payloads match the catalog (class,
  split, path, sha256; else rewritten with the stored vector).

Over the catalog: image files gone from disk (removed with ``--repair``, unless most of the
catalog is gone, which looks like an unmounted or moved folder), and in-process jobs whose
process died (marked ``interrupted``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embplat.catalog import audit, repo
from embplat.catalog.db import transaction
from embplat.catalog.models import Collection
from embplat.errors import IndexDamagedError
from embplat.ingest.embedding import embed_images, payload_for
from embplat.pipelines.context import Context
from embplat.retrieval import VectorIndex, point_id

log = logging.getLogger(__name__)

#: Points read back from an index per ``get`` call.
_CHUNK = 1000
#: A stored vector whose norm is this far from 1 was not written by the platform.
_NORM_TOLERANCE = 1e-3
#: Payload fields compared with the catalog.
_PAYLOAD_KEYS = ("image_id", "class", "split", "sha256", "path", "kind")
#: Above this share of the catalog missing on disk, files are not removed automatically.
_MISSING_GUARD = 0.5


@dataclass
class Finding:
    """One kind of drift found in one place.

    Attributes:
        check: what was checked (``damaged_index``, ``missing_points``, ``unrecorded_points``,
            ``orphan_points``, ``bad_vectors``, ``stale_payloads``, ``missing_files``,
            ``dead_jobs``, ``reembed_failed``).
        where: the collection, or ``catalog`` / ``jobs``.
        count: how many items are affected.
        message: what it means and how it is repaired.
        examples: a few of the affected ids or paths.
        repaired: how many of them ``--repair`` fixed.
    """

    check: str
    where: str
    count: int
    message: str
    examples: list[str] = field(default_factory=list)
    repaired: int = 0

    @property
    def resolved(self) -> bool:
        """True once every affected item was repaired."""
        return self.repaired >= self.count


@dataclass
class DoctorReport:
    """Everything ``doctor`` found, and what each collection holds after it ran."""

    repair: bool
    findings: list[Finding] = field(default_factory=list)
    #: collection -> {recorded, points, pending, reembedded}
    collections: dict[str, dict[str, int]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        """True when nothing is left unrepaired."""
        return all(f.resolved for f in self.findings)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (``--json``)."""
        return {
            "healthy": self.healthy,
            "repair": self.repair,
            "findings": [{**asdict(f), "resolved": f.resolved} for f in self.findings],
            "collections": self.collections,
            "skipped": self.skipped,
        }


def run_doctor(ctx: Context, *, repair: bool = False) -> DoctorReport:
    """Compare the catalog with every index of the configured backend; repair on request.

    Args:
        repair: fix what is found (otherwise only report).

    Returns:
        The findings; ``healthy`` is True when nothing is left to repair.
    """
    report = DoctorReport(repair=repair)
    _check_jobs(ctx, report)
    _check_files(ctx, report, repair)
    with ctx.sessions() as session:
        collections = audit.list_collections(session=session)
    for coll in collections:
        if coll.backend != ctx.backend:
            report.skipped.append(
                f"{coll.name}: stored with backend {coll.backend}, this run uses {ctx.backend}"
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
    if len(gone) > _MISSING_GUARD * len(rows):
        finding.message = (
            f"{len(gone)} of {len(rows)} cataloged files are gone, which looks like an "
            "unmounted or moved folder: not removed. Re-ingest from the new place (paths are "
            "updated) or remove them with `platform images delete`"
        )
        return
    from embplat.pipelines.remove import remove_images

    finding.repaired = remove_images(ctx, [image_id for image_id, _ in gone])


def _check_collection(ctx: Context, coll: Collection, report: DoctorReport, repair: bool) -> None:
    index = _open(ctx, coll, report, repair)
    if index is None:
        return
    with ctx.sessions() as session:
        recorded = audit.recorded_points(session=session, collection_id=coll.id)
    present = set(index.ids())
    missing = [pid for pid in recorded if pid not in present]
    common = [pid for pid in recorded if pid in present]
    todo: dict[str, list[str]] = {}  # finding check -> points to embed again
    if missing:
        _add(
            report,
            "missing_points",
            coll,
            missing,
            "recorded in the catalog but not in the index; --repair embeds those images again",
        )
        todo["missing_points"] = missing
    _check_extra(ctx, index, coll, sorted(present.difference(recorded)), report, repair)
    bad = _check_points(ctx, index, coll, common, recorded, report, repair)
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


def _open(ctx: Context, coll: Collection, report: DoctorReport, repair: bool) -> VectorIndex | None:
    """The collection's index; a damaged one is moved aside and salvaged with ``repair``."""
    try:
        return ctx.index(coll.name, coll.dim)
    except IndexDamagedError as exc:
        finding = Finding("damaged_index", coll.name, 1, str(exc))
        report.findings.append(finding)
        if not repair:
            return None
    from embplat.retrieval.factory import quarantine_index, salvage_points

    moved = quarantine_index(ctx.backend, name=coll.name, root=ctx.index_root or ctx.home / "index")
    ids, vectors, payloads = (
        salvage_points(ctx.backend, path=moved, dim=coll.dim)
        if moved is not None
        else ([], np.empty((0, coll.dim), np.float32), [])
    )
    index = ctx.index(coll.name, coll.dim)
    keep = [i for i, v in enumerate(vectors) if np.isfinite(v).all() and v.any()]
    for start in range(0, len(keep), _CHUNK):
        rows = keep[start : start + _CHUNK]
        index.upsert([ids[i] for i in rows], vectors[rows], [payloads[i] for i in rows])
    index.flush()
    finding.repaired = 1
    finding.message += f" — moved aside to {moved}; {len(keep)} points salvaged"
    log.warning("index %s was damaged: %s", coll.name, finding.message)
    return index


def _check_extra(
    ctx: Context,
    index: VectorIndex,
    coll: Collection,
    extra: Sequence[str],
    report: DoctorReport,
    repair: bool,
) -> None:
    """Image points the catalog does not record: recorded when their image is cataloged
    (a crash between index flush and catalog commit), deleted otherwise."""
    unrecorded: list[tuple[int, str]] = []
    orphans: list[str] = []
    for start in range(0, len(extra), _CHUNK):
        chunk = list(extra[start : start + _CHUNK])
        _, payloads = index.get(chunk)
        wanted = [int(p.get("image_id", -1)) for p in payloads]
        with ctx.sessions() as session:
            images = {i.id: i for i in repo.get_images(session=session, ids=wanted)}
        for pid, payload, image_id in zip(chunk, payloads, wanted, strict=True):
            if payload.get("kind", "image") != "image":
                continue  # label points (DeViSE) are not catalog images
            image = images.get(image_id)
            if image is not None and pid == point_id(image.sha256, coll.model.name):
                unrecorded.append((image_id, pid))
            else:
                orphans.append(pid)
    if unrecorded:
        f = _add(
            report,
            "unrecorded_points",
            coll,
            [p for _, p in unrecorded],
            "in the index "
            "but not recorded (a crash before the catalog commit); --repair records them",
        )
        if repair:
            with transaction(ctx.sessions) as session:
                repo.add_embeddings(session=session, collection_id=coll.id, points=unrecorded)
            f.repaired = len(unrecorded)
    if orphans:
        f = _add(
            report,
            "orphan_points",
            coll,
            orphans,
            "in the index for no cataloged image; --repair deletes them",
        )
        if repair:
            index.delete(orphans)
            index.flush()
            f.repaired = len(orphans)


def _check_points(
    ctx: Context,
    index: VectorIndex,
    coll: Collection,
    pids: Sequence[str],
    recorded: dict[str, int],
    report: DoctorReport,
    repair: bool,
) -> list[str]:
    """Vectors and payloads of recorded points; returns the points to re-embed (repair)."""
    bad: list[str] = []
    stale: list[tuple[str, np.ndarray, dict[str, Any]]] = []
    for start in range(0, len(pids), _CHUNK):
        chunk = list(pids[start : start + _CHUNK])
        vectors, payloads = index.get(chunk)
        with ctx.sessions() as session:
            images = {
                i.id: i for i in repo.get_images(session=session, ids=[recorded[p] for p in chunk])
            }
        norms = np.linalg.norm(vectors, axis=1)
        broken = ~np.isfinite(vectors).all(axis=1) | (np.abs(norms - 1) > _NORM_TOLERANCE)
        for row, pid in enumerate(chunk):
            image = images.get(recorded[pid])
            if broken[row] or image is None:
                bad.append(pid)
                continue
            want = payload_for(image, coll.model.name)
            if any(payloads[row].get(k) != want[k] for k in _PAYLOAD_KEYS):
                stale.append((pid, vectors[row], {**payloads[row], **want}))
    if bad:
        _add(
            report,
            "bad_vectors",
            coll,
            bad,
            "stored vectors are not finite unit vectors, "
            "or their image left the catalog; --repair embeds those images again",
        )
    if stale:
        f = _add(
            report,
            "stale_payloads",
            coll,
            [s[0] for s in stale],
            "payloads disagree with the catalog (class, split, path); --repair rewrites them",
        )
        if repair:
            index.upsert(
                [s[0] for s in stale], np.stack([s[1] for s in stale]), [s[2] for s in stale]
            )
            index.flush()
            f.repaired = len(stale)
    return bad


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
    if model.kind == "encoder" and ctx.registered()[2] != coll.id:
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
    space = ctx.space(None if model.kind == "encoder" else model.name)
    space.index.delete(list(pids))
    space.index.flush()
    with transaction(ctx.sessions) as session:
        audit.forget_points(session=session, collection_id=coll.id, point_ids=pids)
    out = embed_images(
        sorted({recorded[pid] for pid in pids}),
        sessions=ctx.sessions,
        encoder=space.encoder,
        index=space.index,
        collection_id=coll.id,
        batch_size=ctx.embed.batch_size,
        num_workers=ctx.embed.num_workers,
        commit_every=ctx.embed.commit_every,
        max_pixels=ctx.ingest.max_pixels,
    )
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


def _add(
    report: DoctorReport, check: str, coll: Collection, items: Sequence[str], message: str
) -> Finding:
    finding = Finding(check, coll.name, len(items), message, [str(i) for i in items[:5]])
    report.findings.append(finding)
    return finding
