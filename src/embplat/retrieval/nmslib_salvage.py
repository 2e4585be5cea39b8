"""Salvage of a damaged :class:`~embplat.retrieval.nmslib_index.NmslibIndex` directory: every
point still readable, checksums ignored (``platform doctor --repair``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from embplat.errors import IndexDamagedError
from embplat.retrieval.files import damaged, read_base, read_segment
from embplat.retrieval.nmslib_store import MANIFEST

log = logging.getLogger(__name__)


def salvage(path: Path, dim: int) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
    """Every point still readable in an index directory, checksums ignored.

    The live slots of the base file (when readable), then the writes of its segments in
    order, up to the first unreadable one. Without a readable manifest, the newest base file
    and the segments of its generation are used. Never raises for damage.

    Returns:
        ids, (N, dim) float32 vectors and payloads, aligned.
    """
    base_name, segments = _salvage_plan(path)
    points: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}
    if base_name:
        try:
            base = read_base((path / base_name).read_bytes(), path / base_name)
            if base.vectors.ndim != 2 or base.vectors.shape[1] != dim:
                raise damaged(path / base_name, f"holds vectors of shape {base.vectors.shape}")
            for i in np.flatnonzero(base.alive).tolist():
                points[base.ids[i]] = (base.vectors[i], base.payloads[i])
        except (OSError, IndexDamagedError) as exc:
            log.warning("salvage: skipping base file %s (%s)", path / base_name, exc)
    for segment in segments:
        try:
            ops = list(read_segment((path / segment).read_bytes(), path / segment, dim))
        except (OSError, IndexDamagedError) as exc:
            log.warning("salvage: stopping at segment %s (%s)", path / segment, exc)
            break
        for kind, ids, arr, payloads in ops:
            for i, pid in enumerate(ids):
                points.pop(pid, None)  # a re-written point moves to the end, as in the index
                if kind == "u":
                    points[pid] = (arr[i], payloads[i])
    ids = [pid for pid in points if isinstance(pid, str) and pid]
    vectors = np.stack([points[pid][0] for pid in ids]) if ids else np.empty((0, dim))
    return ids, vectors.astype(np.float32), [points[pid][1] for pid in ids]


def _salvage_plan(path: Path) -> tuple[str | None, list[str]]:
    """The base file and segments to salvage: the manifest's, else the newest on disk."""
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        base, segments = manifest["base"], manifest["segments"]
        if isinstance(base, str) and all(isinstance(s, str) for s in segments):
            return base, list(segments)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("salvage: manifest of %s unreadable (%s); using the newest files", path, exc)
    bases = sorted(f.name for f in path.glob("base-*.npz"))
    all_segments = sorted(f.name for f in path.glob("seg-*.npz"))
    gen = bases[-1][5:11] if bases else (all_segments[-1][4:10] if all_segments else "")
    return (bases[-1] if bases else None), [s for s in all_segments if s[4:10] == gen]
