"""Open a vector index by backend name through the :data:`~embplat.retrieval.backends.BACKENDS`
registry; a backend's module (and its optional library) is imported only when it is opened."""

from __future__ import annotations

import importlib
import logging
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
from pydantic import BaseModel

from embplat.errors import ConfigError
from embplat.retrieval.backends import BACKENDS, Backend
from embplat.retrieval.base import VectorIndex
from embplat.retrieval.lock import WriteLock

log = logging.getLogger(__name__)


class BackendModule(Protocol):
    """What a backend module named in the registry provides."""

    def open_index(self, *, name: str, dim: int, root: Path, options: Any) -> VectorIndex:
        """Open (creating when missing) the index ``name`` of ``dim``-d vectors."""

    def salvage(self, path: Path, dim: int) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
        """Every readable point of a (quarantined) index folder; on-disk backends only."""


def collection_name(model_key: str) -> str:
    """Index/collection name for a model: ``embplat_`` + the key lowercased, runs of
    characters outside ``[a-z0-9_]`` replaced by one underscore.

    Raises:
        ConfigError: nothing usable is left of ``model_key``.
    """
    slug = re.sub(r"[^a-z0-9_]+", "_", model_key.lower()).strip("_")
    if not slug:
        raise ConfigError(f"model key {model_key!r} has no letters or digits to name an index")
    return f"embplat_{slug}"


def open_index(
    backend: str, *, name: str, dim: int, root: Path, options: BaseModel | None = None
) -> VectorIndex:
    """Open (creating when missing) the index ``name`` of ``dim``-d vectors.

    Args:
        backend: a name in :data:`~embplat.retrieval.backends.BACKENDS` (``exact``,
            ``nmslib``, ``qdrant``).
        name: index / collection name, e.g. from :func:`collection_name`.
        dim: vector dimension.
        root: folder holding the file-based indexes (each in ``root/name``).
        options: the backend's options (its registry entry's class); None: its defaults.

    Raises:
        ConfigError: unknown backend, options of another backend, or options the backend
            cannot use (e.g. ``qdrant`` with neither URL nor path).
    """
    entry = _entry(backend)
    if options is None:
        options = entry.options()
    elif not isinstance(options, entry.options):
        raise ConfigError(
            f"the {backend} backend takes {entry.options.__name__}, got "
            f"{type(options).__name__}; pass that backend's options or choose its backend"
        )
    return _module(entry).open_index(name=name, dim=dim, root=Path(root), options=options)


def quarantine_index(backend: str, *, name: str, root: Path) -> Path | None:
    """Move the file-based index ``root/name`` aside, to ``root/<name>.damaged-<UTC time>``.

    Nothing is deleted; :func:`salvage_points` reads what is left in the moved directory.

    Returns:
        The new path, or None for a backend that keeps no files (``qdrant``) or when there is
        no such directory.

    Raises:
        ConfigError: unknown backend.
        BusyError: a process is writing the index (it holds the directory's write lock).
    """
    source = Path(root) / name
    if not _entry(backend).on_disk or not source.is_dir():
        return None
    lock = WriteLock(source, timeout=0)
    lock.acquire()
    try:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        target, n = source.with_name(f"{name}.damaged-{stamp}"), 1
        while target.exists():
            target, n = source.with_name(f"{name}.damaged-{stamp}-{n}"), n + 1
        os.rename(source, target)
    finally:
        lock.release()
    log.warning("moved index %s aside to %s", source, target)
    return target


def salvage_points(
    backend: str, *, path: Path, dim: int
) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
    """Every point still readable in a (quarantined) index directory, checksums ignored.

    Each on-disk backend's module reads its own files (nmslib: the base file's live slots if
    readable, then the segments in order up to the first unreadable one; exact: its
    ``exact.npz`` if readable). Never raises for damage.

    Returns:
        ids, (N, dim) float32 vectors and payloads, aligned; empty when nothing is readable
        (and always for ``qdrant``).

    Raises:
        ConfigError: unknown backend.
    """
    entry = _entry(backend)
    if not entry.on_disk:
        return [], np.empty((0, dim), np.float32), []
    return _module(entry).salvage(Path(path), dim)


def _entry(backend: str) -> Backend:
    entry = BACKENDS.get(backend)
    if entry is None:
        raise ConfigError(f"unknown index backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    return entry


def _module(entry: Backend) -> BackendModule:
    return cast(BackendModule, importlib.import_module(entry.module))
