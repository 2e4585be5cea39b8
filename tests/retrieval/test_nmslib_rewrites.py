"""Re-writing the same ids over many flushes, folds and rebuilds, reloading after each new base.

A replaced point leaves a tombstone slot with the same id; a base file written with both once
made every later open fail. Every reload here is compared with an ExactIndex fed the same
writes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embplat.retrieval.base import l2_normalize
from embplat.retrieval.exact import ExactIndex
from embplat.retrieval.nmslib_index import NmslibIndex
from embplat.retrieval.nmslib_store import _MAX_SEGMENTS

pytestmark = pytest.mark.reliability

DIM, POOL, K = 8, 500, 5
ROUNDS, REBUILD_AT = 200, (40, 150)


def _segments(path: Path) -> int:
    """Segments named by the manifest (0 before the first flush)."""
    if not (path / "manifest.json").exists():
        return 0
    return len(json.loads((path / "manifest.json").read_text())["segments"])


def _same(index: NmslibIndex, reference: ExactIndex, queries: np.ndarray) -> None:
    assert index.count() == reference.count()
    assert sorted(index.ids()) == sorted(reference.ids())
    assert len(set(index.ids())) == len(index.ids())
    live = reference.ids()
    got, want = index.get(live), reference.get(live)
    np.testing.assert_allclose(got[0], want[0], atol=1e-6)
    assert got[1] == want[1]
    hits, ref_hits = index.search(queries, K), reference.search(queries, K)
    assert [[h.id for h in row] for row in hits] == [[h.id for h in row] for row in ref_hits]
    for row, ref_row in zip(hits, ref_hits, strict=True):
        assert [h.score for h in row] == pytest.approx([h.score for h in ref_row], abs=1e-5)


def test_rewritten_ids_survive_folds_rebuilds_and_reloads(tmp_path: Path) -> None:
    path = tmp_path / "nmslib"
    rng = np.random.default_rng(7)
    pool = [f"p{i:03d}" for i in range(POOL)]
    queries = l2_normalize(rng.standard_normal((20, DIM)))
    reference = ExactIndex("reference", DIM)
    index = NmslibIndex("rewrites", DIM, path, buffer_limit=10_000)
    reloads = folds = 0
    for round_ in range(ROUNDS):
        # round 0 writes every id; later rounds re-write a few (few enough that tombstones
        # stay under half of the graph, so 64 segments pile up and get folded)
        ids = pool if round_ == 0 else list(rng.choice(pool, 4, replace=False))
        vectors = l2_normalize(rng.standard_normal((len(ids), DIM)))
        payloads = [{"round": round_, "id": pid} for pid in ids]
        index.upsert(ids, vectors, payloads)
        reference.upsert(ids, vectors, payloads)
        if round_ % 7 == 3:
            gone = list(rng.choice(pool, 3, replace=False))
            assert index.delete(gone) == reference.delete(gone)
        if round_ in REBUILD_AT:
            index.rebuild()
        segments_before = _segments(path)
        index.flush()
        if _segments(path):
            continue
        folds += segments_before == _MAX_SEGMENTS
        # a new base was written: a fresh open must read it, and must agree with the reference
        index.close()
        index = NmslibIndex("rewrites", DIM, path, buffer_limit=10_000)
        reloads += 1
        _same(index, reference, queries)
    assert folds >= 1 and reloads >= 4, (folds, reloads)
    _same(index, reference, queries)
    index.close()
    _same(NmslibIndex("rewrites", DIM, path, buffer_limit=10_000), reference, queries)


def test_base_files_never_repeat_a_live_id(tmp_path: Path) -> None:
    """Tombstones in a base file carry no id; replaced points past the graph are dropped."""
    path = tmp_path / "nmslib"
    index = NmslibIndex("rewrites", DIM, path, buffer_limit=10_000)
    rng = np.random.default_rng(3)
    ids = [f"p{i}" for i in range(30)]
    index.upsert(ids, l2_normalize(rng.standard_normal((30, DIM))), [{}] * 30)
    index.rebuild()  # a graph over p0..p29
    index.upsert(ids[:10], l2_normalize(rng.standard_normal((10, DIM))), [{}] * 10)
    index.upsert(ids[:5], l2_normalize(rng.standard_normal((5, DIM))), [{}] * 5)
    index.rebuild()
    index.upsert(ids[:3], l2_normalize(rng.standard_normal((3, DIM))), [{}] * 3)
    index.upsert(ids[:3], l2_normalize(rng.standard_normal((3, DIM))), [{}] * 3)
    index.close()
    manifest = json.loads((path / "manifest.json").read_text())
    with np.load(path / manifest["base"]) as npz:
        meta = json.loads(npz["meta"].tobytes())
        alive = npz["alive"]
    named = [pid for pid in meta["ids"] if pid]
    assert sorted(named) == sorted(ids)  # each id once, in its live slot
    assert all(bool(a) == bool(pid) for a, pid in zip(alive, meta["ids"], strict=True))
    assert len(meta["ids"]) == 30 + 3  # the graph's 30 slots + the last writes of p0..p2
