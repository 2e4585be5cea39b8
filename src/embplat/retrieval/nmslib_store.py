"""On-disk state of an :class:`~embplat.retrieval.nmslib_index.NmslibIndex` directory.

``manifest.json`` is the commit point: it names one base file (the slots at the last
snapshot), the graph file built over its first ``built`` slots, and append-only segment files
holding the writes of each later flush, replayed in order on load, with the size and sha256
of each. Every file is written to a temporary name unique to the process and renamed, the
manifest last, so a crash leaves the state of the last completed flush. Once there are
``_MAX_SEGMENTS`` segments, the next flush folds them into a new base.

Writers hold the directory's :class:`~embplat.retrieval.lock.WriteLock` from their first write
until it is committed, and reload first when another writer committed meanwhile. Readers take
no lock: a file that vanished under a manifest that changed (a writer committed and collected
garbage) makes them read the new manifest again.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from embplat.errors import IndexDamagedError
from embplat.retrieval.files import (
    FileVanishedError,
    Op,
    Snapshot,
    atomic_write,
    check_stored_dim,
    checksum,
    damaged,
    file_checksum,
    fsync_dir,
    is_collectable_tmp,
    npz_bytes,
    read_base,
    read_checked,
    read_segment,
    tmp_path,
)
from embplat.retrieval.lock import WriteLock

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
_FORMAT = 2  # 2: the manifest records a checksum of every file it names
#: Names this class writes; temporaries are these with a leading dot and a ``.tmp`` suffix.
_OWN_PREFIXES = ("base-", "graph-", "seg-")
#: Fold segments into a new base once there are this many.
_MAX_SEGMENTS = 64
#: Reads of a manifest that keeps changing under a reader before it gives up.
_LOAD_ATTEMPTS = 5


class NmslibStore:
    """The files of one index directory, its write lock, and the writes not yet in the files.

    Args:
        path: the index directory (created on the first write).
        name: index name (recorded in the manifest).
        dim: vector dimension.
        m: HNSW ``M`` (recorded in the manifest).
        ef_construction: HNSW ``efConstruction`` (recorded in the manifest).
        lock_timeout: seconds a write waits for another writer of ``path``.
    """

    def __init__(
        self,
        path: Path,
        name: str,
        dim: int,
        m: int,
        ef_construction: int,
        lock_timeout: float = 600.0,
    ) -> None:
        self.path, self.name, self.dim = path, name, dim
        self.m, self.ef_construction = m, ef_construction
        self.lock = WriteLock(path, lock_timeout)
        self.manifest: dict[str, Any] | None = None
        self.graph_file: str | None = None  # file holding the index's graph, if usable
        self._token: bytes | None = None  # the manifest as this handle last read or wrote it
        self._pending: list[Op] = []  # writes since the last flush
        self._needs_snapshot = False  # slots renumbered: the next flush writes a new base
        self._fold_due = False  # the saved graph is unusable: fold at the next flush

    def exists(self) -> bool:
        """True when ``path`` holds a committed index."""
        return (self.path / MANIFEST).exists()

    @property
    def dirty(self) -> bool:
        """True while writes wait for :meth:`flush`."""
        return bool(self._pending) or self._needs_snapshot

    def changed_on_disk(self) -> bool:
        """With the write lock held: True when another writer committed since this handle
        loaded (reload first); a directory moved aside or emptied starts a new index."""
        raw = _read_raw(self.path / MANIFEST)
        if raw == self._token:
            return False
        if raw is None:
            self.manifest = self.graph_file = self._token = None
        return True

    def end_write(self) -> None:
        """Release the write lock unless writes wait for :meth:`flush`."""
        if not self.dirty:
            self.lock.release()

    def record(self, op: Op) -> None:
        """Remember a write for the next :meth:`flush`."""
        self._pending.append(op)

    def renumbered(self) -> None:
        """The index compacted its slots into a new graph: the next flush writes a new base."""
        self.graph_file, self._needs_snapshot = None, True

    def graph_lost(self) -> None:
        """The saved graph was unusable and rebuilt in memory: the next flush saves it."""
        self.graph_file, self._fold_due = None, True

    def flush(self, snapshot: Snapshot, graph: Any) -> None:
        """Make every recorded write durable (a segment file, or a new base), then release
        the write lock.

        Args:
            snapshot: the index's slots now (written only when a new base is due).
            graph: the index's HNSW graph over ``snapshot.built`` slots, or None; saved with a
                new base unless it already has a file.
        """
        if self.dirty:
            self.path.mkdir(parents=True, exist_ok=True)
            if (
                self._needs_snapshot
                or self._fold_due
                or self.manifest is None
                or len(self.manifest["segments"]) >= _MAX_SEGMENTS
            ):
                self._write_snapshot(snapshot.compacted(), graph)
            else:
                self._write_segment()
            self._pending.clear()
            self._needs_snapshot = self._fold_due = False
            self._collect_garbage()
        self.lock.release()

    def load(self) -> tuple[Snapshot, list[Op]]:
        """Read the manifest, the base file and the segments' writes, verifying checksums;
        then :meth:`load_graph`.

        Raises:
            IndexDamagedError: the manifest, the base or a segment is missing, truncated or
                fails its checksum.
            ConfigError: the index holds vectors of another dimension.
        """
        for attempt in range(_LOAD_ATTEMPTS):
            raw = _read_raw(self.path / MANIFEST)
            if raw is None:
                raise damaged(self.path / MANIFEST, "is missing")
            manifest = self._parse_manifest(raw)
            try:
                base, ops, graph_ok = self._read_files(manifest, raw)
            except FileVanishedError:
                if attempt + 1 < _LOAD_ATTEMPTS and _read_raw(self.path / MANIFEST) != raw:
                    log.debug("%s changed while loading; reading it again", self.path)
                    continue
                raise
            self.manifest, self._token = manifest, raw
            self.graph_file = manifest["graph"] if graph_ok else None
            self._fold_due = not graph_ok
            return base, ops
        raise AssertionError("unreachable")

    def load_graph(self, graph: Any) -> bool:
        """Load the saved graph into ``graph`` (holding the base's first ``built`` vectors).

        Returns:
            False (logged) when the graph file is unreadable.
        """
        assert self.graph_file is not None
        file = self.path / self.graph_file
        try:
            graph.loadIndex(str(file), load_data=False)
        except RuntimeError as exc:  # nmslib's C++ checks surface as RuntimeError
            log.warning("cannot load HNSW graph %s (%s); rebuilding it from the vectors", file, exc)
            return False
        return True

    def _parse_manifest(self, raw: bytes) -> dict[str, Any]:
        where = self.path / MANIFEST
        try:
            manifest = json.loads(raw.decode("utf-8"))
            if not isinstance(manifest, dict):
                raise ValueError("not a JSON object")
            for key, kind in (("gen", int), ("base", str), ("segments", list)):
                if not isinstance(manifest.get(key), kind):
                    raise ValueError(f"{key!r} is missing or not {kind.__name__}")
        except ValueError as exc:
            raise damaged(where, f"is not a valid manifest ({exc})") from exc
        check_stored_dim(manifest.get("dim"), self.dim, self.path)
        manifest.setdefault("graph", None)
        manifest.setdefault("files", {})
        return manifest

    def _read_files(self, manifest: dict[str, Any], raw: bytes) -> tuple[Snapshot, list[Op], bool]:
        """The base, the segments' writes, and whether the graph file may be loaded."""
        sums: dict[str, Any] = manifest["files"]
        base_file = self.path / manifest["base"]
        base = read_base(read_checked(base_file, sums.get(manifest["base"])), base_file)
        ops: list[Op] = []
        for segment in manifest["segments"]:
            file = self.path / segment
            ops.extend(read_segment(read_checked(file, sums.get(segment)), file, self.dim))
        graph = manifest["graph"]
        if graph is None or graph not in sums:
            return base, ops, graph is not None or base.built == 0
        try:
            read_checked(self.path / graph, sums[graph])
        except FileVanishedError:
            if _read_raw(self.path / MANIFEST) != raw:
                raise  # a writer replaced it: read the new manifest
            log.warning("HNSW graph %s is missing; rebuilding it", self.path / graph)
            return base, ops, False
        except IndexDamagedError as exc:
            log.warning("%s; rebuilding the graph from the vectors instead", exc)
            return base, ops, False
        return base, ops, True

    def _write_snapshot(self, snapshot: Snapshot, graph: Any) -> None:
        gen = self.manifest["gen"] + 1 if self.manifest else 1
        base = f"base-{gen:06d}.npz"
        meta = {"ids": snapshot.ids, "payloads": snapshot.payloads, "built": snapshot.built}
        blob = npz_bytes(snapshot.vectors, meta, alive=snapshot.alive)
        atomic_write(self.path / base, lambda fh: fh.write(blob))
        sums = {base: checksum(blob)}
        old_sums = self.manifest.get("files", {}) if self.manifest else {}
        if graph is not None and self.graph_file is None:
            self.graph_file = f"graph-{gen:06d}.hnsw"
            tmp = tmp_path(self.path / self.graph_file)
            graph.saveIndex(str(tmp), save_data=False)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            sums[self.graph_file] = file_checksum(tmp)
            os.replace(tmp, self.path / self.graph_file)
        elif self.graph_file is not None and self.graph_file in old_sums:
            sums[self.graph_file] = old_sums[self.graph_file]
        state: dict[str, Any] = {"gen": gen, "base": base, "graph": self.graph_file, "segments": []}
        self._commit(state, sums)

    def _write_segment(self) -> None:
        assert self.manifest is not None
        gen, segments = self.manifest["gen"], self.manifest["segments"]
        name = f"seg-{gen:06d}-{len(segments) + 1:06d}.npz"
        ops: list[list[Any]] = []
        meta: dict[str, Any] = {"ops": ops, "ids": [], "payloads": []}
        vectors: list[np.ndarray] = []
        for kind, ids, arr, payloads in self._pending:
            ops.append([kind, len(ids) if kind == "u" else ids])
            if kind == "u":
                meta["ids"] += ids
                meta["payloads"] += payloads
                vectors.append(arr)
        stacked = np.concatenate(vectors) if vectors else np.empty((0, self.dim), np.float32)
        blob = npz_bytes(stacked, meta)
        atomic_write(self.path / name, lambda fh: fh.write(blob))
        sums = {**self.manifest["files"], name: checksum(blob)}
        self._commit({**self.manifest, "segments": [*segments, name]}, sums)

    def _commit(self, state: dict[str, Any], sums: dict[str, Any]) -> None:
        manifest = {"format": _FORMAT, "name": self.name, "dim": self.dim, **state}
        manifest |= {"space": "cosinesimil", "m": self.m, "ef_construction": self.ef_construction}
        manifest["files"] = sums
        fsync_dir(self.path)
        blob = json.dumps(manifest, indent=1).encode("utf-8")
        atomic_write(self.path / MANIFEST, lambda fh: fh.write(blob))
        self.manifest, self._token = manifest, blob

    def _collect_garbage(self) -> None:
        """Delete files of older generations, this process's temporaries, and temporaries a
        crash left over an hour ago; another live writer's temporaries stay."""
        assert self.manifest is not None
        keep = {self.manifest["base"], self.manifest["graph"], *self.manifest["segments"]}
        ours = (*_OWN_PREFIXES, MANIFEST)
        for file in self.path.iterdir():
            name = file.name
            if (name.startswith(_OWN_PREFIXES) and name not in keep) or (
                name[1:].startswith(ours) and is_collectable_tmp(file)
            ):
                file.unlink(missing_ok=True)


def _read_raw(file: Path) -> bytes | None:
    try:
        return file.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise damaged(file, f"is unreadable ({exc.strerror})") from exc
