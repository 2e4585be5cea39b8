"""On-disk layout of the nmslib backend: segments, their compaction into a new base, cleanup."""

from __future__ import annotations

import json
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
    assert files == ["base-000002.npz", "manifest.json", "notes.txt"]  # notes.txt is not ours
    live = [f"p{i:05d}" for i in [*range(10, 20), *range(100, 100 + _MAX_SEGMENTS), 500]]
    want = index.get(live)
    index.close()
    reopened = NmslibIndex("store", DIM, path, buffer_limit=10_000)
    assert reopened.count() == 10 + _MAX_SEGMENTS + 1
    got = reopened.get(live)
    np.testing.assert_array_equal(got[0], want[0])
    assert got[1] == want[1]
