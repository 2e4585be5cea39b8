"""Damaged index files: checksums on open, and what repair can quarantine and salvage."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embplat.errors import BusyError, IndexDamagedError
from embplat.retrieval import open_index
from embplat.retrieval.base import l2_normalize
from embplat.retrieval.exact import ExactIndex
from embplat.retrieval.factory import quarantine_index, salvage_points
from embplat.retrieval.files import write_npz
from embplat.retrieval.nmslib_index import NmslibIndex

pytestmark = pytest.mark.reliability

DIM, N = 16, 300
REPAIR = "run `platform doctor --repair`"
Points = tuple[list[str], np.ndarray, list[dict[str, Any]]]


def _points(start: int, n: int) -> Points:
    rng = np.random.default_rng(start)
    ids = [f"p{i:05d}" for i in range(start, start + n)]
    return ids, l2_normalize(rng.standard_normal((n, DIM))), [{"n": i} for i in range(n)]


def _flip(file: Path, count: int = 64, at: float = 0.5) -> None:
    data = bytearray(file.read_bytes())
    start = int(len(data) * at)
    data[start : start + count] = bytes(b ^ 0xFF for b in data[start : start + count])
    file.write_bytes(bytes(data))


def _truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


def _manifest(path: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((path / "manifest.json").read_text())
    return manifest


@pytest.fixture
def nmslib_dir(tmp_path: Path) -> tuple[Path, dict[str, ExactIndex]]:
    """An nmslib directory with a base (graph over 300 points) and three segments, and
    ExactIndex copies of what the base, and each segment after it, hold."""
    path = tmp_path / "nmslib"
    index = NmslibIndex("t", DIM, path, buffer_limit=100)
    index.upsert(*_points(0, N))  # past buffer_limit: a graph
    index.flush()
    expect = {"base": ExactIndex("base", DIM), "all": ExactIndex("all", DIM)}
    for ref in expect.values():
        ref.upsert(*_points(0, N))
    writes = [
        lambda ix: ix.upsert(*_points(1000, 20)),
        lambda ix: (ix.delete([f"p{i:05d}" for i in range(10)]), ix.upsert(*_points(5, 3))),
        lambda ix: ix.upsert(*_points(2000, 7)),
    ]
    for i, write in enumerate(writes, start=1):
        write(index)
        index.flush()
        write(expect["all"])
        expect[f"seg{i}"] = ExactIndex(f"seg{i}", DIM)
        expect[f"seg{i}"].upsert(*_salvaged(expect["all"]))
    index.close()
    assert len(_manifest(path)["segments"]) == 3
    return path, expect


def _salvaged(ref: ExactIndex) -> Points:
    ids = ref.ids()
    vectors, payloads = ref.get(ids)
    return ids, vectors, payloads


def _as_dict(points: Points) -> dict[str, tuple[list[float], dict[str, Any]]]:
    ids, vectors, payloads = points
    assert len(ids) == len(vectors) == len(payloads) == len(set(ids))
    return {
        pid: (np.round(v, 5).tolist(), p) for pid, v, p in zip(ids, vectors, payloads, strict=True)
    }


def _open_fails(path: Path, file: str, problem: str) -> None:
    with pytest.raises(IndexDamagedError) as err:
        NmslibIndex("t", DIM, path)
    message = str(err.value)
    assert "\n" not in message and REPAIR in message, message
    assert str(path / file) in message and re.search(problem, message), message


# --- checksums on open ------------------------------------------------------------------


def test_manifest_records_size_and_sha256_of_every_file(nmslib_dir: Any) -> None:
    path, _ = nmslib_dir
    manifest = _manifest(path)
    named = {manifest["base"], manifest["graph"], *manifest["segments"]}
    assert set(manifest["files"]) == named
    for name, entry in manifest["files"].items():
        assert entry["size"] == (path / name).stat().st_size
        assert re.fullmatch(r"[0-9a-f]{64}", entry["sha256"])


def test_truncated_base_names_the_file_and_the_fix(nmslib_dir: Any) -> None:
    path, _ = nmslib_dir
    base = _manifest(path)["base"]
    _truncate(path / base)
    _open_fails(path, base, "bytes")


def test_flipped_bytes_in_a_segment_fail_the_checksum(nmslib_dir: Any) -> None:
    path, _ = nmslib_dir
    segment = _manifest(path)["segments"][1]
    _flip(path / segment)
    _open_fails(path, segment, "checksum")


def test_missing_segment_and_garbled_manifest(nmslib_dir: Any) -> None:
    path, _ = nmslib_dir
    segment = _manifest(path)["segments"][0]
    (path / segment).unlink()
    _open_fails(path, segment, "missing")
    (path / "manifest.json").write_text('{"gen": 1, "base": ')
    _open_fails(path, "manifest.json", "not a valid manifest")


def test_flipped_graph_is_rebuilt_not_used(
    nmslib_dir: Any, caplog: pytest.LogCaptureFixture
) -> None:
    path, expect = nmslib_dir
    graph = _manifest(path)["graph"]
    _flip(path / graph)
    with caplog.at_level(logging.WARNING):
        index = NmslibIndex("t", DIM, path)
    assert any(graph in r.message and "checksum" in r.message for r in caplog.records)
    queries = _points(50, 20)[1]
    want = [[h.id for h in row] for row in expect["all"].search(queries, 5)]
    assert [[h.id for h in row] for row in index.search(queries, 5)] == want
    index.upsert(*_points(3000, 1))  # the next write saves a sound graph with a new base
    index.close()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        reopened = NmslibIndex("t", DIM, path)
    assert not caplog.records
    assert _manifest(path)["graph"] != graph and reopened.count() == expect["all"].count() + 1


def test_manifest_without_checksums_still_loads(nmslib_dir: Any) -> None:
    """Indexes written before checksums existed open without a check."""
    path, expect = nmslib_dir
    manifest = _manifest(path)
    del manifest["files"]
    manifest["format"] = 1
    (path / "manifest.json").write_text(json.dumps(manifest))
    assert sorted(NmslibIndex("t", DIM, path).ids()) == sorted(expect["all"].ids())


def test_exact_file_checksum(tmp_path: Path) -> None:
    index = ExactIndex("t", DIM, tmp_path)
    index.upsert(*_points(0, 50))
    index.close()
    file = tmp_path / "exact.npz"
    good = file.read_bytes()
    _flip(file, count=8, at=0.3)  # inside the vectors
    with pytest.raises(IndexDamagedError, match=re.escape(REPAIR)):
        ExactIndex("t", DIM, tmp_path)
    file.write_bytes(good[: len(good) // 2])
    with pytest.raises(IndexDamagedError, match=r"exact\.npz"):
        ExactIndex("t", DIM, tmp_path)
    # a file written before checksums existed still opens
    ids, vectors, payloads = _points(0, 50)
    meta = {"format": 1, "name": "t", "dim": DIM, "ids": ids, "payloads": payloads}
    with open(file, "wb") as fh:
        write_npz(fh, vectors, meta)
    assert ExactIndex("t", DIM, tmp_path).ids() == ids


# --- quarantine and salvage ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ("manifest", "all"),  # newest base and its segments, found without the manifest
        ("graph", "all"),
        ("segment2", "seg1"),  # stops at the first unreadable segment
        ("base", "segments only"),
    ],
)
def test_nmslib_salvage(nmslib_dir: Any, damage: str, expected: str) -> None:
    path, expect = nmslib_dir
    manifest = _manifest(path)
    target = {
        "manifest": "manifest.json",
        "graph": manifest["graph"],
        "segment2": manifest["segments"][1],
        "base": manifest["base"],
    }[damage]
    _truncate(path / target)
    got = _as_dict(salvage_points("nmslib", path=path, dim=DIM))
    if expected == "segments only":  # the base's points are lost; the segments' writes stay
        segments_only = ExactIndex("segments", DIM)
        for points in (_points(1000, 20), _points(5, 3), _points(2000, 7)):
            segments_only.upsert(*points)
        assert got == _as_dict(_salvaged(segments_only))
    else:
        assert got == _as_dict(_salvaged(expect[expected]))


def test_quarantine_then_salvage(tmp_path: Path) -> None:
    for backend in ("exact", "nmslib"):
        index = open_index(backend, name="idx", dim=DIM, root=tmp_path)
        index.upsert(*_points(0, 40))
        index.close()
        moved = quarantine_index(backend, name="idx", root=tmp_path)
        assert moved is not None and moved.parent == tmp_path
        assert re.fullmatch(r"idx\.damaged-\d{8}T\d{6}(-\d+)?", moved.name), moved.name
        assert not (tmp_path / "idx").exists()
        assert _as_dict(salvage_points(backend, path=moved, dim=DIM)) == _as_dict(_points(0, 40))
    assert quarantine_index("nmslib", name="nothing", root=tmp_path) is None
    assert quarantine_index("qdrant", name="idx", root=tmp_path) is None
    empty = salvage_points("exact", path=tmp_path / "nothing", dim=DIM)
    assert empty[0] == [] and empty[1].shape == (0, DIM)


def test_salvage_of_unreadable_exact_file_is_empty(tmp_path: Path) -> None:
    index = ExactIndex("t", DIM, tmp_path)
    index.upsert(*_points(0, 10))
    index.close()
    _truncate(tmp_path / "exact.npz")
    ids, vectors, payloads = salvage_points("exact", path=tmp_path, dim=DIM)
    assert (ids, vectors.shape, payloads) == ([], (0, DIM), [])


def test_quarantine_refuses_an_index_being_written(tmp_path: Path) -> None:
    index = NmslibIndex("t", DIM, tmp_path / "idx")
    index.upsert(*_points(0, 5))  # holds the write lock until flushed
    with pytest.raises(BusyError, match="idx"):
        quarantine_index("nmslib", name="idx", root=tmp_path)
    index.close()
    assert quarantine_index("nmslib", name="idx", root=tmp_path) is not None
