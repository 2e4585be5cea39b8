"""``search_arrays`` answers like ``search`` on every backend; coded payload columns filter
like :func:`~embplat.retrieval.base.matches`."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient

from embplat.retrieval import IdPositions, SearchArrays, VectorIndex, point_id, search_arrays
from embplat.retrieval.base import l2_normalize, matches
from embplat.retrieval.columns import PayloadColumns
from embplat.retrieval.exact import ExactIndex
from embplat.retrieval.helpers import filter_mask
from embplat.retrieval.nmslib_index import NmslibIndex
from embplat.retrieval.qdrant_index import QdrantIndex

DIM, N = 16, 600
FILTERS = [None, {"split": "train"}, {"class": ["c1", "c4"]}, {"class": "c2", "split": "valid"}]


def _data(n: int = N, seed: int = 0) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    centres = l2_normalize(rng.standard_normal((8, DIM)))
    labels = rng.integers(0, 8, n)
    vectors = l2_normalize(centres[labels] + 0.3 * rng.standard_normal((n, DIM)))
    payloads = [
        {"class": f"c{lab}", "split": ["train", "train", "valid"][i % 3], "kind": "image"}
        for i, lab in enumerate(labels)
    ]
    return [point_id(f"p{seed}-{i}", "t") for i in range(n)], vectors, payloads


@pytest.fixture(params=["exact", "nmslib", "qdrant"])
def index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorIndex]:
    """Each backend with N points; nmslib holds a graph plus a buffer and tombstones."""
    idx: VectorIndex
    if request.param == "exact":
        idx = ExactIndex("t", DIM)
    elif request.param == "nmslib":
        idx = NmslibIndex("t", DIM, tmp_path, buffer_limit=256)
    else:
        idx = QdrantIndex("t", DIM, QdrantClient(":memory:"), owns_client=True)
    ids, vectors, payloads = _data()
    idx.upsert(ids[:500], vectors[:500], payloads[:500])
    idx.upsert(ids[500:], vectors[500:], payloads[500:])  # nmslib: the exact buffer
    idx.delete(ids[:20])
    yield idx
    idx.close()


@pytest.mark.parametrize("flt", FILTERS)
def test_search_arrays_equal_search(index: VectorIndex, flt: dict[str, Any] | None) -> None:
    queries = _data(40, seed=1)[1]
    found = search_arrays(index, queries, 7, flt)
    hits = index.search(queries, 7, flt)
    assert isinstance(found, SearchArrays) and found.rows.shape[0] == 40
    for row, scores, want in zip(found.rows, found.scores, hits, strict=True):
        assert [found.ids[r] for r in row if r >= 0] == [h.id for h in want]
        assert scores[: len(want)].tolist() == pytest.approx([h.score for h in want], abs=1e-6)


def test_search_arrays_pads_short_answers(index: VectorIndex) -> None:
    found = search_arrays(index, _data(3, seed=2)[1], 5, {"class": "nope"})
    assert (found.rows == -1).all() and (found.scores == 0).all()


def test_id_positions_map_rows_and_reuse_the_table() -> None:
    found = SearchArrays(np.array([[2, 0, -1]]), np.zeros((1, 3), np.float32), ["a", "b", "c"])
    positions = IdPositions(["c", "a"], extra=["b", "a"])
    assert positions(found).tolist() == [[0, 1, -1]]
    assert positions.of(["a", "b", "zz"]).tolist() == [1, 2, -1]  # "b" only as an extra
    again = SearchArrays(np.array([[1]]), np.zeros((1, 1), np.float32), found.ids)
    assert positions(again).tolist() == [[2]]


ODD_PAYLOADS: list[dict[str, Any]] = [
    {"class": "a", "n": 1},
    {"class": "b", "n": True},
    {"class": ["a", "b"], "n": 1.0},
    {"n": None},
    {"class": {"x": 1}, "n": math.nan},
    {"class": "a", "n": 2, "split": "train"},
    {},
]
ODD_FILTERS: list[dict[str, Any]] = [
    {"class": "a"},
    {"class": ["a", "b"]},
    {"class": ("b",)},
    {"class": None},
    {"class": {"x": 1}},
    {"class": [["a", "b"]]},
    {"n": 1},
    {"n": [2, None]},
    {"n": math.nan},
    {"class": "a", "split": "train"},
    {"missing": None},
    {"class": []},
]


@pytest.mark.parametrize("flt", ODD_FILTERS, ids=str)
def test_columns_filter_like_matches(flt: dict[str, Any]) -> None:
    columns = PayloadColumns()
    payloads: list[dict[str, Any]] = []
    for part in (ODD_PAYLOADS[:3], ODD_PAYLOADS[3:], ODD_PAYLOADS):  # grown between calls
        payloads += part
        assert columns.mask(payloads, flt).tolist() == [matches(p, flt) for p in payloads]
    assert columns.mask(payloads, flt).tolist() == filter_mask(payloads, flt).tolist()


def test_nmslib_filters_follow_writes(tmp_path: Path) -> None:
    """Coded columns and cached masks stay right across upserts, replacements, deletes and a
    rebuild (slots renumbered)."""
    ids, vectors, payloads = _data()
    nm, ref = NmslibIndex("t", DIM, tmp_path, buffer_limit=100), ExactIndex("t", DIM)
    queries = _data(10, seed=3)[1]
    flt = {"class": ["c1", "c2"], "split": "train"}
    for idx in (nm, ref):
        idx.upsert(ids[:300], vectors[:300], payloads[:300])
    for step in range(3):
        moved = [dict(p, split="train" if p["split"] == "valid" else "valid") for p in payloads]
        batch = slice(100 * step, 100 * step + 150)
        for idx in (nm, ref):
            assert idx.count(flt) == sum(matches(p, flt) for p in idx.get(idx.ids())[1])
            idx.upsert(ids[batch], vectors[batch], moved[batch])
            idx.delete(ids[step::7])
        got, want = nm.search(queries, 300, flt), ref.search(queries, 300, flt)
        assert [{h.id for h in g} for g in got] == [{h.id for h in w} for w in want]
    nm.rebuild()
    assert nm.count(flt) == ref.count(flt)
    nm.close()
