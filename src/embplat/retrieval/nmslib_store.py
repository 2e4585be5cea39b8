"""On-disk state of an :class:`~embplat.retrieval.nmslib_index.NmslibIndex` directory.

``manifest.json`` is the commit point: it names one base file (every slot at the last
snapshot), the graph file built over its first ``built`` slots, and append-only segment files
holding the writes of each later flush, replayed in order on load. Every file is written to a
temporary name and renamed, the manifest last, so a crash leaves the state of the last
completed flush. Once there are ``_MAX_SEGMENTS`` segments, the next flush folds them into a
new base.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embplat.errors import DataError
from embplat.retrieval.files import atomic_write, check_stored_dim, fsync_dir, read_npz, write_npz

logger = logging.getLogger(__name__)

_MANIFEST = "manifest.json"
_FORMAT = 1
#: Names this class writes (temporaries start with a dot); nothing else in ``path`` is touched.
_OWN_PREFIXES = ("base-", "graph-", "seg-", ".base-", ".graph-", ".seg-", f".{_MANIFEST}.")
#: Fold segments into a new base once there are this many.
_MAX_SEGMENTS = 64

#: A write since the last flush: ("u", ids, vectors, payloads) or ("d", ids, empty, []).
Op = tuple[str, list[str], np.ndarray, list[dict[str, Any]]]


@dataclass(frozen=True)
class Snapshot:
    """Every slot of an index: the contents of one base file.

    Attributes:
        vectors: (n, dim) float32, one row per slot.
        alive: (n,) bool, False for tombstones.
        ids: point id of each slot.
        payloads: payload of each slot.
        built: slots ``[0, built)`` are in the HNSW graph.
    """

    vectors: np.ndarray
    alive: np.ndarray
    ids: list[str]
    payloads: list[dict[str, Any]]
    built: int


class NmslibStore:
    """The files of one index directory, and the writes not yet in them.

    Args:
        path: the index directory (created on the first flush).
        name: index name (recorded in the manifest).
        dim: vector dimension.
        m: HNSW ``M`` (recorded in the manifest).
        ef_construction: HNSW ``efConstruction`` (recorded in the manifest).
    """

    def __init__(self, path: Path, name: str, dim: int, m: int, ef_construction: int) -> None:
        self.path, self.name, self.dim = path, name, dim
        self.m, self.ef_construction = m, ef_construction
        self.manifest: dict[str, Any] | None = None
        self.graph_file: str | None = None  # file holding the index's graph, if saved
        self._pending: list[Op] = []  # writes since the last flush
        self._needs_snapshot = False

    def exists(self) -> bool:
        """True when ``path`` holds a committed index."""
        return (self.path / _MANIFEST).exists()

    def record(self, op: Op) -> None:
        """Remember a write for the next :meth:`flush`."""
        self._pending.append(op)

    def renumbered(self) -> None:
        """The index compacted its slots into a new graph: the next flush writes a new base."""
        self.graph_file, self._needs_snapshot = None, True

    def flush(self, snapshot: Snapshot, graph: Any) -> None:
        """Make every recorded write durable: a segment file, or a new base after a rebuild.

        Args:
            snapshot: the index's slots now (written only when a new base is due).
            graph: the index's HNSW graph over ``snapshot.built`` slots, or None; saved with a
                new base unless it already has a file.
        """
        if not (self._pending or self._needs_snapshot):
            return
        self.path.mkdir(parents=True, exist_ok=True)
        if (
            self._needs_snapshot
            or self.manifest is None
            or len(self.manifest["segments"]) >= _MAX_SEGMENTS
        ):
            self._write_snapshot(snapshot, graph)
        else:
            self._write_segment()
        self._pending.clear()
        self._needs_snapshot = False
        self._collect_garbage()

    def load(self) -> Snapshot:
        """Read the manifest and the base file; then :meth:`load_graph` and :meth:`replay`.

        Raises:
            DataError: the manifest or base file is unreadable.
            ConfigError: the index holds vectors of another dimension.
        """
        try:
            manifest = json.loads((self.path / _MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read {self.path / _MANIFEST}: {exc}") from exc
        check_stored_dim(manifest.get("dim"), self.dim, self.path)
        vectors, meta, arrays = read_npz(self.path / manifest["base"])
        self.manifest, self.graph_file = manifest, manifest["graph"]
        return Snapshot(vectors, arrays["alive"], meta["ids"], meta["payloads"], meta["built"])

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
            logger.warning(
                "cannot load HNSW graph %s (%s); rebuilding it from the vectors", file, exc
            )
            return False
        return True

    def replay(self) -> Iterator[Op]:
        """The writes of every committed segment, in order.

        Raises:
            DataError: a segment file is unreadable.
        """
        assert self.manifest is not None
        for segment in self.manifest["segments"]:
            vectors, meta, _ = read_npz(self.path / segment)
            cursor = 0
            for kind, arg in meta["ops"]:
                if kind == "u":
                    end = cursor + arg
                    ids, payloads = meta["ids"][cursor:end], meta["payloads"][cursor:end]
                    yield ("u", ids, vectors[cursor:end], payloads)
                    cursor = end
                else:
                    yield ("d", arg, np.empty((0, self.dim), np.float32), [])

    def _write_snapshot(self, snapshot: Snapshot, graph: Any) -> None:
        gen = self.manifest["gen"] + 1 if self.manifest else 1
        base = f"base-{gen:06d}.npz"
        meta = {"ids": snapshot.ids, "payloads": snapshot.payloads, "built": snapshot.built}
        vectors, alive = snapshot.vectors, snapshot.alive
        atomic_write(self.path / base, lambda fh: write_npz(fh, vectors, meta, alive=alive))
        if graph is not None and self.graph_file is None:
            self.graph_file = f"graph-{gen:06d}.hnsw"
            tmp = self.path / f".{self.graph_file}.tmp"
            graph.saveIndex(str(tmp), save_data=False)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, self.path / self.graph_file)
        self._commit({"gen": gen, "base": base, "graph": self.graph_file, "segments": []})

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
        atomic_write(self.path / name, lambda fh: write_npz(fh, stacked, meta))
        self._commit({**self.manifest, "segments": [*segments, name]})

    def _commit(self, state: dict[str, Any]) -> None:
        manifest = {"format": _FORMAT, "name": self.name, "dim": self.dim, **state}
        manifest |= {"space": "cosinesimil", "m": self.m, "ef_construction": self.ef_construction}
        fsync_dir(self.path)
        blob = json.dumps(manifest, indent=1).encode("utf-8")
        atomic_write(self.path / _MANIFEST, lambda fh: fh.write(blob))
        self.manifest = manifest

    def _collect_garbage(self) -> None:
        """Delete files of older generations and temporaries no manifest refers to."""
        assert self.manifest is not None
        keep = {self.manifest["base"], self.manifest["graph"], *self.manifest["segments"]}
        for file in self.path.iterdir():
            if file.name.startswith(_OWN_PREFIXES) and file.name not in keep:
                file.unlink(missing_ok=True)
