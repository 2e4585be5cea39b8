"""On-disk layout of the nmslib backend: segments, their compaction into a new base, cleanup."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from embplat.retrieval.base import l2_normalize
from embplat.retrieval.nmslib_index import NmslibIndex
from embplat.retrieval.nmslib_store import _MAX_SEGMENTS

DIM = 8


def _points(start: int, n: int) -> tuple[list[str], np.ndarray, list[dict[str, str]]]:
    rng = np.random.default_rng(start)
    ids = [f"p{i:05d}" for i in range(start, start + n)]
    return ids, l2_normalize(rng.standard_normal((n, DIM))), [{"n": pid} for pid in ids]


def _manifest(path: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    return manifest


def test_segments_fold_into_a_new_base(tmp_path: Path) -> None:
    path = tmp_path / "nmslib"
    index = NmslibIndex("store", DIM, path, buffer_limit=10_000)
    index.upsert(*_points(0, 20))
    index.flush()  # first flush: base-000001
    (path / "notes.txt").write_text("not ours")
    for i in range(_MAX_SEGMENTS):
        index.upsert(*_points(100 + i, 1))
        index.delete([f"p{i:05d}"] if i < 10 else [])
        index.flush()
    manifest = _manifest(path)
    assert manifest["base"] == "base-000001.npz"
    assert len(manifest["segments"]) == _MAX_SEGMENTS
    index.upsert(*_points(500, 1))
    index.flush()  # one segment too many: folded into a new base
    manifest = _manifest(path)
    assert (manifest["gen"], manifest["base"], manifest["segments"]) == (2, "base-000002.npz", [])
    files = sorted(f.name for f in path.iterdir())
    # notes.txt is not ours; .lock is the write lock, kept between writers
    assert files == [".lock", "base-000002.npz", "manifest.json", "notes.txt"]
    live = [f"p{i:05d}" for i in [*range(10, 20), *range(100, 100 + _MAX_SEGMENTS), 500]]
    want = index.get(live)
    index.close()
    reopened = NmslibIndex("store", DIM, path, buffer_limit=10_000)
    assert reopened.count() == 10 + _MAX_SEGMENTS + 1
    got = reopened.get(live)
    np.testing.assert_array_equal(got[0], want[0])
    assert got[1] == want[1]


def test_garbage_collection_spares_other_live_writers_temporaries(tmp_path: Path) -> None:
    path = tmp_path / "nmslib"
    index = NmslibIndex("store", DIM, path, buffer_limit=10_000)
    index.upsert(*_points(0, 5))
    index.flush()
    other = path / ".seg-000001-000002.npz.999999-0123abcd.tmp"  # another writer, mid-write
    stale = path / ".base-000002.npz.888888-0123abcd.tmp"  # left by a crash long ago
    mine = path / f".seg-000001-000009.npz.{os.getpid()}-0123abcd.tmp"
    for file in (other, stale, mine):
        file.write_bytes(b"partial")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    index.upsert(*_points(5, 1))
    index.flush()
    assert other.exists()
    assert not stale.exists() and not mine.exists()
