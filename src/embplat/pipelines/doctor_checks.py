"""The per-index checks of ``platform doctor`` and what they report: findings, the index
opened (or salvaged when damaged), points present but unrecorded, orphans (image and caption
points), bad vectors and stale payloads; and the cheap check ingest runs for points an index
lost."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from embplat.catalog import audit, repo
from embplat.catalog.db import transaction
from embplat.catalog.models import Collection
from embplat.errors import IndexDamagedError
from embplat.ingest.embedding import payload_for
from embplat.pipelines.caption_points import orphan_caption_points
from embplat.pipelines.context import Context
from embplat.retrieval import VectorIndex, point_id

log = logging.getLogger(__name__)

#: Points read back from an index per ``get`` call.
CHUNK = 1000
#: A stored vector whose norm is this far from 1 was not written by the platform.
_NORM_TOLERANCE = 1e-3
#: Payload fields compared with the catalog.
_PAYLOAD_KEYS = ("image_id", "class", "split", "sha256", "path", "kind")


@dataclass
class Finding:
    """One kind of drift found in one place.

    Attributes:
        check: what was checked (``damaged_index``, ``missing_points``, ``unrecorded_points``,
            ``orphan_points``, ``orphan_caption_points``, ``bad_vectors``, ``stale_payloads``,
            ``missing_files``, ``dead_jobs``, ``reembed_failed``, ``missing_checkpoints``,
            ``missing_vectors``).
        where: the collection, or ``catalog`` / ``jobs`` / ``models``.
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


def open_checked(
    ctx: Context, coll: Collection, report: DoctorReport, repair: bool
) -> VectorIndex | None:
    """The collection's index; a damaged one is moved aside and salvaged with ``repair``."""
    try:
        return ctx.spaces.index(coll.name, coll.dim)
    except IndexDamagedError as exc:
        finding = Finding("damaged_index", coll.name, 1, str(exc))
        report.findings.append(finding)
        if not repair:
            return None
    from embplat.retrieval.factory import quarantine_index, salvage_points

    moved = quarantine_index(ctx.spaces.backend, name=coll.name, root=ctx.spaces.index_root)
    ids, vectors, payloads = (
        salvage_points(ctx.spaces.backend, path=moved, dim=coll.dim)
        if moved is not None
        else ([], np.empty((0, coll.dim), np.float32), [])
    )
    index = ctx.spaces.index(coll.name, coll.dim)
    keep = [i for i, v in enumerate(vectors) if np.isfinite(v).all() and v.any()]
    for start in range(0, len(keep), CHUNK):
        rows = keep[start : start + CHUNK]
        index.upsert([ids[i] for i in rows], vectors[rows], [payloads[i] for i in rows])
    index.flush()
    finding.repaired = 1
    finding.message += f" — moved aside to {moved}; {len(keep)} points salvaged"
    log.warning("index %s was damaged: %s", coll.name, finding.message)
    return index


def check_extra(
    ctx: Context,
    index: VectorIndex,
    coll: Collection,
    extra: Sequence[str],
    report: DoctorReport,
    repair: bool,
) -> None:
    """Points the catalog does not record. Image points: recorded when their image is
    cataloged (a crash between index flush and catalog commit), deleted otherwise. Caption
    points (never recorded): deleted when their image or caption left the catalog."""
    unrecorded: list[tuple[int, str]] = []
    orphans: list[str] = []
    captions: dict[str, dict[str, Any]] = {}
    for start in range(0, len(extra), CHUNK):
        chunk = list(extra[start : start + CHUNK])
        _, payloads = index.get(chunk)
        wanted = [int(p.get("image_id", -1)) for p in payloads]
        with ctx.sessions() as session:
            images = {i.id: i for i in repo.get_images(session=session, ids=wanted)}
        for pid, payload, image_id in zip(chunk, payloads, wanted, strict=True):
            if payload.get("kind", "image") == "caption":
                captions[pid] = payload
            if payload.get("kind", "image") != "image":
                continue  # label points (DeViSE) are not catalog images
            image = images.get(image_id)
            if image is not None and pid == point_id(image.sha256, coll.model.name):
                unrecorded.append((image_id, pid))
            else:
                orphans.append(pid)
    if unrecorded:
        f = add_finding(
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
    message = "in the index for no cataloged image; --repair deletes them"
    _orphans(report, "orphan_points", coll, orphans, message, index, repair)
    _check_captions(ctx, index, coll, captions, report, repair)


def _orphans(
    report: DoctorReport,
    kind: str,
    coll: Collection,
    ids: list[str],
    message: str,
    index: VectorIndex,
    repair: bool,
) -> None:
    """Report points ``ids`` (if any) as finding ``kind``; ``repair`` deletes them."""
    if not ids:
        return
    f = add_finding(report, kind, coll, ids, message)
    if repair:
        index.delete(ids)
        index.flush()
        f.repaired = len(ids)


def _check_captions(
    ctx: Context,
    index: VectorIndex,
    coll: Collection,
    points: dict[str, dict[str, Any]],
    report: DoctorReport,
    repair: bool,
) -> None:
    """Caption points whose image or caption left the catalog: deleted with ``repair``."""
    orphans = orphan_caption_points(ctx, points) if points else []
    message = "caption points whose image or caption is no longer cataloged; --repair deletes them"
    _orphans(report, "orphan_caption_points", coll, orphans, message, index, repair)


def check_points(
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
    for start in range(0, len(pids), CHUNK):
        chunk = list(pids[start : start + CHUNK])
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
        add_finding(
            report,
            "bad_vectors",
            coll,
            bad,
            "stored vectors are not finite unit vectors, "
            "or their image left the catalog; --repair embeds those images again",
        )
    if stale:
        f = add_finding(
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


def add_finding(
    report: DoctorReport, check: str, coll: Collection, items: Sequence[str], message: str
) -> Finding:
    finding = Finding(check, coll.name, len(items), message, [str(i) for i in items[:5]])
    report.findings.append(finding)
    return finding


def forget_lost_points(ctx: Context, coll: Collection) -> int:
    """Points the catalog records but the index no longer holds (its folder deleted or
    reverted) lose their catalog rows, so the next embedding pass embeds them again.

    Cheap when nothing is lost: one count on each side.

    Returns:
        How many points were forgotten.
    """
    index = ctx.spaces.index(coll.name, coll.dim)
    with ctx.sessions() as session:
        recorded_n = repo.count_embeddings(session=session, collection_id=coll.id)
    if index.count({"kind": "image"}) >= recorded_n:
        return 0
    with ctx.sessions() as session:
        recorded = audit.recorded_points(session=session, collection_id=coll.id)
    present = set(index.ids())
    lost = [pid for pid in recorded if pid not in present]
    with transaction(ctx.sessions) as session:
        audit.forget_points(session=session, collection_id=coll.id, point_ids=lost)
    if lost:
        log.warning(
            "index %s had lost %d of the %d points the catalog records; embedding them again",
            coll.name,
            len(lost),
            len(recorded),
        )
    return len(lost)
